"""Tests for package2 articles."""

import unittest

from package2 import Article, article_path, make_article


class MakeArticleTests(unittest.TestCase):
    def test_slug_from_title(self) -> None:
        article = make_article("Hello, World!", "body")
        self.assertEqual(article.slug, "hello-world")

    def test_summary_is_truncated(self) -> None:
        article = make_article("Title", "x" * 100, summary_length=10)
        self.assertEqual(article.summary, "xxxxxxx...")

    def test_empty_slug_rejected(self) -> None:
        with self.assertRaises(ValueError):
            make_article("!!!", "body")


class ArticlePathTests(unittest.TestCase):
    def test_default_prefix(self) -> None:
        article = Article(title="T", slug="t", summary="")
        self.assertEqual(article_path(article), "/articles/t")

    def test_trailing_slash_prefix(self) -> None:
        article = Article(title="T", slug="t", summary="")
        self.assertEqual(article_path(article, prefix="/blog/"), "/blog/t")

"""Tests for package1 text helpers."""

import unittest

from package1 import is_slug, slugify, truncate


class SlugifyTests(unittest.TestCase):
    def test_basic(self) -> None:
        self.assertEqual(slugify("Hello, World!"), "hello-world")

    def test_unicode_is_transliterated(self) -> None:
        self.assertEqual(slugify("Crème Brûlée"), "creme-brulee")

    def test_max_length_strips_trailing_dash(self) -> None:
        self.assertEqual(slugify("alpha beta gamma", max_length=6), "alpha")

    def test_is_slug(self) -> None:
        self.assertTrue(is_slug("hello-world"))
        self.assertFalse(is_slug("Hello World"))
        self.assertFalse(is_slug("-leading"))


class TruncateTests(unittest.TestCase):
    def test_cuts_only_long_text(self) -> None:
        self.assertEqual(truncate("short", 10), "short")
        self.assertEqual(truncate("the quick brown fox", 10), "the qui...")

    def test_limit_too_small(self) -> None:
        with self.assertRaises(ValueError):
            truncate("anything", 2)

"""Article model and URL building on top of package1 slugs."""

from __future__ import annotations

from dataclasses import dataclass

from package1 import slugify, truncate

__all__ = ["Article", "article_path", "make_article"]


@dataclass(frozen=True)
class Article:
    """A published article identified by its slug."""

    title: str
    slug: str
    summary: str


def make_article(title: str, body: str, summary_length: int = 40) -> Article:
    """Build an :class:`Article` with a slug and a truncated summary."""
    slug = slugify(title)
    if not slug:
        raise ValueError(f"title {title!r} produces an empty slug")
    return Article(title=title, slug=slug, summary=truncate(body, summary_length))


def article_path(article: Article, prefix: str = "/articles") -> str:
    """Return the URL path for ``article`` under ``prefix``."""
    return f"{prefix.rstrip('/')}/{article.slug}"

"""Core text helpers: slugs and truncation."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["is_slug", "slugify", "truncate"]

_NON_SLUG = re.compile(r"[^a-z0-9]+")
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def slugify(text: str, max_length: int | None = None) -> str:
    """Return a lowercase ASCII slug of ``text``, optionally capped at ``max_length``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = _NON_SLUG.sub("-", ascii_text.lower()).strip("-")
    if max_length is not None:
        slug = slug[:max_length].rstrip("-")
    return slug


def is_slug(value: str) -> bool:
    """Return True if ``value`` is already a valid slug."""
    return bool(_SLUG.match(value))


def truncate(text: str, limit: int, suffix: str = "...") -> str:
    """Shorten ``text`` to at most ``limit`` characters, appending ``suffix`` when cut."""
    if limit < len(suffix):
        raise ValueError("limit must be at least len(suffix)")
    if len(text) <= limit:
        return text
    return text[: limit - len(suffix)].rstrip() + suffix

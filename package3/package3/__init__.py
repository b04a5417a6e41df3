"""Tiny article service configured from an ini file."""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from package1 import slugify
from package2 import Article, article_path, make_article

__all__ = ["Settings", "load_settings", "publish"]

PathLike = Union[str, Path]


@dataclass(frozen=True)
class Settings:
    """Service settings read from the ``[app]`` section."""

    name: str
    base_url: str
    article_prefix: str
    summary_length: int
    debug: bool

    @property
    def service_id(self) -> str:
        """Slugified service name, usable as an identifier."""
        return slugify(self.name)


def load_settings(path: PathLike, section: str = "app") -> Settings:
    """Read :class:`Settings` from ``section`` of the ini file at ``path``."""
    parser = configparser.ConfigParser()
    if not parser.read(path, encoding="utf-8"):
        raise FileNotFoundError(f"config file not found: {path}")
    app = parser[section]
    return Settings(
        name=app.get("name", "package3"),
        base_url=app.get("base_url", "http://localhost").rstrip("/"),
        article_prefix=app.get("article_prefix", "/articles"),
        summary_length=app.getint("summary_length", 40),
        debug=app.getboolean("debug", False),
    )


def publish(settings: Settings, title: str, body: str) -> tuple[Article, str]:
    """Create an article and return it with its absolute URL."""
    article = make_article(title, body, summary_length=settings.summary_length)
    return article, settings.base_url + article_path(article, settings.article_prefix)

"""Tests for package3 settings loading and publishing."""

import tempfile
import unittest
from pathlib import Path

from package3 import Settings, load_settings, publish

DEVELOPMENT_INI = Path(__file__).resolve().parent.parent / "development.ini"


class LoadSettingsTests(unittest.TestCase):
    def setUp(self) -> None:
        self.settings = load_settings(DEVELOPMENT_INI)

    def test_development_ini_exists(self) -> None:
        self.assertTrue(DEVELOPMENT_INI.is_file())

    def test_values_are_read(self) -> None:
        self.assertEqual(self.settings.name, "Demo Article Service")
        self.assertEqual(self.settings.base_url, "http://localhost:8080")
        self.assertEqual(self.settings.summary_length, 60)
        self.assertTrue(self.settings.debug)

    def test_service_id_uses_package1(self) -> None:
        self.assertEqual(self.settings.service_id, "demo-article-service")

    def test_missing_file_raises(self) -> None:
        with tempfile.TemporaryDirectory() as tmp, self.assertRaises(FileNotFoundError):
            load_settings(Path(tmp) / "missing.ini")


class PublishTests(unittest.TestCase):
    def test_publish_builds_absolute_url(self) -> None:
        settings = Settings("svc", "https://example.com", "/news", 20, False)
        article, url = publish(settings, "Big News Today", "lorem ipsum " * 5)
        self.assertEqual(url, "https://example.com/news/big-news-today")
        self.assertLessEqual(len(article.summary), 20)

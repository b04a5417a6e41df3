"""Lint, format and types are part of the suite, so the README's one test command checks them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT

CHECKS = {
    "ruff check": [sys.executable, "-m", "ruff", "check", "."],
    "ruff format": [sys.executable, "-m", "ruff", "format", "--check", "."],
    "mypy": [sys.executable, "-m", "mypy"],
}


@pytest.mark.parametrize("name", CHECKS)
def test_quality(name: str) -> None:
    tool = CHECKS[name][2]
    if subprocess.run([sys.executable, "-m", tool, "--version"], capture_output=True).returncode:
        pytest.skip(f"{tool} is not installed")
    if tool == "mypy" and sys.version_info < (3, 10):
        pytest.skip("mypy checks with the newest Python; the code's 3.9 syntax is ruff's (py39)")
    done = subprocess.run(CHECKS[name], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

"""Where a watcher could go blind or stale: bytecode cached by another Python, a root replaced
under autotest, a burst of tens of thousands of files, a file moved between packages.

Real watchdog observers, real runs, real git, and real rm, cp and mv on the watched tree; each
edit that must be seen turns a passing test failing, so the verdict proves the run saw it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_events import cycle, started, verdicts

from conftest import Repo, Watch


@pytest.fixture(scope="module")
def shared_pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pycache")


@pytest.fixture(autouse=True)
def compiled_once(shared_pycache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """nose's bytecode in one cache for the module, as in test_events."""
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(shared_pycache))


# ---------------------------------------------------------------------------------------------
# 1. No stale code, whatever the interpreter
# ---------------------------------------------------------------------------------------------


def another_python() -> str | None:
    """An installed interpreter whose bytecode tag is not autotest's own (pyenv's, here)."""
    own = sys.implementation.cache_tag
    for minor in range(9, 14):
        for python in sorted(Path.home().glob(f".pyenv/versions/3.{minor}.*/bin/python")):
            if own != f"cpython-3{minor}":
                return str(python)
    return None


OTHER_PYTHON = another_python()

UNITTEST_VALUE = """\
import unittest

from alpha import VALUE


class TestValue(unittest.TestCase):
    def test_value(self):
        self.assertEqual(VALUE, 1)
"""


@pytest.mark.skipif(OTHER_PYTHON is None, reason="needs a second Python version")
def test_a_same_size_save_within_the_second_is_run_under_a_packages_other_python(
    repo: Repo, watch: type[Watch]
) -> None:
    assert OTHER_PYTHON is not None
    repo.package("alpha", tests=UNITTEST_VALUE)
    venv = repo.path / "alpha" / ".venv"
    subprocess.run([OTHER_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    w = started(watch, repo.path, "--runner", "unittest", "--no-warm")
    assert verdicts(cycle(w, 1))[0] == ("alpha", "ok"), w.output
    source = repo.path / "alpha" / "alpha" / "__init__.py"
    before = source.stat()
    source.write_text("VALUE = 2\n")  # the same size, saved within the same second
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    lines = cycle(w, 2)
    assert lines[0] == "changed: alpha/alpha/__init__.py", w.output
    assert verdicts(lines)[0] == ("alpha", "FAILED"), w.output

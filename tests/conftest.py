"""Shared harness: temporary repositories of real packages, and autotest run as a real process."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
AUTOTEST = ROOT / "utilities" / "autotest.py"
SUMMARY = re.compile(
    r"^(all \d+ packages passed|the 1 package passed|\d+ of \d+ packages? passed; "
    r"|\S.* FAILED; |changed during the run)"
)

PASSING_TEST = "def test_ok():\n    assert True\n"
FAILING_TEST = (
    "def test_broken():\n    print('the output of the failing run')\n    assert False, 'boom'\n"
)


def load_autotest() -> ModuleType:
    """The script is not a package: load it by path, once (registered first, for its
    dataclasses)."""
    if "autotest" in sys.modules:
        return sys.modules["autotest"]
    spec = importlib.util.spec_from_file_location("autotest", AUTOTEST)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def discovered(root: Path) -> tuple[list[Any], list[str]]:
    """The packages found below ``root``, and the directories that could not be read."""
    found = load_autotest().discover(root)
    return list(found.packages), list(found.unreadable)


def bare_venv(venv: Path) -> Path:
    """A virtualenv with nothing installed, its interpreter returned; below Python 3.11 it gets
    tomli alone (copied in: pure Python), without which autotest cannot read pyproject.toml."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    if sys.version_info < (3, 11):
        spec = importlib.util.find_spec("tomli")
        assert spec is not None and spec.submodule_search_locations, "tomli is installed here"
        source = Path(next(iter(spec.submodule_search_locations)))
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        shutil.copytree(source, Path(site) / "tomli")
    return python


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no colours forced, bytecode written as usual."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "PYTHONDONTWRITEBYTECODE")
    }
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


class Repo:
    """A repository in a temporary directory, with helpers to write packages and files."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, rel: str, text: str = "") -> Path:
        path = self.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def package(
        self,
        rel: str,
        *,
        name: str | None = None,
        deps: Sequence[str] = (),
        tests: str = PASSING_TEST,
        code: str = "VALUE = 1\n",
    ) -> Path:
        """A package with pyproject.toml, one module and one test module."""
        module = (name or Path(rel).name).replace("-", "_")
        dep_list = ", ".join(f'"{d}"' for d in deps)
        self.write(
            f"{rel}/pyproject.toml",
            f'[project]\nname = "{name or Path(rel).name}"\ndependencies = [{dep_list}]\n',
        )
        self.write(f"{rel}/{module}/__init__.py", code)
        self.write(f"{rel}/tests/__init__.py")
        self.write(f"{rel}/tests/test_{module}.py", tests)
        return self.path / rel


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    root = tmp_path / "repo"
    root.mkdir()
    return Repo(root)


def run_autotest(
    root: Path,
    *args: str,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """autotest run to completion (``--once`` or a bad input)."""
    return subprocess.run(
        [sys.executable, str(AUTOTEST), "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or clean_env(),
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )


GIT = ("git", "-c", "user.name=autotest", "-c", "user.email=autotest@example.com")


def git(root: Path, *args: str) -> str:
    """git in ``root`` as a test's author, its output on success."""
    done = subprocess.run(
        [*GIT, "-c", "commit.gpgsign=false", "-C", str(root), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def default_signals() -> None:
    """A suite started in the background has SIGINT ignored, and one started under nohup
    SIGHUP; children inherit that, and autotest rightly keeps what its parent ignores.  The
    tests send these signals, so each autotest they start gets the defaults back."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


class Watch:
    """autotest in watch mode, its output collected line by line as it comes."""

    def __init__(
        self,
        root: Path,
        *args: str,
        env: dict[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.proc = subprocess.Popen(
            [python, str(AUTOTEST), "--root", str(root), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env or clean_env(),
            text=True,
            errors="replace",
            preexec_fn=default_signals if os.name == "posix" else None,
        )
        self.lines: list[str] = []
        self._eof = False
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, start: int = 0, timeout: float = 20) -> int:
        """Wait until a line from ``start`` on matches; return the index after it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index in range(start, len(self.lines)):
                    if regex.search(self.lines[index]):
                        return index + 1
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    raise AssertionError(
                        f"no line matching {pattern!r} after line {start}:\n{self.output}"
                    )
                self._cond.wait(min(remaining, 0.2))

    def wait_cycles(self, count: int, timeout: float = 30) -> int:
        """Wait until ``count`` cycles have ended in all; return the index after the last one."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                ends = [i for i, line in enumerate(self.lines) if SUMMARY.search(line)]
                if len(ends) >= count:
                    return ends[count - 1] + 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} cycles:\n{self.output}")
                self._cond.wait(min(remaining, 0.2))

    def cycles(self) -> int:
        with self._cond:
            return sum(1 for line in self.lines if SUMMARY.search(line))

    def headers(self) -> list[str]:
        """The line that opens each cycle."""
        with self._cond:
            return [line for line in self.lines if line.startswith(("changed: ", "testing "))]

    def stop(self, sig: int = signal.SIGINT, timeout: float = 5) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def watch() -> Iterator[Callable[..., Watch]]:
    """Start autotest watching; every process started is stopped at the end of the test."""
    started: list[Watch] = []

    def start(
        root: Path, *args: str, env: dict[str, str] | None = None, python: str = sys.executable
    ) -> Watch:
        w = Watch(root, *args, env=env, python=python)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop(signal.SIGKILL)


def wait_until(
    predicate: Callable[[], object], timeout: float = 10, interval: float = 0.02
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())

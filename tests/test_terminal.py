"""autotest on a real terminal (a pty): keys, colours, and the terminal always put back."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator

import pytest

from conftest import AUTOTEST, FAILING_TEST, PASSING_TEST, Repo, clean_env, run_autotest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")


class Terminal:
    """autotest with a pty as its controlling terminal, as when a person runs it."""

    def __init__(self, repo: Repo, *args: str, **env: str) -> None:
        self.master, self.slave = pty.openpty()
        self.saved = termios.tcgetattr(self.slave)
        environment = clean_env(**env)
        environment.pop("NO_COLOR", None)
        environment.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, str(AUTOTEST), "--root", str(repo.path), *args],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env=environment,
            preexec_fn=self._take_terminal,
        )
        self.screen = b""

    def _take_terminal(self) -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    def read_until(self, pattern: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern.encode())
        while not regex.search(self.screen):
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not on screen:\n{self.text}")
            try:
                os.set_blocking(self.master, False)
                self.screen += os.read(self.master, 65536)
            except BlockingIOError:
                time.sleep(0.02)
            except OSError:  # the child closed the terminal
                time.sleep(0.02)
        return self.text

    @property
    def text(self) -> str:
        return self.screen.decode(errors="replace")

    def press(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait(self, timeout: float = 5) -> int:
        return self.proc.wait(timeout=timeout)

    def mode_restored(self) -> bool:
        return termios.tcgetattr(self.slave) == self.saved

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


Opener = Callable[..., Terminal]


@pytest.fixture
def terminal(repo: Repo) -> Iterator[Opener]:
    opened: list[Terminal] = []

    def open_terminal(*args: str, **env: str) -> Terminal:
        t = Terminal(repo, *args, **env)
        opened.append(t)
        return t

    yield open_terminal
    for t in opened:
        t.close()


MENU = r"\[Enter/a\] run all  \[f\] run failed  \[q\] quit"


def test_keys_run_all_run_failed_and_quit_with_the_last_status(
    repo: Repo, terminal: Opener
) -> None:
    repo.package("alpha")
    repo.package("beta", tests=FAILING_TEST)
    t = terminal()
    t.read_until(MENU)
    assert "\033[1;31mFAILED" in t.text, "a failure is red on a terminal"
    t.press("f")
    t.read_until(r"testing 1 failed[\s\S]*beta FAILED[\s\S]*" + MENU)
    repo.write("beta/tests/test_beta.py", PASSING_TEST)
    t.read_until(r"all 2 packages passed")
    t.press("a")
    t.read_until(r"testing all 2 packages")
    t.read_until(r"(all 2 packages passed[\s\S]*){2}" + MENU)
    t.press("q")
    assert t.wait() == 0
    assert t.mode_restored()


def test_quit_reports_a_failing_last_cycle(repo: Repo, terminal: Opener) -> None:
    repo.package("alpha", tests=FAILING_TEST)
    t = terminal()
    t.read_until(MENU)
    t.press("q")
    assert t.wait() == 1
    assert t.mode_restored()


def test_ctrl_c_on_the_terminal_restores_its_mode(repo: Repo, terminal: Opener) -> None:
    repo.package("alpha")
    t = terminal()
    t.read_until(MENU)
    assert not t.mode_restored(), "keys are read one at a time while watching"
    t.press("\x03")
    assert t.wait() == 130
    assert t.mode_restored()
    assert "Traceback" not in t.text


def test_sigterm_restores_the_terminal_too(repo: Repo, terminal: Opener) -> None:
    repo.package("alpha")
    t = terminal()
    t.read_until(MENU)
    t.proc.send_signal(signal.SIGTERM)
    assert t.wait() == 143
    assert t.mode_restored()


def test_no_color_turns_colours_off_on_a_terminal(repo: Repo, terminal: Opener) -> None:
    repo.package("alpha")
    t = terminal("--once", NO_COLOR="1")
    t.read_until(r"all 1 package passed")
    assert t.wait() == 0
    assert "\033[" not in t.text
    assert "[Enter/a]" not in t.text, "no menu in --once"


def test_force_color_colours_a_pipe(repo: Repo) -> None:
    repo.package("alpha")
    plain = run_autotest(repo.path, "--once")
    forced = run_autotest(repo.path, "--once", env=clean_env(FORCE_COLOR="1", NO_COLOR=""))
    assert "\033[" not in plain.stdout
    assert "\033[32mok" in forced.stdout

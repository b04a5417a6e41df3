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
from pathlib import Path

import pytest

from conftest import (
    AUTOTEST,
    FAILING_TEST,
    PASSING_TEST,
    Repo,
    clean_env,
    default_signals,
    run_autotest,
    wait_until,
)

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
        default_signals()
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


MENU = r"\[Enter/a\] run all  \[f\] run failed  [^\n]*\[q\] quit"


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
    t.read_until(r"the 1 package passed")
    assert t.wait() == 0
    assert "\033[" not in t.text
    assert "[Enter/a]" not in t.text, "no menu in --once"


def test_force_color_colours_a_pipe(repo: Repo) -> None:
    repo.package("alpha")
    plain = run_autotest(repo.path, "--once")
    forced = run_autotest(repo.path, "--once", env=clean_env(FORCE_COLOR="1", NO_COLOR=""))
    assert "\033[" not in plain.stdout
    assert "\033[32mok" in forced.stdout


def test_clear_clears_the_screen_before_each_cycle(repo: Repo, terminal: Opener) -> None:
    repo.package("alpha")
    t = terminal("--clear")
    t.read_until(MENU)
    repo.write("alpha/alpha/__init__.py", "VALUE = 2\n")
    t.read_until(r"changed: alpha/alpha/__init__.py[\s\S]*" + MENU)
    before_cycles = re.findall(r"\033\[2J[\s\S]{0,40}(testing the|changed:)", t.text)
    assert before_cycles == ["testing the", "changed:"]


def test_bell_rings_when_a_package_fails_and_only_then(repo: Repo, terminal: Opener) -> None:
    repo.package("alpha")
    t = terminal("--bell")
    t.read_until(MENU)
    assert "\a" not in t.text
    repo.write("alpha/tests/test_alpha.py", FAILING_TEST)
    t.read_until(r"alpha FAILED")
    t.read_until(MENU + r"[\s\S]*" + MENU)
    assert t.text.count("\a") == 1


def test_notify_sends_a_notification_on_failure_and_on_recovery(
    repo: Repo, terminal: Opener, tmp_path: Path
) -> None:
    """notify-send cannot show anything here: a stand-in of that name records its arguments."""
    bin_dir, sent = tmp_path / "bin", tmp_path / "sent.txt"
    bin_dir.mkdir()
    stand_in = bin_dir / "notify-send"
    stand_in.write_text(f'#!/bin/sh\nprintf "%s|%s\\n" "$1" "$2" >> {sent}\n')
    stand_in.chmod(0o755)
    repo.package("alpha", tests=FAILING_TEST)
    t = terminal("--notify", PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    t.read_until(MENU)
    assert wait_until(lambda: sent.exists() and "FAILED" in sent.read_text())
    repo.write("alpha/tests/test_alpha.py", PASSING_TEST)
    t.read_until(r"the 1 package passed")
    assert wait_until(lambda: len(sent.read_text().splitlines()) == 2)
    assert sent.read_text().splitlines() == [
        "autotest|alpha FAILED",
        "autotest|all packages pass again",
    ]


SLEEPING_TEST = """\
import time


def test_takes_a_while():
    time.sleep({seconds})
"""


def test_a_status_line_names_the_running_package_and_is_erased_before_its_verdict(
    repo: Repo, terminal: Opener
) -> None:
    repo.package("alpha")
    repo.package("slow", tests=SLEEPING_TEST.format(seconds=2.5))
    t = terminal("--once", NO_COLOR="1")
    t.read_until(r"all 2 packages passed")
    assert t.wait() == 0
    screen = t.text
    for seconds in (0, 1, 2):  # rewritten at least every second
        assert f"running 2/2 slow {seconds}s" in screen
    status = re.findall(r"running 2/2 slow \ds", screen)
    assert status == sorted(set(status)), "each second once: the line changes only when it must"
    blank = "\r" + " " * len("running 2/2 slow 2s") + "\r"
    assert blank + "slow   ok" in screen, "erased before the verdict line"
    assert re.search(r"\r\n\s*all 2 packages passed", screen)
    assert "running" not in screen.split("slow   ok")[1], "no status line once it ended"


def test_q_during_a_run_quits_at_once_killing_the_tests_and_what_they_started(
    repo: Repo, terminal: Opener, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pids"
    repo.package(
        "alpha",
        tests=f"""\
import os
import subprocess
import sys
import time


def test_waits():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open({str(pidfile) + ".tmp"!r}, "w") as f:
        f.write("%d %d" % (os.getpid(), child.pid))
    os.replace({str(pidfile) + ".tmp"!r}, {str(pidfile)!r})
    time.sleep(60)
""",
    )
    t = terminal()
    t.read_until(r"running 1/1 alpha")
    assert wait_until(pidfile.exists, timeout=20)
    pids = [int(p) for p in pidfile.read_text().split()]
    pressed = time.monotonic()
    t.press("q")
    assert t.wait() == 0, "nothing failed: q during the first cycle quits with 0"
    assert time.monotonic() - pressed < 3
    assert wait_until(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids), timeout=3)
    assert t.mode_restored()
    assert "Traceback" not in t.text


def test_keys_pressed_during_a_run_act_when_it_ends(repo: Repo, terminal: Opener) -> None:
    repo.package("alpha", tests=SLEEPING_TEST.format(seconds=1.5))
    t = terminal()
    t.read_until(r"running 1/1 alpha")
    t.press("a")
    t.read_until(r"the 1 package passed[\s\S]*" + MENU + r"[\s\S]*testing the 1 package")
    t.read_until(r"(the 1 package passed[\s\S]*){2}" + MENU)
    t.press("q")
    assert t.wait() == 0


def test_sighup_exits_129_and_restores_the_terminal(repo: Repo, terminal: Opener) -> None:
    repo.package("alpha", tests=SLEEPING_TEST.format(seconds=30))
    t = terminal()
    t.read_until(r"running 1/1 alpha")
    t.proc.send_signal(signal.SIGHUP)
    assert t.wait() == 129
    assert t.mode_restored()
    assert "Traceback" not in t.text


def test_closing_the_terminal_ends_autotest_and_its_runs(
    repo: Repo, terminal: Opener, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    repo.package(
        "alpha",
        tests=f"import time\n\n\ndef test_waits():\n"
        f"    open({str(marker)!r}, 'w').write('%d' % __import__('os').getpid())\n"
        "    time.sleep(60)\n",
    )
    t = terminal()
    t.read_until(r"running 1/1 alpha")
    assert wait_until(marker.exists, timeout=20)
    test_pid = int(marker.read_text())
    os.close(t.master)  # the terminal window closes: the kernel hangs up
    t.master = os.open(os.devnull, os.O_RDONLY)  # for close() at the end
    assert t.wait() == 129
    assert wait_until(lambda: not os.path.exists(f"/proc/{test_pid}"), timeout=3)


# ---------------------------------------------------------------------------------------------
# Filters, the debugger and the key list, as jest's and vitest's watch modes have them
# ---------------------------------------------------------------------------------------------

TWO_TESTS = """\
def test_alpha_one():
    assert True


def test_other():
    assert False, "fails unless the filter leaves it out"
"""


def filtering_repo(repo: Repo, tests: str = TWO_TESTS) -> None:
    """Three packages under pytest (configured at the root), one under nose (by config)."""
    repo.write("pytest.ini", "[pytest]\naddopts = -s\n")
    repo.write("pyproject.toml", '[tool.autotest.runners]\n"nosey" = "nose"\n')
    for name in ("alpha", "beta", "gamma"):
        repo.package(f"libs/{name}", name=f"acme-{name}", tests=tests)
    repo.write("nosey/setup.cfg", "[metadata]\nname = nosey\n")
    repo.write("nosey/nosey/__init__.py", "")
    repo.write("nosey/tests/test_nosey.py", PASSING_TEST)


def test_p_filters_packages_runs_them_at_once_and_c_clears_it(repo: Repo, terminal: Opener) -> None:
    filtering_repo(repo, PASSING_TEST)
    t = terminal()
    t.read_until(MENU)
    t.press("p")
    t.read_until(r"packages: ")
    t.press("bxx\x7f\x7feta")  # typed, two erased with Backspace, typed on
    t.read_until(r"packages: beta")
    t.press("\r")
    t.read_until(r"testing the 1 package[\s\S]*libs/beta [^\n]*ok[\s\S]*\[p\] packages: beta")
    before = t.text.count("libs/alpha ")
    repo.write("libs/alpha/acme_alpha/__init__.py", "VALUE = 2\n")  # outside the filter
    t.read_until(r"no package tested uses it; nothing to test")
    repo.write("libs/beta/acme_beta/__init__.py", "VALUE = 2\n")
    t.read_until(r"changed: libs/beta/acme_beta/__init__\.py[\s\S]*the 1 package passed")
    assert t.text.count("libs/alpha ") == before, "the filter holds"
    t.press("p")
    t.read_until(r"packages: beta")
    t.press("\x7f\x7f\x7f\x7fzzz\r")
    t.read_until(r"no package matches zzz; the filter stays as it was")
    t.press("c")
    t.read_until(r"testing all 4 packages[\s\S]*all 4 packages passed[\s\S]*" + MENU)
    t.press("q")
    assert t.wait() == 0 and t.mode_restored()


def test_t_filters_tests_by_name_and_esc_drops_the_prompt(repo: Repo, terminal: Opener) -> None:
    filtering_repo(repo)
    t = terminal()
    t.read_until(r"libs/alpha [^\n]*FAILED[\s\S]*" + MENU)
    t.press("t")
    t.read_until(r"tests: ")
    t.press("nothing\x1b")
    t.read_until(r"tests: nothing  \(dropped\)")
    t.press("t")
    t.read_until(r"tests: ")
    t.press("alpha_one\r")
    screen = t.read_until(r"all 4 packages passed[\s\S]*\[t\] tests: alpha_one")
    cycle = screen[screen.rindex("tests: alpha_one\r\n") :]
    assert "nose cannot run tests by name: nosey run all their tests" in cycle
    t.press("t\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7fno_such_test\r")
    t.read_until(r"libs/alpha [^\n]*no tests matched[\s\S]*libs/gamma [^\n]*no tests matched")
    t.press("q")
    assert t.wait() == 0


def test_w_lists_every_key_on_a_line_of_its_own(repo: Repo, terminal: Opener) -> None:
    repo.package("alpha")
    t = terminal()
    t.read_until(MENU)
    t.press("?")
    screen = t.read_until(r"  q +quit")
    for key in ("Enter, a", "f", "p", "t", "c", "d", "w, ?", "q"):
        assert re.search(rf"^  {re.escape(key)} +\S", screen, re.M), key
    t.press("q")
    assert t.wait() == 0


PDB_TEST = """\
def test_first():
    assert True


def test_broken():
    value = 41 + 1
    assert value == 2
"""


def test_d_hands_the_terminal_to_the_debugger_at_the_first_failure(
    repo: Repo, terminal: Opener
) -> None:
    repo.write("pytest.ini", "[pytest]\n")
    repo.package("alpha", tests=PDB_TEST)
    t = terminal("--runner", "pytest")
    t.read_until(MENU)
    t.press("d")
    t.read_until(r"debugging alpha: [^\n]*--pdb[\s\S]*\(Pdb\) ")
    t.press("p value\n")
    t.read_until(r"\n42\r?\n")
    repo.write("alpha/tests/test_alpha.py", PDB_TEST.replace("41 + 1", "1 + 1"))  # meanwhile
    t.press("q\n")  # pdb's quit
    t.read_until(r"the debugger ended \(exit status \d+\); watching again")
    t.read_until(r"changed: alpha/tests/test_alpha\.py[\s\S]*the 1 package passed")
    t.press("d")
    t.read_until(r"no failing package to debug")
    t.press("q")
    assert t.wait() == 0 and t.mode_restored()


TAKES_OVER_THE_TERMINAL = r"""
def test_takes_over_the_terminal():
    print("\x1b[2J\x1b[?1049h\x1b]0;pwned\x07\x1b[5;5Hmoved \x1b[31mred\x1b[0m hidden\rshown\x08")
    assert False
"""


def test_a_failing_runs_output_keeps_its_colours_and_nothing_else_that_drives_the_terminal(
    repo: Repo, terminal: Opener
) -> None:
    repo.package("alpha", tests=TAKES_OVER_THE_TERMINAL)
    t = terminal("--once", "--runner", "pytest")
    t.read_until(r"0 passed, 0 not run")
    assert t.wait() == 1
    screen = t.text
    assert "\033[31mred\033[0m" in screen, "the test's colours are kept"
    for raw in ("\033[2J", "\033[?1049h", "\033]0;", "\033[5;5H", "hidden\rshown", "\x08"):
        assert raw not in screen, f"{raw!r} reached the terminal"
    escaped = r"\x1b[2J\x1b[?1049h\x1b]0;pwned\x07\x1b[5;5Hmoved "
    assert escaped + "\033[31mred\033[0m" + r" hidden\rshown\x08" in screen, "the rest escaped"


def test_with_no_color_a_failing_runs_colours_are_dropped_too(repo: Repo, terminal: Opener) -> None:
    repo.package("alpha", tests=TAKES_OVER_THE_TERMINAL)
    t = terminal("--once", "--runner", "pytest", NO_COLOR="1")
    t.read_until(r"0 passed, 0 not run")
    assert t.wait() == 1
    assert "\033" not in t.text
    assert r"\x1b[5;5Hmoved red hidden\rshown\x08" in t.text


GATED_TEST = """\
import os
import time
from big.{module} import VALUE


def test_{module}():
    gates = os.environ["GATES"]
    while os.path.exists(os.path.join(gates, "armed")) and not os.path.exists(
        os.path.join(gates, "{module}")
    ):
        time.sleep(0.01)
    assert VALUE == 1
"""


def test_the_status_line_names_the_stage_of_a_staged_run(
    repo: Repo, terminal: Opener, tmp_path: Path
) -> None:
    """Once armed, each test waits for its gate file: the status line is read while each
    stage runs, then its gate is opened."""
    repo.write("big/pyproject.toml", '[project]\nname = "big"\n')
    (repo.path / "big/.pytest_cache").mkdir()
    repo.write("big/big/__init__.py")
    for module in ("first", "other"):
        repo.write(f"big/big/{module}.py", "VALUE = 1\n")
        repo.write(f"big/tests/test_{module}.py", GATED_TEST.format(module=module))
    gates = tmp_path / "gates"
    gates.mkdir()
    t = terminal("--runner", "pytest", NO_COLOR="1", GATES=str(gates),
                 PYTHONPATH=str(repo.path / "big"))  # fmt: skip
    t.read_until(r"the 1 package passed")
    (gates / "armed").write_text("")
    (repo.path / "big/big/first.py").write_text("VALUE = 1  # saved\n")
    t.read_until(r"running 1/1 big \(first stage: 1 of 2 test modules\) \ds")
    (gates / "first").write_text("")
    t.read_until(r"running 1/1 big \(second stage\) \ds")
    (gates / "other").write_text("")
    t.read_until(r"the 1 package passed(.|\n)*the 1 package passed")

"""autotest end to end, as a user runs it: one cycle, ordering, runners, configuration, bad
input, exit codes, signals, parallel runs, timeouts and the warm runner.  (Reacting to file
events while watching is covered by test_events.py.)"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from conftest import (
    AUTOTEST,
    FAILING_TEST,
    PASSING_TEST,
    Repo,
    Watch,
    bare_venv,
    clean_env,
    run_autotest,
    wait_until,
)

VERDICT = re.compile(
    r"^(?P<rel>\S.*?)\s{2,}(?P<verdict>ok|no tests|could not run|FAILED(?: \([^)]*\))?)"
    r"\s+\d+\.\d\ds(?:  (?P<note>.+))?$"
)
TIMING = re.compile(r"\d+\.\d+s\b")

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


# Runs of a whole cycle skip writing bytecode: a fresh repository means a fresh bytecode cache
# (autotest keys it by root), and recompiling everything imported costs each test a second.
FAST_ENV = clean_env(PYTHONDONTWRITEBYTECODE="1")


def once(root: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``autotest --once``, run to completion."""
    return run_autotest(root, "--once", *args, env=FAST_ENV, cwd=cwd)


def verdicts(output: str | Sequence[str]) -> list[tuple[str, str]]:
    """(package, verdict) of every verdict line, in the order shown."""
    lines = output.splitlines() if isinstance(output, str) else output
    return [(m["rel"], m["verdict"]) for m in map(VERDICT.match, lines) if m]


def line_index(lines: Sequence[str], pattern: str) -> int:
    regex = re.compile(pattern)
    for index, line in enumerate(lines):
        if regex.search(line):
            return index
    raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(lines))


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (PID 1 here may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def spawning_test(pidfile: Path, only_if: Path | None = None) -> str:
    """A test that starts a grandchild process, writes its own pid, the grandchild's and its
    parent's to ``pidfile`` (atomically), then sleeps.  With ``only_if``, it passes at once
    unless that file exists."""
    tmp = f"{pidfile}.tmp"
    guard = f"if not os.path.exists({str(only_if)!r}):\n        return" if only_if else "pass"
    return f"""\
import os
import subprocess
import sys
import time


def test_hangs():
    {guard}
    os.write(1, b"HANG-START\\n")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open({tmp!r}, "w") as f:
        f.write("%d %d %d" % (os.getpid(), child.pid, os.getppid()))
    os.replace({tmp!r}, {str(pidfile)!r})
    time.sleep(60)
"""


def read_pids(pidfile: Path, timeout: float = 20) -> tuple[int, int, int]:
    """The test process, its grandchild and the test process's parent."""
    assert wait_until(pidfile.exists, timeout), f"{pidfile} never written"
    test, grandchild, parent = (int(p) for p in pidfile.read_text().split())
    return test, grandchild, parent


def assert_gone(pids: Sequence[int], timeout: float = 3) -> None:
    assert wait_until(lambda: not any(alive(p) for p in pids), timeout), (
        f"still running: {[p for p in pids if alive(p)]}"
    )


def assert_usage_error(done: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit 2 and exactly one line on stderr, starting ``autotest: error:``; no traceback."""
    lines = done.stderr.splitlines()
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("autotest: error: "), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def run_python(
    python: Path, root: Path, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """autotest.py run to completion by another interpreter."""
    return subprocess.run(
        [str(python), str(AUTOTEST), "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=FAST_ENV,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )


def three_packages(repo: Repo, beta_fails: bool = False) -> None:
    """alpha, beta, gamma; each test also writes straight to fd 1 (past nose's capture) so
    that a passing run's output would be seen if it were shown."""
    for name in ("alpha", "beta", "gamma"):
        raw = f"import os\n\nos.write(1, b'{name.upper()}-RAW-OUTPUT\\n')\n\n\n"
        failing = beta_fails and name == "beta"
        repo.package(name, tests=raw + (FAILING_TEST if failing else PASSING_TEST))


def edit(path: Path) -> None:
    """A real change to a file, as an editor saves it."""
    path.write_text(path.read_text() + "\n# edited\n")


def second_cycle(
    watch: type[Watch], repo: Repo, changed: str, *args: str, env: dict[str, str] | None = None
) -> list[str]:
    """The lines of the second cycle while watching, set off by editing ``changed``.  The first
    cycle always starts its runs cold; from the second one on they are forked from the warm
    interpreter (unless --no-warm)."""
    w = watch(repo.path, *args, env=env or FAST_ENV)
    first = w.wait_cycles(1)
    edit(repo.path / changed)
    second = w.wait_cycles(2)
    lines = list(w.lines[first:second])
    assert w.stop() == 130
    assert w.headers()[1] == f"changed: {changed}", w.output
    return lines


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An interpreter with nothing installed: neither nose nor watchdog."""
    python = bare_venv(tmp_path_factory.mktemp("bare") / "venv")
    for module in ("nose", "watchdog"):
        probe = subprocess.run(
            [str(python), "-c", f"import {module}"], capture_output=True, env=clean_env()
        )
        assert probe.returncode != 0, f"{module} importable from the bare venv"
    return python


# ---------------------------------------------------------------------------------------------
# One cycle: verdicts, summary, stopping at the first failure
# ---------------------------------------------------------------------------------------------


def test_once_all_green_prints_one_line_per_package(repo: Repo) -> None:
    three_packages(repo)
    done = run_autotest(repo.path, "--once")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"autotest: 3 packages in {repo.path}"
    assert lines[1] == "testing all 3 packages"
    assert verdicts(lines) == [("alpha", "ok"), ("beta", "ok"), ("gamma", "ok")]
    assert re.match(r"^all 3 packages passed in \d+\.\d\ds$", lines[-1])
    assert len(lines) == 6, done.stdout  # start, header, three verdicts, summary: nothing else
    assert "RAW-OUTPUT" not in done.stdout
    assert "Ran 1 test" not in done.stdout
    assert done.stderr == ""


def test_stops_at_first_failure_and_shows_only_its_output(repo: Repo) -> None:
    three_packages(repo, beta_fails=True)
    done = once(repo.path)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert verdicts(lines) == [("alpha", "ok"), ("beta", "FAILED")]
    assert not any(line.startswith("gamma") for line in lines)
    assert re.match(r"^beta FAILED; 1 passed, 1 not run in \d+\.\d\ds$", lines[-1])
    failed_at = line_index(lines, r"^beta\s+FAILED\s")
    assert lines[failed_at + 1 : failed_at + 4] == [  # from nose's own report
        "1 failing test:",
        "  tests/test_beta.py:8 tests.test_beta.test_broken: AssertionError: boom",
        "output:",
    ]
    block = lines[failed_at + 4 : -1]  # the run's output, up to the summary
    text = "\n".join(block)
    assert block[0] == "BETA-RAW-OUTPUT"
    assert "FAIL: tests.test_beta.test_broken" in text
    assert "the output of the failing run" in text  # its print, captured by nose
    assert "AssertionError: boom" in text
    assert block[-1] == "FAILED (failures=1)"
    assert "ALPHA-RAW-OUTPUT" not in done.stdout
    assert "GAMMA-RAW-OUTPUT" not in done.stdout


def test_package_that_ran_no_tests_is_not_a_failure(repo: Repo) -> None:
    repo.package("alpha")
    repo.package("empty", tests="")
    done = once(repo.path)
    assert done.returncode == 0, done.stdout
    assert verdicts(done.stdout) == [("alpha", "ok"), ("empty", "no tests")]
    assert "all 2 packages passed" in done.stdout


# ---------------------------------------------------------------------------------------------
# Order: --changed, dependents, --explain
# ---------------------------------------------------------------------------------------------


def layered(repo: Repo) -> None:
    """aaa stands alone; mid uses core; top uses mid."""
    repo.package("aaa")
    repo.package("core")
    repo.package("mid", deps=["core"])
    repo.package("top", deps=["mid"])


@pytest.mark.parametrize("how", ["cwd-relative", "root-relative", "absolute", "deleted-file"])
def test_changed_path_goes_first_then_its_dependents(repo: Repo, tmp_path: Path, how: str) -> None:
    layered(repo)
    cwd = tmp_path  # outside the repository: a root-relative path means nothing here
    if how == "cwd-relative":
        cwd, arg = repo.path / "top", "../core/core/__init__.py"
    elif how == "root-relative":
        arg = "core/core/__init__.py"
    elif how == "absolute":
        arg = str(repo.path / "core" / "core" / "__init__.py")
    else:
        arg = str(repo.path / "core" / "core" / "removed.py")
    done = once(repo.path, "-v", "--changed", arg, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [rel for rel, _ in verdicts(done.stdout)] == ["core", "mid", "top", "aaa"]
    lines = done.stdout.splitlines()
    assert lines[1].startswith("changed: core/core/"), lines[1]
    assert "is in no package" not in done.stdout
    assert lines[2:6] == [
        "   1. core  (changed)",
        "   2. mid  (uses core)",
        "   3. top  (uses mid)",
        "   4. aaa",
    ]


def test_without_changed_the_bases_run_first(repo: Repo) -> None:
    layered(repo)
    done = once(repo.path, "--explain")
    assert [rel for rel, _ in verdicts(done.stdout)] == ["core", "mid", "aaa", "top"]
    assert done.stdout.splitlines()[2:6] == [
        "   1. core  (used by 2 packages)",
        "   2. mid  (uses core)",
        "   3. aaa",
        "   4. top  (uses mid)",
    ]


def test_changed_orders_several_paths_first_one_first(repo: Repo) -> None:
    layered(repo)
    done = once(repo.path, "--changed", "top", "aaa/aaa/__init__.py")
    assert done.returncode == 0, done.stdout
    assert [rel for rel, _ in verdicts(done.stdout)] == ["top", "aaa", "core", "mid"]


@pytest.mark.parametrize("beta_fails", [False, True])
def test_changed_outside_every_package_is_warned_and_ignored(repo: Repo, beta_fails: bool) -> None:
    three_packages(repo, beta_fails=beta_fails)
    repo.write("README.md", "hello\n")
    done = once(repo.path, "--changed", "README.md", "/nowhere/at/all.py")
    assert done.returncode == (1 if beta_fails else 0), done.stdout + done.stderr
    assert "autotest: README.md is in no package; ignored" in done.stdout
    assert "autotest: /nowhere/at/all.py is in no package; ignored" in done.stdout
    assert "testing all 3 packages" in done.stdout
    assert verdicts(done.stdout)[0] == ("alpha", "ok")
    assert done.stderr == ""


# ---------------------------------------------------------------------------------------------
# How a run ends: exit statuses, signals, huge output, timeouts
# ---------------------------------------------------------------------------------------------

EXIT_3_TEST = """\
import os


def test_exits():
    os.write(1, b"BEFORE-THE-END\\n")
    os._exit(3)
"""

SIGNAL_TEST = """\
import os
import resource
import signal


def test_dies():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file in the package
    os.write(1, b"BEFORE-THE-END\\n")
    os.kill(os.getpid(), signal.{})
"""


@pytest.mark.parametrize("mode", ["once", "warm"])
@pytest.mark.parametrize(
    ("tests", "verdict", "note"),
    [
        (EXIT_3_TEST, "FAILED (exit 3)", None),
        (SIGNAL_TEST.format("SIGSEGV"), "FAILED (SIGSEGV)", "autotest: killed by SIGSEGV"),
        (SIGNAL_TEST.format("SIGKILL"), "FAILED (SIGKILL)", "autotest: killed by SIGKILL"),
    ],
    ids=["exit-3", "SIGSEGV", "SIGKILL"],
)
def test_abnormal_end_of_the_test_process_is_a_failure(
    repo: Repo, watch: type[Watch], mode: str, tests: str, verdict: str, note: str | None
) -> None:
    repo.package("alpha", tests=tests)
    repo.package("beta")
    if mode == "once":
        done = once(repo.path)
        assert done.returncode == 1
        lines = done.stdout.splitlines()
    else:
        lines = second_cycle(watch, repo, "alpha/tests/test_alpha.py")
    assert verdicts(lines) == [("alpha", verdict)]
    failed_at = line_index(lines, r"^alpha\s+FAILED")
    assert lines[failed_at + 1] == "BEFORE-THE-END"
    if note:
        assert lines[-2] == note
    assert re.match(r"^alpha FAILED; 0 passed, 1 not run in ", lines[-1])
    assert "Traceback" not in "\n".join(lines)


FLOOD_TEST = """\
import sys


def test_floods():
    out = sys.__stdout__
    for number in range({lines}):
        out.write("%08d" % number + "x" * 91 + "\\n")
    out.write("LAST-MARKER\\n")
    out.flush()
    assert False
"""


def test_full_output_shows_a_failing_run_with_megabytes_of_output_whole(repo: Repo) -> None:
    repo.package("alpha", tests=FLOOD_TEST.format(lines=60000))
    started = time.monotonic()
    done = once(repo.path, "--full-output")
    assert time.monotonic() - started < 30
    assert done.returncode == 1
    assert len(done.stdout) > 6_000_000
    lines = done.stdout.splitlines()
    first = line_index(lines, r"^00000000x")
    assert lines[first - 1] == "output:"  # after the failing tests
    assert lines[first - 4].startswith("alpha") and "FAILED" in lines[first - 4]
    assert lines[first + 59999].startswith("00059999x")
    assert lines[first + 60000] == "LAST-MARKER"
    assert "omitted" not in done.stdout
    assert re.match(r"^alpha FAILED; 0 passed, 0 not run", lines[-1])


def test_a_failing_run_of_200000_lines_shows_head_and_tail_and_saves_the_rest(
    repo: Repo,
) -> None:
    """Memory stays bounded: the terminal gets about 200 lines, the file gets all of them."""
    repo.package("alpha", tests=FLOOD_TEST.format(lines=200_000))
    done = once(repo.path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert len(lines) < 210, len(lines)
    assert len(done.stdout) < 30_000
    omitted = [line for line in lines if line.startswith("... ")]
    assert len(omitted) == 1, done.stdout
    match = re.fullmatch(r"\.\.\. ([\d]+) lines omitted; full output: (.+)", omitted[0])
    assert match, omitted[0]
    saved = Path(match[2])
    assert repo.path not in saved.parents  # outside the repository
    assert saved.stat().st_size > 200_000 * 100
    with saved.open() as f:
        total = sum(1 for _ in f)
    listed = 3  # "1 failing test:", the test, "output:"
    shown = line_index(lines, r"^alpha FAILED;") - line_index(lines, r"^alpha\s+FAILED\s") - 2
    shown -= listed
    assert int(match[1]) + shown == total
    assert "00000000x" in done.stdout  # the head: what failed first
    assert "FAILED (failures=1)" in lines[-2]  # the tail: nose's summary
    assert "LAST-MARKER" in done.stdout


@pytest.mark.parametrize("mode", ["once", "warm"])
def test_timeout_kills_the_run_and_its_children_and_stops(
    repo: Repo, watch: type[Watch], tmp_path: Path, mode: str
) -> None:
    pidfile, hang = tmp_path / "pids", tmp_path / "hang"
    repo.package("alpha", tests=spawning_test(pidfile, only_if=hang))
    repo.package("beta")
    if mode == "once":
        hang.touch()
        started = time.monotonic()
        done = once(repo.path, "--timeout", "1")
        assert time.monotonic() - started < 8
        assert done.returncode == 1, done.stdout
        output = done.stdout
    else:
        w = watch(repo.path, "--timeout", "1", env=FAST_ENV)
        first = w.wait_cycles(1)
        hang.touch()
        edit(repo.path / "alpha" / "tests" / "test_alpha.py")
        started = time.monotonic()
        second = w.wait_cycles(2, timeout=10)
        assert time.monotonic() - started < 8
        output = "\n".join(w.lines[first:second])
        assert read_pids(pidfile, timeout=0)[2] != w.proc.pid  # it was a forked run
    assert verdicts(output) == [("alpha", "FAILED (timed out)")]
    assert "HANG-START" in output  # what it printed before it hung
    assert "autotest: timed out after 1s; killed" in output
    assert re.search(r"line \d+ in test_hangs", output), "where it hung (faulthandler)"
    assert re.search(r"^alpha FAILED; 0 passed, 1 not run in", output, re.M)
    assert_gone(read_pids(pidfile, timeout=0)[:2])


# ---------------------------------------------------------------------------------------------
# Ctrl+C and SIGTERM
# ---------------------------------------------------------------------------------------------

WARM_MODES = pytest.mark.parametrize("warm", [True, False], ids=["warm", "no-warm"])
SIGNALS = pytest.mark.parametrize(
    ("sig", "status"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
    ids=["SIGINT", "SIGTERM", "SIGHUP"],
)


@WARM_MODES
@SIGNALS
def test_signal_during_a_run_kills_its_tree_and_exits(
    repo: Repo, watch: type[Watch], tmp_path: Path, warm: bool, sig: int, status: int
) -> None:
    pidfile, hang = tmp_path / "pids", tmp_path / "hang"
    repo.package("alpha", tests=spawning_test(pidfile, only_if=hang))
    w = watch(repo.path, *([] if warm else ["--no-warm"]), env=FAST_ENV)
    w.wait_cycles(1)  # runs cold in any case; the next one is forked when warm
    hang.touch()
    edit(repo.path / "alpha" / "tests" / "test_alpha.py")
    test_pid, grandchild, parent = read_pids(pidfile)
    assert (parent != w.proc.pid) == warm  # forked by the warm interpreter, or started cold
    sent = time.monotonic()
    assert w.stop(sig) == status
    assert time.monotonic() - sent < 2
    assert "Traceback" not in w.output
    assert_gone([test_pid, grandchild])


@WARM_MODES
@SIGNALS
def test_signal_while_idle_exits(
    repo: Repo, watch: type[Watch], warm: bool, sig: int, status: int
) -> None:
    repo.package("alpha")
    w = watch(repo.path, *([] if warm else ["--no-warm"]), env=FAST_ENV)
    w.wait_for(r"^the 1 package passed")
    helpers = descendants(w.proc.pid)  # the warm interpreter, when there is one
    assert bool(helpers) == warm
    sent = time.monotonic()
    assert w.stop(sig) == status
    assert time.monotonic() - sent < 2
    assert "Traceback" not in w.output
    assert_gone(sorted(helpers))


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--frobnicate"], ["--frobnicate"]),
        (["--debounce", "-1"], ["--debounce", "-1"]),
        (["--debounce", "abc"], ["--debounce", "abc"]),
        (["--jobs", "0"], ["--jobs", "0"]),
        (["-j", "many"], ["many"]),
        (["--timeout", "0"], ["--timeout", "0"]),
        (["--timeout", "-3"], ["--timeout"]),
        (["--runner", "nosey"], ["nosey", "nose", "pytest", "{package}"]),
        (["--runner", ""], ["--runner"]),
        (["--runner", "'unclosed"], ["--runner"]),
        (["--once", "--since"], ["--since"]),
        (["--once", "--since", "HEAD"], ["--since", "HEAD", "git"]),
        (["--once", "alphq"], ["alphq", "names no package", "alpha"]),
        (["--once", "--exclude", "alp*"], ["--exclude", "1"]),
    ],
)
def test_bad_argument_is_one_error_line(repo: Repo, args: list[str], words: list[str]) -> None:
    repo.package("alpha")
    assert_usage_error(run_autotest(repo.path, *args), *words)


def test_root_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert_usage_error(run_autotest(missing, "--once"), str(missing))


def test_root_that_is_a_file(repo: Repo) -> None:
    path = repo.write("file.txt", "x")
    assert_usage_error(run_autotest(path, "--once"), str(path))


def test_root_without_packages_says_where_and_what_it_looked_for(repo: Repo) -> None:
    repo.write("notes/readme.txt", "no package here\n")
    repo.write("pyproject.toml", "[tool.ruff]\n")  # the root itself is never a package
    line = assert_usage_error(once(repo.path))
    for word in (str(repo.path), "pyproject.toml", "setup.py", "setup.cfg"):
        assert word in line


def test_nose_missing_names_pynose(repo: Repo, bare_python: Path) -> None:
    repo.package("alpha")
    assert_usage_error(run_python(bare_python, repo.path, "--once"), "pynose", str(bare_python))


def test_pytest_needed_but_missing_names_the_packages_and_the_install(
    repo: Repo, bare_python: Path
) -> None:
    repo.package("alpha", tests="import pytest\n\n\ndef test_ok():\n    assert pytest\n")
    repo.package("beta", tests="def test_takes_a_fixture(tmp_path):\n    assert tmp_path\n")
    repo.package("gamma")
    done = run_python(bare_python, repo.path, "--once", "--runner", "auto")
    assert_usage_error(done, "pytest", "alpha, beta", f"{bare_python} -m pip install pytest")
    assert "gamma" not in done.stderr


def test_without_a_toml_reader_it_names_the_install_and_exits_2(repo: Repo) -> None:
    """Below Python 3.11 the standard library has no tomllib, and tomli may be missing: the
    interpreter is made to lack both, whatever its version."""
    repo.package("alpha")
    lacking = (
        "import runpy, sys; sys.modules['tomllib'] = sys.modules['tomli'] = None; "
        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", lacking, str(AUTOTEST), "--root", str(repo.path), "--once"],
        capture_output=True, text=True, timeout=60, env=clean_env(), stdin=subprocess.DEVNULL,
    )  # fmt: skip
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        f"autotest: error: Python {version} reads pyproject.toml with tomli: "
        f"{shlex.quote(sys.executable)} -m pip install 'tomli>=1.1'"
    ]


@pytest.mark.parametrize(
    ("where", "text", "words"),
    [
        ("pyproject.toml", "[tool.autotest]\njobs = 0\n", ["[tool.autotest]", "jobs"]),
        ("pyproject.toml", '[tool.autotest]\ndebounce = "soon"\n', ["debounce", "soon"]),
        ("pyproject.toml", '[tool.autotest]\nrestart = "maybe"\n', ["restart", "maybe"]),
        ("pyproject.toml", "[tool.autotest]\ncolour = true\n", ["unknown setting", "colour"]),
        ("pyproject.toml", "[tool.autotest\n", ["pyproject.toml"]),
        ("setup.cfg", "[autotest]\ntimeout = 0\n", ["setup.cfg [autotest]", "timeout"]),
        ("setup.cfg", "[autotest]\nshout = yes\n", ["unknown setting", "shout"]),
        ("setup.cfg", "[autotest]\nrunner = nosey\n", ["nosey"]),
        ("pyproject.toml", '[tool.autotest]\ntimeout = "10"\n', ["timeout", "a number", "'10'"]),
        ("pyproject.toml", '[tool.autotest]\ndebounce = "0.1"\n', ["debounce", "'0.1'"]),
        ("pyproject.toml", '[tool.autotest]\njobs = "4"\n', ["jobs", "'auto'", "'4'"]),
        ("pyproject.toml", '[tool.autotest]\nkeep-going = "yes"\n', ["keep-going", "'yes'"]),
        ("pyproject.toml", "[tool.autotest]\nwarm = 1\n", ["warm", "true or false"]),
    ],
)
def test_bad_configuration_is_one_error_line(
    repo: Repo, where: str, text: str, words: list[str]
) -> None:
    repo.package("alpha")
    repo.write(where, text)
    assert_usage_error(once(repo.path), *words)


@pytest.mark.parametrize("seconds", ["0", "-1", "-0.5"])
def test_a_timeout_of_no_time_is_refused_in_one_wording_whatever_the_number(
    repo: Repo, seconds: str
) -> None:
    repo.package("alpha")
    line = assert_usage_error(once(repo.path, "--timeout", seconds))
    assert line.endswith(f"expected more than zero seconds, got '{seconds}' (see --help)"), line


def test_a_config_value_of_the_type_the_readme_names_is_taken(repo: Repo) -> None:
    repo.package("alpha")
    repo.write(
        "pyproject.toml", '[tool.autotest]\njobs = "auto"\ntimeout = 30\nkeep-going = true\n'
    )
    done = once(repo.path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_help(repo: Repo) -> None:
    done = run_autotest(repo.path, "--help")
    assert done.returncode == 0
    for option in ("--once", "--changed", "--runner", "--jobs", "--timeout", "--no-warm"):
        assert option in done.stdout
    assert done.stderr == ""


def test_help_once_and_watch_without_nose_or_watchdog(repo: Repo, bare_python: Path) -> None:
    done = run_python(bare_python, repo.path, "--help")
    assert done.returncode == 0, done.stderr
    assert "--once" in done.stdout
    repo.package("alpha", tests="import unittest\n\n\nclass T(unittest.TestCase):\n"
                 "    def test_ok(self):\n        pass\n")  # fmt: skip
    done = run_python(bare_python, repo.path, "--once", "--runner", "unittest")
    assert done.returncode == 0, done.stdout + done.stderr
    assert verdicts(done.stdout) == [("alpha", "ok")]
    watching = run_python(bare_python, repo.path, "--runner", "unittest")
    assert_usage_error(watching, "watchdog")


# ---------------------------------------------------------------------------------------------
# Runners and runner arguments
# ---------------------------------------------------------------------------------------------

UNITTEST_PASSING = """\
import unittest


class Passing(unittest.TestCase):
    def test_ok(self):
        self.assertTrue(True)
"""

UNITTEST_FAILING = """\
import unittest


class Failing(unittest.TestCase):
    def test_broken(self):
        print("the output of the failing run")
        self.assertEqual(1, 2, "boom")
"""


def test_runner_pytest(repo: Repo) -> None:
    repo.package("alpha")
    repo.package("beta", tests=FAILING_TEST)
    repo.package("empty", tests="")
    done = once(repo.path, "--runner", "pytest", "--changed", "empty", "alpha")
    assert done.returncode == 1
    assert verdicts(done.stdout) == [("empty", "no tests"), ("alpha", "ok"), ("beta", "FAILED")]
    assert "= FAILURES =" in done.stdout
    assert "the output of the failing run" in done.stdout
    assert "AssertionError: boom" in done.stdout


def test_runner_pytest_while_watching(repo: Repo, watch: type[Watch]) -> None:
    """pytest's first run in a package creates .pytest_cache by renaming a temporary directory
    into place; that must not count as a change (or the cycle starts over).  With -v, what the
    loop guard made of each change during a run is named, so a failure here says which."""
    repo.package("alpha")
    repo.package("beta", tests=FAILING_TEST)
    w = watch(repo.path, "--runner", "pytest", "-v", env=FAST_ENV)
    first = w.wait_cycles(1)
    assert verdicts(w.lines[:first]) == [("alpha", "ok"), ("beta", "FAILED")], w.output
    edit(repo.path / "alpha" / "alpha" / "__init__.py")  # the sentinel: forked runs this time
    second = w.wait_cycles(2)
    assert w.headers() == ["testing all 2 packages", "changed: alpha/alpha/__init__.py"], w.output
    assert verdicts(w.lines[first:second]) == [("alpha", "ok"), ("beta", "FAILED")]
    assert any("= FAILURES =" in line for line in w.lines[first:second])


def test_runner_arguments_after_double_dash(repo: Repo) -> None:
    repo.package("alpha", tests=PASSING_TEST.replace("test_ok", "test_good") + FAILING_TEST)
    assert once(repo.path, "--runner", "pytest").returncode == 1
    done = once(repo.path, "--runner", "pytest", "--", "-k", "good")
    assert done.returncode == 0, done.stdout
    assert verdicts(done.stdout) == [("alpha", "ok")]


def test_nose_verbose_after_double_dash_names_the_tests(repo: Repo) -> None:
    repo.package("alpha", tests=FAILING_TEST)
    quiet = once(repo.path)
    verbose = once(repo.path, "--", "-v")
    assert "test_broken ... FAIL" not in quiet.stdout
    assert "tests.test_alpha.test_broken ... FAIL" in verbose.stdout


def test_runner_unittest(repo: Repo) -> None:
    repo.package("alpha", tests=UNITTEST_PASSING)
    repo.package("beta", tests=UNITTEST_FAILING)
    repo.package("empty", tests="")
    done = once(repo.path, "--runner", "unittest")
    assert done.returncode == 1
    assert verdicts(done.stdout) == [("alpha", "ok"), ("beta", "FAILED")]
    assert "FAIL: test_broken" in done.stdout
    assert "AssertionError: 1 != 2 : boom" in done.stdout
    assert "the output of the failing run" in done.stdout
    empty_first = once(repo.path, "--runner", "unittest", "--changed", "empty")
    assert verdicts(empty_first.stdout)[0] == ("empty", "no tests")


@pytest.mark.skipif(importlib.util.find_spec("nose2") is None, reason="nose2 not installed")
def test_runner_nose2(repo: Repo) -> None:
    repo.package("alpha", tests=UNITTEST_PASSING)
    repo.package("beta", tests=UNITTEST_FAILING)
    done = once(repo.path, "--runner", "nose2")
    assert done.returncode == 1
    assert verdicts(done.stdout) == [("alpha", "ok"), ("beta", "FAILED")]
    assert "test_broken" in done.stdout


def test_runner_command_gets_the_package_as_one_argument_without_a_shell(
    repo: Repo, tmp_path: Path
) -> None:
    repo.package("good")
    weird = "z/a b; echo pwned"
    repo.write(f"{weird}/setup.cfg", "[metadata]\nname = weird\n")
    script = tmp_path / "check.py"
    script.write_text(
        "import os, sys\n"
        "print('ARGV=' + repr(sys.argv[1:]))\n"
        "print('CWD=' + os.getcwd())\n"
        "sys.exit(1 if 'pwned' in sys.argv[1] else 0)\n"
    )
    command = f"{sys.executable} {script} {{package}}"
    done = once(repo.path, "--runner", command)
    assert done.returncode == 1, done.stdout + done.stderr
    assert verdicts(done.stdout) == [("good", "ok"), (weird, "FAILED")]
    weird_path = repo.path / weird
    assert f"ARGV={[str(weird_path)]!r}" in done.stdout
    assert f"CWD={weird_path}" in done.stdout
    assert "pwned" not in done.stdout.replace(weird, "")  # the echo never ran


def test_runner_command_with_arguments_after_double_dash(repo: Repo, tmp_path: Path) -> None:
    repo.package("alpha")
    script = tmp_path / "show.py"
    script.write_text("import sys\nprint('ARGV=' + repr(sys.argv[1:]))\nsys.exit(1)\n")
    command = f"{sys.executable} {script} --pkg {{package}}"
    done = once(repo.path, "--runner", command, "--", "-x", "two words")
    expected = ["--pkg", f"{repo.path / 'alpha'}", "-x", "two words"]
    assert f"ARGV={expected!r}" in done.stdout


def test_runner_command_that_cannot_start(repo: Repo) -> None:
    repo.package("alpha")
    assert_usage_error(
        once(repo.path, "--runner", "/no/such/program {package}"),
        "/no/such/program",
    )


# ---------------------------------------------------------------------------------------------
# Configuration files
# ---------------------------------------------------------------------------------------------


def runner_seen(output: str) -> str:
    if "= FAILURES =" in output:
        return "pytest"
    if "tests.test_alpha.test_broken ... FAIL" in output:
        return "nose -v"
    if "FAIL: tests.test_alpha.test_broken" in output:
        return "nose"
    raise AssertionError(output)


@pytest.mark.parametrize(
    ("pyproject", "setup_cfg", "args", "expected"),
    [
        ('runner = "pytest"\n', None, [], "pytest"),
        (None, "runner = pytest\n", [], "pytest"),
        ('runner = "pytest"\n', None, ["--runner", "nose"], "nose"),
        (None, "runner = pytest\n", ["--runner", "nose"], "nose"),
        ('runner = "nose"\n', "runner = pytest\n", [], "nose"),  # pyproject.toml wins
        ('runner-args = ["-v"]\n', None, [], "nose -v"),
        (None, "runner-args = -v\n", [], "nose -v"),
        ('runner-args = ["-v"]\n', None, ["--", "--verbosity=1"], "nose"),
        ('runner = "pytest"\nrunner-args = ["-q"]\n', None, ["--runner", "nose"], "nose"),
    ],
)
def test_configuration_and_command_line(
    repo: Repo, pyproject: str | None, setup_cfg: str | None, args: list[str], expected: str
) -> None:
    repo.package("alpha", tests=FAILING_TEST)
    if pyproject is not None:
        repo.write("pyproject.toml", "[tool.autotest]\n" + pyproject)
    if setup_cfg is not None:
        repo.write("setup.cfg", "[autotest]\n" + setup_cfg)
    done = once(repo.path, *args)
    assert done.returncode == 1, done.stdout + done.stderr
    assert runner_seen(done.stdout) == expected


def test_configured_options_other_than_the_runner(repo: Repo) -> None:
    layered(repo)
    repo.write("pyproject.toml", '[tool.autotest]\nexplain = true\njobs = "auto"\n')
    done = once(repo.path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "   1. core  (used by 2 packages)" in done.stdout.splitlines()


# ---------------------------------------------------------------------------------------------
# Parallel runs
# ---------------------------------------------------------------------------------------------


def sleeping_test(seconds: float) -> str:
    return f"import time\n\n\ndef test_sleeps():\n    time.sleep({seconds})\n"


def test_jobs_run_packages_at_once_and_report_in_order(repo: Repo) -> None:
    repo.package("alpha", tests=sleeping_test(0.8))  # first in order, finishes last
    repo.package("beta", tests=sleeping_test(0.4))
    done = once(repo.path, "-j", "2")
    assert done.returncode == 0, done.stdout
    assert verdicts(done.stdout) == [("alpha", "ok"), ("beta", "ok")]
    seconds = [float(s) for s in re.findall(r"(\d+\.\d\d)s$", done.stdout, re.M)]
    alpha, beta, total = seconds
    assert total < 0.85 * (alpha + beta), done.stdout


def test_jobs_first_failure_cancels_only_the_runs_after_it(repo: Repo, tmp_path: Path) -> None:
    """beta fails quickly while alpha, earlier in the order, still runs and fails too, slowly:
    alpha is the failure reported; gamma, after beta, is cancelled with all it started."""
    pidfile, started_beta = tmp_path / "pids", tmp_path / "beta-failed"
    repo.package(
        "alpha",
        tests=f"""\
        import os
        import time


        def test_fails_slowly():
            deadline = time.monotonic() + 20
            while not os.path.exists({str(started_beta)!r}) and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.3)
            print("ALPHA-OUTPUT")
            assert False, "alpha broke"
        """,
    )
    repo.package(
        "beta",
        tests=f"""\
        import os
        import time


        def test_fails_once_gamma_runs():
            deadline = time.monotonic() + 20
            while not os.path.exists({str(pidfile)!r}) and time.monotonic() < deadline:
                time.sleep(0.01)
            open({str(started_beta)!r}, "w").close()
            print("BETA-OUTPUT")
            assert False, "beta broke"
        """,
    )
    repo.package("gamma", tests=spawning_test(pidfile))
    started = time.monotonic()
    done = once(repo.path, "-j", "3")
    assert time.monotonic() - started < 15
    assert done.returncode == 1, done.stdout
    assert verdicts(done.stdout) == [("alpha", "FAILED")]
    assert "ALPHA-OUTPUT" in done.stdout and "AssertionError: alpha broke" in done.stdout
    assert "BETA-OUTPUT" not in done.stdout
    assert re.search(r"^alpha FAILED; 0 passed, 2 not run in", done.stdout, re.M)
    assert_gone(read_pids(pidfile)[:2])


# ---------------------------------------------------------------------------------------------
# The warm runner behaves as a cold start does
# ---------------------------------------------------------------------------------------------

STATEFUL_TEST = """\
import shared


def test_fresh_state():
    shared.CALLS.append(1)
    assert shared.OWNER == {name!r}
    assert shared.CALLS == [1]
"""


def test_warm_runs_share_no_state(repo: Repo, watch: type[Watch]) -> None:
    for name in ("alpha", "beta"):
        repo.package(name, tests=STATEFUL_TEST.format(name=name))
        repo.write(f"{name}/shared.py", f"OWNER = {name!r}\nCALLS = []\n")
    w = watch(repo.path, env=FAST_ENV)
    end = w.wait_cycles(1)
    assert verdicts(w.lines[:end]) == [("alpha", "ok"), ("beta", "ok")]
    repo.write("alpha/alpha/__init__.py", "VALUE = 2\n")  # a second cycle, same warm runner
    end2 = w.wait_cycles(2)
    assert verdicts(w.lines[end:end2]) == [("alpha", "ok"), ("beta", "ok")], w.output
    assert "all 2 packages passed" in w.lines[end2 - 1]


PROBE_TEST = """\
import json
import os
import signal
import sys


def test_probe():
    print("CAPTURED-PRINT")
    with open("/proc/%d/cmdline" % os.getppid(), "rb") as f:
        parent = f.read().split(b"\\0")
    info = {
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "path": sys.path,
        "env": dict(os.environ),
        "stdin": sys.stdin.read(),
        "sigint": repr(signal.getsignal(signal.SIGINT)),
        "sigchld": repr(signal.getsignal(signal.SIGCHLD)),
        "sigterm": repr(signal.getsignal(signal.SIGTERM)),
        "session_leader": os.getsid(0) == os.getpid(),
        "pycache_prefix": sys.pycache_prefix,
        "dont_write_bytecode": sys.dont_write_bytecode,
        "main": sys.modules["__main__"].__spec__.name,
        "parent_is_autotest": any(arg.endswith(b"autotest.py") for arg in parent),
    }
    with open(os.environ["PROBE_OUT"], "w") as f:
        json.dump(info, f)
    assert False, "probe done"
"""


def same_report(argv: object) -> list[str]:
    """A run's argv with its private report file named alike: each run gets a fresh one."""
    assert isinstance(argv, list)
    return [re.sub(r"autotest-junit-\w+\.xml$", "autotest-junit-RUN.xml", arg) for arg in argv]


def test_warm_run_sees_what_a_cold_run_sees(repo: Repo, watch: type[Watch], tmp_path: Path) -> None:
    repo.package("alpha", tests=PROBE_TEST)
    seen: dict[str, dict[str, object]] = {}
    shown: dict[str, list[str]] = {}
    for mode, args in (("cold", ["--no-warm"]), ("warm", [])):
        out = tmp_path / f"{mode}.json"
        env = clean_env(PROBE_OUT=str(out))
        shown[mode] = second_cycle(watch, repo, "alpha/tests/test_alpha.py", *args, env=env)
        seen[mode] = json.loads(out.read_text())
    cold, warm = seen["cold"], seen["warm"]
    assert cold.pop("parent_is_autotest") is True
    assert warm.pop("parent_is_autotest") is False  # the warm interpreter did fork it
    for info in (cold, warm):
        run_env = info["env"]
        assert isinstance(run_env, dict)
        run_env.pop("PROBE_OUT")
        assert re.fullmatch(r"\d+-[0-9a-f]{12}", run_env.pop("AUTOTEST_RUN"))  # each its own
        assert run_env["NOSE_CAPTURE"] == "1"  # so prints are captured, as in classic nose
        info["argv"] = same_report(info["argv"])
    for key in cold:
        assert warm[key] == cold[key], key
    for lines in shown.values():
        text = "\n".join(lines)
        assert "CAPTURED-PRINT" in text.split("begin captured stdout")[1]


def test_warm_and_cold_report_the_same(repo: Repo, watch: type[Watch]) -> None:
    three_packages(repo, beta_fails=True)
    changed = "gamma/gamma/__init__.py"
    cold = second_cycle(watch, repo, changed, "--no-warm")
    warm = second_cycle(watch, repo, changed)
    assert verdicts(warm) == [("gamma", "ok"), ("beta", "FAILED")], "\n".join(warm)
    assert [TIMING.sub("T", line) for line in warm] == [TIMING.sub("T", line) for line in cold]


def test_a_package_installed_while_watching_is_importable_in_forked_runs(
    repo: Repo, watch: Callable[..., Watch], tmp_path: Path
) -> None:
    """The warm interpreter read the .pth files when it started; after an install into its
    site-packages (as `pip install -e` does, with a .pth file) forked runs must see it."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(purelib, "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # nose, watchdog
    repo.package("alpha", tests="import extlib\n\n\ndef test_uses_it():\n    assert extlib.X\n")
    w = watch(repo.path, env=FAST_ENV, python=python)
    w.wait_cycles(1)
    repo.write("alpha/alpha/__init__.py", "VALUE = 2\n")  # a second cycle: forked
    end = w.wait_cycles(2)
    assert re.search(r"^alpha\s+could not run .* needs extlib$", "\n".join(w.lines[:end]), re.M)

    (tmp_path / "ext").mkdir()
    (tmp_path / "ext" / "extlib.py").write_text("X = 1\n")
    Path(purelib, "ext.pth").write_text(str(tmp_path / "ext") + "\n")
    for edit in (3, 4):  # the first run after the install, and one from the new warm interpreter
        repo.write("alpha/alpha/__init__.py", f"VALUE = {edit}\n")
        end = w.wait_cycles(edit)
        assert w.lines[end - 1].startswith("the 1 package passed"), w.output

"""Watch mode left running all day: one line for every bad setting or unreadable path, forked
runs that match cold ones, no directory name run as code, and the smaller things."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    AUTOTEST,
    Repo,
    Watch,
    clean_env,
    load_autotest,
    run_autotest,
)

at = load_autotest()
FAST_ENV = clean_env(PYTHONDONTWRITEBYTECODE="1")


def assert_one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> str:
    lines = done.stderr.splitlines()
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert len(lines) == 1 and lines[0].startswith("autotest: error: "), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited\n")


def second_cycle(w: Watch, edited: Path) -> list[str]:
    first = w.wait_cycles(1)
    edit(edited)
    second = w.wait_cycles(2)
    return list(w.lines[first:second])


# ---------------------------------------------------------------------------------------------
# One line and exit 2 for every bad setting
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ("[tool.autotest]\nignore = 5", ["ignore: expected a list of strings, got 5"]),
        ("[tool.autotest]\nignore = {a = 1}", ["ignore: expected a list of strings, got a table"]),
        ("[tool.autotest]\nignore = [1, 2]", ["ignore: expected a list of strings"]),
        ("[tool.autotest]\nrunner-args = 5", ["runner-args: expected a list of strings"]),
        ("[tool.autotest]\nrunner-args = [true]", ["runner-args: expected a list of strings"]),
        ("[tool.autotest]\nrunner = 5", ["runner: expected a string, got 5"]),
        ('[tool.autotest]\nrunner = ["pytest"]', ["runner: expected a string"]),
        ("[tool.autotest.runner]\nname = 'pytest'", ["runner: expected a string, got a table"]),
        ("[tool.autotest]\njobs = {n = 2}", ["jobs: expected a number or 'auto', got a table"]),
        ("[tool.autotest]\ntimeout = true", ["timeout: expected a number, got True"]),
        ("[tool.autotest]\ndebounce = [1]", ["debounce: expected a number"]),
        ("[tool.autotest]\nbell = {a = 1}", ["bell: expected true or false, got a table"]),
        ("[tool.autotest]\npoll = 'sometimes'", ["poll: expected true or false"]),
        ("[tool]\nautotest = 5", ["tool.autotest: expected a table", "got 5"]),
        ("tool = 5", ["tool: expected a table, got 5"]),
        ("tool = [1]", ["tool: expected a table"]),
        ("[tool.autotest\n", ["pyproject.toml"]),
    ],
)
def test_each_bad_setting_is_one_line_and_exit_2(repo: Repo, toml: str, words: list[str]) -> None:
    repo.package("libs/core")
    repo.write("pyproject.toml", toml + "\n")
    assert_one_line_error(run_autotest(repo.path, "--once"), *words)


@pytest.mark.parametrize(
    ("cfg", "words"),
    [
        ("[autotest\nrunner = pytest\n", ["setup.cfg, line 1", "no section headers"]),
        ("[autotest]\nrunner = pytest\nnot a setting\n", ["setup.cfg, line 3", "cannot parse"]),
        ("[autotest]\nrunner = pytest\n[autotest]\n", ["setup.cfg, line 3", "already exists"]),
        ("[autotest]\njobs = lots\n", ["jobs: expected a whole number or 'auto'"]),
    ],
)
def test_a_setup_cfg_that_cannot_be_read_is_one_line(
    repo: Repo, cfg: str, words: list[str]
) -> None:
    repo.package("libs/core")
    repo.write("setup.cfg", cfg)
    assert_one_line_error(run_autotest(repo.path, "--once"), *words)


# ---------------------------------------------------------------------------------------------
# Unreadable and unsearchable directories, a vanished root
# ---------------------------------------------------------------------------------------------


def unprivileged(tmp_path: Path) -> str:
    """An interpreter for which file modes count: as root, with the capabilities that override
    them dropped (root reads a chmod 000 directory otherwise)."""
    if os.geteuid() != 0:
        return sys.executable
    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv: file modes cannot be made to count")
    wrapper = tmp_path / "python-without-dac-override"
    wrapper.write_text(
        "#!/bin/sh\nexec setpriv --bounding-set=-dac_override,-dac_read_search "
        f'{sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.fixture
def restore_modes(repo: Repo) -> Any:
    changed: list[Path] = []
    yield changed
    for path in changed:
        path.chmod(0o755)


@pytest.mark.parametrize("mode", [0o000, 0o644], ids=["unreadable", "readable-not-searchable"])
def test_a_package_directory_that_becomes_unreadable_is_one_line_and_the_rest_goes_on(
    repo: Repo, tmp_path: Path, restore_modes: list[Path], mode: int
) -> None:
    core = repo.package("libs/core")
    extra = repo.package("libs/extra", deps=["core"])
    w = Watch(repo.path, env=FAST_ENV, python=unprivileged(tmp_path))
    try:
        w.wait_cycles(1)
        restore_modes.append(extra)
        extra.chmod(mode)
        edit(core / "tests" / "test_core.py")
        end = w.wait_cycles(2)
        assert f"cannot read {extra}; skipped" in w.output
        assert w.lines[end - 1].startswith("the 1 package passed"), w.output
        extra.chmod(0o755)  # readable again: a change below it brings it back
        edit(extra / "tests" / "test_extra.py")
        w.wait_for(r"^all 2 packages passed", end)
        assert w.proc.poll() is None
        assert "Traceback" not in w.output
    finally:
        w.stop()


def test_a_root_below_an_unsearchable_directory_is_one_line(
    tmp_path: Path, restore_modes: list[Path]
) -> None:
    locked = tmp_path / "locked"
    root = locked / "repo"
    Repo(root).package("libs/core")
    restore_modes.append(locked)
    locked.chmod(0o600)
    done = subprocess.run(
        [unprivileged(tmp_path), str(AUTOTEST), "--root", str(root), "--once"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=30,
    )
    assert_one_line_error(done, str(root), "Permission denied")


def test_a_vanished_root_ends_autotest_with_one_line(repo: Repo, tmp_path: Path) -> None:
    root = tmp_path / "gone" / "repo"
    Repo(root).package("libs/core")
    w = Watch(root, env=FAST_ENV)
    try:
        w.wait_cycles(1)
        shutil.rmtree(tmp_path / "gone")
        assert w.proc.wait(timeout=10) == 2
        w.wait_for(rf"^autotest: error: the root {root} is gone; stopping$")
        assert "passed" not in w.output.split("gone")[-1]
        assert "Traceback" not in w.output
    finally:
        w.stop()


# ---------------------------------------------------------------------------------------------
# Forked runs match cold ones
# ---------------------------------------------------------------------------------------------


def test_a_system_exit_message_during_collection_shows_warm_as_cold(repo: Repo) -> None:
    core = repo.package("libs/core")
    (core / "tests" / "__init__.py").write_text(
        "import sys\n\nsys.exit('DATABASE_URL setting is missing')\n"
    )
    w = Watch(repo.path, env=FAST_ENV)
    try:
        first = w.wait_cycles(1)
        cold = w.lines[:first]
        warm = second_cycle(w, core / "core" / "__init__.py")
    finally:
        w.stop()
    for lines in (cold, warm):
        assert "DATABASE_URL setting is missing" in lines, lines
        assert any(line.startswith("libs/core  FAILED") for line in lines), lines


HASH_TEST = """\
import os


def test_records_its_hash_seed():
    with open({out!r}, "a") as f:
        f.write("%d %d\\n" % (os.getppid(), hash("autotest")))
"""


@pytest.mark.parametrize("fixed", [False, True], ids=["random", "PYTHONHASHSEED=0"])
def test_each_forked_run_gets_a_hash_seed_its_last_run_did_not_have_unless_one_is_set(
    repo: Repo, tmp_path: Path, fixed: bool
) -> None:
    out = tmp_path / "hashes"
    core = repo.package("libs/core", tests=HASH_TEST.format(out=str(out)))
    env = clean_env(PYTHONDONTWRITEBYTECODE="1", **({"PYTHONHASHSEED": "0"} if fixed else {}))
    w = Watch(repo.path, env=env)
    try:
        w.wait_cycles(1)
        for cycle in range(2, 5):
            edit(core / "core" / "__init__.py")
            w.wait_cycles(cycle)
    finally:
        w.stop()
    runs = [line.split() for line in out.read_text().splitlines()]
    assert len(runs) == 4
    forked = runs[1:]
    assert all(parent != str(w.proc.pid) for parent, _ in forked), "forked, not cold"
    seeds = {seed for _, seed in runs}
    if fixed:
        assert seeds == {str(hash_with_seed_zero())}
    else:
        assert all(this[1] != last[1] for last, this in zip(runs, runs[1:])), runs


def test_one_warm_interpreter_serves_a_whole_cycle_and_the_next_cycle_gets_a_fresh_one(
    repo: Repo, tmp_path: Path
) -> None:
    """A package runs once per cycle, so one seed per cycle is a fresh seed for every run of
    every package, and a cycle of many packages pays for one interpreter start."""
    out = tmp_path / "hashes"
    core = repo.package("libs/core", name="acme-core", tests=HASH_TEST.format(out=str(out)))
    for name in ("acme-api", "acme-web"):
        repo.package(f"libs/{name}", name=name, deps=["acme-core"],
                     tests=HASH_TEST.format(out=str(out)))  # fmt: skip
    w = Watch(repo.path, env=clean_env(PYTHONDONTWRITEBYTECODE="1"))
    try:
        w.wait_cycles(1)
        for cycle in (2, 3):
            edit(core / "acme_core" / "__init__.py")
            w.wait_cycles(cycle)
    finally:
        w.stop()
    runs = [line.split() for line in out.read_text().splitlines()]
    assert len(runs) == 9, runs
    second, third = runs[3:6], runs[6:9]
    assert len({parent for parent, _ in second}) == 1, "one interpreter forked the cycle"
    assert len({parent for parent, _ in third}) == 1
    assert second[0][0] != third[0][0], "a fresh interpreter for the next cycle"
    assert second[0][1] != third[0][1], "with a fresh hash seed"
    assert str(w.proc.pid) not in {second[0][0], third[0][0]}, "forked, not cold"


def hash_with_seed_zero() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "print(hash('autotest'))"],
        env=clean_env(PYTHONHASHSEED="0"),
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


# ---------------------------------------------------------------------------------------------
# No directory name becomes code; nothing runs unseen
# ---------------------------------------------------------------------------------------------


def test_a_package_named_like_shell_code_never_runs_as_code(repo: Repo, tmp_path: Path) -> None:
    evil = repo.package("libs/$(touch pwned)", name="evil")
    refused = run_autotest(
        repo.path, "--once", "--runner", "sh -c 'cd {package} && ls'", cwd=tmp_path
    )
    assert_one_line_error(refused, "argument of its own", "$AUTOTEST_PACKAGE")
    safe = "sh -c 'cd \"$AUTOTEST_PACKAGE\" && touch ran-here'"
    done = run_autotest(repo.path, "--once", "--runner", safe, cwd=tmp_path)
    whole = run_autotest(repo.path, "--once", "--runner", "ls {package}", cwd=tmp_path)
    assert done.returncode == 0 and whole.returncode == 0, done.stdout + whole.stdout
    assert (evil / "ran-here").exists()
    assert not list(tmp_path.rglob("pwned")), "the name was never run"


def test_a_runner_from_the_repository_config_is_named_before_anything_runs(repo: Repo) -> None:
    repo.package("libs/core")
    repo.write("pyproject.toml", '[tool.autotest]\nrunner = "echo {package}"\n')
    done = run_autotest(repo.path, "--once")
    first = done.stdout.splitlines()[0]
    assert first == "autotest: runner from pyproject.toml [tool.autotest]: echo {package}"
    by_hand = run_autotest(repo.path, "--once", "--runner", "pytest")
    assert "runner from" not in by_hand.stdout, "a runner the user gave is not announced"


# ---------------------------------------------------------------------------------------------
# The smaller things
# ---------------------------------------------------------------------------------------------


def test_watchdogs_own_warnings_and_log_lines_never_reach_the_terminal() -> None:
    script = f"""
import importlib.util, logging, sys, warnings
spec = importlib.util.spec_from_file_location("autotest", {str(AUTOTEST)!r})
at = importlib.util.module_from_spec(spec)
sys.modules["autotest"] = at
spec.loader.exec_module(at)
at.silence_watchdog()
logging.getLogger("watchdog.observers.inotify").error(
    "InotifyEmitter.queue_events() called when the thread is inactive")
warnings.warn("Callback with id 'x' already exists for watch /r. It will be Overwritten.",
              RuntimeWarning)
warnings.warn("a warning of autotest's own stays", RuntimeWarning)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=clean_env()
    )
    assert done.returncode == 0, done.stderr
    assert "queue_events" not in done.stderr and "already exists" not in done.stderr
    assert "of autotest's own stays" in done.stderr


def test_control_characters_in_a_package_name_are_escaped(repo: Repo) -> None:
    repo.package("libs/bad\nname\x1b[31m", name="bad")
    done = run_autotest(repo.path, "--once", env=FAST_ENV)
    assert "libs/bad\\nname\\x1b[31m" in done.stdout
    assert "\x1b" not in done.stdout
    assert all(not line.startswith("name") for line in done.stdout.splitlines())


def test_version() -> None:
    done = subprocess.run(
        [sys.executable, str(AUTOTEST), "--version"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0
    assert done.stdout.startswith(f"autotest {at.VERSION} (Python ")


def test_notify_says_once_when_the_system_cannot_notify(repo: Repo, tmp_path: Path) -> None:
    repo.package("libs/core", tests="def test_fails():\n    assert False\n")
    empty = tmp_path / "bin"
    empty.mkdir()
    env = clean_env(PYTHONDONTWRITEBYTECODE="1", PATH=str(empty))
    w = Watch(repo.path, "--notify", env=env)
    try:
        second_cycle(w, repo.path / "libs" / "core" / "core" / "__init__.py")
    finally:
        w.stop()
    assert w.output.count("--notify: this system has no way to show a notification") == 1


class TerminalStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def running(rel: str, position: int, seconds: float) -> Any:
    return at.Running(at.Package(Path("/r") / rel, rel), position, 28, seconds)


def test_not_on_a_terminal_a_long_run_is_named_after_30s_then_each_minute() -> None:
    stream = io.StringIO()
    reporter = at.Reporter(stream, color=False)
    for seconds in (0, 10, 29.9, 30, 31, 60, 89, 90, 149, 150, 151):
        reporter.running([running("libs/core", 3, seconds)])
    assert stream.getvalue().splitlines() == [
        "autotest: still running: libs/core (30s)",
        "autotest: still running: libs/core (90s)",
        "autotest: still running: libs/core (150s)",
    ]


def test_on_a_terminal_the_status_line_is_rewritten_in_place() -> None:
    stream = TerminalStream()
    reporter = at.Reporter(stream, color=False)
    reporter.running([running("libs/core", 3, 0.2), running("libs/web", 4, 1.5)])
    reporter.running([running("libs/core", 3, 0.9), running("libs/web", 4, 1.9)])  # same text
    reporter.running([running("libs/core", 3, 1.0)])
    reporter.say("libs/core  ok")
    first = "running 3/28 libs/core 0s, 4/28 libs/web 1s"
    second = "running 3/28 libs/core 1s"
    assert stream.getvalue() == (
        first + "\r" + " " * len(first) + "\r" + second + "\r" + " " * len(second) + "\r"
        "libs/core  ok\n"
    )


def test_the_readme_says_pipx_cannot_add_the_repositorys_packages() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "With [uv](https://docs.astral.sh/uv/) or pipx nothing needs installing" not in readme
    assert "pipx" in readme and "uv run" in readme

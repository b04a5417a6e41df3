"""Never miss a change, never loop: watch mode under real conditions.

Real watchdog observers, real nose runs, real git, and where the kernel allows it a private
user namespace whose inotify watch limit is lowered for autotest alone.  Each edit that must be
seen turns a passing test failing, so the verdict proves the run saw it; "no extra cycle" is
proved with a sentinel: after the thing that must set off nothing, a person's edit must give
the very next cycle.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_events import (
    TARGET,
    cycle,
    git,
    inotify_watches,
    marked,
    needs_git,
    save_vim,
    sentinel,
    slow_test,
    started,
    startup_line,
    verdicts,
)
from watchdog.version import VERSION_INFO

from conftest import FAILING_TEST, Repo, Watch, clean_env, load_autotest, wait_until

LINUX = sys.platform.startswith("linux")
WATCHDOG_VERSION = tuple(VERSION_INFO)


@pytest.fixture(scope="module")
def shared_pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pycache")


@pytest.fixture(autouse=True)
def compiled_once(shared_pycache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """nose's bytecode in one cache for the module, as in test_events."""
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(shared_pycache))


def failing_edit(repo: Repo) -> None:
    repo.write(TARGET, FAILING_TEST)


# ---------------------------------------------------------------------------------------------
# 1. No window without events: an ignored directory appearing splits a watch losslessly
# ---------------------------------------------------------------------------------------------


@needs_git
def test_a_git_checkout_adding_a_tracked_build_directory_with_a_source_change_is_tested(
    repo: Repo, watch: type[Watch]
) -> None:
    repo.package("alpha")
    repo.package("beta")
    git(repo.path, "init", "-q", "-b", "main")
    git(repo.path, "add", "-A")
    git(repo.path, "commit", "-q", "-m", "one")
    git(repo.path, "checkout", "-q", "-b", "other")
    for i in range(5):
        repo.write(f"alpha/build/lib/alpha/m{i}.py", "X = 1\n")
    failing_edit(repo)
    git(repo.path, "add", "-A")
    git(repo.path, "commit", "-q", "-m", "two: a tracked build/ and a breaking test")
    git(repo.path, "checkout", "-q", "main")
    w = started(watch, repo.path)
    for attempt in range(3):
        git(repo.path, "checkout", "-q", "other")
        lines = cycle(w, 2 + 2 * attempt)
        assert lines[0] == f"changed: {TARGET}", w.output
        assert verdicts(lines)[0] == ("alpha", "FAILED"), w.output
        git(repo.path, "checkout", "-q", "main")
        back = cycle(w, 3 + 2 * attempt)
        assert verdicts(back)[0] == ("alpha", "ok"), w.output
    sentinel(w, repo, 8, "beta/beta/__init__.py")


@pytest.mark.parametrize(
    ("made", "new"),  # new: directories that are changes themselves
    [("node_modules/sub", 0), ("build", 0), (".tox/py311/lib", 0), ("pkg/venv/bin", 1)],
)
def test_every_edit_right_after_an_ignored_directory_appears_is_tested(
    repo: Repo, watch: type[Watch], made: str, new: int
) -> None:
    repo.package("alpha")
    for i in range(4):
        repo.write(f"alpha/alpha/sub{i}/__init__.py")
    w = started(watch, repo.path)
    os.makedirs(repo.path / "alpha" / made)
    edited = [f"alpha/alpha/sub{i}/m{j}.py" for i in range(4) for j in range(2)]
    for rel in edited[:-1]:
        (repo.path / rel).write_text("X = 2\n")
    failing_edit(repo)
    lines = cycle(w, 2)
    assert lines[0] == f"changed: {len(edited) + new} files in 1 package", w.output
    assert verdicts(lines)[0] == ("alpha", "FAILED"), w.output
    assert "Warning" not in w.output, "watchdog's noise reached the screen"


GENERATOR = """\
import sys

sys.path.insert(0, {package!r})
import alpha  # writes alpha/__pycache__

with open({target!r}, "w") as f:
    f.write("X = %d\\n" % alpha.VALUE)
"""


def test_a_code_generator_that_imports_the_package_then_writes_a_module_is_tested(
    repo: Repo, watch: type[Watch]
) -> None:
    tests = "from alpha import generated\n\n\ndef test_generated():\n    assert generated.X == 1\n"
    repo.package("alpha", tests=tests)
    repo.write("alpha/alpha/generated.py", "X = 0\n")
    make_wide_tree(repo.path / "alpha" / "data", 500)  # a tree that takes a while to plan
    w = started(watch, repo.path)
    assert verdicts(cycle(w, 1))[0] == ("alpha", "FAILED"), w.output
    script = GENERATOR.format(
        package=str(repo.path / "alpha"), target=str(repo.path / "alpha/alpha/generated.py")
    )
    env = clean_env()
    env.pop("PYTHONPYCACHEPREFIX", None)
    for n in range(3):
        shutil.rmtree(repo.path / "alpha" / "alpha" / "__pycache__", ignore_errors=True)
        subprocess.run([sys.executable, "-c", script], check=True, env=env)
        assert (repo.path / "alpha" / "alpha" / "__pycache__").is_dir()
        lines = cycle(w, 2 + 2 * n)
        assert lines[0] == "changed: alpha/alpha/generated.py", w.output
        assert verdicts(lines)[0] == ("alpha", "ok"), w.output
        (repo.path / "alpha/alpha/generated.py").write_text("X = 0\n")
        assert verdicts(cycle(w, 3 + 2 * n))[0] == ("alpha", "FAILED"), w.output


def make_wide_tree(top: Path, count: int) -> list[Path]:
    """``count`` directories below ``top``, ten to a level."""
    made: list[Path] = []
    frontier = [top]
    while len(made) < count:
        below = []
        for parent in frontier:
            for i in range(10):
                if len(made) == count:
                    break
                path = parent / f"d{i}"
                path.mkdir(parents=True)
                made.append(path)
                below.append(path)
        frontier = below
    return made


@pytest.mark.skipif(not LINUX, reason="5,000 inotify watches")
def test_on_a_5000_directory_tree_every_file_written_after_mkdir_build_is_tested(
    repo: Repo, watch: type[Watch]
) -> None:
    repo.package("alpha")
    dirs = make_wide_tree(repo.path / "alpha" / "data", 5000)
    w = started(watch, repo.path)
    (repo.path / "build").mkdir()
    written = [dirs[i * 250] / "new.txt" for i in range(20)]
    for path in written:
        path.write_text("x")
    lines = cycle(w, 2)
    assert lines[0] == "changed: 20 files in 1 package", w.output
    sentinel(w, repo, 3)


# ---------------------------------------------------------------------------------------------
# 2. Know when the kernel refuses watches: a private limit in a user namespace
# ---------------------------------------------------------------------------------------------


def can_lower_the_watch_limit() -> str:
    """Why a private inotify limit cannot be had here, or "" when it can."""
    if not LINUX or shutil.which("unshare") is None:
        return "needs Linux and unshare"
    probe = "echo 7 > /proc/sys/user/max_inotify_watches"
    done = subprocess.run(["unshare", "-U", "-r", "sh", "-c", probe], capture_output=True)
    if done.returncode:
        return f"no private watch limit: {done.stderr.decode().strip() or 'unshare failed'}"
    return ""


NO_PRIVATE_LIMIT = can_lower_the_watch_limit()
needs_private_limit = pytest.mark.skipif(bool(NO_PRIVATE_LIMIT), reason=NO_PRIVATE_LIMIT)


def limited_python(tmp_path: Path, limit: int) -> str:
    """A stand-in for the interpreter that runs it in a new user namespace whose inotify watch
    limit is ``limit``: autotest's alone."""
    wrapper = tmp_path / f"python-limit-{limit}"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec unshare -U -r sh -c 'echo {limit} > /proc/sys/user/max_inotify_watches && "
        f'exec "$0" "$@"\' {sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


def planned_watches(root: Path) -> int:
    at = load_autotest()
    rules = at.IgnoreRules(root)
    return int(at.plan_watches(str(root), rules.excludes_dir).watches)


@needs_private_limit
def test_watches_the_kernel_refuses_at_start_are_noticed_and_polled(
    repo: Repo, watch: type[Watch], tmp_path: Path
) -> None:
    repo.package("alpha")
    repo.package("beta")
    make_wide_tree(repo.path / "alpha" / "data", 30)
    deep = repo.path / "alpha" / "data" / "d1" / "d9"
    needed = planned_watches(repo.path)
    python = limited_python(tmp_path, needed - 10)
    w = watch(repo.path, python=python)
    w.wait_cycles(1)
    said = {  # watchdog 7 adds what it can and says nothing; watchdog 6 raises
        f"the kernel granted {needed - 10} of the {needed} inotify watches",
        "the OS refused more watches (inotify watch limit reached)",
    }
    warning = next((line for line in w.lines if any(s in line for s in said)), "")
    assert "polling instead" in warning, w.output
    assert "sysctl fs.inotify.max_user_watches=" in warning
    assert "(polling every second)" in startup_line(w), w.output
    assert wait_until(lambda: inotify_watches(w.proc.pid) == 0, 5), "inotify is still held"
    (deep / "notes.txt").write_text("x")
    assert cycle(w, 2, timeout=10)[0] == "changed: alpha/data/d1/d9/notes.txt", w.output
    failing_edit(repo)
    assert verdicts(cycle(w, 3, timeout=10))[0] == ("alpha", "FAILED"), w.output


@needs_private_limit
@pytest.mark.skipif(
    WATCHDOG_VERSION < (7,),
    reason="watchdog 6's inotify thread dies when a watch below a new directory is refused",
)
def test_watches_running_out_after_start_turn_watching_into_polling_without_a_miss(
    repo: Repo, watch: type[Watch], tmp_path: Path
) -> None:
    repo.package("alpha")
    repo.package("beta")
    python = limited_python(tmp_path, planned_watches(repo.path) + 2)
    w = watch(repo.path, python=python)
    w.wait_cycles(1)
    assert "(inotify, " in startup_line(w), w.output
    deep = repo.path / "beta" / "beta" / "a" / "b" / "c" / "d"
    deep.mkdir(parents=True)
    (deep / "__init__.py").write_text("X = 1\n")
    w.wait_for(r"the kernel refused an inotify watch for beta/beta/a.*; polling from now on")
    lines = cycle(w, 2, timeout=10)
    assert verdicts(lines)[0][0] == "beta", w.output
    assert wait_until(lambda: inotify_watches(w.proc.pid) == 0, 5), "inotify still held"
    count = quiet(w, repo)  # the poller's first look may report what was made while refused
    (deep / "__init__.py").write_text("X = 2\n")
    lines = cycle(w, count + 1, timeout=10)
    assert lines[0] == "changed: beta/beta/a/b/c/d/__init__.py", w.output
    failing_edit(repo)
    assert verdicts(cycle(w, count + 2, timeout=10))[0] == ("alpha", "FAILED"), w.output


def quiet(w: Watch, repo: Repo, attempts: int = 4) -> int:
    """Save a sentinel until a cycle reports it alone: then nothing else is pending.  The count
    of cycles so far."""
    path = repo.path / "alpha" / "alpha" / "__init__.py"
    for _ in range(attempts):
        count = w.cycles() + 1
        path.write_text(path.read_text() + "# sentinel\n")
        if cycle(w, count, timeout=10)[0] == "changed: alpha/alpha/__init__.py":
            return count
    raise AssertionError(f"changes still pending after {attempts} sentinels:\n{w.output}")


# ---------------------------------------------------------------------------------------------
# 3. Scratch files never stall a cycle
# ---------------------------------------------------------------------------------------------

SCRATCH_TEST = """\
import os
import shutil
import sqlite3
import tempfile
import time


def test_scratch():
    os.mkdir("scratch")
    with open("scratch/data.txt", "w") as f:
        f.write("x")
    made = tempfile.mkdtemp(dir=".")
    with open(os.path.join(made, "part"), "w") as f:
        f.write("x")
    db = sqlite3.connect("state.db")
    db.execute("create table if not exists t (x)")
    db.execute("insert into t values (1)")
    db.commit()
    db.close()
    time.sleep(0.4)  # the scratch lives longer than a burst
    shutil.rmtree(made)
    shutil.rmtree("scratch")
"""


@pytest.mark.parametrize("restart", [False, True], ids=["finish", "restart"])
def test_scratch_files_a_run_makes_and_removes_never_stall_a_cycle(
    repo: Repo, watch: type[Watch], restart: bool
) -> None:
    repo.package("alpha", tests=SCRATCH_TEST)
    repo.package("beta")
    repo.package("gamma")
    w = watch(repo.path, *(["--restart"] if restart else []))
    first = cycle(w, 1)
    assert first[-1].startswith("all 3 packages passed"), w.output
    sentinel(w, repo, 2, "gamma/gamma/__init__.py")
    assert not (repo.path / "alpha" / "scratch").exists()


PLUGIN_SCRATCH = """\
import os
import time


def test_plugin():
    with open("plugin_tmp.py", "w") as f:
        f.write("X = 1\\n")
    time.sleep(0.8)  # long enough to settle as a burst, and cut the cycle short
    os.remove("plugin_tmp.py")
"""


def test_a_cycle_cut_short_for_a_file_gone_again_resumes_with_what_it_had_not_run(
    repo: Repo, watch: type[Watch]
) -> None:
    repo.package("alpha")
    repo.package("beta", tests=PLUGIN_SCRATCH)
    repo.package("gamma")
    w = watch(repo.path)
    first = cycle(w, 1)
    assert first[-1] == "changed during the run: starting over (2 done)", w.output
    resumed = cycle(w, 2)
    assert resumed[0] == "testing the 1 package not run yet", w.output
    assert verdicts(resumed) == [("gamma", "ok")], w.output
    sentinel(w, repo, 3, "gamma/gamma/__init__.py")


# ---------------------------------------------------------------------------------------------
# 4. No loops, whatever the names
# ---------------------------------------------------------------------------------------------

WRITES_EVERYTHING = """\
import os
import uuid


def test_writes():
    os.makedirs(".benchmarks/Linux-CPython-3.11-64bit", exist_ok=True)
    count = len(os.listdir(".benchmarks/Linux-CPython-3.11-64bit"))
    with open(".benchmarks/Linux-CPython-3.11-64bit/%04d_x.json" % (count + 1), "w") as f:
        f.write("{}")
    os.makedirs("runs/%s" % uuid.uuid4())
    for run in os.listdir("runs"):
        with open("runs/%s/log.txt" % run, "a") as f:
            f.write("ran\\n")
    with open("alpha/generated.py", "w") as f:
        f.write("# generated\\nX = 1\\n")
"""


@pytest.mark.parametrize("restart", [False, True], ids=["finish", "restart"])
def test_runs_writing_new_names_and_sources_set_off_at_most_two_cycles(
    repo: Repo, watch: type[Watch], restart: bool
) -> None:
    repo.package("alpha", tests=WRITES_EVERYTHING)
    repo.package("beta")
    w = watch(repo.path, *(["--restart"] if restart else []))
    w.wait_for(r"^autotest: not tested: alpha/alpha/generated\.py, ", timeout=20)  # alike now
    extra = w.cycles() - 1
    assert extra <= 2, w.output
    assert ("beta", "ok") in verdicts(w.lines), w.output
    sentinel(w, repo, extra + 2, "beta/beta/__init__.py")
    failing_edit(repo)  # a person's later edit in the writing package
    lines = cycle(w, extra + 3)
    assert lines[0] == f"changed: {TARGET}", w.output
    assert verdicts(lines)[0] == ("alpha", "FAILED"), w.output
    assert "sets off the next run" not in w.output


REWRITES_DIFFERENTLY = """\
import time


def test_rewrites():
    with open("alpha/stamp.py", "w") as f:
        f.write("STAMP = %r\\n" % time.time())
"""


def test_a_run_rewriting_a_source_differently_each_time_is_named_and_stops(
    repo: Repo, watch: type[Watch]
) -> None:
    repo.package("alpha", tests=REWRITES_DIFFERENTLY)
    repo.package("beta")
    w = watch(repo.path)
    warned = w.wait_for(r"^autotest: each test run changes alpha/alpha/stamp\.py", timeout=30)
    assert "--ignore stamp.py" in w.lines[warned - 1]
    w.wait_for(r"^all 2 packages passed", warned)
    settled = w.cycles()
    assert settled <= 5, w.output
    sentinel(w, repo, settled + 1, "beta/beta/__init__.py")


def test_after_a_file_is_named_as_the_runs_a_persons_save_beside_it_is_tested(
    repo: Repo, watch: type[Watch], tmp_path: Path
) -> None:
    """The loop guard mutes wa/wa/generated.py, never wa/wa/__init__.py beside it."""
    marker = tmp_path / "wa.started"
    rewrites = REWRITES_DIFFERENTLY.replace("alpha/", "wa/")
    repo.package("wa", tests=value_then_slow(marker).replace("alpha", "wa") + rewrites)
    repo.package("beta")
    w = watch(repo.path)
    warned = w.wait_for(r"^autotest: each test run changes wa/wa/stamp\.py", timeout=40)
    w.wait_for(r"^all 2 packages passed", warned)
    runs = len(marker.read_text().splitlines())
    settled = w.cycles()
    (repo.path / "beta" / "beta" / "__init__.py").write_text("VALUE = 2\n")
    assert wait_until(functools.partial(runs_started, marker, runs + 1), 15), w.output
    (repo.path / "wa" / "wa" / "__init__.py").write_text(SAVED_VALUE.format(2))
    lines = cycle(w, settled + 2)
    assert lines[0] == "changed: wa/wa/__init__.py", w.output
    assert verdicts(lines)[0] == ("wa", "FAILED"), w.output


# ---------------------------------------------------------------------------------------------
# 5. Never blame a person
# ---------------------------------------------------------------------------------------------


def reads_template(log: Path) -> str:
    """A test that notes which template it saw, in ``log`` outside the tree."""
    return (
        "def test_template():\n"
        "    text = open('template.html').read()\n"
        f"    with open({str(log)!r}, 'a') as f:\n"
        "        f.write(text + '\\n')\n"
    )


def template_then_slow(marker: Path, log: Path) -> str:
    """A test module that notes which template it saw when collected, in ``log`` outside the
    tree, then takes a second: a save meanwhile is seen by the next run alone."""
    return (
        "with open('template.html') as f:\n    TEXT = f.read()\n"
        f"with open({str(log)!r}, 'a') as f:\n    f.write(TEXT + '\\n')\n" + slow_test(marker, 1.0)
    )


def runs_started(marker: Path, count: int) -> bool:
    """Whether ``count`` runs of the slow test have started."""
    return marker.exists() and len(marker.read_text().splitlines()) >= count


def test_a_template_saved_during_three_runs_in_a_row_is_tested_each_time(
    repo: Repo, watch: type[Watch], tmp_path: Path
) -> None:
    marker, seen = tmp_path / "beta.started", tmp_path / "templates.seen"
    repo.package("alpha", tests=reads_template(seen))
    repo.write("alpha/template.html", "<p>0</p>")
    repo.package("beta", tests=slow_test(marker, 1.0))
    w = watch(repo.path)
    for version in range(1, 4):
        assert wait_until(functools.partial(runs_started, marker, version), 15), w.output
        repo.write("alpha/template.html", f"<p>{version}</p>")
    assert wait_until(marked(seen, "<p>3</p>"), 8), f"the third save was never run:\n{w.output}"
    assert "sets off the next run" not in w.output
    assert "not tested" not in w.output


def test_a_template_saved_during_its_own_packages_run_is_tested_after_it(
    repo: Repo, watch: type[Watch], tmp_path: Path
) -> None:
    """It existed before the run: a person's save, whatever its kind."""
    marker, seen = tmp_path / "alpha.started", tmp_path / "templates.seen"
    repo.package("alpha", tests=template_then_slow(marker, seen))
    repo.write("alpha/template.html", "<p>0</p>")
    repo.package("beta")
    w = watch(repo.path)
    assert wait_until(marker.exists, 15), w.output
    repo.write("alpha/template.html", "<p>1</p>")
    assert wait_until(marked(seen, "<p>1</p>"), 10), f"the save was never run:\n{w.output}"
    assert cycle(w, 2)[0] == "changed: alpha/template.html", w.output
    assert "not tested" not in w.output


@needs_git
def test_a_tracked_template_an_editor_replaces_during_its_packages_run_is_tested(
    repo: Repo, watch: type[Watch], tmp_path: Path
) -> None:
    """vim writes a new file (a new inode, born during the run): git tracks it, so a person's."""
    marker, seen = tmp_path / "alpha.started", tmp_path / "templates.seen"
    repo.package("alpha", tests=template_then_slow(marker, seen))
    repo.write("alpha/template.html", "<p>0</p>")
    git(repo.path, "init", "-q")
    git(repo.path, "add", "-A")
    git(repo.path, "commit", "-q", "-m", "start")
    w = watch(repo.path)
    assert wait_until(marker.exists, 15), w.output
    save_vim(repo.path / "alpha" / "template.html", "<p>1</p>")
    assert wait_until(marked(seen, "<p>1</p>"), 10), f"the save was never run:\n{w.output}"
    assert cycle(w, 2)[0] == "changed: alpha/template.html", w.output
    assert "not tested" not in w.output


def test_a_template_saved_during_three_of_its_own_packages_runs_is_tested_each_time(
    repo: Repo, watch: type[Watch], tmp_path: Path
) -> None:
    marker, seen = tmp_path / "alpha.started", tmp_path / "templates.seen"
    repo.package("alpha", tests=template_then_slow(marker, seen))
    repo.write("alpha/template.html", "<p>0</p>")
    w = watch(repo.path)
    for version in range(1, 4):
        assert wait_until(functools.partial(runs_started, marker, version), 15), w.output
        repo.write("alpha/template.html", f"<p>{version}</p>")
    assert wait_until(marked(seen, "<p>3</p>"), 10), f"the third save was never run:\n{w.output}"
    assert "sets off the next run" not in w.output
    assert "not tested" not in w.output


def test_a_template_saved_just_after_a_source_is_tested_after_the_run_the_source_set_off(
    repo: Repo, watch: type[Watch], tmp_path: Path
) -> None:
    """``echo >> s1/s1/__init__.py; sleep .25; echo broken > s1/s1/template.txt``"""
    marker = tmp_path / "s1.started"
    tests = "\n\ndef test_template():\n    assert TEXT == 'ok\\n'\n"
    repo.package(
        "s1", tests="TEXT = open('s1/template.txt').read()\n" + slow_test(marker, 1.0) + tests
    )
    repo.write("s1/s1/template.txt", "ok\n")
    repo.package("s2")
    w = started(watch, repo.path)
    with open(repo.path / "s1" / "s1" / "__init__.py", "a") as f:
        f.write("# edited\n")
    assert wait_until(functools.partial(runs_started, marker, 2), 15), w.output
    with open(repo.path / "s1" / "s1" / "template.txt", "w") as f:
        f.write("broken\n")
    lines = cycle(w, 3)
    assert lines[0] == "changed: s1/s1/template.txt", w.output
    assert verdicts(lines)[0] == ("s1", "FAILED"), w.output
    assert "not tested" not in w.output


def test_a_file_the_run_created_stays_the_runs_in_later_runs(
    repo: Repo, watch: type[Watch], tmp_path: Path
) -> None:
    """output.txt is new in the first run, appended to by each: never a change."""
    marker = tmp_path / "alpha.started"
    appends = "def test_appends():\n    with open('output.txt', 'a') as f:\n        f.write('x')\n"
    repo.package("alpha", tests=appends)
    repo.package("beta", tests=slow_test(marker, 0.3))
    w = watch(repo.path)
    w.wait_cycles(1)
    for n in range(2, 4):
        sentinel(w, repo, n, "beta/beta/__init__.py")
    assert (repo.path / "alpha" / "output.txt").read_text() == "xxx"


SAVED_VALUE = "VALUE = {}\n"


def value_then_slow(marker: Path) -> str:
    """Reads VALUE at collection, then takes a second: a save meanwhile is seen next run."""
    return (
        "from alpha import VALUE\n\n\n"
        + slow_test(marker, 1.0)
        + "\n\ndef test_value():\n    assert VALUE == 1\n"
    )


def test_a_save_during_a_run_that_restores_an_earlier_content_is_tested(
    repo: Repo, watch: type[Watch], tmp_path: Path
) -> None:
    """Broken during a run, fixed while idle, broken again during a later run (an undo)."""
    marker = tmp_path / "alpha.started"
    repo.package("alpha", tests=value_then_slow(marker))
    source = repo.path / "alpha" / "alpha" / "__init__.py"
    w = watch(repo.path)
    assert wait_until(functools.partial(runs_started, marker, 1), 15), w.output
    source.write_text(SAVED_VALUE.format(2))  # during run 1
    assert verdicts(cycle(w, 2))[0] == ("alpha", "FAILED"), w.output
    source.write_text(SAVED_VALUE.format(1))  # while idle
    assert wait_until(functools.partial(runs_started, marker, 3), 15), w.output
    source.write_text(SAVED_VALUE.format(2))  # during run 3: what it held after run 1
    lines = cycle(w, 4)
    assert lines[0] == "changed: alpha/alpha/__init__.py", w.output
    assert verdicts(lines)[0] == ("alpha", "FAILED"), w.output
    assert "not tested" not in w.output


def test_a_save_right_after_each_cycle_ends_is_tested_whatever_the_file(
    repo: Repo, watch: type[Watch]
) -> None:
    repo.package("alpha", tests="def test_data():\n    assert open('data.txt').read() == 'ok'\n")
    repo.write("alpha/data.txt", "ok")
    w = started(watch, repo.path)
    for n, (text, verdict) in enumerate([("bad", "FAILED"), ("ok", "ok"), ("bad", "FAILED")], 2):
        (repo.path / "alpha" / "data.txt").write_text(text)  # the moment the cycle ended
        lines = cycle(w, n, timeout=8)
        assert lines[0] == "changed: alpha/data.txt", w.output
        assert verdicts(lines)[0] == ("alpha", verdict), w.output
    assert "not tested" not in w.output


# ---------------------------------------------------------------------------------------------
# 6. The smaller items
# ---------------------------------------------------------------------------------------------


def test_an_ignored_directory_glob_covers_the_directory_itself(
    repo: Repo, watch: type[Watch]
) -> None:
    repo.package("alpha")
    w = started(watch, repo.path, "--ignore", "docs/*")
    (repo.path / "docs").mkdir()
    (repo.path / "docs" / "index.md").write_text("# docs")
    (repo.path / "alpha" / "docs").mkdir()  # not below the root's docs: a change
    assert cycle(w, 2)[0] == "changed: alpha/docs", w.output


def test_a_temporary_file_that_lives_a_while_before_its_rename_is_one_change(
    repo: Repo, watch: type[Watch]
) -> None:
    repo.package("alpha")
    w = started(watch, repo.path)
    temp = repo.path / "alpha" / "tests" / ".test_alpha.py.partial"
    with open(temp, "w") as f:
        f.write(FAILING_TEST[:20])
        f.flush()
        time.sleep(0.15)  # a slow writer: the temporary file outlives a burst
        f.write(FAILING_TEST[20:])
    os.replace(temp, repo.path / TARGET)
    lines = cycle(w, 2)
    assert lines[0] == f"changed: {TARGET}", w.output
    assert verdicts(lines)[0] == ("alpha", "FAILED"), w.output
    sentinel(w, repo, 3)


@pytest.mark.parametrize("name", ["env4", "sandbox"])
def test_a_new_virtualenv_of_any_name_sets_off_nothing(
    repo: Repo, watch: type[Watch], name: str
) -> None:
    repo.package("alpha")
    w = started(watch, repo.path)
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(repo.path / "alpha" / name)],
        check=True,
    )
    sentinel(w, repo, 2)
    assert len(w.headers()) == 2, w.output


def test_a_gitignore_outside_git_is_said_not_to_apply(repo: Repo, watch: type[Watch]) -> None:
    repo.package("alpha")
    repo.write(".gitignore", "*.log\n")
    w = started(watch, repo.path)
    assert any(
        re.match(r"autotest: \.gitignore is not applied: .* is not a git work tree", line)
        for line in w.lines
    ), w.output

"""Watch mode, end to end: each real way a file changes gives exactly the cycles it should.

Real watchdog observers on real temporary trees, real nose runs.  Editors' save sequences are
replayed with the same file operations in the same order; each edit turns a passing test failing,
so the verdict proves the run saw the new content.  "No extra cycle" is checked with a sentinel:
after the thing that must not set off a cycle, a real edit must give the very next cycle.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import FAILING_TEST, PASSING_TEST, Repo, Watch, clean_env, git, wait_until

LINUX = sys.platform.startswith("linux")
VERDICT = re.compile(r"^(\S+)\s+(ok|no tests|FAILED(?: \([^)]*\))?)\s+\d+\.\d\ds$")
HEADER = ("changed: ", "testing ")
TARGET = "alpha/tests/test_alpha.py"  # what the editors save
SENTINEL = "alpha/alpha/__init__.py"

Save = Callable[[Path, str], None]


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pycache")


@pytest.fixture(autouse=True)
def compiled_once(shared_pycache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytecode of nose and the runs goes to one cache outside every tree for the whole module
    (as a user's PYTHONPYCACHEPREFIX would), so each new temporary root does not compile nose
    again: that only slows the first cycle, which these tests do not measure."""
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(shared_pycache))


def cycle(w: Watch, n: int, timeout: float = 30) -> list[str]:
    """The lines of the ``n``th cycle, its header to its summary, once it has ended."""
    end = w.wait_cycles(n, timeout)
    lines = list(w.lines[:end])
    opened = [i for i, line in enumerate(lines) if line.startswith(HEADER)]
    return lines[opened[-1] :]


def verdicts(lines: list[str]) -> list[tuple[str, str]]:
    return [(m[1], m[2]) for m in map(VERDICT.match, lines) if m]


def started(watch: type[Watch], root: Path, *args: str, env: dict[str, str] | None = None) -> Watch:
    """autotest watching ``root``, its first cycle over (so its watches are in place)."""
    w = watch(root, *args, env=env)
    w.wait_cycles(1)
    return w


def sentinel(w: Watch, repo: Repo, n: int, rel: str = SENTINEL) -> None:
    """A real edit that must set off cycle ``n``: so exactly ``n - 1`` cycles came before it."""
    path = repo.path / rel
    path.write_text(path.read_text() + "# sentinel\n")
    assert cycle(w, n)[0] == f"changed: {rel}", w.output


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
needs_linux = pytest.mark.skipif(not LINUX, reason="reads /proc")


def slow_test(marker: Path, seconds: float, tag: str = "run") -> str:
    """A test that says it started (a line ``tag pid`` in ``marker``, outside the tree) and then
    takes ``seconds``: the window in which a change arrives during the run."""
    return (
        "import os\nimport time\n\n\ndef test_slow():\n"
        f"    with open({str(marker)!r}, 'a') as f:\n"
        f"        f.write('{tag} %d\\n' % os.getpid())\n"
        f"    time.sleep({seconds})\n"
    )


def marker_text(marker: Path) -> str:
    return marker.read_text() if marker.exists() else ""


def marked(marker: Path, text: str) -> Callable[[], bool]:
    return lambda: text in marker_text(marker)


def startup_line(w: Watch) -> str:
    return next(line for line in w.lines if line.startswith("autotest: watching"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Editors' saves, in the order each editor does them
# ---------------------------------------------------------------------------------------------


def save_plain(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def save_vim(path: Path, text: str) -> None:
    """vim, writebackup and backupcopy=auto on Linux: probe the directory, rename the file to
    the backup, write a new file, fsync, delete the backup; the swap file changes throughout."""
    folder = path.parent
    swap = folder / f".{path.name}.swp"
    swap.write_bytes(b"b0VIM 9.1\0" + bytes(4086))  # the buffer was changed
    with open(swap, "r+b") as f:  # updatetime passed while typing
        f.write(b"b0VIM 9.1\0typing")
    probe = folder / "4913"
    os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o644))
    os.unlink(probe)
    backup = folder / f"{path.name}~"
    os.rename(path, backup)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    os.write(fd, text.encode())
    os.fsync(fd)
    os.close(fd)
    os.chmod(path, 0o644)  # the original file's mode
    with open(swap, "r+b") as f:
        f.write(b"b0VIM 9.1\0saved!")
    os.unlink(backup)


def save_emacs(path: Path, text: str) -> None:
    """emacs: lock symlink on the first change, auto-save file, backup by renaming on the first
    save, the new file written, then the auto-save file and the lock go."""
    folder = path.parent
    lock = folder / f".#{path.name}"
    os.symlink(f"user@host.{os.getpid()}:1700000000", lock)
    autosave = folder / f"#{path.name}#"
    autosave.write_text(text)
    os.rename(path, folder / f"{path.name}~")
    with open(path, "w") as f:
        f.write(text)
    os.unlink(autosave)
    os.unlink(lock)


def save_jetbrains(path: Path, text: str) -> None:
    """JetBrains "safe write"."""
    folder = path.parent
    temp = folder / f"{path.name}___jb_tmp___"
    old = folder / f"{path.name}___jb_old___"
    temp.write_text(text)
    os.rename(path, old)
    os.rename(temp, path)
    os.unlink(old)


def atomic(temp_name: str) -> Save:
    """A temporary file in the same directory, then os.replace onto the target."""

    def save(path: Path, text: str) -> None:
        temp = path.parent / temp_name
        with open(temp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)

    return save


def save_gtk(path: Path, text: str) -> None:
    """GLib's g_file_replace (gedit and other GTK editors)."""
    temp = path.parent / ".goutputstream-7XKQ2Z"
    temp.write_text(text)
    os.rename(temp, path)


def save_kate(path: Path, text: str) -> None:
    """kate: its swap file holds the edits; QSaveFile writes a temporary beside the file and
    renames it over; the swap file goes once saved."""
    folder = path.parent
    swap = folder / f".{path.name}.kate-swp"
    swap.write_bytes(b"Kate Swap File 2.0\0")
    with open(swap, "ab") as f:
        f.write(b"edits")
    temp = folder / f"{path.name}.Xk3Qz1"
    temp.write_text(text)
    os.rename(temp, path)
    os.unlink(swap)


EDITORS = [
    pytest.param(save_plain, id="plain"),
    pytest.param(save_vim, id="vim"),
    pytest.param(save_emacs, id="emacs"),
    pytest.param(save_jetbrains, id="jetbrains"),
    pytest.param(atomic(".tmpab12cd"), id="atomic-tmp"),
    pytest.param(atomic("sedX1y2Z3"), id="atomic-sed"),
    pytest.param(save_gtk, id="gtk"),
    pytest.param(save_kate, id="kate"),
]


@pytest.mark.parametrize("save", EDITORS)
def test_an_editor_save_is_one_cycle_that_sees_the_new_content(
    repo: Repo, watch: type[Watch], save: Save
) -> None:
    repo.package("alpha")
    w = started(watch, repo.path)
    save(repo.path / TARGET, FAILING_TEST)
    lines = cycle(w, 2)
    assert lines[0] == f"changed: {TARGET}", w.output
    assert verdicts(lines)[0] == ("alpha", "FAILED"), w.output
    sentinel(w, repo, 3)


@pytest.mark.parametrize("name", [".test_alpha.py.swp", "test_alpha.py~"])
def test_an_editor_side_file_alone_sets_off_nothing(
    repo: Repo, watch: type[Watch], name: str
) -> None:
    repo.package("alpha")
    w = started(watch, repo.path)
    side = repo.path / "alpha" / "tests" / name
    side.write_bytes(b"written")
    with open(side, "ab") as f:
        f.write(b" and updated")
    sentinel(w, repo, 2)
    assert w.headers()[1:] == [f"changed: {SENTINEL}"], w.output


# ---------------------------------------------------------------------------------------------
# Many files at once; files the runs write
# ---------------------------------------------------------------------------------------------


@needs_git
def test_git_checkout_of_many_files_in_several_packages_is_one_cycle(
    repo: Repo, watch: type[Watch]
) -> None:
    names = ("alpha", "beta", "gamma")
    for name in names:
        repo.package(name)
        for i in range(16):
            repo.write(f"{name}/{name}/m{i:02}.py", "X = 1\n")
    git(repo.path, "init", "-q", "-b", "main")
    git(repo.path, "add", "-A")
    git(repo.path, "commit", "-q", "-m", "one")
    git(repo.path, "checkout", "-q", "-b", "other")
    for name in names:
        for i in range(16):
            repo.write(f"{name}/{name}/m{i:02}.py", "X = 2\n")
    repo.write(TARGET, FAILING_TEST)
    repo.write("beta/beta/__init__.py", "VALUE = 2\n")
    git(repo.path, "commit", "-q", "-am", "two: 50 files in 3 packages")
    git(repo.path, "checkout", "-q", "main")

    w = started(watch, repo.path)
    git(repo.path, "checkout", "-q", "other")
    lines = cycle(w, 2)
    assert lines[0] == "changed: 50 files in 3 packages", w.output
    assert ("alpha", "FAILED") in verdicts(lines), w.output
    sentinel(w, repo, 3, "gamma/gamma/__init__.py")


LEAVES_FILES = """\
def test_leaves_files_behind():
    for name in (".coverage", ".coverage.host.123", "run.log"):
        with open(name, "a") as f:
            f.write("x\\n")
"""


@needs_git
def test_coverage_files_and_gitignored_files_the_runs_write_set_off_nothing(
    repo: Repo, watch: type[Watch]
) -> None:
    repo.package("alpha", tests=LEAVES_FILES)
    repo.package("beta")
    repo.write(".gitignore", "*.log\n")
    git(repo.path, "init", "-q")
    w = watch(repo.path)
    first = cycle(w, 1)
    assert first[-1].startswith("all 2 packages passed"), w.output  # not "changed during the run"
    assert (repo.path / "alpha" / "run.log").exists()
    sentinel(w, repo, 2, "beta/beta/__init__.py")  # a cold run wrote them; now a forked one does
    sentinel(w, repo, 3)
    assert (repo.path / "alpha" / "run.log").read_text() == "x\n" * 3
    assert w.headers()[0] == "testing all 2 packages"
    assert len(w.headers()) == 3, w.output


def test_touching_a_file_is_a_change(repo: Repo, watch: type[Watch]) -> None:
    repo.package("alpha")
    repo.package("beta")
    w = started(watch, repo.path)
    os.utime(repo.path / SENTINEL)
    lines = cycle(w, 2)
    assert lines[0] == f"changed: {SENTINEL}", w.output
    assert verdicts(lines)[0] == ("alpha", "ok")
    sentinel(w, repo, 3, "beta/beta/__init__.py")


# Each change below makes alpha's test fail, so the verdict shows the run saw the tree changed.
TREE_CHANGES: dict[str, tuple[str, str, Callable[[Path], object]]] = {
    "deleted-file": (
        "from alpha import extra  # noqa\n\n\ndef test_extra():\n    assert extra.X\n",
        r"changed: alpha/alpha/extra\.py \(removed\)",
        lambda root: (root / "alpha/alpha/extra.py").unlink(),
    ),
    "new-empty-directory": (
        "import os\n\n\ndef test_no_newdir():\n    assert not os.path.exists('newdir')\n",
        r"changed: alpha/newdir",
        lambda root: (root / "alpha/newdir").mkdir(),
    ),
    "renamed-directory": (
        "def test_sub():\n    import alpha.sub\n\n    assert alpha.sub.X\n",
        r"changed: \d+ files in 1 package",  # the directory and what it holds, old and new
        lambda root: (root / "alpha/alpha/sub").rename(root / "alpha/alpha/renamed"),
    ),
}


@pytest.mark.parametrize("change", list(TREE_CHANGES))
def test_a_deleted_file_a_new_directory_a_renamed_directory_each_count(
    repo: Repo, watch: type[Watch], change: str
) -> None:
    tests, header, act = TREE_CHANGES[change]
    repo.package("alpha", tests=tests)
    repo.write("alpha/alpha/extra.py", "X = 1\n")
    repo.write("alpha/alpha/sub/__init__.py", "X = 1\n")
    repo.package("beta")
    w = started(watch, repo.path)
    assert verdicts(cycle(w, 1))[0] == ("alpha", "ok"), w.output
    act(repo.path)
    lines = cycle(w, 2)
    assert re.fullmatch(header, lines[0]), w.output
    assert verdicts(lines)[0] == ("alpha", "FAILED"), w.output
    sentinel(w, repo, 3, "beta/beta/__init__.py")


def test_the_same_file_saved_as_soon_as_each_cycle_ends_is_never_lost(
    repo: Repo, watch: type[Watch]
) -> None:
    """Saving again the moment a quick cycle ends (within ECHO_GRACE) is a person, not a run."""
    repo.package("alpha")
    w = started(watch, repo.path)
    for n, (text, verdict) in enumerate(
        [(FAILING_TEST, "FAILED"), (PASSING_TEST, "ok"), (FAILING_TEST, "FAILED")], 2
    ):
        (repo.path / TARGET).write_text(text)
        lines = cycle(w, n, timeout=8)
        assert lines[0] == f"changed: {TARGET}", w.output
        assert verdicts(lines)[0] == ("alpha", verdict), w.output
    assert "sets off the next run" not in w.output


APPENDS_OUTPUT = (
    "def test_appends():\n    with open('output.txt', 'a') as f:\n        f.write('x\\n')\n"
)


def test_a_file_a_run_writes_in_its_own_package_sets_off_nothing_and_is_named(
    repo: Repo, watch: type[Watch]
) -> None:
    repo.package("alpha", tests=APPENDS_OUTPUT)
    repo.package("beta")
    w = watch(repo.path)
    first = cycle(w, 1)
    assert first[-1].startswith("all 2 packages passed"), w.output  # not "changed during the run"
    w.wait_for(r"^autotest: not tested: alpha/output\.txt, changed during its package's run")
    # A real edit still counts; the run it sets off writes output.txt again, which sets off nothing.
    repo.write(TARGET, APPENDS_OUTPUT + "\n\n" + FAILING_TEST)
    lines = cycle(w, 2)
    assert lines[0] == f"changed: {TARGET}", w.output
    assert verdicts(lines)[0] == ("alpha", "FAILED"), w.output
    sentinel(w, repo, 3, "beta/beta/__init__.py")
    assert w.headers()[0] == "testing all 2 packages" and len(w.headers()) == 3, w.output


# ---------------------------------------------------------------------------------------------
# Changes while a package runs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edited", ["beta", "alpha", "gamma"], ids=["running", "already-run", "not-yet-run"]
)
def test_an_edit_during_a_run_is_never_lost(
    repo: Repo, watch: type[Watch], tmp_path: Path, edited: str
) -> None:
    marker = tmp_path / "beta.started"
    repo.package("alpha")
    repo.package("beta", tests=slow_test(marker, 1.0))
    repo.package("gamma")
    w = watch(repo.path)
    assert wait_until(marker.exists, 20), w.output
    repo.write(f"{edited}/tests/test_{edited}.py", FAILING_TEST)
    first = cycle(w, 1)
    assert first[-1] == "changed during the run: starting over (2 done)", w.output
    assert verdicts(first) == [("alpha", "ok"), ("beta", "ok")], w.output
    second = cycle(w, 2)
    assert second[0] == f"changed: {edited}/tests/test_{edited}.py", w.output
    assert verdicts(second)[0] == (edited, "FAILED"), w.output


@pytest.mark.parametrize("edited", ["beta", "gamma"], ids=["running", "not-yet-run"])
def test_with_restart_an_edit_kills_the_run_and_starts_over_at_once(
    repo: Repo, watch: type[Watch], tmp_path: Path, edited: str
) -> None:
    marker = tmp_path / "beta.started"
    repo.package("alpha")
    repo.package("beta", tests=slow_test(marker, 60))
    repo.package("gamma")
    w = watch(repo.path, "--restart")
    assert wait_until(marker.exists, 20), w.output
    pid = int(marker.read_text().split()[-1])
    repo.write(f"{edited}/tests/test_{edited}.py", FAILING_TEST)
    first = cycle(w, 1, timeout=10)  # beta would sleep for a minute
    assert first[-1] == "changed during the run: starting over (1 done)", w.output
    assert verdicts(first) == [("alpha", "ok")], w.output
    second = cycle(w, 2, timeout=10)
    assert second[0] == f"changed: {edited}/tests/test_{edited}.py", w.output
    assert verdicts(second)[0] == (edited, "FAILED"), w.output
    assert wait_until(lambda: not alive(pid), 5), f"the killed run {pid} still lives"


def test_the_same_file_edited_during_several_runs_is_never_lost(
    repo: Repo, watch: type[Watch], tmp_path: Path
) -> None:
    """A person saving one file while each run of it goes on is not the runs writing it."""
    marker = tmp_path / "beta.started"
    repo.package("alpha")
    repo.package("beta", tests=slow_test(marker, 1.0, "v0"))
    w = watch(repo.path)
    for version in range(1, 4):
        assert wait_until(marked(marker, f"v{version - 1} "), 15), w.output
        repo.write("beta/tests/test_beta.py", slow_test(marker, 1.0, f"v{version}"))
    assert wait_until(marked(marker, "v3 "), 8), f"the third save was never run:\n{w.output}"
    assert "sets off the next run" not in w.output


# ---------------------------------------------------------------------------------------------
# The tree itself: packages come and go, odd names, symlink loops
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("in_git", [False, True], ids=["plain", "git"])
def test_packages_added_and_removed_while_watching_are_followed(
    repo: Repo, watch: type[Watch], tmp_path: Path, in_git: bool
) -> None:
    if in_git:
        if shutil.which("git") is None:
            pytest.skip("needs git")
        git(repo.path, "init", "-q")  # .git splits the root's watch: new dirs get their own
    repo.package("alpha")
    repo.package("beta")
    staging = Repo(tmp_path / "staging")
    staging.path.mkdir()
    staging.package("gamma")
    w = started(watch, repo.path)

    shutil.copytree(staging.path / "gamma", repo.path / "gamma")
    w.wait_for(r"^packages: \+gamma$")
    added = cycle(w, 2)
    assert verdicts(added)[0] == ("gamma", "ok"), w.output

    shutil.rmtree(repo.path / "beta")
    w.wait_for(r"^packages: -beta$")
    removed = cycle(w, 3)
    assert sorted(verdicts(removed)) == [("alpha", "ok"), ("gamma", "ok")], w.output

    repo.write("gamma/tests/test_gamma.py", FAILING_TEST)  # the new package is watched too
    edited = cycle(w, 4)
    assert edited[0] == "changed: gamma/tests/test_gamma.py", w.output
    assert verdicts(edited)[0] == ("gamma", "FAILED"), w.output


@needs_git
def test_names_with_spaces_and_non_ascii_letters_count_and_are_shown(
    repo: Repo, watch: type[Watch]
) -> None:
    repo.package("alpha")
    git(repo.path, "init", "-q")
    w = started(watch, repo.path)
    for n, name in enumerate(["my notes.txt", "café.txt", "日本.txt"], 2):
        (repo.path / "alpha" / name).write_text("x")
        assert cycle(w, n)[0] == f"changed: alpha/{name}", w.output


def test_a_name_with_a_newline_counts_and_is_shown_on_the_header_line(
    repo: Repo, watch: type[Watch]
) -> None:
    repo.package("alpha")
    w = started(watch, repo.path)
    (repo.path / "alpha" / "new\nline.txt").write_text("x")
    header = cycle(w, 2)[0]
    assert header.startswith("changed: alpha/new") and header.endswith("line.txt"), w.output


@pytest.mark.parametrize(
    "io_env",
    [{}, {"PYTHONIOENCODING": "utf-8"}],
    ids=["C.UTF-8", "strict-utf-8"],  # the second: stdout as under en_US.UTF-8 and the like
)
def test_a_name_that_is_not_utf8_counts_and_does_not_crash(
    repo: Repo, watch: type[Watch], io_env: dict[str, str]
) -> None:
    repo.package("alpha")
    w = started(watch, repo.path, env=clean_env(**io_env))
    (repo.path / "alpha" / os.fsdecode(b"caf\xe9.txt")).write_text("x")  # Latin-1, from a zip
    at = w.wait_for(r"^changed: alpha/caf.*\.txt$", timeout=10)
    assert w.proc.poll() is None, w.output
    w.wait_for(r"^the 1 package passed", at)
    assert "Traceback" not in w.output


def test_a_symlink_loop_in_the_tree_does_not_hang_or_crash_start_up(
    repo: Repo, watch: type[Watch]
) -> None:
    repo.package("alpha")
    (repo.path / "alpha" / "data").mkdir()
    os.symlink("..", repo.path / "alpha" / "data" / "loop")
    (repo.path / "docs").mkdir()
    os.symlink("..", repo.path / "docs" / "loop")
    os.symlink("itself", repo.path / "docs" / "itself")
    w = watch(repo.path)
    w.wait_cycles(1, timeout=15)
    (repo.path / TARGET).write_text(FAILING_TEST)
    assert verdicts(cycle(w, 2, timeout=10))[0] == ("alpha", "FAILED"), w.output


# ---------------------------------------------------------------------------------------------
# Watches, polling, idle cost
# ---------------------------------------------------------------------------------------------


def inotify_watches(pid: int) -> int:
    """The inotify watches the process really holds (from /proc/PID/fdinfo)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                count += sum(1 for line in f if line.startswith("inotify wd:"))
        except OSError:
            continue
    return count


@needs_linux
def test_big_ignored_trees_cost_no_watches_and_no_start_up_time(
    repo: Repo, watch: type[Watch]
) -> None:
    repo.package("alpha")
    repo.package("beta")
    venv = repo.path / ".venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    for i in range(400):
        for j in range(4):
            os.makedirs(site / f"p{i:03}" / f"s{j}")
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    for i in range(500):
        os.makedirs(repo.path / "alpha" / "node_modules" / f"m{i:03}" / "lib")
    clean = 0
    for _, dirnames, _ in os.walk(repo.path):
        dirnames[:] = [d for d in dirnames if d not in (".venv", "node_modules")]
        clean += 1

    began = time.monotonic()
    w = watch(repo.path)
    w.wait_for(r"^testing all 2 packages$", timeout=10)
    took = time.monotonic() - began
    line = startup_line(w)
    match = re.search(r"\(inotify, (\d+) watches\)", line)
    assert match, line
    assert int(match[1]) <= 2 * clean, f"{line} for {clean} directories outside ignored trees"
    assert inotify_watches(w.proc.pid) <= 2 * clean, f"{clean} directories outside ignored trees"
    assert took < 3, f"the first cycle started {took:.2f}s after autotest did"
    w.wait_cycles(1)
    sentinel(w, repo, 2, "beta/beta/__init__.py")


@needs_linux
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_is_asked_once_at_start_what_it_ignores_and_no_watch_goes_below_it(
    repo: Repo, watch: type[Watch], tmp_path: Path
) -> None:
    repo.package("alpha")
    git(repo.path, "init", "-q")
    repo.write(".gitignore", "generated-data/\n")
    for i in range(300):
        os.makedirs(repo.path / "generated-data" / f"d{i:03}")
    asked = tmp_path / "git.log"
    wrapper = tmp_path / "bin" / "git"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{asked}"\nexec "{shutil.which("git")}" "$@"\n')
    wrapper.chmod(0o755)
    w = started(
        watch, repo.path, env=clean_env(PATH=f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
    )
    match = re.search(r"\(inotify, (\d+) watches\)", startup_line(w))
    assert match and int(match[1]) < 300, startup_line(w)
    whole_dirs = [
        a for a in asked.read_text().splitlines() if "--ignored" in a and "--directory" in a
    ]
    assert len(whole_dirs) == 1, whole_dirs


def test_too_few_inotify_watches_falls_back_to_polling(repo: Repo, watch: type[Watch]) -> None:
    repo.package("alpha")
    repo.package("beta")
    w = started(watch, repo.path, env=clean_env(AUTOTEST_INOTIFY_LIMIT="5"))
    warnings = [line for line in w.lines if "polling" in line and "sysctl" in line]
    assert warnings, w.output
    assert "fs.inotify.max_user_watches" in warnings[0]
    assert "(polling every second)" in startup_line(w), w.output
    (repo.path / TARGET).write_text(FAILING_TEST)
    lines = cycle(w, 2, timeout=10)
    assert lines[0] == f"changed: {TARGET}", w.output
    assert verdicts(lines)[0] == ("alpha", "FAILED"), w.output


def test_poll_forces_polling(repo: Repo, watch: type[Watch]) -> None:
    repo.package("alpha")
    w = started(watch, repo.path, "--poll")
    assert "(polling every second)" in startup_line(w), w.output
    (repo.path / TARGET).write_text(FAILING_TEST)
    lines = cycle(w, 2, timeout=10)
    assert lines[0] == f"changed: {TARGET}", w.output
    assert verdicts(lines)[0] == ("alpha", "FAILED"), w.output


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@needs_linux
def test_an_idle_watcher_uses_almost_no_cpu(repo: Repo, watch: type[Watch]) -> None:
    repo.package("alpha")
    repo.package("beta")
    w = started(watch, repo.path)
    before = cpu_seconds(w.proc.pid)
    time.sleep(3)  # the time window is the point of this test
    used = cpu_seconds(w.proc.pid) - before
    assert used < 0.05, f"{used:.2f}s of CPU in 3s of idling"

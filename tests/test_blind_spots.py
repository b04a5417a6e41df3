"""Where a watcher could go blind or stale: bytecode cached by another Python, a root replaced
under autotest, a burst of tens of thousands of files, a file moved between packages.

Real watchdog observers, real runs, real git, and real rm, cp and mv on the watched tree; each
edit that must be seen turns a passing test failing, so the verdict proves the run saw it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_events import (  # nose's bytecode in one cache for the module, as there
    TARGET,
    compiled_once,  # noqa: F401 (an autouse fixture)
    cycle,
    needs_git,
    sentinel,
    shared_pycache,  # noqa: F401 (the fixture it uses)
    started,
    verdicts,
)

from conftest import (
    FAILING_TEST,
    PASSING_TEST,
    Repo,
    Watch,
    clean_env,
    git,
    load_autotest,
    wait_until,
)

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


# ---------------------------------------------------------------------------------------------
# 2. A burst of any size is judged in moments, and git's silence is not its answer
# ---------------------------------------------------------------------------------------------

GIT_SPY = """\
#!/bin/sh
# git, with each check-ignore call logged: how many paths it was asked about{fail}
if [ "$1" = check-ignore ]; then
    asked=$(mktemp)
    cat > "$asked"
    echo "$(tr -cd '\\000' < "$asked" | wc -c)" >> {log}
    exec {git} "$@" < "$asked"
fi
exec {git} "$@"
"""

FAILS = """
if [ "$1" = check-ignore ]; then echo "fatal: index file corrupt" >&2; exit 128; fi"""


def spied_git(tmp_path: Path, fail: bool = False) -> tuple[dict[str, str], Path]:
    """An environment whose git logs the paths each check-ignore is asked about (or fails it
    as a corrupt repository would), and the log: one line per call, its paths less one."""
    real = shutil.which("git")
    assert real is not None
    spy, log = tmp_path / "spy", tmp_path / "check-ignore.log"
    spy.mkdir()
    script = GIT_SPY.format(fail=FAILS if fail else "", log=shlex.quote(str(log)), git=real)
    (spy / "git").write_text(script)
    (spy / "git").chmod(0o755)
    return clean_env(PATH=f"{spy}{os.pathsep}{os.environ['PATH']}"), log


def asked(log: Path) -> list[int]:
    """How many paths each check-ignore call was asked about."""
    return [int(n) + 1 for n in log.read_text().split()] if log.exists() else []


@needs_git
def test_thousands_of_gitignored_files_are_judged_by_asking_git_about_their_directories(
    repo: Repo, watch: type[Watch], tmp_path: Path
) -> None:
    repo.package("alpha")
    repo.package("beta")
    repo.write(".gitignore", "out/\n")
    git(repo.path, "init", "-q")
    env, log = spied_git(tmp_path)
    w = started(watch, repo.path, env=env)
    for d in range(30):
        folder = repo.path / "alpha" / "out" / f"d{d}"
        folder.mkdir(parents=True)
        for f in range(100):
            (folder / f"f{f}.txt").write_text("x")
    assert wait_until(lambda: sum(asked(log)) >= 30, 20), w.output
    sentinel(w, repo, 2, "beta/beta/__init__.py")
    assert max(asked(log)) <= 40, f"git was asked about the files one by one: {asked(log)}"


@needs_git
def test_when_git_cannot_say_what_it_ignores_the_changes_count_and_autotest_says_so_once(
    repo: Repo, watch: type[Watch], tmp_path: Path
) -> None:
    repo.package("alpha")
    repo.write(".gitignore", "*.log\n")
    git(repo.path, "init", "-q")
    env, _ = spied_git(tmp_path, fail=True)
    w = started(watch, repo.path, env=env)
    for n, name in enumerate(["debug.log", "trace.log"], 2):
        (repo.path / "alpha" / name).write_text("x")
        assert cycle(w, n)[0] == f"changed: alpha/{name}", w.output
    said = [line for line in w.lines if "git could not say" in line]
    assert said == [
        "autotest: git could not say which of 1 changed paths .gitignore excludes (git "
        "check-ignore failed or timed out); they count as changes, and so will later ones git "
        "cannot judge"
    ], w.output


# ---------------------------------------------------------------------------------------------
# 3. A root replaced under autotest is watched anew
# ---------------------------------------------------------------------------------------------


def test_a_root_removed_and_copied_back_at_once_is_watched_anew(
    repo: Repo, watch: type[Watch], tmp_path: Path
) -> None:
    repo.package("alpha")
    repo.package("beta")
    backup = tmp_path / "backup"
    subprocess.run(["cp", "-a", str(repo.path), str(backup)], check=True)
    w = started(watch, repo.path)
    replace = 'rm -rf "$1" && cp -a "$2" "$1"'
    subprocess.run(["sh", "-c", replace, "sh", str(repo.path), str(backup)], check=True)
    said = w.wait_for(r"^autotest: .* is another directory now \(replaced while watched\)")
    assert cycle(w, 2)[0] == "testing all 2 packages", w.output
    assert "changed: " not in "\n".join(w.lines[said:]), "the old tree's removal was tested"
    repo.write(TARGET, FAILING_TEST)  # an edit in the new tree
    lines = cycle(w, 3)
    assert lines[0] == f"changed: {TARGET}", w.output
    assert verdicts(lines)[0] == ("alpha", "FAILED"), w.output


def test_a_root_swapped_for_another_by_two_renames_is_watched_anew(
    repo: Repo, watch: type[Watch], tmp_path: Path
) -> None:
    repo.package("alpha")
    repo.package("beta")
    new = tmp_path / "new"
    subprocess.run(["cp", "-a", str(repo.path), str(new)], check=True)
    (new / TARGET).write_text(FAILING_TEST)  # the tree swapped in fails
    w = started(watch, repo.path)
    os.rename(repo.path, tmp_path / "old")
    os.rename(new, repo.path)
    lines = cycle(w, 2)
    assert lines[0] == "testing all 2 packages", w.output
    assert verdicts(lines)[0] == ("alpha", "FAILED"), w.output
    repo.write(TARGET, PASSING_TEST)
    lines = cycle(w, 3)
    assert lines[0] == f"changed: {TARGET}", w.output
    assert verdicts(lines)[0] == ("alpha", "ok"), w.output


def test_a_root_renamed_away_ends_autotest_with_one_line(
    repo: Repo, watch: type[Watch], tmp_path: Path
) -> None:
    repo.package("alpha")
    w = started(watch, repo.path)
    os.rename(repo.path, tmp_path / "elsewhere")
    w.wait_for(rf"^autotest: error: the root {repo.path} is gone; stopping$")
    assert w.proc.wait(timeout=10) == 2


# ---------------------------------------------------------------------------------------------
# 4. A file moved between packages is one change
# ---------------------------------------------------------------------------------------------


@needs_git
def test_a_file_moved_from_one_package_to_another_runs_one_cycle(
    repo: Repo, watch: type[Watch]
) -> None:
    repo.package("alpha")
    repo.package("beta")
    repo.package("gamma")
    repo.write("alpha/alpha/helpers.py", "X = 1\n")
    git(repo.path, "init", "-q")  # .git at the root: each package gets a watch of its own
    w = started(watch, repo.path)
    os.rename(repo.path / "alpha/alpha/helpers.py", repo.path / "beta/beta/helpers.py")
    lines = cycle(w, 2)
    assert lines[0] == "changed: 2 files in 2 packages", w.output
    sentinel(w, repo, 3, "gamma/gamma/__init__.py")


def test_an_entry_renamed_in_from_elsewhere_holds_its_burst_until_its_old_path_is_reported(
    tmp_path: Path,
) -> None:
    at = load_autotest()
    now = [0.0]
    changes = at.ChangeSet(clock=lambda: now[0])
    changes.add(["/r/beta/x.py"], created=True, fresh=True, moved_in=True)
    now[0] = at.CREATED_SETTLE + 0.01
    assert not changes.settled(0.05), "the old path may still be on its way"
    now[0] = 0.55
    changes.remove("/r/alpha/x.py")  # watchdog's late report of the source
    now[0] = at.MOVE_PAIR_WAIT + 0.01
    assert changes.settled(0.05)
    assert sorted(changes.take_paths()) == ["/r/alpha/x.py", "/r/beta/x.py"]
    new, old = tmp_path / "new.py", tmp_path / "old.py"
    new.write_text("")
    assert not at.renamed_into_place(str(new)), "a file just written is no move"
    old.write_text("")
    os.utime(old, (1e9, 1e9))
    assert at.renamed_into_place(str(old))


def test_a_package_deleted_and_restored_passes_forked_again(
    repo: Repo, watch: type[Watch], tmp_path: Path
) -> None:
    """A warm interpreter that started while the package was gone had found nothing on its
    sys.path entry and kept that: a forked run must look again, as a cold one would."""
    repo.package("alpha")
    beta = repo.package("beta")
    kept = tmp_path / "beta-kept"
    shutil.copytree(beta, kept)
    path = os.pathsep.join(str(repo.path / name) for name in ("alpha", "beta"))
    w = started(watch, repo.path, "-v", env=clean_env(PYTHONPATH=path))
    (beta / "beta" / "__init__.py").write_text("VALUE = 1  # saved\n")
    cycle(w, 2)
    shutil.rmtree(beta)  # the next warm interpreter starts while beta is gone
    cycle(w, 3)
    shutil.copytree(kept, beta)
    lines = cycle(w, 4)
    assert verdicts(lines) == [("beta", "ok"), ("alpha", "ok")], w.output
    assert "failed when forked" not in w.output

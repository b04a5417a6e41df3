"""What autotest reaches and runs: never an interpreter the repository brings without naming it
first, never a virtualenv the config names but that is not there, never a file system's root
nor, unless asked, another file system mounted below the root."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import Repo, Watch, clean_env, git, load_autotest, run_autotest


def fake_venv(venv: Path, marker: Path) -> Path:
    """A virtualenv whose interpreter notes each start in ``marker`` (a line: ``started`` and
    its arguments), then is this Python."""
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = {Path(sys.executable).parent}\n")
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\necho "started $*" >> "{marker}"\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    return python


posix_only = pytest.mark.skipif(os.name != "posix", reason="a shell script stands in for python")


@posix_only
def test_an_interpreter_the_config_names_is_named_before_it_first_runs(
    repo: Repo, tmp_path: Path
) -> None:
    repo.package("alpha")
    repo.package("beta")
    marker = tmp_path / "started"
    python = fake_venv(tmp_path / "elsewhere" / "venv", marker)
    repo.write("pyproject.toml", f'[tool.autotest.venvs]\n"alpha" = "{python.parent.parent}"\n')
    done = run_autotest(repo.path, "--once", "--no-warm")
    assert done.returncode == 0, done.stdout + done.stderr
    assert marker.exists(), "the configured interpreter ran"
    first = done.stdout.splitlines()[0]
    assert first == (
        f"autotest: interpreter from pyproject.toml [tool.autotest] venvs 'alpha': {python}"
    )
    assert done.stdout.count("interpreter from") == 1


@posix_only
def test_a_virtualenv_committed_to_git_is_named_and_one_made_locally_is_not(
    repo: Repo, tmp_path: Path
) -> None:
    repo.package("alpha")
    repo.package("beta")
    git(repo.path, "init", "-q")
    repo.write(".gitignore", "beta/.venv/\n")
    committed = fake_venv(repo.path / "alpha" / ".venv", tmp_path / "alpha-started")
    fake_venv(repo.path / "beta" / ".venv", tmp_path / "beta-started")
    git(repo.path, "add", "-A")
    git(repo.path, "commit", "-qm", "a clone that brings its interpreter")
    assert git(repo.path, "ls-files", "beta/.venv") == ""
    done = run_autotest(repo.path, "--once", "--no-warm")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "alpha-started").exists() and (tmp_path / "beta-started").exists()
    lines = done.stdout.splitlines()
    rel = committed.relative_to(repo.path)
    assert lines[0] == f"autotest: interpreter from a virtualenv committed to git: {rel}"
    assert done.stdout.count("interpreter from") == 1, done.stdout


@posix_only
def test_a_packages_own_interpreter_is_asked_for_its_runner_at_start_not_again_by_the_first_cycle(
    repo: Repo, tmp_path: Path
) -> None:
    repo.package("alpha")
    marker = tmp_path / "alpha-started"
    fake_venv(repo.path / "alpha" / ".venv", marker)
    done = run_autotest(repo.path, "--once", "--no-warm")
    assert done.returncode == 0, done.stdout + done.stderr
    starts = marker.read_text().splitlines()
    assert sum("autotest-probe" in line for line in starts) == 1, starts
    assert any(" -m nose" in line for line in starts), "the run used it"


@pytest.mark.parametrize("named", ["missing-venv", "not-a-venv"])
def test_a_virtualenv_the_config_names_that_is_not_there_is_one_line_and_exit_2(
    repo: Repo, named: str
) -> None:
    repo.package("alpha")
    (repo.path / "alpha" / "not-a-venv").mkdir()
    repo.write("pyproject.toml", f'[tool.autotest.venvs]\n"alpha" = "{named}"\n')
    done = run_autotest(repo.path, "--once")
    assert done.returncode == 2, done.stdout + done.stderr
    venv = repo.path.resolve() / "alpha" / named
    what = "does not exist" if named == "missing-venv" else "is not a virtualenv (no pyvenv.cfg)"
    assert done.stderr == f"autotest: error: venvs 'alpha': {venv} (for alpha) {what}\n"
    assert done.stdout == ""


def test_a_root_that_is_a_file_systems_root_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = run_autotest(Path("/"), "--once", timeout=30)
    assert done.returncode == 2
    assert done.stderr == (
        "autotest: error: root '/' is the root of a file system, which holds every package on "
        "the machine; give the repository's directory\n"
    )
    assert done.stdout == ""


@contextlib.contextmanager
def mounted(directory: Path, *options: str) -> Iterator[Path]:
    """A fresh file system (tmpfs) mounted at ``directory``, unmounted at the end; the test is
    skipped where mounting is refused (not root, no mount namespace of one's own)."""
    directory.mkdir(parents=True, exist_ok=True)
    given = ["-o", ",".join(options)] if options else []
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", *given, "tmpfs", str(directory)],
            capture_output=True,
            text=True,
        )
    except OSError as exc:
        pytest.skip(f"no mount command: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)


def guest_package(repo: Repo) -> Iterator[Path]:
    """A package on a file system of its own, mounted below the root at ``mnt``."""
    with mounted(repo.path / "mnt") as mount:
        repo.package("mnt/guest")
        yield mount


@pytest.fixture
def guest(repo: Repo) -> Iterator[Path]:
    yield from guest_package(repo)


def test_a_file_system_mounted_below_the_root_is_left_out_unless_asked(
    repo: Repo, guest: Path
) -> None:
    repo.package("alpha")
    done = run_autotest(repo.path, "--once")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == f"autotest: 1 package in {repo.path.resolve()}"
    assert "guest" not in done.stdout
    crossing = run_autotest(repo.path, "--once", "--cross-mounts")
    assert crossing.returncode == 0, crossing.stdout + crossing.stderr
    assert crossing.stdout.splitlines()[0].startswith("autotest: 2 packages in")
    assert "mnt/guest  ok" in crossing.stdout


def test_a_mounted_file_system_below_the_root_gets_no_watches_and_sets_off_no_run(
    repo: Repo, guest: Path, watch: Callable[..., Watch]
) -> None:
    repo.package("alpha")
    w = watch(repo.path)
    after = w.wait_cycles(1)
    (guest / "guest" / "guest" / "__init__.py").write_text("VALUE = 2\n")
    (repo.path / "alpha" / "alpha" / "__init__.py").write_text("VALUE = 2\n")
    w.wait_for(r"^changed: alpha/alpha/__init__\.py$", after)
    w.wait_cycles(2)
    assert w.headers()[1:] == ["changed: alpha/alpha/__init__.py"], w.output


def test_the_import_scan_and_the_watch_plan_stay_on_the_roots_file_system(repo: Repo) -> None:
    at = load_autotest()
    alpha = repo.package("alpha")
    with mounted(alpha / "data"):
        (alpha / "data" / "generated.py").write_text("import beta\n")
        (alpha / "data" / "deep").mkdir()
        package = at.Package(alpha, "alpha")
        root = at.IgnoreRules(repo.path)
        assert "beta" not in at.ImportScan(root.device).package_imports(package, [])["code"]
        assert "beta" in at.ImportScan(None).package_imports(package, [])["code"]
        plan = at.plan_watches(str(repo.path), root.excludes_dir)
        planned = (*plan.recursive, *plan.flat)
        assert str(alpha) in plan.flat and not any(
            p.startswith(str(alpha / "data")) for p in planned
        )
        crossing = at.IgnoreRules(repo.path, cross_mounts=True)
        assert str(repo.path) in at.plan_watches(str(repo.path), crossing.excludes_dir).recursive


LOUD_TEST = """\
import os

def test_prints_a_lot():
    os.write(1, b"x" * 200_000)
"""


def test_a_temporary_directory_too_full_for_a_runs_output_is_said_and_is_no_failure(
    repo: Repo, tmp_path: Path
) -> None:
    repo.package("loud", tests=LOUD_TEST)
    repo.package("quiet")
    with mounted(tmp_path / "small-tmp", "size=64k") as tmp:
        (tmp / "filler").write_bytes(b"f" * 48 * 1024)  # some 16 KB left
        env = clean_env(TMPDIR=str(tmp), XDG_CACHE_HOME=str(tmp_path / "cache"))
        done = run_autotest(repo.path, "--once", "--keep-going", env=env)
    assert "FAILED" not in done.stdout, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("loud   could not run") for line in lines), done.stdout
    assert any(line.startswith("quiet  ok") for line in lines), done.stdout
    assert (
        f"  autotest could not write loud's output in {tmp} (No space left on device), so "
        "the run says nothing of the tests; free room there, or set TMPDIR to a directory with "
        "room"
    ) in lines
    assert done.returncode == 1  # not everything ran

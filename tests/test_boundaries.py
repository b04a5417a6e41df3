"""What autotest reaches and runs: never an interpreter the repository brings without naming it
first, never a virtualenv the config names but that is not there, never a file system's root
nor, unless asked, another file system mounted below the root."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from conftest import Repo, git, run_autotest


def fake_venv(venv: Path, marker: Path) -> Path:
    """A virtualenv whose interpreter notes each start in ``marker``, then is this Python."""
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = {Path(sys.executable).parent}\n")
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\necho started >> "{marker}"\nexec "{sys.executable}" "$@"\n')
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

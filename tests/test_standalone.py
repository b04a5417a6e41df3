"""The product is one file: copied alone into another repository, it finds that repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import AUTOTEST, FAILING_TEST, Repo, clean_env


def test_copied_alone_into_another_repo_finds_its_packages(repo: Repo) -> None:
    repo.package("services/api", name="acme-api")
    repo.package("services/worker", name="acme-worker", deps=["acme_api"], tests=FAILING_TEST)
    repo.write(
        "pyproject.toml", "[tool.ruff]\nline-length = 120\n"
    )  # workspace config, not a package
    copy = repo.path / "utilities" / "autotest.py"
    copy.parent.mkdir()
    shutil.copy(AUTOTEST, copy)

    done = subprocess.run(
        [sys.executable, str(copy), "--once", "--changed", "services/api/acme_api/__init__.py"],
        cwd=repo.path / "services",
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )

    lines = done.stdout.splitlines()
    assert done.returncode == 1, done.stdout + done.stderr
    assert lines[0] == f"autotest: 2 packages in {repo.path}"
    assert lines[1] == "changed: services/api/acme_api/__init__.py"
    assert lines[2].split()[:2] == ["services/api", "ok"]
    assert lines[3].split()[:2] == ["services/worker", "FAILED"]
    assert "the output of the failing run" in done.stdout


relaunches = pytest.mark.skipif(
    os.name != "posix" or sys.version_info < (3, 10),
    reason="replaced by exec only on POSIX, and only where sys.orig_argv tells its options",
)


def copied(repo: Repo) -> Path:
    copy = repo.path / "utilities" / "autotest.py"
    copy.parent.mkdir()
    shutil.copy(AUTOTEST, copy)
    return copy


def kept_bytecode(cache: Path, script: Path) -> Path:
    """Where the bytecode of ``script`` is kept: the state directory's bytecode cache mirrors
    absolute paths, as PYTHONPYCACHEPREFIX does."""
    name = f"{script.stem}.{sys.implementation.cache_tag}.pyc"
    return cache / "autotest" / "pycache" / str(script.parent).lstrip(os.sep) / name


def version(script: Path, env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *options, str(script), "--version"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


@relaunches
def test_the_script_runs_from_bytecode_it_keeps_in_the_private_state_directory(
    repo: Repo, tmp_path: Path
) -> None:
    script = copied(repo)
    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"))
    first = version(script, env)
    assert first.returncode == 0 and first.stdout.startswith("autotest "), first.stderr
    kept = kept_bytecode(tmp_path / "cache", script)
    assert kept.is_file(), "compiled once, kept outside the tree"
    assert not (script.parent / "__pycache__").exists(), "nothing written beside the file"
    written = kept.stat()
    assert version(script, env).returncode == 0
    again = kept.stat()
    assert (again.st_ino, again.st_mtime_ns) == (written.st_ino, written.st_mtime_ns), "read"
    script.write_text(script.read_text().replace('VERSION = "', 'VERSION = "edited-', 1))
    edited = version(script, env)
    assert edited.stdout.startswith("autotest edited-"), "the file changed: compiled again"


@relaunches
def test_the_interpreters_options_hold_in_the_run_from_bytecode(repo: Repo, tmp_path: Path) -> None:
    script = copied(repo)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\nsys.stderr.write('SITE-FROM-PYTHONPATH\\n')\n"
    )
    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=str(site))
    done = version(script, env, "-E")  # -E: PYTHONPATH is not read
    assert done.returncode == 0, done.stderr
    assert kept_bytecode(tmp_path / "cache", script).is_file()
    assert "SITE-FROM-PYTHONPATH" not in done.stderr


def test_without_bytecode_written_nothing_is_kept_and_the_script_runs_in_place(
    repo: Repo, tmp_path: Path
) -> None:
    script = copied(repo)
    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONDONTWRITEBYTECODE="1")
    done = version(script, env)
    assert done.returncode == 0 and done.stdout.startswith("autotest "), done.stderr
    assert not kept_bytecode(tmp_path / "cache", script).exists()

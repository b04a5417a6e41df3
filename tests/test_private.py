"""What autotest keeps outside the repository is this user's alone: bytecode, failing runs'
output, the import scan and the run times live in a private directory (0700, owned by the user,
never a link), files in it are 0600, and nothing another local user planted is used or
followed.  The other user is real: the tests run as root and hand directories to nobody."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import py_compile
import stat
import sys
from pathlib import Path

import pytest

from conftest import FAILING_TEST, Repo, clean_env, run_autotest

NOBODY = 65534

needs_root = pytest.mark.skipif(
    not hasattr(os, "getuid") or os.getuid() != 0, reason="making another user's files needs root"
)


def machine(tmp_path: Path) -> dict[str, str]:
    """A temporary directory and a cache of the test's own, bytecode written as usual."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return clean_env(TMPDIR=str(tmp_path / "tmp"), XDG_CACHE_HOME=str(tmp_path / "cache"))


def give_to_nobody(top: Path) -> None:
    """Hand ``top`` and everything below it to another user, as if they had made it."""
    for directory, _, files in os.walk(top):
        os.chown(directory, NOBODY, NOBODY)
        for name in files:
            os.chown(os.path.join(directory, name), NOBODY, NOBODY)


def plant_bytecode(prefix: Path, marker: Path) -> None:
    """Bytecode for the standard library's colorsys under the cache ``prefix``, as Python looks
    it up there (the prefix mirrors the source's absolute path); unchecked, so Python runs it
    whatever the source says.  It leaves ``marker`` behind when it runs."""
    spec = importlib.util.find_spec("colorsys")
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin)
    folder = prefix / os.path.splitdrive(str(source.parent))[1].lstrip(os.sep)
    folder.mkdir(parents=True)
    evil = prefix.parent / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('planted code ran')\n")
    py_compile.compile(
        str(evil),
        cfile=str(folder / f"colorsys.{sys.implementation.cache_tag}.pyc"),
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        doraise=True,
    )
    evil.unlink()


USES_COLORSYS = "import colorsys\n\ndef test_ok():\n    assert colorsys.rgb_to_hsv(0, 0, 0)\n"


@needs_root
def test_bytecode_another_user_planted_in_the_temporary_directory_never_runs(
    repo: Repo, tmp_path: Path
) -> None:
    repo.package("alpha", tests=USES_COLORSYS.replace("assert colorsys", "colorsys"))
    env = machine(tmp_path)
    shared = Path(env["TMPDIR"]) / f"autotest-pycache-{os.getuid()}"
    marker = tmp_path / "planted-code-ran"
    plant_bytecode(shared, marker)
    give_to_nobody(shared)
    done = run_autotest(repo.path, "--once", env=env)
    assert not marker.exists(), "bytecode planted by another user ran inside the tests"
    assert done.returncode == 0, done.stdout + done.stderr


@needs_root
@pytest.mark.parametrize("planted", ["another user's directory", "a symbolic link"])
def test_a_state_directory_another_user_made_or_linked_is_never_used(
    repo: Repo, tmp_path: Path, planted: str
) -> None:
    repo.package("alpha", tests=FAILING_TEST + USES_COLORSYS.replace("def test_ok", "def test_c"))
    env = machine(tmp_path)
    usual = tmp_path / "cache" / "autotest"
    marker = tmp_path / "planted-code-ran"
    if planted == "a symbolic link":
        elsewhere = tmp_path / "elsewhere"
        plant_bytecode(elsewhere / "pycache", marker)
        usual.parent.mkdir()
        usual.symlink_to(elsewhere)
        before = sorted(p.relative_to(elsewhere) for p in elsewhere.rglob("*"))
    else:
        plant_bytecode(usual / "pycache", marker)
        give_to_nobody(usual)
    done = run_autotest(repo.path, "--once", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "alpha  FAILED" in done.stdout
    assert not marker.exists(), "planted bytecode ran inside the tests"
    first = done.stdout.splitlines()[0]
    why = "is a symbolic link" if planted == "a symbolic link" else "belongs to another user"
    assert first.startswith(f"autotest: cannot keep bytecode, logs and caches in {usual} (")
    assert why in first and "for this session" in first
    fallback = Path(first.split("keeping them in ")[1].split(" for this session")[0])
    assert fallback.parent == Path(env["TMPDIR"])
    assert stat.S_IMODE(fallback.lstat().st_mode) == 0o700
    assert list(fallback.glob("output/*/alpha.log")), "the failing run's log is kept"
    if planted == "a symbolic link":
        assert sorted(p.relative_to(elsewhere) for p in elsewhere.rglob("*")) == before
    else:
        assert usual.stat().st_uid == NOBODY
        assert not list(usual.glob("output/*"))


def test_a_failing_runs_log_never_overwrites_what_a_planted_link_points_to(
    repo: Repo, tmp_path: Path
) -> None:
    repo.package("alpha", tests=FAILING_TEST)
    env = machine(tmp_path)
    victim = tmp_path / "home" / ".profile"
    victim.parent.mkdir()
    victim.write_text("export PATH=/usr/bin\n")
    root = repo.path.resolve()
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:8]
    suffix = f"-{os.getuid()}" if hasattr(os, "getuid") else ""
    old_place = Path(env["TMPDIR"]) / f"autotest-output{suffix}" / f"{root.name}-{digest}"
    old_place.mkdir(parents=True)
    (old_place / "alpha.log").symlink_to(victim)
    private = tmp_path / "cache" / "autotest" / "output" / f"{root.name}-{digest}"
    private.mkdir(parents=True)
    (private / "alpha.log").symlink_to(victim)  # even in the private directory
    done = run_autotest(repo.path, "--once", env=env)
    assert done.returncode == 1 and "alpha  FAILED" in done.stdout, done.stdout + done.stderr
    assert victim.read_text() == "export PATH=/usr/bin\n"
    log = private / "alpha.log"
    assert not log.is_symlink() and "the output of the failing run" in log.read_text()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_bytecode_and_logs_are_kept_in_the_users_private_cache(repo: Repo, tmp_path: Path) -> None:
    repo.package("alpha", tests=FAILING_TEST + USES_COLORSYS)
    env = machine(tmp_path)
    done = run_autotest(repo.path, "--once", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    state = tmp_path / "cache" / "autotest"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert list((state / "pycache").rglob("colorsys.*.pyc")), "bytecode in the private cache"
    [log] = state.glob("output/*/alpha.log")
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    for folder in (log.parent, log.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert not list(Path(env["TMPDIR"]).iterdir()), "nothing left in the shared temporary dir"

"""The private state directory: where autotest keeps what it remembers outside the repository
(bytecode, the failing runs' output, the import scan, run times), made and checked to be this
user's alone.  It comes first among the modules: a script run of the file needs it before any
other (see bytecode).
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

POSIX = os.name == "posix"  # every POSIX/Windows branch (see platform) starts from this


@dataclass(frozen=True)
class StateDir:
    """Where autotest keeps what it remembers outside the repository (bytecode, failing runs'
    output, the import scan, run times): ``path``, private to this user, or None when no
    private place could be made.  ``refused`` says why the usual place, ``usual``, was not
    used ("" when it was)."""

    path: Path | None
    usual: Path
    refused: str = ""


def usual_state_dir() -> Path:
    """$XDG_CACHE_HOME/autotest, else ~/.cache/autotest (a relative XDG_CACHE_HOME is ignored,
    as the XDG spec says)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "autotest"


def foreign_owner(st: os.stat_result) -> bool:
    """Whether another user owns the file (never on Windows, which has no uid)."""
    return hasattr(os, "getuid") and st.st_uid != os.getuid()


def open_to_others(directory: Path) -> str:
    """Why other local users could swap what lies in ``directory`` (empty when they cannot):
    it belongs to someone other than this user or root, or it is writable by others without
    the sticky bit (/tmp has it: there, no one renames another's entries)."""
    st = os.stat(directory)
    if foreign_owner(st) and st.st_uid != 0:
        return f"{directory} belongs to another user (uid {st.st_uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        return f"{directory} is writable by other users"
    return ""


def private_dir_problem(path: Path) -> str:
    """Make ``path`` this user's private directory: created 0700 where missing, then checked,
    without following a link, to be a directory of this user's, and closed to others (mode
    0700, set through its descriptor).  Empty when it is; else why it cannot be used."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        problem = open_to_others(path.parent) if POSIX else ""
        if problem:
            return problem
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        seen = os.lstat(path)
        if stat.S_ISLNK(seen.st_mode):
            return f"{path} is a symbolic link"
        if not stat.S_ISDIR(seen.st_mode):
            return f"{path} is not a directory"
        if foreign_owner(seen):
            return f"{path} belongs to another user (uid {seen.st_uid})"
        if not POSIX:
            return ""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            held = os.fstat(fd)
            if (held.st_dev, held.st_ino) != (seen.st_dev, seen.st_ino):
                return f"{path} was replaced while it was checked"
            if stat.S_IMODE(held.st_mode) != 0o700:
                os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    return ""


def private_state_dir(usual: Path) -> StateDir:
    """``usual`` when it can be made this user's private directory; else a fresh private
    temporary directory (mkdtemp makes it 0700, under a name no one can guess)."""
    refused = private_dir_problem(usual)
    if not refused:
        return StateDir(usual, usual)
    try:
        return StateDir(Path(tempfile.mkdtemp(prefix="autotest-")), usual, refused)
    except OSError as exc:
        return StateDir(None, usual, f"{refused}; and {exc.strerror or exc}")


@functools.lru_cache(maxsize=1)
def state_dir() -> StateDir:
    """The one place per-user state lives, made once per process (a fallback directory made
    twice would split what one session remembers)."""
    return private_state_dir(usual_state_dir())


def state_path(*parts: str) -> Path | None:
    """A path inside the private state directory; None when there is none."""
    base = state_dir().path
    return None if base is None else base.joinpath(*parts)


def private_subdir(path: Path) -> bool:
    """Create ``path`` (inside the private state directory) 0700; whether it is a directory."""
    missing = [path, *(p for p in path.parents if not os.path.lexists(p))]
    for folder in reversed(missing):  # each 0700: makedirs gives the mode to the last alone
        with contextlib.suppress(OSError):
            folder.mkdir(mode=0o700)
    return path.is_dir() and not path.is_symlink()

#!/usr/bin/env python3
# /// script
# requires-python = ">=3.9"
# dependencies = ["watchdog>=6", "pynose>=1.5.5"]
# ///
"""autotest: continuous tests for a repository that keeps several Python packages side by side.

A change in one package can silently break another.  autotest watches the whole tree and, on
every change, tests the package that changed first (it is the most likely to be broken), then
the packages that failed last time, then those that depend on it, then all the others.  It stops
at the first failing package and shows the output of that run alone; when everything passes it
prints one short line per package.

Copy this one file into ``utilities/`` of such a repository and run::

    python utilities/autotest.py              # watch; Ctrl+C or q to stop
    python utilities/autotest.py --once       # one cycle; exit 0 all passed, 1 a package failed

A package is any directory below the root holding pyproject.toml, setup.py or setup.cfg.  Each
package runs in its own subprocess, with the package directory as working directory and the
interpreter that runs this script.  ``--help`` lists the options; each can also be set in
``[tool.autotest]`` of the root pyproject.toml or ``[autotest]`` of its setup.cfg.
"""

from __future__ import annotations

import argparse
import ast
import configparser
import contextlib
import enum
import errno
import fnmatch
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, NoReturn, Protocol

try:
    from watchdog import events as _events
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer
    from watchdog.observers.polling import PollingObserver

    # The events that can be a change.  Leaving out opened and closed-without-writing takes
    # them off inotify's mask: every directory that watchdog (or a rescan) lists while adding
    # watches would send both, and on a large tree they overflow the kernel's event queue.
    WATCHED_EVENTS = [
        getattr(_events, name)
        for name in (
            "FileCreatedEvent", "DirCreatedEvent", "FileModifiedEvent", "FileAttribEvent",
            "FileDeletedEvent", "DirDeletedEvent", "FileMovedEvent", "DirMovedEvent",
            "FileClosedEvent",
        )
        if hasattr(_events, name)  # FileAttribEvent: watchdog 7
    ]  # fmt: skip
    WATCHDOG_ERROR = ""
except ImportError as _exc:  # --help and --once work without it; watching says what to install
    FileSystemEventHandler = object  # type: ignore[misc,assignment]
    WATCHED_EVENTS = []
    WATCHDOG_ERROR = str(_exc)

# ---------------------------------------------------------------------------------------------
# Reading map
# ---------------------------------------------------------------------------------------------
#
# Sections, leaves first; each uses only those above it:
#
#   Basics          errors, the verdicts, every timing constant, the one git helper
#   Platform        every POSIX/Windows branch: process groups, killing a tree, keys,
#                   notifications, the inotify limit and the watches granted, birth times
#   Ignore rules    the one authority on what is a tool's directory or file, never a change
#   Packages        discovery, metadata and the graph of which package uses which
#   Hand-off        ChangeSet, the one object two threads share
#   Watching        watchdog's thread: the event handler, the watch plan, the Watcher (which
#                   re-plans without a moment unwatched and polls where the kernel refuses)
#   Loop guard      tells the test runs' own writes from a person's edits, by each file's
#                   change time against its own package's runs
#   Intake          the main thread's side: one debounce, the git filter, keys -> a Request
#   Order           the pure decision of which package runs when, and why
#   Runners         nose, nose2, pytest, unittest or a command: what each needs and how it ends
#   One run         one package's test process and its RunResult
#   Warm runner     the forking server (real code, sent to a fresh interpreter), its client,
#                   and the policy that decides when forked runs are used
#   Cycle           packages in order, up to --jobs at once, until the first failure
#   Report          every sentence a user reads is built here
#   Options         one table of settings: the command line, the config files, the defaults
#   Session         thin wiring of the above, and main()
#
# Threads.  watchdog's observer thread runs ChangeHandler, which filters cheaply and calls
# ChangeSet.add/remove; the key reader thread calls ChangeSet.press.  Everything else, tests
# included, runs in the main thread.  ChangeSet is the only object both sides touch, under its
# own lock; nothing else is shared.  (When the kernel refuses watches after start, the Watcher
# turns to polling from a short-lived thread of its own: watchdog's cannot stop its observer.)
#
# One change, from the disk to a verdict line: inotify -> watchdog -> ChangeHandler.on_any_event
# (IgnoreRules.is_ignored) -> ChangeSet.add -> Intake.next_request (waits for the burst to
# settle, asks git once, consults the LoopGuard) -> Session.respond -> cycle_order ->
# run_cycle -> Run (cold, or forked by the WarmLauncher) -> Reporter.verdict.

# ---------------------------------------------------------------------------------------------
# Basics: errors, verdicts, timings, git
# ---------------------------------------------------------------------------------------------


class UsageError(Exception):
    """Bad input: reported as one line and exit status 2."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl+C does."""


class Verdict(enum.Enum):
    """What one package's run amounts to; the value is the word the report prints."""

    OK = "ok"
    FAILED = "FAILED"
    NO_TESTS = "no tests"


DEFAULT_DEBOUNCE = 0.05  # quiet time that closes a burst: an editor's save is one burst
ECHO_GRACE = 0.5  # a run's own writes may still be reported this long after it ends
POLL_INTERVAL = 0.01  # how often running packages are checked; well below what a person notices
WAKE_INTERVAL = 1.0  # the longest lock wait, so that Ctrl+C is never held up by one
OBSERVER_TIMEOUT = 1.0  # watchdog's event batching; the polling observer's scan interval
WARM_START_TIMEOUT = 10.0  # the first forked run waits this long for the warm interpreter
WARM_REPLY_TIMEOUT = 10.0  # how long a fork request may take to answer with its pid
SERVER_EXIT_WAIT = 2.0  # how long a killed warm interpreter is given to be reaped
GIT_TIMEOUT = 30.0  # a git call that hangs longer counts as no answer
JUDGE_AFTER = 3  # packages run both warm and cold before forking is judged
CREATED_SETTLE = 0.3  # a file new in a burst settles once this old (or gone): a temporary file
STAMP_SLACK = 0.02  # file timestamps lag the clock by up to a jiffy; compare with this margin
RESCAN_FALLBACK = 1.0  # how far back a rescan looks where a directory's birth time is unknown
LOOP_STREAK = 4  # cycles in a row set off by sources changed during runs before those are named
GRANT_RETRIES = 3  # counts of the watches held before the kernel is taken to refuse them
GRANT_RECHECK = 0.1  # the pause between those counts: watchdog adds watches in its own thread


def run_git(root: str, *args: str, stdin: bytes = b"") -> bytes | None:
    """What git printed, run in ``root``; None when git is missing, fails or hangs."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, input=stdin, capture_output=True, timeout=GIT_TIMEOUT
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode in (0, 1) else None


def is_git_work_tree(root: Path) -> bool:
    return (run_git(str(root), "rev-parse", "--is-inside-work-tree") or b"").strip() == b"true"


# ---------------------------------------------------------------------------------------------
# Platform: process groups, killing a tree, keys, notifications, the inotify limit and the
# watches granted (/proc), birth times (statx)
# ---------------------------------------------------------------------------------------------

POSIX = os.name == "posix"


def can_fork_server() -> bool:
    """Forked runs need fork and descriptor passing over a socket: POSIX, Python 3.9+."""
    return POSIX and hasattr(os, "fork") and hasattr(socket, "send_fds")


def own_process_group() -> dict[str, Any]:
    """Popen arguments that give the run its own process group, so its whole tree can be killed
    and a Ctrl+C in the terminal reaches autotest alone."""
    if POSIX:
        return {"start_new_session": True}
    return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}


def kill_tree(pid: int) -> None:
    """Kill a run's process and everything it started."""
    if POSIX:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        return
    try:
        done = subprocess.run(
            ["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True, timeout=5
        )
        if done.returncode == 0:
            return
    except (OSError, subprocess.SubprocessError):
        pass
    with contextlib.suppress(OSError):  # no taskkill: the process itself, at least
        os.kill(pid, signal.SIGTERM)


def user_suffix() -> str:
    """Per-user names for shared temporary directories (Windows has no uid)."""
    return f"-{os.getuid()}" if hasattr(os, "getuid") else ""


def inotify_watch_limit() -> int | None:
    """The per-user inotify watch limit, where this is Linux (AUTOTEST_INOTIFY_LIMIT stands in
    for it in tests, which cannot lower the real one)."""
    if not sys.platform.startswith("linux"):
        return None
    override = os.environ.get("AUTOTEST_INOTIFY_LIMIT")
    if override and override.isdigit():
        return int(override)
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def inotify_watched_inodes() -> dict[int, list[int]] | None:
    """The inodes each inotify instance of this process watches, by descriptor, from
    /proc/self/fdinfo: the watches the kernel really granted (watchdog 7 does not say when it
    refuses some).  None where there is no such /proc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return None
    held: dict[int, list[int]] = {}
    for name in names:
        try:
            if os.readlink(f"/proc/self/fd/{name}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{name}") as f:
                found = re.findall(r"^inotify wd:\S+ ino:([0-9a-f]+)", f.read(), re.MULTILINE)
            held[int(name)] = [int(inode, 16) for inode in found]
        except (OSError, ValueError):
            continue
    return held


def file_clock() -> float:
    """Now, by the clock that stamps files.  Linux takes file times from a coarse clock, up to
    a tick (4 ms) behind time.time(), so a file written after this reading never looks older
    than it; elsewhere file times are as fine as time.time()."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            return time.clock_gettime(5)  # CLOCK_REALTIME_COARSE
    return time.time()


def birth_time(path: str) -> float | None:
    """When ``path`` was created, where the OS and filesystem record it (st_birthtime, or
    statx on Linux); None elsewhere."""
    try:
        born = getattr(os.stat(path, follow_symlinks=False), "st_birthtime", None)
    except OSError:
        return None
    if born or not sys.platform.startswith("linux"):
        return born
    try:
        import ctypes

        statx = ctypes.CDLL(None, use_errno=True).statx
    except (OSError, AttributeError):  # no glibc statx (musl, old glibc)
        return None
    buffer = ctypes.create_string_buffer(256)  # struct statx; stx_btime lies at offset 80
    at_fdcwd, at_symlink_nofollow, statx_btime = -100, 0x100, 0x800
    if statx(at_fdcwd, os.fsencode(path), at_symlink_nofollow, statx_btime, buffer) != 0:
        return None
    mask = int.from_bytes(buffer.raw[0:4], sys.byteorder)
    if not mask & statx_btime:
        return None
    seconds = int.from_bytes(buffer.raw[80:88], sys.byteorder, signed=True)
    return seconds + int.from_bytes(buffer.raw[88:92], sys.byteorder) / 1e9 if seconds else None


def notification_command(title: str, message: str) -> list[str] | None:
    """The system's way to show a desktop notification, if it has one."""
    if shutil.which("notify-send"):
        return ["notify-send", title, message]
    if sys.platform == "darwin" and shutil.which("osascript"):
        script = f"display notification {json.dumps(message)} with title {json.dumps(title)}"
        return ["osascript", "-e", script]
    return None


def notify(title: str, message: str) -> None:
    """A desktop notification where the system has a way to send one; silently nothing else."""
    command = notification_command(title, message)
    if command is not None:
        with contextlib.suppress(OSError):
            subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )


def raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


class KeyReader:
    """Single key presses from the terminal, handed on as they come (to ChangeSet.press).

    The terminal goes into cbreak mode (keys arrive at once, Ctrl+C still interrupts) and is
    always put back as it was, however autotest ends.  Without termios (Windows) msvcrt reads
    the keys; with neither there are no keys.
    """

    def __init__(self, press: Callable[[str], None]) -> None:
        self.press = press
        self.saved: Any = None
        self.fd = -1

    def __enter__(self) -> KeyReader:
        if POSIX:
            try:
                import termios
                import tty

                self.fd = sys.stdin.fileno()
                self.saved = termios.tcgetattr(self.fd)
                tty.setcbreak(self.fd)
            except (ImportError, OSError, ValueError):
                self.saved = None
                return self
        elif not self._has_msvcrt():
            return self
        threading.Thread(target=self._read, name="autotest-keys", daemon=True).start()
        return self

    @staticmethod
    def _has_msvcrt() -> bool:
        try:
            import msvcrt  # noqa: F401
        except ImportError:
            return False
        return True

    def _read(self) -> None:
        while True:
            if POSIX:
                try:
                    data = os.read(self.fd, 1)
                except OSError:
                    return
                if not data:
                    return
                key = data.decode("latin-1")
            else:
                import msvcrt

                key = msvcrt.getwch()  # type: ignore[attr-defined,unused-ignore]
            self.press(key)

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import termios

            with contextlib.suppress(OSError):
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


# ---------------------------------------------------------------------------------------------
# Ignore rules: the one authority on what never counts
# ---------------------------------------------------------------------------------------------

# Directories whose contents are written by tools, test runs and editors, never by the user.
# Discovery never looks for packages in them, the watch plan spends no watches below them, and
# no event from inside them is a change.
TOOL_DIR_NAMES = frozenset(
    {
        ".git", ".hg", ".svn", "__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache",
        ".ruff_cache", ".tox", ".nox", ".venv", "venv", "node_modules", "build", "dist", ".eggs",
        "site-packages", ".idea", ".vscode", ".cache", "htmlcov", ".ipynb_checkpoints",
        ".benchmarks", ".pytype", ".pyre", ".pdm-build", "__pypackages__", ".direnv",
    }
)  # fmt: skip
TOOL_DIR_GLOBS = ("*.egg-info", "pytest-cache-files-*")  # pytest renames the latter into place
# Tool directories that never grow subdirectories: cheaper to watch than to split a watch around.
LEAF_TOOL_DIR_GLOBS = ("__pycache__", "*.egg-info")

# Files written beside the real ones: by test runs and coverage, and by editors while saving.
IGNORED_FILE_GLOBS = (
    "*.py[cod]", ".coverage", ".coverage.*", "coverage.xml", "nosetests.xml", ".noseids",
    ".*.sw[a-p]", "*.swp", "*.swx", "*~",            # vim swap and backup, emacs backup
    "#*#", ".#*",                                     # emacs autosave and lock
    "*___jb_tmp___", "*___jb_old___",                 # JetBrains safe write
    ".goutputstream-*", "*.kate-swp", ".~lock.*#",    # GTK atomic save, kate, LibreOffice
    "*.crswap", ".DS_Store", "*.tmp",
)  # fmt: skip


def is_virtualenv(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "pyvenv.cfg"))


def is_tool_dir(name: str, path: str) -> bool:
    """A directory tools write (by name, or a virtualenv by its pyvenv.cfg)."""
    return (
        name in TOOL_DIR_NAMES
        or any(fnmatch.fnmatchcase(name, g) for g in TOOL_DIR_GLOBS)
        or is_virtualenv(path)
    )


def holds_no_packages(name: str, path: str) -> bool:
    """Where discovery never looks: tool directories, and hidden ones."""
    return name.startswith(".") or is_tool_dir(name, path)


def is_leaf_tool_dir(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, g) for g in LEAF_TOOL_DIR_GLOBS)


def is_vim_probe(name: str) -> bool:
    """vim checks it may write a directory by creating 4913 (then 5036, 5159, ... if taken)."""
    return name.isdigit() and int(name) >= 4913 and (int(name) - 4913) % 123 == 0


def glob_matches(rel: str, glob: str, is_dir: bool = False) -> bool:
    """A glob with a slash matches the path from the root; one without matches any component.
    A directory matches a glob that would match everything in it (``docs`` and ``docs/*``)."""
    if "/" in glob.strip("/"):
        pattern = glob.strip("/")
        return (
            fnmatch.fnmatchcase(rel, pattern)
            or fnmatch.fnmatchcase(rel, pattern + "/*")
            or (is_dir and fnmatch.fnmatchcase(rel + "/", pattern))
        )
    return any(fnmatch.fnmatchcase(part, glob.rstrip("/")) for part in rel.split("/"))


class IgnoreRules:
    """Decides which paths never trigger a run: built-in rules, ``--ignore`` globs, .gitignore.

    The built-in and user rules are cheap and run in watchdog's thread on every event; asking
    git costs a subprocess, so the main loop asks it once per burst.
    """

    def __init__(self, root: Path, user_globs: Sequence[str] = ()) -> None:
        self.root = str(root)
        self.user_globs = tuple(user_globs)
        self.use_git = is_git_work_tree(root)
        self.git_dirs: frozenset[str] = frozenset()
        self._venv_dirs: set[str] = set()

    def relative(self, path: str) -> str | None:
        if path == self.root:
            return ""
        if not path.startswith(self.root + os.sep):
            return None
        return path[len(self.root) + 1 :].replace(os.sep, "/")

    def is_ignored_dir_name(self, name: str, path: str) -> bool:
        """A tool directory; a virtualenv is remembered, since only a yes is final (its
        pyvenv.cfg comes after the directory itself)."""
        if path in self._venv_dirs:
            return True
        if name in TOOL_DIR_NAMES or any(fnmatch.fnmatchcase(name, g) for g in TOOL_DIR_GLOBS):
            return True
        if is_virtualenv(path):
            self._venv_dirs.add(path)
            return True
        return False

    def excludes_dir(self, name: str, path: str) -> bool:
        """Whether the watch plan leaves this directory out: a tool directory, one the user's
        globs name, or one .gitignore excludes whole (as of the last ``refresh_git_dirs``)."""
        rel = self.relative(path) or ""
        return (
            self.is_ignored_dir_name(name, path)
            or path in self.git_dirs
            or any(glob_matches(rel, g, is_dir=True) for g in self.user_globs)
        )

    def is_ignored(self, path: str, is_dir: bool = False) -> bool:
        """Built-in and ``--ignore`` rules: cheap enough for every event."""
        rel = self.relative(path)
        if rel is None:
            return True
        if rel == "":
            return False
        parts = rel.split("/")
        directory = self.root
        for part in parts[:-1] if not is_dir else parts:
            directory = os.path.join(directory, part)
            if self.is_ignored_dir_name(part, directory):
                return True
        name = parts[-1]
        if not is_dir and (
            is_vim_probe(name) or any(fnmatch.fnmatchcase(name, g) for g in IGNORED_FILE_GLOBS)
        ):
            return True
        return any(glob_matches(rel, g, is_dir) for g in self.user_globs)

    def unapplied_gitignore(self, directories: Iterable[str]) -> str | None:
        """A .gitignore in one of ``directories`` that nothing applies: outside a git work tree
        there is no git to ask (and no second implementation of its rules here)."""
        if self.use_git:
            return None
        for directory in directories:
            path = os.path.join(directory, ".gitignore")
            if os.path.isfile(path):
                return path
        return None

    def git_ignored(self, paths: Iterable[str]) -> set[str]:
        """Which of ``paths`` the repository's .gitignore files exclude: one call to git."""
        paths = list(paths)
        if not self.use_git or not paths:
            return set()
        listed = run_git(
            self.root, "check-ignore", "-z", "--stdin", stdin=b"\0".join(map(os.fsencode, paths))
        )  # exit 1 means none is ignored, and lists nothing
        return {os.fsdecode(p) for p in (listed or b"").split(b"\0") if p}

    def refresh_git_dirs(self) -> None:
        """Ask git which directories .gitignore excludes as a whole, so no watch is spent
        below them."""
        if not self.use_git:
            return
        args = ("ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory")
        listed = run_git(self.root, *args) or b""
        names = (os.fsdecode(p) for p in listed.split(b"\0") if p.endswith(b"/"))
        self.git_dirs = frozenset(os.path.normpath(os.path.join(self.root, n)) for n in names)


# ---------------------------------------------------------------------------------------------
# Packages: discovery, metadata, graph
# ---------------------------------------------------------------------------------------------

PACKAGE_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg")


@dataclass(frozen=True)
class Package:
    """A directory of the repository that holds its own project metadata and tests."""

    path: Path
    rel: str

    @property
    def depth(self) -> int:
        return self.rel.count("/")


def discover_packages(root: Path) -> tuple[list[Package], list[str]]:
    """Every package below ``root`` (never the root itself), and the directories unreadable."""
    packages: list[Package] = []
    unreadable: list[str] = []
    stack = [str(root)]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as scan:
                entries = list(scan)
        except OSError:
            unreadable.append(directory)
            continue
        if directory != str(root) and any(e.name in PACKAGE_MARKERS for e in entries):
            path = Path(directory)
            packages.append(Package(path, path.relative_to(root).as_posix()))
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and not holds_no_packages(
                entry.name, entry.path
            ):
                stack.append(entry.path)
    return sorted(packages, key=lambda p: p.rel), sorted(unreadable)


def owner_of(path: str, packages: Sequence[Package]) -> Package | None:
    """The innermost package holding ``path``, or None when it lies outside every package."""
    best: Package | None = None
    for package in packages:
        prefix = str(package.path)
        inside = path == prefix or path.startswith(prefix + os.sep)
        if inside and (best is None or package.depth > best.depth):
            best = package
    return best


def normalize_name(name: str) -> str:
    """PEP 503: ``Foo_Bar`` and ``foo-bar`` name the same distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str | None:
    match = re.match(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)", requirement)
    return normalize_name(match.group(1)) if match else None


def load_toml(path: Path) -> dict[str, Any] | None:
    """The parsed file, or None when this Python has no TOML parser (3.9/3.10 without tomli)."""
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:
            return None
    with open(path, "rb") as f:
        data: dict[str, Any] = tomllib.load(f)
    return data


def pyproject_requirements_without_toml(text: str) -> tuple[str | None, list[str]]:
    """Name and requirements of ``[project]`` read with regular expressions, where this Python
    has no TOML parser: enough for string lists, which is all that metadata holds."""

    def section(name: str) -> str:
        found = re.search(rf"^\[{re.escape(name)}\][ \t]*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
        return found.group(1) if found else ""

    string_list = r"""\[((?:"[^"]*"|'[^']*'|[^\]"'])*)\]"""
    project = section("project")
    name = re.search(r"""^name\s*=\s*["']([^"']+)["']""", project, re.M)
    lists = re.findall(r"^dependencies\s*=\s*" + string_list, project, re.M)
    lists += re.findall(
        r"^[\w.-]+\s*=\s*" + string_list, section("project.optional-dependencies"), re.M
    )
    listed = [r for group in lists for r in re.findall(r"""["']([^"']+)["']""", group)]
    return (name.group(1) if name else None), listed


def pyproject_requirements(path: Path) -> tuple[str | None, list[str]]:
    try:
        data = load_toml(path)
        if data is None:
            return pyproject_requirements_without_toml(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None, []
    project = data.get("project", {})
    listed = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        listed.extend(extra)
    return project.get("name"), [r for r in listed if isinstance(r, str)]


def setup_cfg_requirements(path: Path) -> tuple[str | None, list[str]]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return None, []
    listed = parser.get("options", "install_requires", fallback="").splitlines()
    if parser.has_section("options.extras_require"):
        for _, value in parser.items("options.extras_require"):
            listed.extend(value.splitlines())
    return parser.get("metadata", "name", fallback=None), [r for r in listed if r.strip()]


def setup_py_requirements(path: Path) -> tuple[str | None, list[str]]:
    """``name=`` and ``install_requires=`` of the ``setup()`` call, when they are literals."""
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return None, []
    name: str | None = None
    listed: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            with contextlib.suppress(ValueError):
                value = ast.literal_eval(keyword.value)
                if keyword.arg == "name" and isinstance(value, str):
                    name = value
                elif keyword.arg == "install_requires" and isinstance(value, (list, tuple)):
                    listed.extend(v for v in value if isinstance(v, str))
                elif keyword.arg == "extras_require" and isinstance(value, dict):
                    for extra in value.values():
                        extra = [extra] if isinstance(extra, str) else extra
                        listed.extend(v for v in extra if isinstance(v, str))
    return name, listed


@dataclass(frozen=True)
class Metadata:
    """What a package says of itself: its distribution name and what it requires."""

    name: str
    requires: frozenset[str]


def read_metadata(package: Package) -> Metadata:
    name: str | None = None
    requires: set[str] = set()
    readers = (
        ("pyproject.toml", pyproject_requirements),
        ("setup.cfg", setup_cfg_requirements),
        ("setup.py", setup_py_requirements),
    )
    for filename, reader in readers:
        path = package.path / filename
        if path.is_file():
            found_name, listed = reader(path)
            name = name or found_name
            requires.update(n for n in map(requirement_name, listed) if n)
    return Metadata(normalize_name(name or package.path.name), frozenset(requires))


def provided_modules(package: Package) -> set[str]:
    """Importable names a package provides: its top-level modules, and ``ns.sub`` for namespaces."""
    base = package.path / "src" if (package.path / "src").is_dir() else package.path
    provided: set[str] = set()
    with contextlib.suppress(OSError), os.scandir(base) as scan:
        for entry in scan:
            if entry.is_file() and entry.name.endswith(".py"):
                stem = entry.name[:-3]
                if stem not in ("setup", "conftest") and not stem.startswith("test"):
                    provided.add(stem)
            elif entry.is_dir() and not holds_no_packages(entry.name, entry.path):
                if entry.name in ("tests", "test", "docs"):
                    continue
                if os.path.isfile(os.path.join(entry.path, "__init__.py")):
                    provided.add(entry.name)
                else:
                    with contextlib.suppress(OSError), os.scandir(entry.path) as sub_scan:
                        provided.update(
                            f"{entry.name}.{sub.name}"
                            for sub in sub_scan
                            if sub.is_dir()
                            and os.path.isfile(os.path.join(sub.path, "__init__.py"))
                        )
    return provided


def imported_modules(package: Package) -> set[str]:
    """Every dotted name the package's Python files import (``from a import b`` gives a and a.b)."""
    imported: set[str] = set()
    for directory, dirnames, filenames in os.walk(package.path):
        dirnames[:] = [d for d in dirnames if not holds_no_packages(d, os.path.join(directory, d))]
        for filename in filenames:
            if not filename.endswith(".py"):
                continue
            try:
                with open(os.path.join(directory, filename), "rb") as f:
                    tree = ast.parse(f.read())
            except (OSError, SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    imported.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    imported.add(node.module)
                    imported.update(f"{node.module}.{alias.name}" for alias in node.names)
    return imported


@dataclass(frozen=True)
class DependencyGraph:
    """For each package, the sibling packages it uses directly; ``scanned`` are the packages
    that declare nothing, whose imports were read instead (so their code changes can change it)."""

    uses: dict[Package, set[Package]]
    scanned: frozenset[Package]


def dependency_graph(packages: Sequence[Package]) -> DependencyGraph:
    """Declared requirements decide; a package that declares no requirement at all is scanned
    for imports of the other packages' modules instead."""
    metadata = {p: read_metadata(p) for p in packages}
    by_name = {m.name: p for p, m in metadata.items()}
    uses: dict[Package, set[Package]] = {}
    provided: dict[Package, set[str]] | None = None
    for package in packages:
        declared = metadata[package].requires
        if declared:
            uses[package] = {by_name[n] for n in declared if n in by_name} - {package}
            continue
        if provided is None:
            provided = {p: provided_modules(p) for p in packages}
        imported = imported_modules(package)
        uses[package] = {
            other
            for other in packages
            if other != package
            and any(i == m or i.startswith(m + ".") for m in provided[other] for i in imported)
        }
    return DependencyGraph(uses, frozenset(p for p in packages if not metadata[p].requires))


# ---------------------------------------------------------------------------------------------
# Hand-off: the one object shared between threads
# ---------------------------------------------------------------------------------------------


class ChangeSet:
    """The one hand-off between watchdog's thread (and the key reader) and the main loop.

    Holds each changed path with the time it last changed, the paths created since the main
    loop last took them, and the keys pressed, in order.  Every method takes the lock; the main
    loop waits on it rather than polling.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._paths: dict[str, float] = {}
        self._created: set[str] = set()
        self._fresh: dict[str, float] = {}  # created in place (not renamed there), and when
        self._keys: list[str] = []
        self._last = 0.0

    def add(self, paths: Iterable[str], created: bool = False, fresh: bool = False) -> None:
        """Paths changed now; ``created`` ones are new since the main loop last took the paths,
        and ``fresh`` ones were created where they are (a writer's temporary file may be one,
        until it is renamed into place)."""
        now = self._clock()
        with self._cond:
            for path in paths:
                if created and path not in self._paths:
                    self._created.add(path)
                if fresh:
                    self._fresh.setdefault(path, now)
                self._paths[path] = now
            self._last = now
            self._cond.notify_all()

    def remove(self, path: str) -> None:
        """A path gone again: when it was created since the main loop last took the paths (an
        editor's temporary file, renamed or deleted), it was never a change; otherwise its loss
        is one."""
        now = self._clock()
        with self._cond:
            if path in self._created:
                inside = [p for p in self._paths if p.startswith(path + os.sep)]
                for gone in [path, *inside]:
                    self._created.discard(gone)
                    self._fresh.pop(gone, None)
                    self._paths.pop(gone, None)
            else:
                self._paths[path] = now
            self._last = now
            self._cond.notify_all()

    def press(self, key: str) -> None:
        with self._cond:
            self._keys.append(key)
            self._cond.notify_all()

    def pending(self) -> bool:
        with self._cond:
            return bool(self._paths or self._keys)

    def peek(self) -> tuple[dict[str, float], list[str]]:
        with self._cond:
            return dict(self._paths), list(self._keys)

    def take_key(self) -> str | None:
        """The oldest key not yet taken."""
        with self._cond:
            return self._keys.pop(0) if self._keys else None

    def take_paths(self) -> dict[str, float]:
        with self._cond:
            paths, self._paths, self._created, self._fresh = self._paths, {}, set(), {}
            return paths

    def take(self) -> tuple[dict[str, float], list[str]]:
        with self._cond:
            keys, self._keys = self._keys, []
        return self.take_paths(), keys

    def wait_settled(self, debounce: float, timeout: float | None = None) -> None:
        """Block until a key is pressed, or paths changed and then stayed quiet for ``debounce``,
        or ``timeout`` passed."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                now = self._clock()
                if self._keys or (deadline is not None and now >= deadline):
                    return
                wait = WAKE_INTERVAL if deadline is None else min(WAKE_INTERVAL, deadline - now)
                if self._paths:
                    unsettled = self._unsettled_for(now, debounce)
                    if unsettled <= 0:
                        return
                    wait = min(wait, unsettled)
                self._cond.wait(wait)

    def settled(self, debounce: float) -> bool:
        """Whether the paths held form a settled burst (see ``_unsettled_for``)."""
        with self._cond:
            return bool(self._paths) and self._unsettled_for(self._clock(), debounce) <= 0

    def _unsettled_for(self, now: float, debounce: float) -> float:
        """How long until the burst settles: quiet for ``debounce``, and every file created in
        it either gone again or ``CREATED_SETTLE`` old, so that a temporary file written
        slowly and then renamed into place is one change, not two."""
        wait = debounce - (now - self._last)
        if self._fresh:
            wait = max(wait, CREATED_SETTLE - (now - max(self._fresh.values())))
        return wait


# ---------------------------------------------------------------------------------------------
# Watching: watchdog's thread
# ---------------------------------------------------------------------------------------------


class ChangeHandler(FileSystemEventHandler):
    """Turns watchdog events into changed paths.  It runs in watchdog's thread, so it only
    filters (cheaply) and hands off; tests never run here."""

    def __init__(
        self,
        rules: IgnoreRules,
        changes: ChangeSet,
        on_directory: Callable[[str, str], None] = lambda kind, path: None,
    ) -> None:
        super().__init__()
        self.rules = rules
        self.changes = changes
        self.on_directory = on_directory

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return
        if event.is_directory and kind not in ("created", "deleted", "moved"):
            return  # a directory's own modified/attrib events repeat its children's
        paths = [os.fsdecode(event.src_path)]
        if kind == "moved" and event.dest_path:
            paths.append(os.fsdecode(event.dest_path))
        if event.is_directory:
            if kind == "moved":
                self.on_directory("deleted", paths[0])
                self.on_directory("created", paths[1])
            else:
                self.on_directory(kind, paths[0])
        elif kind in ("created", "moved") and os.path.basename(paths[-1]) == "pyvenv.cfg":
            self.on_directory("created", os.path.dirname(paths[-1]))  # now a virtualenv
        relevant = [p for p in paths if not self.rules.is_ignored(p, event.is_directory)]
        if kind in ("deleted", "moved") and paths[0] in relevant:
            self.changes.remove(paths[0])
            relevant = relevant[1:]
        if relevant:
            self.changes.add(
                relevant, created=kind in ("created", "moved"), fresh=kind == "created"
            )


@dataclass(frozen=True)
class WatchPlan:
    """Directories to watch: recursively where no heavy ignored tree lies below, else one level."""

    recursive: tuple[str, ...]
    flat: tuple[str, ...]
    watches: int
    unreadable: tuple[str, ...]


@dataclass
class _PlanNode:
    """One directory while a watch plan is made."""

    path: str
    children: list[_PlanNode] = field(default_factory=list)
    clean: int = 1  # directories outside ignored trees, this one included
    leaves: int = 0  # ignored directories with no subdirectory (cheap to watch)
    heavy: bool = False  # an ignored directory with subdirectories lies below


def _subdirectories(path: str) -> list[os.DirEntry[str]] | None:
    try:
        with os.scandir(path) as scan:
            return [e for e in scan if e.is_dir(follow_symlinks=False)]
    except OSError:
        return None


def plan_watches(root: str, excluded: Callable[[str, str], bool]) -> WatchPlan:
    """Spend no watches in ignored trees: a recursive watch cannot exclude a subtree, so a
    directory above an ignored tree (a .venv, node_modules, .git, even while still empty) gets a
    one-level watch and each of its other subdirectories is planned the same way.  A flat
    __pycache__ or egg-info is cheaper to watch than to split around."""
    unreadable: list[str] = []

    def scan(path: str) -> _PlanNode | None:
        entries = _subdirectories(path)
        if entries is None:
            unreadable.append(path)
            return None
        node = _PlanNode(path)
        for entry in entries:
            if excluded(entry.name, entry.path):
                if is_leaf_tool_dir(entry.name) and not _subdirectories(entry.path):
                    node.leaves += 1
                else:
                    node.heavy = True
                continue
            child = scan(entry.path)
            if child is not None:
                node.children.append(child)
                node.clean += child.clean
                node.leaves += child.leaves
                node.heavy = node.heavy or child.heavy
        return node

    recursive: list[str] = []
    flat: list[str] = []

    def place(node: _PlanNode) -> int:
        if not node.heavy and node.leaves <= node.clean:
            recursive.append(node.path)
            return node.clean + node.leaves
        flat.append(node.path)
        return 1 + sum(place(child) for child in node.children)

    top = scan(root)
    watches = place(top) if top is not None else 0
    return WatchPlan(tuple(recursive), tuple(flat), watches, tuple(unreadable))


def changed_since(top: str, since: float, excluded: Callable[[str, str], bool]) -> list[str]:
    """Files below ``top`` (outside excluded directories) written, created or renamed at or
    after ``since``, and the directories born since: what a moment without watches may have
    missed."""
    found: list[str] = []
    stack = [top]
    while stack:
        try:
            with os.scandir(stack.pop()) as scan:
                entries = list(scan)
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if excluded(entry.name, entry.path):
                        continue
                    stack.append(entry.path)
                    if (birth_time(entry.path) or 0.0) >= since:
                        found.append(entry.path)
                elif entry.stat(follow_symlinks=False).st_ctime >= since:
                    found.append(entry.path)
            except OSError:
                continue
    return found


class WatchNotices(Protocol):
    """What the Watcher has to tell the user; the Reporter says it."""

    def unreadable(self, path: str) -> None: ...

    def too_many_watches(self, needed: int, limit: int) -> None: ...

    def watches_refused(self, reason: str) -> None: ...

    def cannot_watch(self, path: str, reason: str) -> None: ...

    def watches_not_granted(self, held: int, needed: int) -> None: ...

    def watch_not_granted(self, path: str) -> None: ...


class GrantedWatches:
    """The inotify watches the kernel really granted this process's own instances (watchdog 7
    adds what it can below the top of a watch and says nothing of the rest), against what the
    tree needs."""

    def __init__(self, root: str, rules: IgnoreRules) -> None:
        self.root = root
        self.rules = rules
        self.others = set(inotify_watched_inodes() or {})  # instances that are not ours

    @staticmethod
    def close_leftovers(before: set[int]) -> None:
        """Close the inotify instances opened since ``before`` that are still open: only ever
        called once every instance in use is closed (the observer stopped) or was open before
        (a running observer), so what is left is a failed attempt's."""
        for fd in set(inotify_watched_inodes() or {}) - before:
            with contextlib.suppress(OSError):
                os.close(fd)

    def watched_inodes(self) -> set[int] | None:
        held = inotify_watched_inodes()
        if held is None:
            return None
        return {inode for fd, inodes in held.items() if fd not in self.others for inode in inodes}

    def shortfall(self) -> tuple[int, int] | None:
        """The watches held and needed when the kernel granted fewer than the tree needs, or
        None (also where the OS cannot tell).  Directories come and go while watches are added,
        so a shortfall counts only when it lasts over a few counts."""
        shortfall = None
        for attempt in range(GRANT_RETRIES):
            if attempt:
                time.sleep(GRANT_RECHECK)
            held = self.watched_inodes()
            needed = plan_watches(self.root, self.rules.excludes_dir).watches
            if held is None or len(held) >= needed:
                return None
            shortfall = (len(held), needed)
        return shortfall

    def refused(self, path: str) -> bool:
        """Whether the kernel refused a watch for the new directory ``path`` or one below it
        (watchdog 6 gives up on the rest of a new tree at the first refusal).  A directory may
        be newer than its watch, still on its way, so a refusal counts only when it lasts over
        a few looks."""
        for attempt in range(GRANT_RETRIES):
            if attempt:
                time.sleep(GRANT_RECHECK)
            held = self.watched_inodes()
            if held is None:
                return False
            inodes = set()
            for directory in [path, *self.directories_below(path)]:
                with contextlib.suppress(OSError):
                    inodes.add(os.stat(directory).st_ino)
            if inodes <= held:
                return False
        return True

    def directories_below(self, top: str) -> list[str]:
        """The directories below ``top`` that a recursive watch holds: outside excluded ones,
        and readable."""
        found: list[str] = []
        stack = [top]
        while stack:
            for entry in _subdirectories(stack.pop()) or []:
                excluded = self.rules.excludes_dir(entry.name, entry.path)
                if not excluded and os.access(entry.path, os.R_OK):
                    found.append(entry.path)
                    stack.append(entry.path)
        return found


class Watcher:
    """Owns the watchdog observer: which directories get watches, keeping them in step with the
    tree without a moment unwatched, and the polling fallback when the kernel refuses some."""

    def __init__(
        self,
        rules: IgnoreRules,
        changes: ChangeSet,
        poll: bool,
        notices: WatchNotices,
    ) -> None:
        self.root = rules.root
        self.rules = rules
        self.changes = changes
        self.poll = poll
        self.notices = notices
        self.handler = ChangeHandler(rules, changes, self.directory_event)
        self.flat: set[str] = set()
        self.scheduled: dict[str, Any] = {}
        self.observer: Any = None
        self._lock = threading.Lock()
        self.grants = GrantedWatches(self.root, rules)
        # While a split watch's old and new watches overlap, watchdog 7 warns (a screenful,
        # from its own thread) that a directory's callback is set again: it is meant to be.
        warnings.filterwarnings("ignore", "Callback with id", RuntimeWarning)

    def start(self) -> str:
        """Start watching; says how (``inotify, 42 watches`` or ``polling every second``)."""
        self.rules.refresh_git_dirs()
        plan = plan_watches(self.root, self.rules.excludes_dir)
        for path in plan.unreadable:
            self.notices.unreadable(path)
        limit = inotify_watch_limit()
        if not self.poll and limit is not None and plan.watches > limit:
            self.notices.too_many_watches(plan.watches, limit)
            self.poll = True
        try:
            self._start_observer(plan)
        except OSError as exc:
            if self.poll or exc.errno not in (errno.ENOSPC, errno.EMFILE):
                raise
            self.stop()
            self.grants.close_leftovers(self.grants.others)
            self.notices.watches_refused(exc.strerror or str(exc))
            self.poll = True
            self._start_observer(plan)
        shortfall = None if self.poll else self.grants.shortfall()
        if shortfall is not None:
            self.notices.watches_not_granted(*shortfall)
            self._fall_back_to_polling()
        if self.poll:
            return "polling every second"
        kind = type(self.observer).__name__.replace("Observer", "").lower() or "native"
        return f"{kind}, {plan.watches} watches"

    def _start_observer(self, plan: WatchPlan) -> None:
        self.observer = (
            PollingObserver(timeout=OBSERVER_TIMEOUT)
            if self.poll
            else Observer(timeout=OBSERVER_TIMEOUT)
        )
        self.scheduled = {}
        self.flat = set()
        self._schedule_plan(plan)
        self.observer.daemon = True
        self.observer.start()

    def _schedule(self, path: str, recursive: bool) -> None:
        """Watch ``path``; when the OS refuses, close any inotify instance the failed attempt
        left open (watchdog 6 leaks one, holding the watches it had got)."""
        before = set(inotify_watched_inodes() or {})
        try:
            self.scheduled[path] = self.observer.schedule(
                self.handler, path, recursive=recursive, event_filter=WATCHED_EVENTS
            )
        except OSError:
            self.grants.close_leftovers(before)
            raise

    def _schedule_plan(self, plan: WatchPlan) -> None:
        for p in plan.recursive:
            self._schedule(p, recursive=True)
        for p in plan.flat:
            self._schedule(p, recursive=False)
        self.flat.update(plan.flat)

    def directory_event(self, kind: str, path: str) -> None:
        """Keep watches in step with the tree: a directory created below a one-level watch gets
        its own, and an ignored one (a new .venv) created inside a recursive watch splits it, so
        watchdog does not spend watches below it.  A directory the kernel would not watch turns
        watching into polling."""
        with self._lock:
            if kind == "deleted":
                for watched in [
                    p for p in self.scheduled if p == path or p.startswith(path + os.sep)
                ]:
                    self._unschedule(watched)
                return
            if kind != "created" or not os.path.isdir(path) or os.path.islink(path):
                return
            name, parent = os.path.basename(path), os.path.dirname(path)
            if self.rules.excludes_dir(name, path):
                shortfall = self._split_around(path) and not self.poll and self.grants.shortfall()
                if shortfall:
                    self.notices.watches_not_granted(*shortfall)
                    self._fall_back_later(None)
                return
            if self.rules.is_ignored(path, is_dir=True):
                return  # inside an ignored tree
            if parent in self.flat:
                try:
                    self._schedule_plan(plan_watches(path, self.rules.excludes_dir))
                except OSError as exc:
                    self.notices.cannot_watch(path, exc.strerror or str(exc))
            if not self.poll and os.access(path, os.R_OK) and self.grants.refused(path):
                self.notices.watch_not_granted(path)
                self._fall_back_later(path)

    def _split_around(self, path: str) -> bool:
        """Split the recursive watch holding the new ignored directory ``path``; whether any
        was split.  The new watches are in place before the old one goes, but the events already
        queued for the old one go with it: so what changed since ``path`` was born is found by
        a rescan and reported."""
        born = birth_time(path)
        since = (born if born is not None else time.time() - RESCAN_FALLBACK) - STAMP_SLACK
        split = False
        for watched in [p for p in self.scheduled if p not in self.flat]:
            if not path.startswith(watched + os.sep):
                continue
            plan = plan_watches(watched, self.rules.excludes_dir)
            if plan.recursive == (watched,):
                continue  # still one recursive watch (a new __pycache__): nothing to split
            old = self.scheduled.pop(watched)
            try:
                self._schedule_plan(plan)
            except OSError as exc:
                self.notices.cannot_watch(watched, exc.strerror or str(exc))
            with contextlib.suppress(Exception):
                self.observer.unschedule(old)
            self._report(changed_since(watched, since, self.rules.excludes_dir))
            split = True
        return split

    def _report(self, paths: Iterable[str]) -> None:
        relevant = [p for p in paths if not self.rules.is_ignored(p, os.path.isdir(p))]
        if relevant:
            self.changes.add(relevant)

    def _fall_back_later(self, missed: str | None) -> None:
        """From watchdog's own thread, which cannot stop its observer: in another thread."""
        self.poll = True
        threading.Thread(target=self._fall_back_to_polling, args=(missed,), daemon=True).start()

    def _fall_back_to_polling(self, missed: str | None = None) -> None:
        """Poll the whole plan from now on.  Polling starts (its first scan taken) before the
        inotify observer stops, and what lies below ``missed`` (a directory the kernel would
        not watch) is reported, so no edit falls between the two."""
        self.poll = True
        old = self.observer
        plan = plan_watches(self.root, self.rules.excludes_dir)
        with self._lock:
            self._start_observer(plan)
        if missed is not None:
            self._report([missed, *changed_since(missed, float("-inf"), self.rules.excludes_dir)])
        with contextlib.suppress(Exception):
            old.stop()
            old.join(timeout=OBSERVER_TIMEOUT)

    def _unschedule(self, path: str) -> None:
        with contextlib.suppress(Exception):
            self.observer.unschedule(self.scheduled.pop(path))
        self.flat.discard(path)

    def stop(self) -> None:
        if self.observer is not None:
            with contextlib.suppress(Exception):
                self.observer.stop()
                self.observer.join(timeout=OBSERVER_TIMEOUT)


# ---------------------------------------------------------------------------------------------
# Loop guard: the runs' own writes are not a person's edits
# ---------------------------------------------------------------------------------------------


def is_edited_by_people(path: str) -> bool:
    """Sources and metadata are what people edit, during runs too: never the runs' echoes."""
    return path.endswith(".py") or os.path.basename(path) in PACKAGE_MARKERS


def file_digest(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha1(f.read()).digest()
    except OSError:
        return None


def changed_at(path: str) -> float | None:
    """When ``path`` last changed (written, created, renamed: its ctime).  For a path gone,
    when the nearest directory still there last changed, since a removal stamps the directory
    it leaves; None when nothing above it is left either."""
    while True:
        try:
            return os.stat(path, follow_symlinks=False).st_ctime
        except OSError:
            parent = os.path.dirname(path)
            if parent == path:
                return None
            path = parent


@dataclass
class RunWindow:
    """When one package's run ran: by the clock that stamps files (to compare with their
    change times) and by the monotonic one (to compare with when events came, for paths gone
    since).  Its end is read once the run's process is gone, so whatever it wrote is older; a
    file stamped in that very tick is taken for a person's save, made just after."""

    package: str
    started: float
    started_at: float
    ended: float = float("inf")
    ended_at: float = float("inf")

    def holds(self, path: str, at: float) -> bool:
        """Whether the change of ``path`` (reported at ``at``) was made while this run ran."""
        stamp = changed_at(path)
        if stamp is None:
            return self.started_at <= at <= self.ended_at + ECHO_GRACE
        return self.started - STAMP_SLACK <= stamp < self.ended


class LoopGuard:
    """Tells the test runs' own writes from a person's edits, so that no run sets off the next.

    A change inside a package made while that package's own run ran is that run's doing,
    unless it is to what people edit (Python sources, package metadata): it never starts a run.
    "While" is judged by the file's own change time, so a save just after a run is a person's
    however late its event arrives, and a save while idle is never the runs'.  A source a run
    rewrites is its doing when it holds what it held before (a generator writing it again
    alike); one rewritten differently each time is caught otherwise: when ``LOOP_STREAK``
    cycles in a row were set off by nothing but files changed during runs, in the same
    directories, those are named, and from then on what the runs write there is theirs.  A
    person saving a source during each of a few runs in a row is not taken for a run.
    """

    def __init__(self, owner: Callable[[str], str | None] = lambda path: None) -> None:
        self.owner = owner  # the directory of the package holding a path
        self.windows: list[RunWindow] = []
        self.streak = 0
        self.streak_dirs: frozenset[str] = frozenset()
        self.run_written: set[str] = set()
        self.run_written_dirs: set[str] = set()
        self.digests: dict[str, bytes | None] = {}  # sources as last judged

    def run_started(self, package: str) -> None:
        self.windows.append(RunWindow(package, file_clock(), time.monotonic()))

    def run_ended(self, package: str) -> None:
        for window in self.windows:
            if window.package == package and window.ended == float("inf"):
                window.ended, window.ended_at = file_clock(), time.monotonic()

    def cycle_started(self, at: float) -> None:
        """Forget the runs of cycles long past: their writes have all been judged."""
        self.windows = [w for w in self.windows if w.ended_at >= at - 10 * 60]

    def cycle_ended(self, at: float) -> None:
        for window in self.windows:
            if window.ended == float("inf"):
                window.ended, window.ended_at = file_clock(), at

    def own_run_wrote(self, path: str, at: float) -> bool:
        owner = self.owner(path)
        return owner is not None and any(
            w.package == owner and w.holds(path, at) for w in self.windows
        )

    def some_run_wrote(self, path: str, at: float) -> bool:
        return any(w.holds(path, at) for w in self.windows)

    def is_runs_doing(self, path: str, at: float) -> bool:
        """A change the runs made: never one that starts a run."""
        if path in self.run_written or os.path.dirname(path) in self.run_written_dirs:
            return self.some_run_wrote(path, at)
        if not self.own_run_wrote(path, at):
            return False
        return not is_edited_by_people(path) or self._rewritten_alike(path)

    def _rewritten_alike(self, path: str) -> bool:
        """Whether the source holds what it held when last judged; remembers what it holds."""
        digest = file_digest(path)
        previous, self.digests[path] = self.digests.get(path), digest
        return digest is not None and digest == previous

    def observe(self, batch: Mapping[str, float]) -> list[str]:
        """Look at the burst that starts a cycle; the paths it names as the runs' writes now,
        or none."""
        if not batch or not all(self.some_run_wrote(p, t) for p, t in batch.items()):
            self.streak = 0
            return []
        dirs = frozenset(os.path.dirname(p) for p in batch)
        self.streak = self.streak + 1 if self.streak and dirs == self.streak_dirs else 1
        self.streak_dirs = dirs
        if self.streak < LOOP_STREAK:
            return []
        self.streak = 0
        self.run_written |= set(batch)
        self.run_written_dirs |= dirs
        return sorted(batch)


# ---------------------------------------------------------------------------------------------
# Intake: from the hand-off to the next request, in the main thread
# ---------------------------------------------------------------------------------------------

RUN_KEYS = {"\n": "all", "\r": "all", "a": "all", "A": "all", "f": "failed", "F": "failed"}
QUIT_KEYS = ("q", "Q")


@dataclass(frozen=True)
class Request:
    """What the main loop is asked to do next: ``changes`` (with the paths and when each
    changed), ``all``, ``failed``, ``resume`` (what a cycle cut short did not run) or ``quit``."""

    kind: str
    paths: Mapping[str, float] = field(default_factory=dict)


class Intake:
    """The main thread's side of the hand-off.  Paths stay in the ChangeSet until their burst
    settles (the one debounce); then git is asked once which of them it ignores, and the loop
    guard which are the runs' own writes.  git's verdicts are kept until the burst is taken, so
    looking during a cycle and taking after it ask git once per path."""

    def __init__(
        self,
        changes: ChangeSet,
        rules: IgnoreRules,
        guard: LoopGuard,
        debounce: float,
        on_echoes: Callable[[list[str]], None],
    ) -> None:
        self.changes = changes
        self.rules = rules
        self.guard = guard
        self.debounce = debounce
        self.on_echoes = on_echoes
        self._ignored: dict[str, bool] = {}
        self._runs_doing: dict[tuple[str, float], bool] = {}

    def _counting(self, paths: Mapping[str, float]) -> tuple[dict[str, float], list[str]]:
        """The paths that count, and those the loop guard takes for the runs' writes.  The
        built-in rules are asked again now that the burst settled: a new virtualenv is known
        as one only once its pyvenv.cfg is written, after its first directories."""
        unknown = [p for p in paths if p not in self._ignored]
        if unknown:
            ignored = self.rules.git_ignored(unknown)
            self._ignored.update(
                (p, p in ignored or self.rules.is_ignored(p, os.path.isdir(p))) for p in unknown
            )
        kept = {p: t for p, t in paths.items() if not self._ignored[p]}
        for p, t in kept.items():
            if (p, t) not in self._runs_doing:
                self._runs_doing[p, t] = self.guard.is_runs_doing(p, t)
        echoes = sorted(p for p, t in kept.items() if self._runs_doing[p, t])
        return {p: t for p, t in kept.items() if p not in echoes}, echoes

    def changed_meanwhile(self) -> bool:
        """Whether a change that counts (or q) arrived during a cycle and settled.  It only
        looks: the burst stays in the ChangeSet until it is taken, so an editor's save stays one
        change, and a scratch file made and removed again within a burst is none."""
        paths, keys = self.changes.peek()
        if any(k in QUIT_KEYS for k in keys):
            return True
        if not self.changes.settled(self.debounce):
            return False
        counting, _ = self._counting(paths)
        return bool(counting)

    def next_request(self, resume: bool = False) -> Request:
        """Block until a key or a settled burst of changes that count.  With ``resume`` (a
        cycle was cut short for changes), a burst that turns out to hold none still asks for
        the packages not run yet."""
        while True:
            key = self.changes.take_key()
            if key in QUIT_KEYS:
                return Request("quit")
            if key in RUN_KEYS:
                return Request(RUN_KEYS[key])
            if key is not None:
                continue
            if resume and not self.changes.pending():
                return Request("resume")
            self.changes.wait_settled(self.debounce)
            if self.changes.peek()[1]:
                continue
            paths = self.changes.take_paths()
            counting, echoes = self._counting(paths)
            self._ignored.clear()
            self._runs_doing.clear()
            if echoes:
                self.on_echoes(echoes)
            if counting:
                return Request("changes", counting)
            if resume:
                return Request("resume")


# ---------------------------------------------------------------------------------------------
# Order: which package runs when, and why
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One package in a cycle's order, with the reason it stands there."""

    package: Package
    reason: str


def cycle_order(
    packages: Sequence[Package],
    changed: Mapping[Package, float],
    failed: Iterable[Package],
    uses: Mapping[Package, set[Package]],
) -> list[Step]:
    """Changed packages first (most recent first), then those that failed last time, then the
    dependents of the changed ones (nearest first), then all the rest in a stable order."""
    order: list[Step] = []
    seen: set[Package] = set()

    def add(package: Package, reason: str) -> None:
        if package not in seen and package in known:
            seen.add(package)
            order.append(Step(package, reason))

    known = set(packages)
    for package in sorted(changed, key=lambda p: (-changed[p], p.rel)):
        add(package, "changed")
    for package in sorted(failed, key=lambda p: p.rel):
        add(package, "failed last time")
    users: dict[Package, list[Package]] = {p: [] for p in packages}
    for package in packages:
        for used in sorted(uses.get(package, ()), key=lambda p: p.rel):
            users.setdefault(used, []).append(package)
    frontier = sorted(changed, key=lambda p: (-changed[p], p.rel))
    reached = set(frontier)
    while frontier:
        following: list[Package] = []
        for package in frontier:
            for user in users.get(package, []):
                if user not in reached:
                    reached.add(user)
                    add(user, f"uses {package.rel}")
                    following.append(user)
        frontier = following
    for package in packages:
        add(package, "")
    return order


# ---------------------------------------------------------------------------------------------
# Runners: what each needs, and how its exit reads
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Runner:
    """How to run one package's tests, and how to read the exit status.

    ``module`` is what ``python -m`` runs (None for a command); ``install`` is what to pip
    install when it is missing; ``env`` holds defaults for the run's environment; ``preload``
    the modules a warm interpreter imports ahead of the runs; ``ran_none`` the line by which
    the runner says it found no tests when it exits 0 anyway.
    """

    name: str
    argv: tuple[str, ...]
    module: str | None = None
    install: str = ""
    no_tests_exit: frozenset[int] = frozenset()
    env: tuple[tuple[str, str], ...] = ()
    preload: tuple[str, ...] = ()
    ran_none: str = ""

    def command(self, package: Package, extra: Sequence[str]) -> list[str]:
        return [arg.replace("{package}", str(package.path)) for arg in self.argv] + list(extra)

    def verdict(self, code: int, output: str) -> Verdict:
        if code in self.no_tests_exit:
            return Verdict.NO_TESTS
        if code == 0:
            ran_none = self.ran_none and re.search(self.ran_none, output, re.M)
            return Verdict.NO_TESTS if ran_none else Verdict.OK
        return Verdict.FAILED


UNITTEST_RAN_NONE = r"^Ran 0 tests? in"  # unittest's report, which nose and nose2 share

BUILTIN_RUNNERS = {
    "nose": Runner(
        "nose", (sys.executable, "-m", "nose"), "nose", "pynose",
        env=(("NOSE_CAPTURE", "1"),),  # capture prints as classic nose did
        preload=("nose.core", "nose.loader", "nose.plugins.manager", "nose.plugins.builtin"),
        ran_none=UNITTEST_RAN_NONE,
    ),
    "nose2": Runner(
        "nose2", (sys.executable, "-m", "nose2"), "nose2", "nose2", frozenset({5}),
        preload=("nose2.main", "nose2.plugins.loader.discovery", "nose2.plugins.result"),
        ran_none=UNITTEST_RAN_NONE,
    ),
    "pytest": Runner(
        "pytest", (sys.executable, "-m", "pytest"), "pytest", "pytest", frozenset({5}),
        preload=(
            "_pytest.config", "_pytest.main", "_pytest.python", "_pytest.runner",
            "_pytest.terminal", "_pytest.assertion", "_pytest.fixtures",
        ),
    ),
    "unittest": Runner(
        "unittest", (sys.executable, "-m", "unittest", "discover", "-t", "."), "unittest", "",
        frozenset({5}), ran_none=UNITTEST_RAN_NONE,
    ),
}  # fmt: skip


def make_runner(spec: str) -> Runner:
    """A built-in runner by name, or a command line with ``{package}`` split like a shell would
    (but never run by one)."""
    if spec in BUILTIN_RUNNERS:
        return BUILTIN_RUNNERS[spec]
    try:
        argv = shlex.split(spec)
    except ValueError as exc:
        raise UsageError(f"--runner {spec!r}: {exc}") from None
    if not argv:
        raise UsageError("--runner: empty command")
    if not any("{package}" in arg for arg in argv) and not shutil.which(argv[0]):
        raise UsageError(
            f"--runner {spec!r}: not one of {', '.join(BUILTIN_RUNNERS)} and not a command "
            "containing {package}"
        )
    return Runner("command", tuple(argv))


def check_runner(runner: Runner) -> None:
    """Fail early, with what to install, when the runner cannot start at all."""
    if runner.module is None:
        if shutil.which(runner.argv[0]) is None and not os.path.isfile(runner.argv[0]):
            raise UsageError(f"runner command not found: {runner.argv[0]}")
        return
    import importlib.util

    if importlib.util.find_spec(runner.module) is None:
        raise UsageError(
            f"{runner.name} is not installed for {sys.executable}; "
            f"install it: {sys.executable} -m pip install {runner.install}"
        )
    if runner.name == "nose" and sys.version_info >= (3, 10):
        from importlib import metadata

        with contextlib.suppress(metadata.PackageNotFoundError):
            if metadata.version("nose").startswith("1.3."):
                raise UsageError(
                    "the classic nose 1.3 does not run on Python 3.10+; replace it: "
                    f"{sys.executable} -m pip uninstall -y nose && "
                    f"{sys.executable} -m pip install pynose"
                )


# ---------------------------------------------------------------------------------------------
# One run: one package's test process
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    package: Package
    verdict: Verdict
    seconds: float
    output: str
    note: str = ""
    warm: bool = False  # forked from the warm interpreter

    @property
    def passed(self) -> bool:
        return self.verdict is not Verdict.FAILED


def pycache_dir() -> str:
    """One bytecode cache for every repository (the prefix mirrors absolute paths), per user."""
    return os.path.join(tempfile.gettempdir(), f"autotest-pycache{user_suffix()}")


def run_environment(runner: Runner, pycache: str) -> dict[str, str]:
    """The test process's environment: the runner's defaults, and bytecode in a cache outside
    the tree (so runs write nothing that could look like a change)."""
    env = dict(os.environ)
    for name, value in runner.env:
        env.setdefault(name, value)
    if not env.get("PYTHONDONTWRITEBYTECODE"):
        env.setdefault("PYTHONPYCACHEPREFIX", pycache)
    return env


def forget_bytecode(paths: Iterable[str], prefix: str | None) -> None:
    """Delete the cached bytecode of changed sources.  Python trusts a cache whose recorded
    mtime (whole seconds) and size match, so a second save of the same size within a second
    would otherwise run the old code."""
    tag = sys.implementation.cache_tag
    for path in paths:
        if not path.endswith(".py") or tag is None:
            continue
        folder, name = os.path.split(path)
        stem = name[:-3]
        places = [os.path.join(folder, "__pycache__")]
        if prefix:
            places.append(os.path.join(prefix, os.path.splitdrive(folder)[1].lstrip(os.sep)))
        for place in places:
            for suffix in (".pyc", ".opt-1.pyc", ".opt-2.pyc"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(place, f"{stem}.{tag}{suffix}"))


class Run:
    """One package's test process.  Output goes to an anonymous file, not a pipe, so a run that
    prints megabytes can never block, and stdout and stderr stay interleaved in order."""

    def __init__(
        self, package: Package, command: Sequence[str], env: Mapping[str, str], runner: Runner,
        timeout: float | None, launcher: WarmLauncher | None = None,
    ) -> None:  # fmt: skip
        self.package = package
        self.runner = runner
        self.timeout = timeout
        self.out: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed by _result)
        self.started = time.monotonic()
        self.proc: subprocess.Popen[bytes] | WarmProcess | None = None
        self.error = ""
        try:
            if launcher is not None:
                self.proc = launcher.launch(package, command, env, self.out)
            if self.proc is None:
                self.proc = subprocess.Popen(
                    list(command), cwd=package.path, env=dict(env), stdin=subprocess.DEVNULL,
                    stdout=self.out, stderr=subprocess.STDOUT, **own_process_group(),
                )  # fmt: skip
        except OSError as exc:
            self.error = f"autotest: cannot start {command[0]}: {exc.strerror or exc}\n"

    def poll(self) -> RunResult | None:
        """The result once the process has ended (or was killed for its timeout), else None."""
        if self.proc is None:
            return self._result(Verdict.FAILED, self.error)
        code = self.proc.poll()
        if code is None:
            if self.timeout is not None and time.monotonic() - self.started > self.timeout:
                self.kill()
                killed = f"\nautotest: timed out after {self.timeout:g}s; killed\n"
                return self._result(Verdict.FAILED, self._output() + killed, "timed out")
            return None
        if POSIX:  # what the tests started and left behind goes with them (its group outlives it)
            kill_tree(self.proc.pid)
        output = self._output()
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            return self._result(Verdict.FAILED, output + f"\nautotest: killed by {name}\n", name)
        verdict = self.runner.verdict(code, output)
        note = "" if code in (0, 1) or verdict is not Verdict.FAILED else f"exit {code}"
        return self._result(verdict, output, note)

    def _output(self) -> str:
        self.out.seek(0)
        return self.out.read().decode("utf-8", "replace")

    def _result(self, verdict: Verdict, text: str, note: str = "") -> RunResult:
        self.out.close()
        seconds = time.monotonic() - self.started
        warm = isinstance(self.proc, WarmProcess)
        return RunResult(self.package, verdict, seconds, text, note, warm)

    def kill(self) -> None:
        if self.proc is not None:
            kill_tree(self.proc.pid)
            with contextlib.suppress(Exception):
                self.proc.wait()


# ---------------------------------------------------------------------------------------------
# Warm runner: a pre-started interpreter forks each run
# ---------------------------------------------------------------------------------------------
#
# A warm interpreter has imported the runner (and nothing from the repository); it forks a
# fresh child for each run, which saves the interpreter's and the runner's start-up.  It runs
# ``serve_warm`` below, whose source it reads from its stdin, so that the code is linted and
# type-checked with the rest and ``ps`` shows one short line.
#
# The protocol, over a socket pair, one line per message:
#   server -> autotest   ``ready``              the runner is imported; requests may come
#   autotest -> server   a JSON object {"cwd", "env", "args"}, with the run's output file
#                        passed alongside as a descriptor (SCM_RIGHTS)
#   server -> autotest   ``pid PID``            the run was forked, as process PID
#   server -> autotest   ``exit PID CODE``      it ended; CODE as Popen.returncode reads
# An ``exit`` may arrive before its ``pid`` is read.  autotest closing the socket ends the server.


def run_forked(module: str, request: dict[str, Any], out: int) -> NoReturn:  # pragma: no cover
    """In the forked child: become the run autotest asked for, as a cold start would be."""
    import os
    import runpy
    import signal
    import sys

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [module, *request["args"]]
    sys.path[0] = request["cwd"]
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def serve_warm(module: str, fd: int, preload: Sequence[str]) -> None:  # pragma: no cover
    """The warm interpreter's program: import the runner, then fork a run per request.  When
    autotest goes away (the socket closes or fails), it ends at once, without a word."""
    import importlib
    import json
    import os
    import signal
    import socket

    importlib.import_module(module)
    for name in preload:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    sock = socket.socket(fileno=fd)

    def send(line: str) -> None:
        try:
            sock.sendall(line.encode() + b"\n")
        except OSError:
            os._exit(0)

    def reap(*_: object) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            send(f"exit {pid} {code}")

    send("ready")
    signal.signal(signal.SIGCHLD, reap)
    buffer, fds = b"", []
    while True:
        try:
            message, more_fds, _, _ = socket.recv_fds(sock, 1 << 20, 1)
        except InterruptedError:
            continue
        except OSError:
            os._exit(0)
        if not message:
            os._exit(0)
        buffer += message
        fds += more_fds
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            out = fds.pop(0)
            pid = os.fork()
            if pid == 0:
                sock.close()
                run_forked(module, json.loads(line), out)
            os.close(out)
            send(f"pid {pid}")


def warm_server_source(module: str, fd: int, preload: Sequence[str]) -> bytes:
    import inspect

    header = "from __future__ import annotations\nimport contextlib\n"
    functions = "".join(inspect.getsource(f) + "\n" for f in (run_forked, serve_warm))
    call = f"serve_warm({module!r}, {fd}, {tuple(preload)!r})\n"
    return (header + functions + call).encode()


def installed_stamp() -> tuple[int, ...]:
    """When what is installed for this interpreter last changed: ``pip install`` adds or
    removes entries in site-packages, which changes the directory's mtime."""
    import site

    places = [*getattr(site, "getsitepackages", list)(), site.getusersitepackages()]
    return tuple(os.stat(p).st_mtime_ns if os.path.isdir(p) else 0 for p in places)


class WarmProcess:
    """A forked run seen through the warm server: enough of Popen's face for ``Run``."""

    def __init__(self, launcher: WarmLauncher, pid: int) -> None:
        self.launcher = launcher
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.launcher.exit_code(self.pid, block=False)
        return self.returncode

    def wait(self) -> int:
        while self.returncode is None:
            self.returncode = self.launcher.exit_code(self.pid, block=True)
        return self.returncode


class WarmLauncher:
    """Starts runs by forking them from a warm interpreter.  Where there is no fork, when the
    runner is not a Python module, or when the warm interpreter died, ``launch`` returns None
    and the run starts cold."""

    def __init__(self, runner: Runner, env: Mapping[str, str]) -> None:
        self.runner = runner
        self.env = dict(env)
        self.exits: dict[int, int] = {}
        self.running: set[int] = set()
        self.buffer = b""
        self.ready = False
        self.sock: socket.socket | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.installed = installed_stamp()
        if can_fork_server() and runner.module:
            self._start_server(runner.module)

    def _start_server(self, module: str) -> None:
        ours, theirs = socket.socketpair()
        bootstrap = "import sys; exec(sys.stdin.read())"
        try:
            self.server = subprocess.Popen(
                [sys.executable, "-c", bootstrap, "autotest-warm", module],
                pass_fds=[theirs.fileno()], env=self.env, stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            assert self.server.stdin is not None
            with self.server.stdin:
                self.server.stdin.write(
                    warm_server_source(module, theirs.fileno(), self.runner.preload)
                )
        except OSError:
            ours.close()
            return
        finally:
            theirs.close()
        self.sock = ours

    def _restart_if_installs_changed(self) -> None:
        """The warm interpreter read the installed .pth files when it started: after a
        ``pip install``, start a new one (once no forked run is in flight)."""
        if self.sock is None or self.running or installed_stamp() == self.installed:
            return
        self.close()
        self.installed = installed_stamp()
        self.buffer, self.ready = b"", False
        assert self.runner.module is not None
        self._start_server(self.runner.module)

    def _read_line(self) -> str:
        assert self.sock is not None
        while b"\n" not in self.buffer:
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError("warm runner ended")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def _handle(self, line: str) -> int | None:
        kind, *numbers = line.split()
        if kind == "ready":
            self.ready = True
        elif kind == "exit":
            self.exits[int(numbers[0])] = int(numbers[1])
            self.running.discard(int(numbers[0]))
        elif kind == "pid":
            pid = int(numbers[0])
            if pid not in self.exits:  # a quick run may have ended before its pid was read
                self.running.add(pid)
            return pid
        return None

    def _is_ready(self, wait: float) -> bool:
        """Whether the warm interpreter is ready, waiting up to ``wait`` seconds for it."""
        if not self.ready and self.sock is not None:
            try:
                self.sock.settimeout(wait)
                while not self.ready:
                    self._handle(self._read_line())
            except (BlockingIOError, socket.timeout):
                pass
            except OSError:
                self.close()
        return self.ready and self.sock is not None

    def launch(
        self, package: Package, command: Sequence[str], env: Mapping[str, str], out: IO[bytes]
    ) -> WarmProcess | None:
        """Fork the run.  The first launch waits for the warm interpreter to be ready: its
        start-up costs what a cold start would, and a forked run is then what the user gets."""
        self._restart_if_installs_changed()
        if list(command[:3]) != list(self.runner.argv[:3]):
            return None
        if not self._is_ready(WARM_START_TIMEOUT):
            return None
        request = json.dumps(
            {"cwd": str(package.path), "env": dict(env), "args": list(command[3:])}
        )
        assert self.sock is not None
        try:
            socket.send_fds(self.sock, [request.encode() + b"\n"], [out.fileno()])
            self.sock.settimeout(WARM_REPLY_TIMEOUT)
            while True:
                pid = self._handle(self._read_line())
                if pid is not None:
                    return WarmProcess(self, pid)
        except OSError:
            self.close()
            return None

    def exit_code(self, pid: int, block: bool) -> int | None:
        if pid in self.exits:
            return self.exits.pop(pid)
        if self.sock is None:
            return -signal.SIGKILL
        try:
            self.sock.settimeout(POLL_INTERVAL * 5 if block else 0)
            while True:
                self._handle(self._read_line())
                if pid in self.exits:
                    return self.exits.pop(pid)
        except (BlockingIOError, socket.timeout):
            return None
        except OSError:
            self.close()
            return -signal.SIGKILL

    def close(self) -> None:
        """End the warm interpreter first, then its socket, so it never writes to a closed one."""
        if self.server is not None:
            kill_tree(self.server.pid)
            with contextlib.suppress(Exception):
                self.server.wait(timeout=SERVER_EXIT_WAIT)
            self.server = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class WarmPolicy:
    """When runs are forked.  The first cycle runs cold, which gives cold times to compare
    with; once ``JUDGE_AFTER`` packages (or all) have run both ways, their best forked times
    are compared with their best cold ones, once, and forking is kept only if it is faster."""

    def __init__(self, launcher: WarmLauncher | None = None) -> None:
        self.launcher = launcher
        self.times: dict[bool, dict[Package, float]] = {True: {}, False: {}}
        self.judged = False
        self.cold_cycle_done = False

    def launcher_for_runs(self) -> WarmLauncher | None:
        return self.launcher if self.cold_cycle_done else None

    def record(self, result: RunResult) -> None:
        times = self.times[result.warm]
        times[result.package] = min(result.seconds, times.get(result.package, result.seconds))

    def cycle_done(self) -> None:
        self.cold_cycle_done = True

    def judge(self, package_count: int) -> tuple[float, float] | None:
        """Judge once enough packages ran both ways: the summed warm and cold times when
        forking lost (and is now off), else None."""
        if self.launcher is None or self.judged:
            return None
        both = [p for p in self.times[True] if p in self.times[False]]
        if len(both) < min(JUDGE_AFTER, package_count):
            return None
        self.judged = True
        warm = sum(self.times[True][p] for p in both)
        cold = sum(self.times[False][p] for p in both)
        if warm < cold:
            return None
        self.close()
        return warm, cold

    def close(self) -> None:
        if self.launcher is not None:
            self.launcher.close()
            self.launcher = None


# ---------------------------------------------------------------------------------------------
# Cycle: packages in order, up to --jobs at once, until the first failure
# ---------------------------------------------------------------------------------------------


class Startable(Protocol):
    """What run_cycle needs of a run: ``Run`` is one; tests pass stand-ins."""

    def poll(self) -> RunResult | None: ...

    def kill(self) -> None: ...


@dataclass
class CycleOutcome:
    """What one cycle did: the verdicts it reported, in order, and why it ended."""

    steps: list[Step]
    results: list[RunResult] = field(default_factory=list)
    failure: RunResult | None = None
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.failure is None and not self.interrupted

    @property
    def not_run(self) -> int:
        return len(self.steps) - len(self.results) - (self.failure is not None)


def run_cycle(
    steps: Sequence[Step],
    start: Callable[[Package], Startable],
    jobs: int,
    changed_meanwhile: Callable[[], bool],
    restart: bool,
    on_result: Callable[[RunResult], None],
    pause: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> CycleOutcome:
    """Run packages in order, up to ``jobs`` at once, reporting verdicts in order.

    The first failure cancels every other running package.  A change arriving meanwhile stops
    the cycle once the running packages finish (with ``restart``, at once) so that a new cycle
    can start with it.
    """
    outcome = CycleOutcome(list(steps))
    started = clock()
    queue = list(enumerate(steps))
    running: dict[int, Startable] = {}
    done: dict[int, RunResult] = {}
    next_report = 0

    def report(index: int) -> None:
        outcome.results.append(done[index])
        on_result(done[index])

    try:
        while queue or running:
            if changed_meanwhile():
                outcome.interrupted = True
                queue.clear()
                if restart:
                    break
            while queue and len(running) < jobs:
                index, step = queue.pop(0)
                running[index] = start(step.package)
            finished = {i: r for i, r in ((i, run.poll()) for i, run in running.items()) if r}
            for index, result in finished.items():
                del running[index]
                done[index] = result
            failed = [i for i in sorted(finished) if not finished[i].passed]
            if failed:
                for run in running.values():
                    run.kill()
                running.clear()
                first = failed[0]
                for index in sorted(i for i in done if next_report <= i < first):
                    report(index)
                outcome.failure = done[first]
                on_result(done[first])
                break
            while next_report in done:
                report(next_report)
                next_report += 1
            if not finished and running:
                pause(POLL_INTERVAL)
    finally:
        for run in running.values():
            run.kill()
    outcome.seconds = clock() - started
    return outcome


# ---------------------------------------------------------------------------------------------
# Report: every sentence a user reads
# ---------------------------------------------------------------------------------------------


def use_color(stream: IO[str]) -> bool:
    """NO_COLOR turns colours off, FORCE_COLOR on; otherwise only on a terminal."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return False
    return POSIX or "WT_SESSION" in os.environ or "TERM" in os.environ


STYLES = {"ok": "32", "fail": "1;31", "dim": "2", "bold": "1", "warn": "33"}
VERDICT_STYLES = {Verdict.OK: "ok", Verdict.FAILED: "fail", Verdict.NO_TESTS: "dim"}


def counted(number: int, noun: str) -> str:
    """``1 package``, ``3 packages``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def shown(path: str) -> str:
    """A path as one printable line: newlines, other control characters and bytes that are
    not UTF-8 (surrogate escapes) are escaped."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in path)


def describe_changes(paths: Iterable[str], root: Path, packages: Sequence[Package]) -> str:
    """One short line: the file that changed, or how many changed in how many packages."""
    paths = sorted(paths)
    if len(paths) == 1:
        path = paths[0]
        gone = "" if os.path.lexists(path) else " (removed)"
        return f"changed: {shown(os.path.relpath(path, root))}{gone}"
    owners = {owner_of(p, packages) for p in paths}
    inside = len(owners - {None})
    if not inside:
        return f"changed: {len(paths)} files outside every package"
    text = f"changed: {len(paths)} files in {counted(inside, 'package')}"
    return text + (" and outside them" if None in owners else "")


RAISE_WATCHES = "sudo sysctl fs.inotify.max_user_watches=524288"


class Reporter:
    """Everything the user reads: one line per package, the failing run's output, one summary,
    and the few notices between cycles."""

    def __init__(self, stream: IO[str], color: bool, width: int = 0, root: Path | None = None):
        self.stream = stream
        self.color = color
        self.width = width
        self.root = root or Path.cwd()
        self.warned_unreadable: set[str] = set()

    def paint(self, text: str, style: str) -> str:
        return f"\033[{STYLES[style]}m{text}\033[0m" if self.color else text

    def say(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def warn(self, text: str) -> None:
        self.say(self.paint(f"autotest: {text}", "warn"))

    def note(self, text: str) -> None:
        self.say(self.paint(f"autotest: {text}", "dim"))

    def rel(self, path: str) -> str:
        return shown(os.path.relpath(path, self.root))

    # Cycles: the header, the order, a line per package, the summary.

    def header(self, text: str) -> None:
        self.say(self.paint(text, "bold"))

    def testing_all(self, count: int) -> None:
        self.header(f"testing all {counted(count, 'package')}")

    def testing_failed(self, count: int) -> None:
        self.header(f"testing {count} failed")

    def no_failed(self) -> None:
        self.say("no failed packages")

    def explain(self, steps: Sequence[Step]) -> None:
        for number, step in enumerate(steps, 1):
            reason = f"  ({step.reason})" if step.reason else ""
            self.say(self.paint(f"  {number:>2}. {step.package.rel}{reason}", "dim"))

    def verdict(self, result: RunResult) -> None:
        style = VERDICT_STYLES[result.verdict]
        verdict = result.verdict.value + (f" ({result.note})" if result.note else "")
        self.say(
            f"{result.package.rel:<{self.width}}  {self.paint(f'{verdict:<8}', style)}  "
            + self.paint(f"{result.seconds:.2f}s", "dim")
        )
        if result.verdict is Verdict.FAILED:
            output = result.output if result.output.endswith("\n") else result.output + "\n"
            self.stream.write(output)
            self.stream.flush()

    def summary(self, outcome: CycleOutcome) -> None:
        took = self.paint(f"in {outcome.seconds:.2f}s", "dim")
        passed = len(outcome.results)
        if outcome.failure is not None:
            rest = f"{passed} passed, {outcome.not_run} not run"
            self.say(
                f"{self.paint(f'{outcome.failure.package.rel} FAILED', 'fail')}; {rest} {took}"
            )
        elif outcome.interrupted:
            self.say(self.paint(f"changed during the run: starting over ({passed} done)", "warn"))
        else:
            everything = f"all {counted(passed, 'package')} passed"
            self.say(f"{self.paint(everything, 'ok')} {took}")

    def menu(self) -> None:
        self.say(self.paint("[Enter/a] run all  [f] run failed  [q] quit", "dim"))

    def clear(self) -> None:
        if self.stream.isatty() or self.color:
            self.stream.write("\033[2J\033[3J\033[H")
        self.stream.flush()

    def bell(self) -> None:
        self.stream.write("\a")
        self.stream.flush()

    def notify_failed(self, failure: RunResult) -> None:
        notify("autotest", f"{failure.package.rel} FAILED")

    def notify_recovered(self) -> None:
        notify("autotest", "all packages pass again")

    # Notices between cycles.

    def watching(self, count: int, how: str) -> None:
        self.note(f"watching {counted(count, 'package')} in {self.root} ({how}); Ctrl+C to stop")

    def packages_changed(self, added: Iterable[str], removed: Iterable[str]) -> None:
        words = [f"+{r}" for r in sorted(added)] + [f"-{r}" for r in sorted(removed)]
        self.say(self.paint(f"packages: {' '.join(words)}", "dim"))

    def not_in_package(self, arg: str) -> None:
        self.warn(f"{arg} is in no package; ignored")

    def echoes(self, paths: Iterable[str]) -> None:
        rels = [self.rel(p) for p in paths]
        names = ", ".join(rels[:3]) + (f" and {len(rels) - 3} more" if len(rels) > 3 else "")
        self.note(
            f"not tested: {names}, changed during its package's run and taken for the run's "
            "doing (save it again to test it)"
        )

    def loop_found(self, paths: Sequence[str]) -> None:
        rels = [self.rel(p) for p in paths]
        globs = " ".join(
            f"--ignore {shlex.quote(g)}" for g in sorted({os.path.basename(r) for r in rels})
        )
        self.warn(
            f"each test run changes {', '.join(rels)}, which sets off the next run; "
            f"not reacting to that during runs any more. To ignore it for good: {globs}"
        )

    def warm_lost(self, warm: float, cold: float) -> None:
        self.note(
            f"forked runs were no faster than cold ones ({warm:.2f}s against {cold:.2f}s); "
            "starting every run cold from now on"
        )

    def no_toml_for_config(self) -> None:
        self.warn(
            "skipped [tool.autotest] in pyproject.toml: "
            "this Python needs tomli to read it (pip install tomli)"
        )

    # What the Watcher has to say (WatchNotices).

    def unreadable(self, path: str) -> None:
        if path not in self.warned_unreadable:
            self.warned_unreadable.add(path)
            self.warn(f"cannot read {path}; skipped, and changes below it are not seen")

    def too_many_watches(self, needed: int, limit: int) -> None:
        self.warn(
            f"this tree needs {needed} inotify watches but the limit is {limit}; "
            f"polling instead. To watch natively, raise it: {RAISE_WATCHES}"
        )

    def watches_refused(self, reason: str) -> None:
        self.warn(
            f"the OS refused more watches ({reason}); polling instead. "
            f"Raise the limit: {RAISE_WATCHES} fs.inotify.max_user_instances=1024"
        )

    def cannot_watch(self, path: str, reason: str) -> None:
        self.warn(f"cannot watch {path}: {reason}")

    def watches_not_granted(self, held: int, needed: int) -> None:
        self.warn(
            f"the kernel granted {held} of the {needed} inotify watches this tree needs (other "
            f"programs hold the rest); polling instead. To watch natively, raise the limit: "
            f"{RAISE_WATCHES}"
        )

    def watch_not_granted(self, path: str) -> None:
        self.warn(
            f"the kernel refused an inotify watch for {self.rel(path)} (out of watches); "
            f"polling from now on. To watch natively, raise the limit: {RAISE_WATCHES}"
        )

    def gitignore_not_applied(self, path: str) -> None:
        self.note(
            f"{self.rel(path)} is not applied: {self.root} is not a git work tree "
            "(use --ignore GLOB for what should never start a run)"
        )

    def resuming(self, count: int) -> None:
        self.header(f"testing the {counted(count, 'package')} not run yet")


# ---------------------------------------------------------------------------------------------
# Options: one table for the command line, the config files and the defaults
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """Every setting, with its default."""

    root: Path
    once: bool = False
    changed: tuple[str, ...] = ()
    runner: str = "nose"
    runner_args: tuple[str, ...] = ()
    jobs: int = 1
    timeout: float | None = None
    restart: bool = False
    debounce: float = DEFAULT_DEBOUNCE
    ignore: tuple[str, ...] = ()
    poll: bool = False
    warm: bool = True
    explain: bool = False
    clear: bool = False
    bell: bool = False
    notify: bool = False


def non_negative(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not number >= 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"expected zero or more seconds, got {value!r}")
    return number


def positive(value: str) -> float:
    number = non_negative(value)
    if number == 0:
        raise argparse.ArgumentTypeError(f"expected more than zero seconds, got {value!r}")
    return number


def job_count(value: str) -> int:
    if str(value).strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number or 'auto', got {value!r}"
        ) from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value!r}")
    return number


def config_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


@dataclass(frozen=True)
class Setting:
    """One option.  ``kind`` says how it is given: ``flag`` (true/false; a flag whose default
    is true is spelt ``--no-NAME``), ``value`` (one value, read by ``read``), ``list``
    (repeatable on the command line; a list or a whitespace-separated string in config),
    ``paths`` (several values after the option), ``args`` (after ``--`` on the command line;
    a list or a shell-quoted string in config)."""

    name: str
    kind: str
    help: str
    read: Callable[[str], Any] = str
    metavar: str | None = None
    short: str = ""
    in_config: bool = True

    @property
    def field(self) -> str:
        return self.name.replace("-", "_")

    @property
    def default(self) -> Any:
        return Options.__dataclass_fields__[self.field].default


SETTINGS = (
    Setting("root", "value", "the repository (default: the parent of this file's folder)",
            metavar="DIR", in_config=False),
    Setting("once", "flag", "run one cycle and exit: 0 all passed, 1 a package failed",
            in_config=False),
    Setting("changed", "paths", "order the first cycle as if these paths had just changed",
            metavar="PATH", in_config=False),
    Setting("runner", "value", "nose, nose2, pytest, unittest, or a command with {package}",
            metavar="NAME|CMD"),
    Setting("runner-args", "args", "arguments for the runner (on the command line: after --)"),
    Setting("jobs", "value", "packages run at once; auto: one per core", job_count, "N|auto",
            short="j"),
    Setting("timeout", "value", "kill and fail a package run that takes longer", positive,
            "SECONDS"),
    Setting("restart", "flag", "a change during a run kills that run at once"),
    Setting("debounce", "value", "quiet time that closes a burst of changes", non_negative,
            "SECONDS"),
    Setting("ignore", "list", "never react to matching paths (repeatable)", metavar="GLOB"),
    Setting("poll", "flag", "poll the tree instead of OS notifications"),
    Setting("warm", "flag", "start every run cold instead of forking it from a warm interpreter"),
    Setting("explain", "flag", "say why each package runs where it does", short="v"),
    Setting("clear", "flag", "clear the screen before each cycle"),
    Setting("bell", "flag", "ring the terminal bell when a package fails"),
    Setting("notify", "flag", "desktop notification when a cycle fails or recovers"),
)  # fmt: skip


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def add_setting(parser: argparse.ArgumentParser, setting: Setting) -> None:
    flags = [f"-{setting.short}"] if setting.short else []
    if setting.kind == "flag":
        negated = setting.default is True
        flags.append(f"--no-{setting.name}" if negated else f"--{setting.name}")
        action = "store_false" if negated else "store_true"
        parser.add_argument(
            *flags, dest=setting.field, action=action, default=None, help=setting.help
        )
        return
    flags.append(f"--{setting.name}")
    default = setting.default
    shown_default = isinstance(default, (int, float, str)) and not isinstance(default, bool)
    text = setting.help + (f" (default: {default})" if shown_default else "")
    if setting.kind == "list":
        parser.add_argument(*flags, dest=setting.field, action="append", metavar=setting.metavar,
                            help=text)  # fmt: skip
    elif setting.kind == "paths":
        parser.add_argument(*flags, dest=setting.field, nargs="+", metavar=setting.metavar,
                            help=text)  # fmt: skip
    else:
        parser.add_argument(*flags, dest=setting.field, type=setting.read,
                            metavar=setting.metavar, help=text)  # fmt: skip


def argument_parser() -> ArgumentParser:
    summary = (__doc__ or "").partition("\n\n")[0].split(": ", 1)[-1]
    parser = ArgumentParser(
        prog="autotest.py",
        description=summary[:1].upper() + summary[1:],
        usage="%(prog)s [options] [-- runner arguments]",
        epilog=(
            "While watching on a terminal: Enter or a runs every package, f the failed ones, "
            "q quits. Every option but --root, --once and --changed can also be set under the "
            "same name in [tool.autotest] of the root pyproject.toml or [autotest] of setup.cfg."
        ),
        argument_default=None,
    )
    for setting in SETTINGS:
        if setting.kind != "args":
            add_setting(parser, setting)
    return parser


def strings(value: Any, split: Callable[[str], list[str]]) -> tuple[str, ...]:
    """A config value that is a list of strings, or one string split into them."""
    if isinstance(value, str):
        return tuple(split(value))
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return tuple(map(str, value))
    raise argparse.ArgumentTypeError(f"expected a list of strings, got {value!r}")


def setting_from_config(setting: Setting, value: Any) -> Any:
    """A config file's value, checked against what the setting takes."""
    if setting.kind == "flag":
        return config_bool(value)
    if setting.kind == "list":
        return strings(value, str.split)
    if setting.kind == "args":
        return strings(value, shlex.split)
    if isinstance(value, (dict, list, bool)):
        raise argparse.ArgumentTypeError(f"expected one value, got {value!r}")
    return setting.read(str(value))


def config_sections(root: Path, on_no_toml: Callable[[], None]) -> list[tuple[str, Any]]:
    """``[autotest]`` of setup.cfg, then ``[tool.autotest]`` of pyproject.toml, as found."""
    found: list[tuple[str, Any]] = []
    setup_cfg = root / "setup.cfg"
    if setup_cfg.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(setup_cfg, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError) as exc:
            raise UsageError(f"{setup_cfg}: {exc}") from None
        if parser.has_section("autotest"):
            found.append(("setup.cfg [autotest]", dict(parser.items("autotest"))))
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = load_toml(pyproject)
        except (OSError, ValueError) as exc:
            raise UsageError(f"{pyproject}: {exc}") from None
        if data is None:
            if "[tool.autotest]" in pyproject.read_text(encoding="utf-8", errors="replace"):
                on_no_toml()
        elif "autotest" in data.get("tool", {}):
            found.append(("pyproject.toml [tool.autotest]", data["tool"]["autotest"]))
    return found


def read_config(root: Path, on_no_toml: Callable[[], None]) -> dict[str, Any]:
    """The settings the repository holds, by setting name; pyproject.toml wins."""
    by_name = {s.name: s for s in SETTINGS if s.in_config}
    settings: dict[str, Any] = {}
    for where, section in config_sections(root, on_no_toml):
        for key, value in section.items():
            name = key.replace("_", "-")
            if name not in by_name:
                raise UsageError(f"{where}: unknown setting {key!r} (known: {', '.join(by_name)})")
            try:
                settings[name] = setting_from_config(by_name[name], value)
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise UsageError(f"{where}: {key}: {exc}") from None
    return settings


def default_root() -> Path:
    return Path(__file__).resolve().parent.parent


def parse_options(argv: Sequence[str], on_no_toml: Callable[[], None]) -> Options:
    """Command line over pyproject.toml over setup.cfg over defaults."""
    argv = list(argv)
    runner_args: tuple[str, ...] | None = None
    if "--" in argv:
        cut = argv.index("--")
        argv, runner_args = argv[:cut], tuple(argv[cut + 1 :])
    args = argument_parser().parse_args(argv)
    root = Path(args.root).expanduser() if args.root else default_root()
    if not root.is_dir():
        raise UsageError(f"root {str(root)!r} is not a directory")
    root = root.resolve()
    given = {
        s.name: tuple(value) if isinstance(value, list) else value
        for s in SETTINGS
        if s.kind != "args" and (value := getattr(args, s.field)) is not None
    }
    merged = {**read_config(root, on_no_toml), **given, "root": root}
    if runner_args is not None:
        merged["runner-args"] = runner_args
    return Options(**{name.replace("-", "_"): value for name, value in merged.items()})


# ---------------------------------------------------------------------------------------------
# Session: the wiring, and main
# ---------------------------------------------------------------------------------------------


class PackageSet:
    """The packages as the tree has them now, and their graph, kept in step with changes."""

    def __init__(self, root: Path, reporter: Reporter) -> None:
        self.root = root
        self.reporter = reporter
        self.packages: list[Package] = []
        self.graph = DependencyGraph({}, frozenset())
        self.refresh()

    def refresh(self, metadata_changed: bool = True) -> None:
        """Rediscover the packages; read the graph again when they or their metadata changed."""
        packages, unreadable = discover_packages(self.root)
        for path in unreadable:
            self.reporter.unreadable(path)
        if packages == self.packages and not metadata_changed:
            return
        if self.packages and packages != self.packages:
            self.reporter.packages_changed(
                (p.rel for p in set(packages) - set(self.packages)),
                (p.rel for p in set(self.packages) - set(packages)),
            )
        self.packages = packages
        self.graph = dependency_graph(packages)
        self.reporter.width = max((len(p.rel) for p in packages), default=0)

    def follow(self, paths: Iterable[str]) -> None:
        """Rediscover packages when directories or metadata came or went; re-read the graph
        when code changed in a package whose imports make its edges."""
        paths = list(paths)
        metadata = any(os.path.basename(p) in PACKAGE_MARKERS for p in paths)
        imports = any(
            p.endswith(".py") and owner_of(p, self.packages) in self.graph.scanned for p in paths
        )
        if metadata or any(not os.path.isfile(p) for p in paths):
            self.refresh(metadata or imports)
        elif imports:
            self.graph = dependency_graph(self.packages)

    def owner_dir(self, path: str) -> str | None:
        owner = owner_of(path, self.packages)
        return None if owner is None else str(owner.path)

    def owners(self, changed: Mapping[str, float]) -> dict[Package, float]:
        """The packages holding the changed paths, each with its latest change."""
        owners: dict[Package, float] = {}
        for path, at in changed.items():
            owner = owner_of(path, self.packages)
            if owner is not None:
                owners[owner] = max(at, owners.get(owner, at))
        return owners


class Session:
    """The main loop, and the only place tests run: fed by the Intake, it orders each cycle,
    runs it and reports it."""

    def __init__(self, options: Options, reporter: Reporter) -> None:
        self.options = options
        self.root = options.root
        self.reporter = reporter
        reporter.root = options.root
        self.runner = make_runner(options.runner)
        check_runner(self.runner)
        self.rules = IgnoreRules(self.root, options.ignore)
        self.tree = PackageSet(self.root, reporter)
        if not self.tree.packages:
            raise UsageError(
                f"no packages under {self.root} (a package is a directory holding "
                f"{', '.join(PACKAGE_MARKERS[:-1])} or {PACKAGE_MARKERS[-1]}); pass --root DIR"
            )
        self.env = run_environment(self.runner, pycache_dir())
        self.changes = ChangeSet()
        self.guard = LoopGuard(self.tree.owner_dir)
        self.intake = Intake(
            self.changes, self.rules, self.guard, options.debounce, reporter.echoes
        )
        self.warm = WarmPolicy()
        self.failed: set[Package] = set()
        self.unfinished: set[Package] = set()  # not run yet by a cycle cut short for changes
        self.last_passed = True

    @property
    def packages(self) -> list[Package]:
        return self.tree.packages

    def start_run(self, package: Package) -> Run:
        self.guard.run_started(str(package.path))
        command = self.runner.command(package, self.options.runner_args)
        launcher = self.warm.launcher_for_runs()
        return Run(package, command, self.env, self.runner, self.options.timeout, launcher)

    def record(self, result: RunResult) -> None:
        self.guard.run_ended(str(result.package.path))
        self.reporter.verdict(result)
        self.warm.record(result)

    def cycle(self, changed: Mapping[str, float], only: set[Package] | None = None) -> CycleOutcome:
        steps = cycle_order(
            self.packages, self.tree.owners(changed), self.failed, self.tree.graph.uses
        )
        if only is not None:
            steps = [s for s in steps if s.package in only]
        if self.options.explain:
            self.reporter.explain(steps)
        watching = not self.options.once
        self.guard.cycle_started(time.monotonic())
        try:
            outcome = run_cycle(
                steps,
                self.start_run,
                self.options.jobs,
                self.intake.changed_meanwhile if watching else lambda: False,
                self.options.restart,
                self.record,
            )
        finally:
            self.guard.cycle_ended(time.monotonic())
        self.failed.difference_update(r.package for r in outcome.results)
        if outcome.failure is not None:
            self.failed.add(outcome.failure.package)
        self.unfinished = (
            (self.unfinished | {s.package for s in steps}) - {r.package for r in outcome.results}
            if outcome.interrupted
            else set()
        )
        self.reporter.summary(outcome)
        if not outcome.interrupted:
            self.after_cycle(outcome)
        self.warm.cycle_done()
        lost = self.warm.judge(len(self.packages))
        if lost is not None:
            self.reporter.warm_lost(*lost)
        return outcome

    def begin(self) -> None:
        if self.options.clear:
            self.reporter.clear()

    def after_cycle(self, outcome: CycleOutcome) -> None:
        if outcome.failure is not None:
            if self.options.bell:
                self.reporter.bell()
            if self.options.notify:
                self.reporter.notify_failed(outcome.failure)
        elif self.options.notify and not self.last_passed:
            self.reporter.notify_recovered()
        self.last_passed = outcome.passed

    def changed_from_arguments(self) -> dict[str, float]:
        """``--changed`` paths (relative to the current directory or the root), first one first."""
        changed: dict[str, float] = {}
        now = time.monotonic()
        for index, arg in enumerate(self.options.changed):
            candidates = [Path(arg)] if os.path.isabs(arg) else [Path.cwd() / arg, self.root / arg]
            for candidate in candidates:
                path = os.path.abspath(candidate)
                if owner_of(path, self.packages) is None:
                    path = os.path.realpath(candidate)
                if owner_of(path, self.packages) is not None:
                    changed[path] = now - index * 1e-6
                    break
            else:
                self.reporter.not_in_package(arg)
        return changed

    def run_all(self) -> CycleOutcome:
        self.begin()
        self.reporter.testing_all(len(self.packages))
        return self.cycle({})

    def run_failed(self) -> CycleOutcome:
        if not self.failed:
            self.reporter.no_failed()
            return CycleOutcome([])
        self.begin()
        self.reporter.testing_failed(len(self.failed))
        return self.cycle({}, only=set(self.failed))

    def run_unfinished(self) -> CycleOutcome:
        """What a cycle cut short for a change that came to nothing (a scratch file) left."""
        only = self.unfinished & set(self.packages)
        if not only:
            self.unfinished = set()
            return CycleOutcome([])
        self.begin()
        self.reporter.resuming(len(only))
        return self.cycle({}, only=only)

    def run_changes(self, changed: Mapping[str, float], known: Sequence[Package]) -> CycleOutcome:
        """A cycle for changed paths, named against ``known`` packages (those before and after
        the change, so a removed package still counts as one)."""
        self.begin()
        self.reporter.header(describe_changes(changed, self.root, known))
        return self.cycle(changed)

    def first_cycle(self) -> CycleOutcome:
        changed = self.changed_from_arguments()
        return self.run_changes(changed, self.packages) if changed else self.run_all()

    def once(self) -> int:
        return 0 if self.first_cycle().passed else 1

    def watch(self, interactive: bool) -> int:
        if WATCHDOG_ERROR:
            raise UsageError(
                f"watchdog is not installed ({WATCHDOG_ERROR}); "
                f"install it: {sys.executable} -m pip install watchdog"
            )
        watcher = Watcher(self.rules, self.changes, self.options.poll, self.reporter)
        try:
            how = watcher.start()
        except OSError as exc:
            raise UsageError(f"cannot watch {self.root}: {exc.strerror or exc}") from None
        self.reporter.watching(len(self.packages), how)
        folders = [str(self.root), *(str(p.path) for p in self.packages)]
        unapplied = self.rules.unapplied_gitignore(folders)
        if unapplied is not None:
            self.reporter.gitignore_not_applied(unapplied)
        if self.options.warm and self.runner.module:
            self.warm = WarmPolicy(WarmLauncher(self.runner, self.env))
        try:
            with KeyReader(self.changes.press) if interactive else contextlib.nullcontext():
                outcome = self.first_cycle()
                while True:
                    if interactive and not outcome.interrupted:
                        self.reporter.menu()
                    request = self.intake.next_request(resume=bool(self.unfinished))
                    if request.kind == "quit":
                        return 0 if self.last_passed else 1
                    outcome = self.respond(request)
        finally:
            watcher.stop()

    def respond(self, request: Request) -> CycleOutcome:
        if request.kind == "all":
            return self.run_all()
        if request.kind == "failed":
            return self.run_failed()
        if request.kind == "resume":
            return self.run_unfinished()
        batch = request.paths
        looping = self.guard.observe(batch)
        if looping:
            self.reporter.loop_found(looping)
        before = self.packages
        self.tree.follow(batch)
        self.failed &= set(self.packages)
        forget_bytecode(batch, self.env.get("PYTHONPYCACHEPREFIX"))
        return self.run_changes(batch, list({*before, *self.packages}))

    def close(self) -> None:
        self.warm.close()


def main(argv: Sequence[str] | None = None) -> int:
    with contextlib.suppress(AttributeError, ValueError):  # a name that is not UTF-8 is no crash
        sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    reporter = Reporter(sys.stdout, use_color(sys.stdout))
    session: Session | None = None
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        signal.signal(signal.SIGTERM, raise_terminated)
    try:
        options = parse_options(sys.argv[1:] if argv is None else argv, reporter.no_toml_for_config)
        session = Session(options, reporter)
        if options.once:
            return session.once()
        return session.watch(interactive=sys.stdin is not None and sys.stdin.isatty())
    except UsageError as exc:
        sys.stderr.write(f"autotest: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except Terminated:
        return 143
    except BrokenPipeError:
        return 1
    finally:
        if session is not None:
            session.close()


if __name__ == "__main__":
    sys.exit(main())

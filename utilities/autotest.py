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

A package is any directory below the root holding pyproject.toml, setup.py or setup.cfg (test
data and templates aside; a root that is itself one project is the one package).  Each
package runs in its own subprocess, with the package directory as working directory and the
interpreter that runs this script.  ``--help`` lists the options; each can also be set in
``[tool.autotest]`` of the root pyproject.toml or ``[autotest]`` of its setup.cfg.
"""

from __future__ import annotations

import argparse
import ast
import configparser
import contextlib
import difflib
import enum
import errno
import fnmatch
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
import zlib
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, NoReturn, Protocol

try:
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer
    from watchdog.observers.polling import PollingObserver

    WATCHDOG_ERROR = ""
except ImportError as _exc:  # --help and --once work without it; watching says what to install
    FileSystemEventHandler = object  # type: ignore[misc,assignment]
    WATCHDOG_ERROR = str(_exc)

# ---------------------------------------------------------------------------------------------
# Reading map
# ---------------------------------------------------------------------------------------------
#
# Sections, leaves first; each uses only those above it:
#
#   Basics          errors, the verdicts, every timing constant, the git helpers
#   Platform        every POSIX/Windows branch: process groups, killing a tree, keys,
#                   notifications, the inotify limit
#   Ignore rules    the one authority on what is a tool's directory or file, never a change
#   TOML            a TOML reader for Pythons without tomllib or tomli
#   Packages        discovery (what is a package), metadata, the import scan, and the graph
#                   of which package uses which, each edge labelled
#   Hand-off        ChangeSet, the one object two threads share
#   Watching        watchdog's thread: the event handler, the watch plan, the Watcher
#   Loop guard      tells the test runs' own writes from a person's edits
#   Intake          the main thread's side: one debounce, the git filter, keys -> a Request
#   Order           the pure decision of which package runs when, and why: groups, each in
#                   topological order
#   Runners         nose, nose2, pytest, unittest or a command: what each needs and how it ends
#   One run         one package's test process and its RunResult
#   Warm runner     the forking server (real code, sent to a fresh interpreter), its client,
#                   and the policy that decides when forked runs are used
#   Cycle           packages in order, up to --jobs at once, until the first failure
#   Report          every sentence a user reads is built here
#   Options         one table of settings: the command line, the config files, the defaults
#   Session         thin wiring of the above: the package set (found, chosen, its graph kept
#                   in step), the changes named at start, and main()
#
# Threads.  watchdog's observer thread runs ChangeHandler, which filters cheaply and calls
# ChangeSet.add/remove; the key reader thread calls ChangeSet.press.  Everything else, tests
# included, runs in the main thread.  ChangeSet is the only object both sides touch, under its
# own lock; nothing else is shared.
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


def changed_since(root: Path, ref: str) -> list[str]:
    """Absolute paths git reports as changed since ``ref``: committed, staged, unstaged and
    untracked.  git names them from the top of the work tree, whatever the current directory."""
    top = (run_git(str(root), "rev-parse", "--show-toplevel") or b"").strip()
    if not top:
        raise UsageError(f"--since {ref}: {root} is not in a git work tree (or git is missing)")
    commit = run_git(str(root), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if ref.startswith("-") or not (commit or b"").strip():
        raise UsageError(f"--since {ref}: git knows no such commit in {os.fsdecode(top)}")
    listed = [
        run_git(str(root), "diff", "--name-only", "-z", "--no-renames", ref, "--"),
        run_git(str(root), "ls-files", "-z", "--others", "--exclude-standard", "--full-name"),
    ]
    if None in listed:
        raise UsageError(f"--since {ref}: git could not list the changes")
    names = {os.fsdecode(n) for out in listed for n in (out or b"").split(b"\0") if n}
    return [os.path.join(os.fsdecode(top), n) for n in sorted(names)]


# ---------------------------------------------------------------------------------------------
# Platform: process groups, killing a tree, keys, notifications, the inotify limit
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


def glob_matches(rel: str, glob: str) -> bool:
    """A glob with a slash matches the path from the root; one without matches any component."""
    if "/" in glob.strip("/"):
        pattern = glob.strip("/")
        return fnmatch.fnmatchcase(rel, pattern) or fnmatch.fnmatchcase(rel, pattern + "/*")
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
            or any(glob_matches(rel, g) for g in self.user_globs)
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
        return any(glob_matches(rel, g) for g in self.user_globs)

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
# TOML: a reader for Pythons without tomllib or tomli
# ---------------------------------------------------------------------------------------------
#
# Edges come from pyproject.toml, and a reader that drops a multi-line requirement list hides
# an edge.  So this is a real TOML 1.0 parser returning what ``tomllib.loads`` returns, and
# raising only ``ValueError("line N: ...")``.  One exception, since nothing autotest reads is
# a date: dates and times stay the strings they are written as, unchecked.  It is a recursive
# descent over one string: each function takes a position and returns ``(value, next)``.

TOML_MAX_NESTING = 100  # deeper arrays or inline tables are an error, never a RecursionError

_TOML_BLANK = re.compile(r"(?:[ \t\n]|#[^\x00-\x08\x0a-\x1f\x7f]*)*")
_TOML_SPACE = re.compile(r"[ \t]*")
_TOML_LINE_END = re.compile(r"[ \t]*(?:#[^\x00-\x08\x0a-\x1f\x7f]*)?(?:\n|\Z)")
_TOML_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_STRING_RUN = {
    '"': re.compile(r'[^"\\\x00-\x08\x0a-\x1f\x7f]+'),
    '"""': re.compile(r'[^"\\\x00-\x08\x0b-\x1f\x7f]+'),
    "'": re.compile(r"[^'\x00-\x08\x0a-\x1f\x7f]+"),
    "'''": re.compile(r"[^'\x00-\x08\x0b-\x1f\x7f]+"),
}
_TOML_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}
_TOML_HEX = re.compile(r"[0-9A-Fa-f]+")
_TOML_LINE_CONTINUATION = re.compile(r"\\[ \t]*\n[ \t\n]*")
_TOML_TIME = r"[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
_TOML_DATETIME = re.compile(
    rf"[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}(?:[Tt ]{_TOML_TIME}(?:[Zz]|[+-][0-9]{{2}}:[0-9]{{2}})?)?"
    rf"|{_TOML_TIME}"
)
_TOML_NUMBER = re.compile(
    r"0(?:x[0-9A-Fa-f](?:_?[0-9A-Fa-f])*|o[0-7](?:_?[0-7])*|b[01](?:_?[01])*)"
    r"|[+-]?(?:0|[1-9](?:_?[0-9])*)((?:\.[0-9](?:_?[0-9])*)?(?:[eE][+-]?[0-9](?:_?[0-9])*)?)"
)


@dataclass
class _TomlTables:
    """Which tables may still grow, as ``id()``s: TOML forbids reopening a defined table.  Ids
    are safe: every registered table stays alive in the result while parsing, and inline
    tables are never registered, which is exactly what closes them to later lines."""

    root: dict[str, Any]
    structural: set[int] = field(default_factory=set)  # made by headers or dotted keys
    defined: set[int] = field(default_factory=set)  # closed to headers and dotted keys
    dotted: set[int] = field(default_factory=set)  # opened by dotted keys in this section
    arrays: set[int] = field(default_factory=set)  # made by [[...]]; headers may append

    def __post_init__(self) -> None:
        self.structural.add(id(self.root))


def parse_toml(text: str) -> dict[str, Any]:
    """A whole document; only ValueError escapes, so callers can report and move on."""
    src = text.replace("\r\n", "\n")
    tables = _TomlTables({})
    section = tables.root
    pos = _toml_skip(_TOML_BLANK, src, 0)
    while pos < len(src):
        if src.startswith("[", pos):
            section, pos = _toml_header(src, pos, tables)
        else:
            keys, value, end = _toml_key_value(src, pos, 0)
            _toml_assign(src, pos, tables, section, keys, value)
            pos = end
        if not _TOML_LINE_END.match(src, pos):
            _toml_fail(src, pos, "expected end of line")
        pos = _toml_skip(_TOML_BLANK, src, pos)
    return tables.root


def _toml_fail(src: str, pos: int, what: str) -> NoReturn:
    raise ValueError(f"line {src.count(chr(10), 0, pos) + 1}: {what}")


def _toml_skip(pattern: re.Pattern[str], src: str, pos: int) -> int:
    found = pattern.match(src, pos)
    return found.end() if found else pos


def _toml_header(src: str, pos: int, tables: _TomlTables) -> tuple[dict[str, Any], int]:
    """The table that the key/value lines after this header fill."""
    closing = "]]" if src.startswith("[[", pos) else "]"
    keys, end = _toml_key(src, pos + len(closing))
    if not src.startswith(closing, end):
        _toml_fail(src, end, f"expected {closing!r} after table name")
    tables.defined |= tables.dotted
    tables.dotted.clear()
    parent = tables.root
    for key in keys[:-1]:
        parent = _toml_subtable(src, pos, tables, parent, key, is_header_path=True)
    if closing == "]]":
        return _toml_append_array_table(src, pos, tables, parent, keys[-1]), end + 2
    section = _toml_subtable(src, pos, tables, parent, keys[-1], is_header_path=False)
    tables.defined.add(id(section))
    return section, end + 1


def _toml_subtable(
    src: str, pos: int, tables: _TomlTables, parent: dict[str, Any], key: str, is_header_path: bool
) -> dict[str, Any]:
    """parent[key], made if new, for later lines to extend.  Only the leading parts of a header
    may pass through a defined table, or through an array of tables to its last one."""
    if key not in parent:
        parent[key] = {}
        tables.structural.add(id(parent[key]))
    table = parent[key]
    if is_header_path and isinstance(table, list) and id(table) in tables.arrays:
        table = table[-1]
    closed = id(table) in tables.defined and not is_header_path
    if closed or not isinstance(table, dict) or id(table) not in tables.structural:
        _toml_fail(src, pos, f"cannot extend {key!r}: it is a value or an already defined table")
    return table


def _toml_append_array_table(
    src: str, pos: int, tables: _TomlTables, parent: dict[str, Any], key: str
) -> dict[str, Any]:
    if key not in parent:
        parent[key] = []
        tables.arrays.add(id(parent[key]))
    array = parent[key]
    if not isinstance(array, list) or id(array) not in tables.arrays:
        _toml_fail(src, pos, f"{key!r} is not an array of tables")
    element: dict[str, Any] = {}
    tables.structural.add(id(element))
    array.append(element)
    return element


def _toml_assign(
    src: str,
    pos: int,
    tables: _TomlTables,
    table: dict[str, Any],
    keys: tuple[str, ...],
    value: Any,
) -> None:
    """Dotted keys may only extend tables that no header or earlier section has defined."""
    for key in keys[:-1]:
        table = _toml_subtable(src, pos, tables, table, key, is_header_path=False)
        tables.dotted.add(id(table))
    if keys[-1] in table:
        _toml_fail(src, pos, f"duplicate key {keys[-1]!r}")
    table[keys[-1]] = value


def _toml_key(src: str, pos: int) -> tuple[tuple[str, ...], int]:
    """A dotted key as a path, so ``a.b = 1`` and ``[a]`` then ``b = 1`` land alike."""
    parts: list[str] = []
    while True:
        pos = _toml_skip(_TOML_SPACE, src, pos)
        bare = _TOML_BARE_KEY.match(src, pos)
        quote = src[pos : pos + 1]
        if bare:
            part, pos = bare.group(), bare.end()
        elif quote in ('"', "'"):
            part, pos = _toml_string(src, pos, quote)
        else:
            _toml_fail(src, pos, "expected a key")
        parts.append(part)
        pos = _toml_skip(_TOML_SPACE, src, pos)
        if not src.startswith(".", pos):
            return tuple(parts), pos
        pos += 1


def _toml_key_value(src: str, pos: int, depth: int) -> tuple[tuple[str, ...], Any, int]:
    keys, pos = _toml_key(src, pos)
    if not src.startswith("=", pos):
        _toml_fail(src, pos, "expected '=' after key")
    value, pos = _toml_value(src, _toml_skip(_TOML_SPACE, src, pos + 1), depth)
    return keys, value, pos


def _toml_value(src: str, pos: int, depth: int) -> tuple[Any, int]:
    if depth > TOML_MAX_NESTING:
        _toml_fail(src, pos, f"arrays or inline tables nested deeper than {TOML_MAX_NESTING}")
    first = src[pos : pos + 1]
    if first in ('"', "'"):
        return _toml_string(src, pos, first * 3 if src.startswith(first * 3, pos) else first)
    if first == "[":
        return _toml_array(src, pos, depth)
    if first == "{":
        return _toml_inline_table(src, pos, depth)
    for pattern, convert in _TOML_SCALARS:
        found = pattern.match(src, pos)
        if found:
            try:
                return convert(found), found.end()
            except ValueError:
                _toml_fail(src, pos, f"invalid value {found.group()!r}")
    _toml_fail(src, pos, "expected a value")


def _toml_array(src: str, pos: int, depth: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    pos = _toml_skip(_TOML_BLANK, src, pos + 1)
    while not src.startswith("]", pos):
        item, pos = _toml_value(src, pos, depth + 1)
        items.append(item)
        pos = _toml_skip(_TOML_BLANK, src, pos)
        if src.startswith(",", pos):
            pos = _toml_skip(_TOML_BLANK, src, pos + 1)
        elif not src.startswith("]", pos):
            _toml_fail(src, pos, "expected ',' or ']' in array")
    return items, pos + 1


def _toml_inline_table(src: str, pos: int, depth: int) -> tuple[dict[str, Any], int]:
    """Inline tables get their own bookkeeping: dotted keys inside them may share parents."""
    table: dict[str, Any] = {}
    tables = _TomlTables(table)
    pos = _toml_skip(_TOML_SPACE, src, pos + 1)
    if src.startswith("}", pos):
        return table, pos + 1
    while True:
        keys, value, pos = _toml_key_value(src, pos, depth + 1)
        _toml_assign(src, pos, tables, table, keys, value)
        pos = _toml_skip(_TOML_SPACE, src, pos)
        if src.startswith("}", pos):
            return table, pos + 1
        if not src.startswith(",", pos):
            _toml_fail(src, pos, "expected ',' or '}' in inline table")
        pos += 1


def _toml_string(src: str, pos: int, delim: str) -> tuple[str, int]:
    """One loop reads all four string kinds; they differ only in what may appear in a run."""
    multiline = len(delim) == 3
    pos += len(delim)
    if multiline and src.startswith("\n", pos):
        pos += 1
    parts: list[str] = []
    while not src.startswith(delim, pos):
        run = _TOML_STRING_RUN[delim].match(src, pos)
        char = src[pos : pos + 1]
        if run:
            parts.append(run.group())
            pos = run.end()
        elif char == "\\":
            text, pos = _toml_escape(src, pos, multiline)
            parts.append(text)
        elif multiline and char == delim[0]:
            parts.append(char)
            pos += 1
        else:
            _toml_fail(
                src, pos, f"bad character {char!r} in string" if char else "unterminated string"
            )
    pos += len(delim)
    extra = 0  # a closing """ may follow up to two quotes that belong to the content
    while multiline and extra < 2 and src.startswith(delim[0], pos + extra):
        extra += 1
    return "".join(parts) + delim[0] * extra, pos + extra


def _toml_escape(src: str, pos: int, multiline: bool) -> tuple[str, int]:
    """A backslash ending a line of a multi-line string swallows the break and indentation."""
    code = src[pos + 1 : pos + 2]
    if code in _TOML_ESCAPES:
        return _TOML_ESCAPES[code], pos + 2
    if code in ("u", "U"):
        width = 4 if code == "u" else 8
        digits = src[pos + 2 : pos + 2 + width]
        point = int(digits, 16) if len(digits) == width and _TOML_HEX.fullmatch(digits) else -1
        if 0 <= point <= 0x10FFFF and not 0xD800 <= point <= 0xDFFF:
            return chr(point), pos + 2 + width
    continuation = _TOML_LINE_CONTINUATION.match(src, pos) if multiline else None
    if continuation:
        return "", continuation.end()
    _toml_fail(src, pos, f"invalid escape {src[pos : pos + 2]!r}")


def _toml_number(found: re.Match[str]) -> int | float:
    return float(found.group()) if found.group(1) else int(found.group(), 0)


_TOML_SCALARS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], Any]], ...] = (
    (re.compile(r"true|false"), lambda found: found.group() == "true"),
    (_TOML_DATETIME, lambda found: found.group()),
    (_TOML_NUMBER, _toml_number),
    (re.compile(r"[+-]?(?:inf|nan)"), lambda found: float(found.group())),
)


# ---------------------------------------------------------------------------------------------
# Packages: discovery, metadata, graph
# ---------------------------------------------------------------------------------------------

PACKAGE_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg")
# A project below one of these directories of another package is its test data, not a package.
TEST_DIR_NAMES = frozenset({"tests", "test", "testing", "fixtures", "testdata"})
# A directory named like this is a template's placeholder: ``__package_name__``, ``{{x.y}}``.
PLACEHOLDER = re.compile(r"__\w+__|.*(\{\{|\{%|\}\}).*")
MAX_SCANNED_BYTES = 1_000_000  # a bigger Python file is generated, not written: never scanned


@dataclass(frozen=True)
class Package:
    """A directory of the repository that holds its own project metadata and tests."""

    path: Path
    rel: str

    @property
    def depth(self) -> int:
        return self.rel.count("/")


@dataclass(frozen=True)
class Discovery:
    """The packages below a root, the projects found that are not packages (with why), and
    the directories that could not be read."""

    packages: tuple[Package, ...]
    left_out: tuple[tuple[str, str], ...] = ()
    unreadable: tuple[str, ...] = ()


def below(parent_why: str, entry: os.DirEntry[str], rel: str, package: str | None,
          importable: bool) -> str:  # fmt: skip
    """What a subdirectory inherits: why no project inside it can be a package."""
    if parent_why:
        return parent_why
    if importable:
        return f"inside the Python package {rel}"
    if package is not None and entry.name in TEST_DIR_NAMES:
        return f"in the {entry.name} of {package}"
    if PLACEHOLDER.fullmatch(entry.name):
        return f"a template: {entry.name} is a placeholder"
    return ""


def discover(root: Path, excluded: Callable[[str, str], bool] | None = None) -> Discovery:
    """Every package below ``root``, never following a link out of it.  A project inside
    another package's test directories, inside an importable Python package or a template is
    test data.  When no package lies below, a root holding project metadata is the one package."""
    found: list[Package] = []
    left_out: list[tuple[str, str]] = []
    unreadable: list[str] = []
    root_package = root.name if holds_package_metadata(root) else None  # its tests hold data
    stack: list[tuple[str, str, str | None]] = [(str(root), "", root_package)]
    while stack:
        directory, why, package = stack.pop()
        try:
            with os.scandir(directory) as scan:
                entries = list(scan)
        except OSError:
            unreadable.append(directory)
            continue
        names = {e.name for e in entries}
        rel = Path(directory).relative_to(root).as_posix() if directory != str(root) else ""
        if rel and names & set(PACKAGE_MARKERS):
            if why:
                left_out.append((rel, why))
            else:
                found.append(Package(Path(directory), rel))
                package = rel
        importable = bool(rel) and "__init__.py" in names
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and not (
                holds_no_packages(entry.name, entry.path)
                or (excluded is not None and excluded(entry.name, entry.path))
            ):
                stack.append((entry.path, below(why, entry, rel, package, importable), package))
    if not found and root_package is not None:
        found.append(Package(root, root.name or str(root)))
    return Discovery(
        tuple(sorted(found, key=lambda p: p.rel)),
        tuple(sorted(left_out)),
        tuple(sorted(unreadable)),
    )


def discover_packages(root: Path) -> tuple[list[Package], list[str]]:
    """The packages below ``root``, and the directories unreadable."""
    found = discover(root)
    return list(found.packages), list(found.unreadable)


def holds_package_metadata(directory: Path) -> bool:
    """A project of its own, not workspace or tool configuration alone."""
    if (directory / "setup.py").is_file():
        return True
    for name, pattern in (
        ("pyproject.toml", r"^\[(project|tool\.poetry)\]"),
        ("setup.cfg", r"^\[(metadata|options)\]"),
    ):
        with contextlib.suppress(OSError):
            if re.search(pattern, (directory / name).read_text(errors="replace"), re.M):
                return True
    return False


def owner_of(path: str, packages: Sequence[Package]) -> Package | None:
    """The innermost package holding ``path``, or None when it lies outside every package."""
    best: Package | None = None
    for package in packages:
        prefix = str(package.path)
        inside = path == prefix or path.startswith(prefix + os.sep)
        if inside and (best is None or len(prefix) > len(str(best.path))):
            best = package
    return best


def normalize_name(name: str) -> str:
    """PEP 503: ``Foo_Bar`` and ``foo-bar`` name the same distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str | None:
    match = re.match(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)", requirement)
    return normalize_name(match.group(1)) if match else None


class UnreadableFile(Exception):
    """A metadata file that cannot be parsed: its edges are lost, and the user is told once."""


def load_toml(path: Path) -> dict[str, Any]:
    """The parsed file, by tomllib, else tomli, else autotest's own reader (TOML section)."""
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:
            with open(path, encoding="utf-8") as f:
                return parse_toml(f.read())
    with open(path, "rb") as f:
        data: dict[str, Any] = tomllib.load(f)
    return data


@dataclass(frozen=True)
class Declared:
    """One requirement a package declares: a distribution name or local paths (the first that
    is a package counts), with what kind of requirement it is ("" for one its code needs)."""

    name: str | None
    paths: tuple[Path, ...] = ()
    label: str = ""


def kind_label(kind: str, key: str) -> str:
    """``tests`` for anything named after tests, else the kind and its name."""
    return "tests" if "test" in key.lower() else f"{kind} {key}".strip()


def declared_names(listed: Any, label: str) -> list[Declared]:
    strings = listed if isinstance(listed, list) else []
    return [Declared(requirement_name(r), (), label) for r in strings if isinstance(r, str)]


def dependency_groups(groups: Any) -> list[Declared]:
    """PEP 735 groups.  Every group is read, so a group that another includes
    (``{include-group = "test"}``) gives its edges once, labelled by the group that names them."""
    if not isinstance(groups, dict):
        return []
    return [
        d for g, listed in groups.items() for d in declared_names(listed, kind_label("group", g))
    ]


def poetry_requirements(poetry: Any, directory: Path) -> list[Declared]:
    """``[tool.poetry.dependencies]`` and its groups: names, and ``{path = "../core"}``."""
    if not isinstance(poetry, dict):
        return []
    tables = [("", poetry.get("dependencies"))]
    groups = poetry.get("group")
    for group, table in groups.items() if isinstance(groups, dict) else ():
        if isinstance(table, dict):
            tables.append((kind_label("group", group), table.get("dependencies")))
    found: list[Declared] = []
    for label, table in tables:
        for name, spec in table.items() if isinstance(table, dict) else ():
            path = spec.get("path") if isinstance(spec, dict) else None
            paths = (directory / path,) if isinstance(path, str) else ()
            found.append(Declared(normalize_name(name), paths, label))
    return found


def pyproject_requirements(path: Path) -> tuple[str | None, list[Declared]]:
    try:
        data = load_toml(path)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError, MemoryError) as exc:
        raise UnreadableFile(str(exc) or type(exc).__name__) from None
    project: dict[str, Any] = data["project"] if isinstance(data.get("project"), dict) else {}
    found = declared_names(project.get("dependencies"), "")
    extras = project.get("optional-dependencies")
    for extra, listed in extras.items() if isinstance(extras, dict) else ():
        found.extend(declared_names(listed, kind_label("extra", extra)))
    found.extend(dependency_groups(data.get("dependency-groups")))
    poetry = data.get("tool", {}).get("poetry") if isinstance(data.get("tool"), dict) else None
    found.extend(poetry_requirements(poetry, path.parent))
    name = project.get("name") or (poetry.get("name") if isinstance(poetry, dict) else None)
    return (name if isinstance(name, str) else None), found


def setup_cfg_requirements(path: Path) -> tuple[str | None, list[Declared]]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise UnreadableFile(str(exc).splitlines()[0]) from None

    def lines(section: str, key: str) -> list[str]:
        return [r for r in parser.get(section, key, fallback="").splitlines() if r.strip()]

    found = declared_names(lines("options", "install_requires"), "")
    found.extend(declared_names(lines("options", "tests_require"), "tests"))
    if parser.has_section("options.extras_require"):
        for extra in parser.options("options.extras_require"):
            listed = lines("options.extras_require", extra)
            found.extend(declared_names(listed, kind_label("extra", extra)))
    return parser.get("metadata", "name", fallback=None), found


def setup_py_requirements(path: Path) -> tuple[str | None, list[Declared]]:
    """The literal keywords of the ``setup()`` call, read as a syntax tree, never run."""
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise UnreadableFile(str(exc) or type(exc).__name__) from None
    name: str | None = None
    found: list[Declared] = []
    for node in ast.walk(tree):
        for keyword in node.keywords if isinstance(node, ast.Call) else ():
            try:
                value = ast.literal_eval(keyword.value)
            except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
                continue
            if keyword.arg == "name" and isinstance(value, str):
                name = value
            elif keyword.arg in ("install_requires", "tests_require"):
                listed = [value] if isinstance(value, str) else list(value or ())
                found.extend(declared_names(listed, "tests" if "tests" in keyword.arg else ""))
            elif keyword.arg == "extras_require" and isinstance(value, dict):
                for extra, listed in value.items():
                    listed = [listed] if isinstance(listed, str) else list(listed)
                    found.extend(declared_names(listed, kind_label("extra", str(extra))))
    return name, found


def is_metadata_file(path: str) -> bool:
    """A file whose change may change the graph's declared edges."""
    name = os.path.basename(path)
    return name in PACKAGE_MARKERS or (
        name.endswith(".txt")
        and ("requirements" in name or os.path.basename(os.path.dirname(path)) == "requirements")
    )


def requirement_files(package: Package) -> list[Path]:
    """``*requirements*.txt`` beside the metadata and ``requirements/*.txt``."""
    found = sorted(package.path.glob("*requirements*.txt"))
    return found + sorted((package.path / "requirements").glob("*.txt"))


def requirement_line(line: str, here: Path, root: Path, label: str) -> Declared | None:
    """A name, or a path (``-e ../core``, ``./libs/testing[test]``) tried against the file's
    directory, then the root."""
    editable = re.match(r"(?:-e|--editable)(?:\s+|=)(.*)", line)
    target = editable.group(1).strip() if editable else line
    if not editable and target.startswith("-"):
        return None
    egg = re.search(r"#egg=([\w.-]+)", target)
    if "://" in target and not target.startswith("file:"):
        return Declared(normalize_name(egg.group(1)), (), label) if egg else None
    if editable or target.startswith((".", "/", "file:")) or re.match(r"[\w.-]+/", target):
        local = re.sub(
            r"\[[^\]]*\]$", "", target.split("#")[0].replace("file://", "").replace("file:", "")
        )
        return Declared(None, (here / local, root / local), label)
    return Declared(requirement_name(target), (), label)


def read_requirement_file(path: Path, root: Path, seen: set[Path]) -> list[Declared]:
    """Every requirement the file lists, following ``-r other.txt`` within the root."""
    seen.add(path)
    shown = f"requirements/{path.name}" if path.parent.name == "requirements" else path.name
    label = "tests" if "test" in path.name.lower() else shown
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    found: list[Declared] = []
    for raw in text.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s)#.*", "", raw).strip()
        included = re.match(r"(?:-r|--requirement)(?:\s+|=)(\S+)", line)
        if included:
            target = (path.parent / included.group(1)).resolve()
            if target not in seen and target.is_file() and target.is_relative_to(root):
                found.extend(read_requirement_file(target, root, seen))
        elif line:
            declared = requirement_line(line, path.parent, root, label)
            found.extend([declared] if declared else [])
    return found


@dataclass(frozen=True)
class Metadata:
    """What a package says of itself: its distribution name, what it declares, and the files
    that could not be read (with why)."""

    name: str
    declared: tuple[Declared, ...] = ()
    unreadable: tuple[tuple[str, str], ...] = ()

    @property
    def requires(self) -> frozenset[str]:
        return frozenset(d.name for d in self.declared if d.name)


def read_metadata(package: Package, root: Path | None = None) -> Metadata:
    name: str | None = None
    declared: list[Declared] = []
    unreadable: list[tuple[str, str]] = []
    readers = (
        ("pyproject.toml", pyproject_requirements),
        ("setup.cfg", setup_cfg_requirements),
        ("setup.py", setup_py_requirements),
    )
    for filename, reader in readers:
        path = package.path / filename
        if path.is_file():
            try:
                found_name, found = reader(path)
            except UnreadableFile as exc:
                unreadable.append((str(path), str(exc)))
                continue
            name = name or found_name
            declared.extend(found)
    seen: set[Path] = set()
    for path in requirement_files(package):
        if path.resolve() not in seen:
            declared.extend(read_requirement_file(path.resolve(), root or package.path, seen))
    return Metadata(normalize_name(name or package.path.name), tuple(declared), tuple(unreadable))


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
                if entry.name in TEST_DIR_NAMES or entry.name == "docs":
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


# ``import a.b as c, d`` and ``from a.b import (c, d)`` at the start of a line.  A regular
# expression, not a syntax tree: twenty times faster on a big tree, and a file that does not
# parse (being edited, generated, nested too deep) still says what it imports.
IMPORT_STATEMENT = re.compile(
    rb"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]*)|import[ \t]+([^\n#;]+))",
    re.M,
)


def imports_in(source: bytes, wanted: Container[str] | None = None) -> frozenset[str]:
    """Every absolute dotted name a source imports (``from a import b`` gives a and a.b) whose
    top-level name is ``wanted`` (all when None): most imports are of the standard library or
    third parties, and dropping them early halves the scan."""
    imported: set[str] = set()
    for module, names, plain in IMPORT_STATEMENT.findall(source):
        if module and not module.startswith(b"."):
            base = module.decode("ascii", "replace")
            if wanted is not None and base.partition(".")[0] not in wanted:
                continue
            imported.add(base)
            for item in names.strip(b"()\\ \t").split(b","):
                word = item.split()[:1]
                if word and word[0] != b"*":
                    imported.add(f"{base}.{word[0].decode('ascii', 'replace')}")
        for item in plain.split(b","):
            word = item.split()[:1]
            name = word[0].decode("ascii", "replace") if word else ""
            if name and (wanted is None or name.partition(".")[0] in wanted):
                imported.add(name)
    return frozenset(imported)


def is_test_module(name: str) -> bool:
    return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"


SCAN_CACHE_VERSION = 1
KEEP_SCAN_FROM = 1000  # Python files; a smaller tree is read again faster than a cache is


def scan_cache_file(root: Path) -> str:
    """Where the import scan of ``root`` is kept between runs: per user, outside the tree."""
    name = f"{zlib.crc32(os.fsencode(root)):08x}-{root.name[:40]}.json"
    return os.path.join(tempfile.gettempdir(), f"autotest-scan{user_suffix()}", name)


class ImportScan:
    """What each Python file imports of the ``wanted`` top-level modules (the packages'),
    kept by (mtime, size), and what each package imports, kept until a path inside it
    changes.  A change costs reading the changed files and walking the packages that hold
    them; kept in a file between runs, a start costs one ``stat`` per file."""

    def __init__(self) -> None:
        self.wanted: frozenset[str] | None = None  # None: every module
        self.files: dict[str, tuple[int, int, frozenset[str]]] = {}
        self.packages: dict[Path, dict[str, set[str]]] = {}
        self.changed = False
        self.looked_up: set[str] = set()  # only these are kept: the others are gone

    def want(self, wanted: frozenset[str] | None) -> None:
        """Look for these modules from now on; a different set means reading every file."""
        if wanted != self.wanted:
            self.wanted = wanted
            self.files.clear()
            self.packages.clear()

    def load(self, path: str) -> None:
        """Start from what an earlier run read, if anything; a cache that cannot be read is
        no cache."""
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError, AttributeError):
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            if data["version"] == SCAN_CACHE_VERSION:
                wanted = data["wanted"]
                self.wanted = None if wanted is None else frozenset(wanted)
                self.files = {p: (m, s, frozenset(n)) for p, (m, s, n) in data["files"].items()}

    def save(self, path: str) -> None:
        """Keep what was read for the next run, in one atomic write, if anything changed."""
        if not self.changed:
            return
        data = {
            "version": SCAN_CACHE_VERSION,
            "wanted": None if self.wanted is None else sorted(self.wanted),
            "files": {
                p: (m, s, sorted(n)) for p, (m, s, n) in self.files.items() if p in self.looked_up
            },
        }
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "w", dir=os.path.dirname(path), suffix=".tmp", delete=False, encoding="utf-8"
            ) as f:
                json.dump(data, f, separators=(",", ":"))
            os.replace(f.name, path)
            self.changed = False

    def forget(self, paths: Iterable[str]) -> None:
        """Walk again the packages holding any of ``paths`` (a file, or a directory that came
        or went)."""
        for path in paths:
            for directory in [d for d in self.packages if path.startswith(str(d) + os.sep)]:
                del self.packages[directory]

    def imports(self, path: str) -> frozenset[str]:
        """What the file imports: from the cache while its mtime and size are unchanged."""
        self.looked_up.add(path)
        known = self.files.get(path)
        try:
            if known is not None:
                stat = os.stat(path)
                if known[:2] == (stat.st_mtime_ns, stat.st_size):
                    return known[2]
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))  # half open()'s cost
            try:
                stat = os.fstat(fd)
                big = stat.st_size > MAX_SCANNED_BYTES
                source = b"" if big else os.read(fd, stat.st_size + 1)
            finally:
                os.close(fd)
            imported = imports_in(source, self.wanted) if source else frozenset()
        except OSError:
            return frozenset()
        self.files[path] = (stat.st_mtime_ns, stat.st_size, imported)
        self.changed = True
        return imported

    def package_imports(self, package: Package, others: Iterable[str]) -> dict[str, set[str]]:
        """The names the package's code imports (``code``) and its tests import (``tests``),
        leaving out ``others``: the directories of packages nested inside it."""
        if package.path in self.packages:
            return self.packages[package.path]
        code: set[str] = set()
        tests: set[str] = set()
        skip = set(others)
        top = str(package.path)
        for directory, dirnames, filenames in os.walk(top):
            dirnames[:] = [
                d for d in dirnames
                if not holds_no_packages(d, os.path.join(directory, d))
                and os.path.join(directory, d) not in skip
            ]  # fmt: skip
            inside_tests = not TEST_DIR_NAMES.isdisjoint(directory[len(top) :].split(os.sep))
            for name in filenames:
                if name.endswith(".py"):
                    found = tests if inside_tests or is_test_module(name) else code
                    found |= self.imports(os.path.join(directory, name))
        self.packages[package.path] = {"code": code, "tests": tests}
        return self.packages[package.path]


@dataclass(frozen=True)
class DependencyGraph:
    """For each package, the sibling packages it uses directly, and for each such edge why:
    ``labels[(user, used)]`` is "" for a declared dependency of its code, else what declared
    or imported it (``tests``, ``imports``, ``extra docs``, ``requirements.txt``)."""

    uses: dict[Package, set[Package]]
    labels: dict[tuple[Package, Package], str] = field(default_factory=dict)
    names: dict[Package, str] = field(default_factory=dict)
    unreadable: tuple[tuple[str, str], ...] = ()


LABEL_ORDER = ("imports", "tests")  # shown first; a declared dependency of the code wins alone


def edge_label(labels: set[str]) -> str:
    if "" in labels:
        return ""
    first = [label for label in LABEL_ORDER if label in labels]
    return ", ".join(first + sorted(labels - set(LABEL_ORDER)))


def imported_packages(
    package: Package, names: Iterable[str], providers: Mapping[str, set[Package]]
) -> set[Package]:
    """The packages whose modules ``names`` are (``a.b.c`` tries a, a.b, a.b.c).  A module the
    package provides itself, or that several packages provide (a ``shared.py`` in each), is
    no edge."""
    found: set[Package] = set()
    for name in names:
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            owners = providers.get(".".join(parts[:end]), set())
            if len(owners) == 1 and package not in owners:
                found |= owners
    return found


def dependency_graph(
    packages: Sequence[Package], root: Path | None = None, scan: ImportScan | None = None
) -> DependencyGraph:
    """Edges from everything the packages declare, and from what their code and tests import
    of the modules the others provide."""
    scan = scan or ImportScan()
    metadata = {p: read_metadata(p, root) for p in packages}
    by_name = {m.name: p for p, m in metadata.items()}
    by_path = {p.path: p for p in packages}
    providers: dict[str, set[Package]] = {}
    for package in packages:
        for module in provided_modules(package):
            providers.setdefault(module, set()).add(package)
    scan.want(frozenset(m.partition(".")[0] for m in providers))
    edges: dict[Package, dict[Package, set[str]]] = {p: {} for p in packages}

    def link(user: Package, used: Package | None, label: str) -> None:
        if used is not None and used != user:
            edges[user].setdefault(used, set()).add(label)

    for package in packages:
        for declared in metadata[package].declared:
            paths = [by_path.get(Path(os.path.normpath(p))) for p in declared.paths]
            link(
                package,
                by_name.get(declared.name or "") or next(filter(None, paths), None),
                declared.label,
            )
        nested = [
            str(p.path) for p in packages if p != package and owner_of(str(p.path), [package])
        ]
        for kind, names in scan.package_imports(package, nested).items():
            for used in imported_packages(package, names, providers):
                link(package, used, "imports" if kind == "code" else "tests")
    return DependencyGraph(
        {p: set(used) for p, used in edges.items()},
        {(p, u): edge_label(labels) for p, used in edges.items() for u, labels in used.items()},
        {p: m.name for p, m in metadata.items()},
        tuple(u for m in metadata.values() for u in m.unreadable),
    )


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
        self._keys: list[str] = []
        self._last = 0.0

    def add(self, paths: Iterable[str], created: bool = False) -> None:
        now = self._clock()
        with self._cond:
            for path in paths:
                if created and path not in self._paths:
                    self._created.add(path)
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
            paths, self._paths, self._created = self._paths, {}, set()
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
                    quiet_for = now - self._last
                    if quiet_for >= debounce:
                        return
                    wait = min(wait, debounce - quiet_for)
                self._cond.wait(wait)


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
        relevant = [p for p in paths if not self.rules.is_ignored(p, event.is_directory)]
        if kind in ("deleted", "moved") and paths[0] in relevant:
            self.changes.remove(paths[0])
            relevant = relevant[1:]
        if relevant:
            self.changes.add(relevant, created=kind in ("created", "moved"))


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


class WatchNotices(Protocol):
    """What the Watcher has to tell the user; the Reporter says it."""

    def unreadable(self, path: str) -> None: ...

    def too_many_watches(self, needed: int, limit: int) -> None: ...

    def watches_refused(self, reason: str) -> None: ...

    def cannot_watch(self, path: str, reason: str) -> None: ...


class Watcher:
    """Owns the watchdog observer: which directories get watches, and the polling fallback."""

    def __init__(
        self,
        rules: IgnoreRules,
        changes: ChangeSet,
        poll: bool,
        notices: WatchNotices,
    ) -> None:
        self.root = rules.root
        self.rules = rules
        self.poll = poll
        self.notices = notices
        self.handler = ChangeHandler(rules, changes, self.directory_event)
        self.flat: set[str] = set()
        self.scheduled: dict[str, Any] = {}
        self.observer: Any = None
        self._lock = threading.Lock()

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
            self.notices.watches_refused(exc.strerror or str(exc))
            self.poll = True
            self._start_observer(plan)
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
        self.flat = set(plan.flat)
        for path in plan.recursive:
            self._schedule(path, recursive=True)
        for path in plan.flat:
            self._schedule(path, recursive=False)
        self.observer.daemon = True
        self.observer.start()

    def _schedule(self, path: str, recursive: bool) -> None:
        self.scheduled[path] = self.observer.schedule(self.handler, path, recursive=recursive)

    def directory_event(self, kind: str, path: str) -> None:
        """Keep watches in step with the tree: a directory created below a one-level watch gets
        its own, and an ignored one (a new .venv) created inside a recursive watch splits it, so
        watchdog does not spend watches below it."""
        with self._lock:
            if kind == "deleted":
                for watched in [
                    p for p in self.scheduled if p == path or p.startswith(path + os.sep)
                ]:
                    self._unschedule(watched)
            elif kind == "created" and os.path.isdir(path):
                name, parent = os.path.basename(path), os.path.dirname(path)
                if not self.rules.excludes_dir(name, path):
                    if parent in self.flat:
                        self._schedule_plan(path)
                    return
                for watched in list(self.scheduled):
                    if watched not in self.flat and path.startswith(watched + os.sep):
                        self._unschedule(watched)
                        self._schedule_plan(watched)

    def _schedule_plan(self, path: str) -> None:
        plan = plan_watches(path, self.rules.excludes_dir)
        try:
            for p in plan.recursive:
                self._schedule(p, recursive=True)
            for p in plan.flat:
                self._schedule(p, recursive=False)
        except OSError as exc:
            self.notices.cannot_watch(path, exc.strerror or str(exc))
        self.flat.update(plan.flat)

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


class LoopGuard:
    """If each run writes a file that is not ignored, every run would set off the next.

    When two cycles in a row were set off by nothing but the same files changing during the
    cycle before, the runs write them: from then on their changes during runs (and just after)
    pass.  The same path changed while idle was a person's doing, so it counts again.
    """

    def __init__(self) -> None:
        self.running_since: float | None = None
        self.last_cycle = (-1.0, -1.0)  # when the last cycle started and ended
        self.streak = 0
        self.streak_paths: frozenset[str] = frozenset()
        self.run_written: set[str] = set()

    def cycle_started(self, at: float) -> None:
        self.running_since = at

    def cycle_ended(self, at: float) -> None:
        if self.running_since is not None:
            self.last_cycle = (self.running_since, at)
        self.running_since = None

    def during_runs(self, at: float) -> bool:
        start, end = self.last_cycle
        running = self.running_since is not None and at >= self.running_since
        return running or start <= at <= end + ECHO_GRACE

    def is_runs_doing(self, path: str, at: float) -> bool:
        """A change to a path the guard named, made while a cycle ran (or just after)."""
        if path not in self.run_written:
            return False
        if self.during_runs(at):
            return True
        self.run_written.discard(path)
        return False

    def observe(self, batch: Mapping[str, float]) -> list[str]:
        """Look at the burst that starts a cycle; the paths it names as the runs' writes now,
        or none."""
        if any(map(is_edited_by_people, batch)) or not all(
            self.during_runs(t) for t in batch.values()
        ):
            self.streak = 0
            return []
        repeated = self.streak and frozenset(batch) == self.streak_paths
        self.streak = self.streak + 1 if repeated else 1
        self.streak_paths = frozenset(batch)
        if self.streak < 2:
            return []
        self.streak = 0
        self.run_written |= set(batch)
        return sorted(batch)


# ---------------------------------------------------------------------------------------------
# Intake: from the hand-off to the next request, in the main thread
# ---------------------------------------------------------------------------------------------

RUN_KEYS = {"\n": "all", "\r": "all", "a": "all", "A": "all", "f": "failed", "F": "failed"}
QUIT_KEYS = ("q", "Q")


@dataclass(frozen=True)
class Request:
    """What the main loop is asked to do next: ``changes`` (with the paths and when each
    changed), ``all``, ``failed`` or ``quit``."""

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
        self._git_ignored: dict[str, bool] = {}

    def _counting(self, paths: Mapping[str, float]) -> tuple[dict[str, float], list[str]]:
        """The paths that count, and those the loop guard takes for the runs' writes."""
        unknown = [p for p in paths if p not in self._git_ignored]
        if unknown:
            ignored = self.rules.git_ignored(unknown)
            self._git_ignored.update((p, p in ignored) for p in unknown)
        kept = {p: t for p, t in paths.items() if not self._git_ignored[p]}
        echoes = sorted(p for p, t in kept.items() if self.guard.is_runs_doing(p, t))
        return {p: t for p, t in kept.items() if p not in echoes}, echoes

    def changed_meanwhile(self) -> bool:
        """Whether a change that counts (or q) arrived during a cycle.  It only looks: the burst
        stays in the ChangeSet until it settles, so an editor's save stays one change."""
        paths, keys = self.changes.peek()
        if any(k in QUIT_KEYS for k in keys):
            return True
        counting, _ = self._counting(paths)
        return bool(counting)

    def next_request(self) -> Request:
        """Block until a key or a settled burst of changes that count."""
        while True:
            key = self.changes.take_key()
            if key in QUIT_KEYS:
                return Request("quit")
            if key in RUN_KEYS:
                return Request(RUN_KEYS[key])
            if key is not None:
                continue
            self.changes.wait_settled(self.debounce)
            if self.changes.peek()[1]:
                continue
            paths = self.changes.take_paths()
            counting, echoes = self._counting(paths)
            self._git_ignored.clear()
            if echoes:
                self.on_echoes(echoes)
            if counting:
                return Request("changes", counting)


# ---------------------------------------------------------------------------------------------
# Order: which package runs when, and why
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One package in a cycle's order, with the reason it stands there."""

    package: Package
    reason: str


def topological(
    group: Iterable[Package], uses: Mapping[Package, set[Package]], rank: Callable[[Package], Any]
) -> list[Package]:
    """``group`` with each package after the packages of the group it uses, otherwise by
    ``rank``.  A cycle is broken stably: at the package with the fewest unmet uses, by rank."""
    members = set(group)
    waiting = {p: {u for u in uses.get(p, ()) if u in members and u != p} for p in members}
    ordered: list[Package] = []
    while waiting:
        ready = [p for p, unmet in waiting.items() if not unmet]
        pick = (
            min(ready, key=rank)
            if ready
            else min(waiting, key=lambda p: (len(waiting[p]), rank(p)))
        )
        ordered.append(pick)
        del waiting[pick]
        for unmet in waiting.values():
            unmet.discard(pick)
    return ordered


def users_of(uses: Mapping[Package, set[Package]]) -> dict[Package, list[Package]]:
    """The reverse graph: for each package, the packages that use it, by path."""
    users: dict[Package, list[Package]] = {}
    for user in sorted(uses, key=lambda p: p.rel):
        for used in uses[user]:
            users.setdefault(used, []).append(user)
    return users


def cycle_order(
    packages: Sequence[Package],
    changed: Mapping[Package, float],
    failed: Iterable[Package],
    uses: Mapping[Package, set[Package]],
    labels: Mapping[tuple[Package, Package], str] | None = None,
) -> list[Step]:
    """Changed packages first (most recent first), then those that failed last time, then the
    dependents of the changed ones (nearest first), then all the rest, the most used first.
    Inside each group a package runs after the packages it uses, so that a failure shows in
    the package that causes it.  ``uses`` may hold packages not in ``packages`` (not chosen
    to run): dependents are still reached through them."""
    known = set(packages)
    users = users_of(uses)
    distance = reached_from(changed, users)
    used_by = {p: len(transitive_users(p, users)) for p in known}
    first = [p for p in changed if p in known]
    failed_group = set(failed) & known - set(first)
    dependents = set(distance) & known - set(first) - failed_group
    rest = known - set(first) - failed_group - dependents
    labels = labels or {}
    reached_at = {p: index for index, p in enumerate(distance)}
    groups = [
        topological(first, uses, lambda p: (-changed[p], p.rel)),
        topological(failed_group, uses, lambda p: p.rel),
        topological(dependents, uses, reached_at.__getitem__),
        topological(rest, uses, lambda p: (-used_by[p], p.rel)),
    ]
    position = {p: index for index, p in enumerate(p for group in groups for p in group)}
    reasons = {p: "changed" for p in groups[0]}
    reasons.update({p: "failed last time" for p in groups[1]})
    reasons.update({p: uses_reason(p, distance[p][1], labels) for p in groups[2]})
    for package in groups[3]:
        ran = [
            u for u in uses.get(package, ()) if position.get(u, len(position)) < position[package]
        ]
        count = used_by[package]
        reasons[package] = (
            uses_reason(package, max(ran, key=position.__getitem__), labels)
            if ran
            else f"used by {count} package{'s' if count > 1 else ''}"
            if count
            else ""
        )
    for group in groups:  # a use of a package that runs later in the group is a broken cycle
        for package in group:
            later = [
                u for u in uses.get(package, ()) if u in group and position[u] > position[package]
            ]
            if later:
                cycle = f"in a cycle with {min(later, key=position.__getitem__).rel}"
                reasons[package] = f"{reasons[package]}; {cycle}" if reasons[package] else cycle
    return [Step(p, reasons[p]) for group in groups for p in group]


def reached_from(
    changed: Mapping[Package, float], users: Mapping[Package, list[Package]]
) -> dict[Package, tuple[int, Package]]:
    """The packages that use the changed ones, directly or not, each with how far and through
    which package, in the order reached: nearest first, the most recent change first."""
    distance: dict[Package, tuple[int, Package]] = {}
    frontier = sorted(changed, key=lambda p: (-changed[p], p.rel))
    reached, depth = set(frontier), 0
    while frontier:
        depth += 1
        following: list[Package] = []
        for package in frontier:
            for user in users.get(package, []):
                if user not in reached:
                    reached.add(user)
                    distance[user] = (depth, package)
                    following.append(user)
        frontier = following
    return distance


def uses_reason(user: Package, used: Package, labels: Mapping[tuple[Package, Package], str]) -> str:
    """``uses libs/core``, with how when it is not a dependency of the code: ``(tests)``."""
    label = labels.get((user, used), "")
    return f"uses {used.rel}" + (f" ({label})" if label else "")


def transitive_users(package: Package, users: Mapping[Package, list[Package]]) -> set[Package]:
    found: set[Package] = set()
    stack = [package]
    while stack:
        for user in users.get(stack.pop(), []):
            if user not in found and user != package:
                found.add(user)
                stack.append(user)
    return found


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

    def testing_packages(self, count: int, found: int) -> None:
        """The start of a run without watching: what it tests, and where."""
        of = f"{count} of {found} packages" if count != found else counted(count, "package")
        self.note(f"{of} in {self.root}")

    def not_a_package(self, rel: str, why: str) -> None:
        self.note(f"not a package: {shown(rel)} ({why})")

    def cannot_parse(self, path: str, why: str) -> None:
        if f"{path}: {why}" not in self.warned_unreadable:
            self.warned_unreadable.add(f"{path}: {why}")
            self.warn(f"cannot read {self.rel(path)} ({why}); what it declares is left out")

    def echoes(self, paths: Iterable[str]) -> None:
        names = ", ".join(self.rel(p) for p in paths)
        self.note(
            f"not rerun for {names}, changed during the run as the runs change it "
            "(save it again to rerun)"
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


# ---------------------------------------------------------------------------------------------
# Options: one table for the command line, the config files and the defaults
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """Every setting, with its default."""

    root: Path
    packages: tuple[str, ...] = ()
    once: bool = False
    changed: tuple[str, ...] = ()
    since: str | None = None
    runner: str = "nose"
    runner_args: tuple[str, ...] = ()
    jobs: int = 1
    timeout: float | None = None
    restart: bool = False
    debounce: float = DEFAULT_DEBOUNCE
    ignore: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
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
    ``paths`` (any number of values after the option, which may be repeated), ``positional``
    (the command line's own arguments; a list or a string in config), ``args`` (after ``--``
    on the command line; a list or a shell-quoted string in config)."""

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
    Setting("packages", "positional", "test only these packages: directories, globs or names "
            "(default: all)", metavar="PACKAGE"),
    Setting("root", "value", "the repository (default: the git work tree holding this file, "
            "else the parent of its folder)", metavar="DIR", in_config=False),
    Setting("once", "flag", "run one cycle and exit: 0 all passed, 1 a package failed",
            in_config=False),
    Setting("changed", "paths", "order the first cycle as if these paths had just changed "
            "(repeatable, may be empty)", metavar="PATH", in_config=False),
    Setting("since", "value", "order the first cycle by what git reports changed since REF "
            "(committed, staged, unstaged, untracked)", metavar="REF", in_config=False),
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
    Setting("ignore", "list", "never react to matching paths, nor find packages there "
            "(repeatable)", metavar="GLOB"),
    Setting("exclude", "list", "never test the packages matching (repeatable)", metavar="GLOB"),
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
    if setting.kind == "positional":
        parser.add_argument(setting.field, nargs="*", metavar=setting.metavar, help=setting.help)
        return
    flags.append(f"--{setting.name}")
    default = setting.default
    shown_default = isinstance(default, (int, float, str)) and not isinstance(default, bool)
    text = setting.help + (f" (default: {default})" if shown_default else "")
    if setting.kind == "list":
        parser.add_argument(*flags, dest=setting.field, action="append", metavar=setting.metavar,
                            help=text)  # fmt: skip
    elif setting.kind == "paths":
        parser.add_argument(*flags, dest=setting.field, nargs="*", action="extend",
                            metavar=setting.metavar, help=text)  # fmt: skip
    else:
        parser.add_argument(*flags, dest=setting.field, type=setting.read,
                            metavar=setting.metavar, help=text)  # fmt: skip


def argument_parser() -> ArgumentParser:
    summary = (__doc__ or "").partition("\n\n")[0].split(": ", 1)[-1]
    parser = ArgumentParser(
        prog="autotest.py",
        description=summary[:1].upper() + summary[1:],
        usage="%(prog)s [options] [PACKAGE ...] [-- runner arguments]",
        epilog=(
            "While watching on a terminal: Enter or a runs every package, f the failed ones, "
            "q quits. Every option but --root, --once, --changed and --since can also be set "
            "under the same name in [tool.autotest] of the root pyproject.toml or [autotest] of "
            "setup.cfg; the packages to test as packages = [...]."
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
    if setting.kind in ("list", "positional"):
        return strings(value, str.split)
    if setting.kind == "args":
        return strings(value, shlex.split)
    if isinstance(value, (dict, list, bool)):
        raise argparse.ArgumentTypeError(f"expected one value, got {value!r}")
    return setting.read(str(value))


def config_sections(root: Path) -> list[tuple[str, Any]]:
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
        except (OSError, ValueError, UnicodeDecodeError, RecursionError, MemoryError) as exc:
            raise UsageError(f"{pyproject}: {str(exc) or type(exc).__name__}") from None
        if isinstance(data.get("tool"), dict) and "autotest" in data["tool"]:
            found.append(("pyproject.toml [tool.autotest]", data["tool"]["autotest"]))
    return found


def read_config(root: Path) -> dict[str, Any]:
    """The settings the repository holds, by setting name; pyproject.toml wins."""
    by_name = {s.name: s for s in SETTINGS if s.in_config}
    settings: dict[str, Any] = {}
    for where, section in config_sections(root):
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
    """The git work tree holding this file, wherever in it the file lies; outside git, the
    parent of its folder (``utilities/autotest.py`` at the top of the repository)."""
    here = Path(__file__).resolve().parent
    top = (run_git(str(here), "rev-parse", "--show-toplevel") or b"").strip()
    return Path(os.fsdecode(top)) if top else here.parent


def parse_options(argv: Sequence[str]) -> Options:
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
        if s.kind != "args" and (value := getattr(args, s.field)) not in (None, [])
    }
    merged = {**read_config(root), **given, "root": root}
    if runner_args is not None:
        merged["runner-args"] = runner_args
    return Options(**{name.replace("-", "_"): value for name, value in merged.items()})


# ---------------------------------------------------------------------------------------------
# Session: the wiring, and main
# ---------------------------------------------------------------------------------------------


class PackageSet:
    """The packages as the tree has them now, those chosen to run, and their graph, kept in
    step with changes."""

    def __init__(
        self,
        root: Path,
        reporter: Reporter,
        rules: IgnoreRules | None = None,
        chosen: Sequence[str] = (),
        exclude: Sequence[str] = (),
    ) -> None:
        self.root = root
        self.reporter = reporter
        self.rules = rules or IgnoreRules(root)
        self.chosen = tuple(chosen)
        self.exclude = tuple(exclude)
        self.cwd = Path.cwd()
        self.all: list[Package] = []
        self.packages: list[Package] = []
        self.left_out: tuple[tuple[str, str], ...] = ()
        self.graph = DependencyGraph({})
        self.scan = ImportScan()
        self.scan.load(scan_cache_file(root))
        self.refresh()
        unmatched = [c for c in self.chosen if not self.matching(c)]
        if unmatched and self.all:
            raise UsageError(self.names_no_package(unmatched[0]))

    def refresh(self, metadata_changed: bool = True) -> None:
        """Rediscover the packages; read the graph again when they or their metadata changed."""
        self.rules.refresh_git_dirs()
        found = discover(self.root, self.rules.excludes_dir)
        for path in found.unreadable:
            self.reporter.unreadable(path)
        packages = list(found.packages)
        self.left_out = found.left_out
        if packages == self.all and not metadata_changed:
            return
        if self.all and packages != self.all:
            self.reporter.packages_changed(
                (p.rel for p in set(packages) - set(self.all)),
                (p.rel for p in set(self.all) - set(packages)),
            )
        self.all = packages
        self.read_graph()

    def save(self) -> None:
        """Keep the import scan for the next start, in a tree big enough for it to matter."""
        if len(self.scan.looked_up) >= KEEP_SCAN_FROM:
            self.scan.save(scan_cache_file(self.root))

    def read_graph(self) -> None:
        self.graph = dependency_graph(self.all, self.root, self.scan)
        for path, why in self.graph.unreadable:
            self.reporter.cannot_parse(path, why)
        chosen = {p for c in self.chosen for p in self.matching(c)} if self.chosen else set()
        self.packages = [
            p
            for p in self.all
            if (not self.chosen or p in chosen)
            and not any(glob_matches(p.rel, g) for g in self.exclude)
        ]
        self.reporter.width = max((len(p.rel) for p in self.packages), default=0)

    def follow(self, paths: Iterable[str]) -> None:
        """Rediscover packages when directories or metadata came or went; read the graph
        again when code changed (only the changed files are read again)."""
        paths = list(paths)
        self.scan.forget(paths)
        metadata = any(is_metadata_file(p) for p in paths)
        code = any(p.endswith(".py") and owner_of(p, self.all) for p in paths)
        if metadata or any(not os.path.isfile(p) for p in paths):
            self.refresh(metadata or code)
        elif code:
            self.read_graph()

    def matching(self, chosen: str) -> list[Package]:
        """The packages an argument names: a directory (the packages in it, or the one holding
        it) or a file (the package holding it), from the current directory or the root, else a
        glob over their paths from the root or their distribution names."""
        for base in (self.cwd, self.root):
            path = os.path.realpath(base / chosen)
            if os.path.exists(path):
                inside = [p for p in self.all if owner_of(str(p.path), [Package(Path(path), "")])]
                holder = owner_of(path, self.all)
                return inside or ([holder] if holder else [])
        pattern = chosen.strip("/")
        return [
            p
            for p in self.all
            if fnmatch.fnmatchcase(p.rel, pattern)
            or fnmatch.fnmatchcase(self.graph.names.get(p, ""), normalize_name(pattern))
        ]

    def names_no_package(self, chosen: str) -> str:
        close = difflib.get_close_matches(chosen.strip("/"), [p.rel for p in self.all], 3, 0.75)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        return f"{chosen!r} names no package under {self.root}{hint}"

    def owners(self, changed: Mapping[str, float]) -> dict[Package, float]:
        """The packages holding the changed paths, each with its latest change (chosen or not:
        their dependents are)."""
        owners: dict[Package, float] = {}
        for path, at in changed.items():
            owner = owner_of(path, self.all)
            if owner is not None:
                owners[owner] = max(at, owners.get(owner, at))
        return owners


def path_named(arg: str, root: Path, packages: Sequence[Package]) -> str | None:
    """A path given on the command line, in some package: relative to the current directory
    or to the root (as git names them), an existing file winning over a path that is not there."""
    candidates = [Path(arg)] if os.path.isabs(arg) else [Path.cwd() / arg, root / arg]
    owned = [
        path
        for candidate in candidates
        for path in dict.fromkeys((os.path.abspath(candidate), os.path.realpath(candidate)))
        if owner_of(path, packages) is not None
    ]
    existing = [p for p in owned if os.path.lexists(p)]
    return (existing or owned)[0] if owned else None


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
        self.tree = PackageSet(self.root, reporter, self.rules, options.packages, options.exclude)
        if not self.tree.all:
            raise UsageError(
                f"no packages under {self.root} (a package is a directory holding "
                f"{', '.join(PACKAGE_MARKERS[:-1])} or {PACKAGE_MARKERS[-1]}); pass --root DIR"
            )
        if not self.tree.packages:
            raise UsageError(f"--exclude leaves no package of {len(self.tree.all)} to test")
        self.first_changes = self.changed_from_arguments()
        self.env = run_environment(self.runner, pycache_dir())
        self.changes = ChangeSet()
        self.guard = LoopGuard()
        self.intake = Intake(
            self.changes, self.rules, self.guard, options.debounce, reporter.echoes
        )
        self.warm = WarmPolicy()
        self.failed: set[Package] = set()
        self.last_passed = True

    @property
    def packages(self) -> list[Package]:
        return self.tree.packages

    def start_run(self, package: Package) -> Run:
        command = self.runner.command(package, self.options.runner_args)
        launcher = self.warm.launcher_for_runs()
        return Run(package, command, self.env, self.runner, self.options.timeout, launcher)

    def record(self, result: RunResult) -> None:
        self.reporter.verdict(result)
        self.warm.record(result)

    def cycle(self, changed: Mapping[str, float], only: set[Package] | None = None) -> CycleOutcome:
        graph = self.tree.graph
        owners = self.tree.owners(changed)
        steps = cycle_order(self.packages, owners, self.failed, graph.uses, graph.labels)
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
        """``--changed`` paths first, the first one first, then what changed ``--since`` a
        commit, the most recently modified first."""
        changed: dict[str, float] = {}
        now = time.monotonic()
        for index, arg in enumerate(self.options.changed):
            path = path_named(arg, self.root, self.tree.all)
            if path is None:
                self.reporter.not_in_package(arg)
            else:
                changed.setdefault(path, now - index * 1e-6)
        if self.options.since is not None:
            since = [p for p in changed_since(self.root, self.options.since) if p not in changed]
            since = [p for p in since if owner_of(p, self.tree.all)]
            since.sort(key=lambda p: -os.stat(p).st_mtime if os.path.exists(p) else 0.0)
            for index, path in enumerate(since):
                changed[path] = now - 1.0 - index * 1e-6
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

    def run_changes(self, changed: Mapping[str, float], known: Sequence[Package]) -> CycleOutcome:
        """A cycle for changed paths, named against ``known`` packages (those before and after
        the change, so a removed package still counts as one)."""
        self.begin()
        self.reporter.header(describe_changes(changed, self.root, known))
        return self.cycle(changed)

    def first_cycle(self) -> CycleOutcome:
        """The first cycle, then the import scan kept for the next start (not before: the
        first test should start as early as it can)."""
        changed = self.first_changes
        outcome = self.run_changes(changed, self.tree.all) if changed else self.run_all()
        self.tree.save()
        return outcome

    def tell_packages(self) -> None:
        """With ``--explain``, the projects found that are not packages, and why."""
        if self.options.explain:
            for rel, why in self.tree.left_out:
                self.reporter.not_a_package(rel, why)

    def once(self) -> int:
        self.reporter.testing_packages(len(self.packages), len(self.tree.all))
        self.tell_packages()
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
        self.tell_packages()
        if self.options.warm and self.runner.module:
            self.warm = WarmPolicy(WarmLauncher(self.runner, self.env))
        try:
            with KeyReader(self.changes.press) if interactive else contextlib.nullcontext():
                outcome = self.first_cycle()
                while True:
                    if interactive and not outcome.interrupted:
                        self.reporter.menu()
                    request = self.intake.next_request()
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
        self.tree.save()


def main(argv: Sequence[str] | None = None) -> int:
    with contextlib.suppress(AttributeError, ValueError):  # a name that is not UTF-8 is no crash
        sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    reporter = Reporter(sys.stdout, use_color(sys.stdout))
    session: Session | None = None
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        signal.signal(signal.SIGTERM, raise_terminated)
    try:
        options = parse_options(sys.argv[1:] if argv is None else argv)
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

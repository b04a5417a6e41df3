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
    python utilities/autotest.py --once       # one cycle; exit 0 all passed, 1 otherwise

A package is any directory below the root holding pyproject.toml, setup.py or setup.cfg (test
data and templates aside; a root that is itself one project is the one package).  Each package
runs in its own subprocess, with the package directory as working directory, under pytest where
pytest would claim it and nose otherwise, with its own virtualenv's interpreter when it holds one
and the interpreter that runs this script otherwise.  ``--help`` lists the options; each can
also be set in ``[tool.autotest]`` of the root pyproject.toml or ``[autotest]`` of its setup.cfg.
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
import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Collection, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, NoReturn, Protocol

if __name__ == "__main__":  # until main() takes over nothing runs yet: a signal just ends it
    for _name in ("SIGINT", "SIGTERM", "SIGHUP"):
        _signum = getattr(signal, _name, None)
        if _signum is not None and signal.getsignal(_signum) is not signal.SIG_IGN:
            signal.signal(_signum, lambda signum, frame: os._exit(128 + signum))

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
#   Basics          errors, the verdicts, every timing constant, the git helpers
#   Platform        every POSIX/Windows branch: signals, process groups, killing a tree, the
#                   parent-death signal, keys, notifications, a closed stdout, the inotify limit
#   Ignore rules    the one authority on what is a tool's directory or file, never a change
#   TOML            a TOML reader for Pythons without tomllib or tomli
#   Packages        discovery (what is a package), metadata, the import scan, and the graph
#                   of which package uses which, each edge labelled
#   Hand-off        ChangeSet, the one object two threads share
#   Watching        watchdog's thread: the event handler, the watch plan, the Watcher (which
#                   re-plans without a moment unwatched and polls where the kernel refuses)
#   Loop guard      tells the test runs' own writes from a person's edits, by each file's
#                   change time against its own package's runs
#   Intake          the main thread's side: one debounce, the git filter, keys -> a Request
#   Order           the pure decision of which package runs when, and why: groups, each in
#                   topological order
#   Runners         nose, nose2, pytest, unittest or a command: what each needs and how it ends;
#                   which runner and which interpreter each package gets, and why
#   One run         one package's test process, its bounded output and its RunResult
#   Warm runner     the forking server (real code, sent to a fresh interpreter), its client,
#                   what the runs teach it to import ahead, and the policy that decides when
#                   forked runs are used
#   Cycle           packages in order, up to --jobs at once, until the first failure in order
#                   (or through all of them, with --keep-going), waiting on the runs
#   CI: affected, shards, plan, JUnit
#                   what a change affects, the K-th of N slices, the cycle as JSON, the
#                   remembered run times, one JUnit XML report per cycle
#   Report          every sentence a user reads during a session is built here: Terminal
#                   (the stream, colours, the status line), Notices (between cycles),
#                   Reporter (a cycle's header, verdicts, failing output and summary)
#   Options         one table of settings: the command line, the config files, the defaults
#   Session         thin wiring of the above: PackageSet (found, chosen, its graph kept in
#                   step), the changes named at start, RunnerChoices (each package's runner
#                   and interpreter), CycleRuns (one cycle's runs), Session, and main()
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
# CycleRuns.run -> run_cycle -> Run (cold, or forked by the WarmLauncher) -> Reporter.verdict.

# ---------------------------------------------------------------------------------------------
# Basics: errors, verdicts, timings, git
# ---------------------------------------------------------------------------------------------


VERSION = "1.1"


class UsageError(Exception):
    """Bad input: reported as one line and exit status 2."""


class Terminated(BaseException):
    """SIGINT, SIGTERM or SIGHUP, raised in the main thread so that every run is killed on the
    way out; autotest then exits with 128 + the signal's number, as a shell reports it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class QuitRequested(BaseException):
    """``q`` pressed: raised in the middle of a cycle, so that the running tests are killed at
    once rather than awaited."""


class Verdict(enum.Enum):
    """What one package's run amounts to; the value is the word the report prints."""

    OK = "ok"
    FAILED = "FAILED"
    NO_TESTS = "no tests"
    COULD_NOT_RUN = "could not run"  # a module it needs is missing here: not the code's fault


DEFAULT_DEBOUNCE = 0.05  # quiet time that closes a burst: an editor's save is one burst
ECHO_GRACE = 0.5  # a run's own writes may still be reported this long after it ends
POLL_INTERVAL = 0.01  # how often a run that cannot be waited on is checked (no pidfd here)
CYCLE_WAKE = 0.05  # a running cycle looks for changes and keys at least this often
WAKE_INTERVAL = 1.0  # the longest lock wait, so that Ctrl+C is never held up by one
OBSERVER_TIMEOUT = 1.0  # watchdog's event batching; the polling observer's scan interval
WARM_START_TIMEOUT = 10.0  # the first forked run waits this long for the warm interpreter
WARM_REPLY_TIMEOUT = 10.0  # how long a fork request may take to answer with its pid
SERVER_EXIT_WAIT = 2.0  # how long a killed warm interpreter is given to be reaped
DUMP_WAIT = 1.0  # how long a timed-out run is given to print where it hung before it is killed
STATUS_INTERVAL = 1.0  # the live status line is rewritten at least this often
STILL_RUNNING_AFTER = 30.0  # not on a terminal: a run this long is named once...
STILL_RUNNING_EVERY = 60.0  # ...and again after each further minute
TASKKILL_TIMEOUT = 5.0  # how long Windows' taskkill may take to end a run's tree
GIT_TIMEOUT = 30.0  # a git call that hangs longer counts as no answer
JUDGE_AFTER = 3  # packages run both warm and cold before forking is judged
PRELOAD_RESTARTS = 5  # warm restarts that drop a learned module, before learning is given up
WARM_VIRTUALENVS = 3  # package virtualenvs kept warm at once: those of the packages changed last
HEAD_LINES = 100  # a failing run shows this many lines from its start (what failed) ...
TAIL_LINES = 100  # ... and this many from its end (the runner's summary)
LINE_LIMIT = 8192  # longer lines are read (and kept) in pieces of this many bytes
CREATED_SETTLE = 0.3  # a file new in a burst settles once this old (or gone): a temporary file
FILE_TICK_WAIT = 0.02  # the longest wait for the coarse file clock to tick on (a tick is 1-10 ms)
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


def changed_since_ref(root: Path, ref: str) -> list[str]:
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
# Platform: signals, process groups, killing a tree, keys, notifications, the inotify limit
# and the watches granted (/proc), birth times (statx)
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
            ["taskkill", "/F", "/T", "/PID", str(pid)],
            capture_output=True,
            timeout=TASKKILL_TIMEOUT,
        )
        if done.returncode == 0:
            return
    except (OSError, subprocess.SubprocessError):
        pass
    with contextlib.suppress(OSError):  # no taskkill: the process itself, at least
        os.kill(pid, signal.SIGTERM)


def kill_leftovers(pid: int) -> None:
    """What an ended run's tests started and left behind goes with them: on POSIX its process
    group outlives it; elsewhere nothing is left to find."""
    if POSIX:
        kill_tree(pid)


def terminal_has_colours() -> bool:
    """Every POSIX terminal reads colour codes; on Windows, Windows Terminal and terminals
    that set TERM do, the old console does not."""
    return POSIX or "WT_SESSION" in os.environ or "TERM" in os.environ


def process_handle(pid: int) -> int | None:
    """A descriptor that becomes readable when process ``pid`` ends (a Linux pidfd), so that a
    cycle waits on its runs instead of polling them; None where there is none (macOS, Windows,
    Linux before 5.3), and the run is polled."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        return int(pidfd_open(pid))
    except OSError:
        return None


def wait_readable(fds: Iterable[int], timeout: float) -> None:
    """Block until one of ``fds`` is readable, or ``timeout`` seconds passed."""
    import selectors

    if timeout <= 0:
        return
    with selectors.DefaultSelector() as selector:
        for fd in set(fds):
            with contextlib.suppress(OSError, ValueError):
                selector.register(fd, selectors.EVENT_READ)
        if selector.get_map():
            selector.select(timeout)
        else:
            time.sleep(timeout)


def user_suffix() -> str:
    """Per-user names for shared temporary directories (Windows has no uid)."""
    return f"-{os.getuid()}" if hasattr(os, "getuid") else ""


def venv_python(venv: Path) -> Path | None:
    """The interpreter of the virtualenv at ``venv``, when it is one."""
    if not (venv / "pyvenv.cfg").is_file():
        return None
    python = venv / "bin" / "python" if POSIX else venv / "Scripts" / "python.exe"
    return python if python.exists() else None


def scripts_dir(python: str) -> str:
    """Where the console scripts (pytest, py.test, ...) of ``python``'s environment live."""
    if python == sys.executable:
        return own_scripts_dir()
    return os.path.dirname(python)  # a virtualenv's interpreter sits among its scripts


@functools.lru_cache(maxsize=1)
def own_scripts_dir() -> str:
    """sysconfig works it out anew at each call; it cannot change while autotest runs."""
    import sysconfig

    return sysconfig.get_path("scripts")


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


def file_end_clock() -> float:
    """Now, no earlier than any file time already written: some filesystems (multigrain
    timestamps, Linux 6.13+) stamp a file from the fine clock when its times were just read,
    ahead of the coarse one, so an end is read from the fine clock."""
    return max(file_clock(), time.time())


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


def can_notify() -> bool:
    return notification_command("", "") is not None


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


ENDING_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # Ctrl+C, kill, the terminal closing


class Signals:
    """Turns SIGINT, SIGTERM and SIGHUP into one Terminated in the main thread, so that every
    run is killed on the way out.  Inside ``deferred()`` (a process started but not yet
    recorded) the raise waits for the block's end; after the first, signals are ignored, so
    nothing interrupts the cleanup.  A signal the parent ignores (nohup) stays ignored."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending: int | None = None
        self.done = False

    def install(self) -> None:
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            for name in ENDING_SIGNALS:
                signum = getattr(signal, name, None)
                if signum is not None and signal.getsignal(signum) is not signal.SIG_IGN:
                    signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.done:
            return
        if self.depth:
            self.pending = signum
            return
        self.done = True
        raise Terminated(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.pending is not None and not self.done:
                self.done = True
                raise Terminated(self.pending)

    def settle(self) -> None:
        """autotest is ending anyway: later signals change nothing."""
        self.done = True


def set_parent_death_signal(signum: int) -> bool:  # pragma: no cover (runs in the warm server)
    """Ask Linux to send ``signum`` when the parent process dies, however it dies (kill -9
    too); False where there is no prctl."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, signum, 0, 0, 0) == 0  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def show_stacks(pid: int) -> None:
    """Ask a Python run to print where each of its threads is: faulthandler (enabled in every
    Python run) answers SIGABRT with the stacks.  Linux: without a core file."""
    if not POSIX:
        return
    with contextlib.suppress(Exception):
        import resource

        prlimit = getattr(resource, "prlimit", None)
        if prlimit is not None:
            prlimit(pid, resource.RLIMIT_CORE, (0, prlimit(pid, resource.RLIMIT_CORE)[1]))
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGABRT)


SIGHUP_NUMBER = getattr(signal, "SIGHUP", 1)  # what a hung-up terminal means, as exit status


def flush_or_quiet() -> None:
    """When stdout was closed (``| head -1``) or its terminal hung up, point it at /dev/null,
    so that the interpreter's last flush cannot fail and complain (exit 120)."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        with contextlib.suppress(Exception):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)


def silence_watchdog() -> None:
    """watchdog's own warnings (a callback registered twice when watches are rescheduled, as
    while a split watch's old and new watches overlap) and log lines (an emitter stopped while
    events come) are about its internals, never the user's tree: they must not reach the
    terminal."""
    import logging

    logging.getLogger("watchdog").addHandler(logging.NullHandler())
    logging.getLogger("watchdog").propagate = False
    warnings.filterwarnings("ignore", "Callback with id .* already exists", RuntimeWarning)


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
            except Exception:  # no termios, or no terminal after all (termios.error)
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

            with contextlib.suppress(OSError, termios.error):  # a hung-up terminal: EIO
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


def is_searchable(path: str) -> bool:
    try:
        os.stat(path)
    except OSError:
        return False
    return True


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
        markers = [e.path for e in entries if e.name in PACKAGE_MARKERS]
        if markers and not is_searchable(markers[0]):
            unreadable.append(directory)  # readable (listed) but not searchable
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
    """The parsed file, by tomllib, else tomli, else autotest's own reader (TOML section).
    Whatever the file holds, it fails only with OSError or ValueError: a nesting too deep for
    the parser or a file too big for memory is a file that cannot be read, not a crash."""
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:
            tomllib = None  # type: ignore[assignment]
    try:
        if tomllib is None:
            with open(path, encoding="utf-8") as f:
                return parse_toml(f.read())
        with open(path, "rb") as f:
            data: dict[str, Any] = tomllib.load(f)
    except (RecursionError, MemoryError, UnicodeDecodeError) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
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
    since).  Its end is read once the run's process is gone, from the fine clock, so whatever
    it wrote is no newer, even stamped finely.  A person reacting to the cycle's end saves
    later still (``LoopGuard.cycle_ended`` waits for the coarse clock to pass the last end
    before the summary is printed)."""

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
        return self.started - STAMP_SLACK <= stamp <= self.ended


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
                window.ended, window.ended_at = file_end_clock(), time.monotonic()

    def cycle_started(self, at: float) -> None:
        """Forget the runs of cycles long past: their writes have all been judged."""
        self.windows = [w for w in self.windows if w.ended_at >= at - 10 * 60]

    def cycle_ended(self, at: float) -> None:
        """Close the cycle's windows, then let the file clock tick past their ends (a few ms at
        most), so that nothing saved from now on shares a tick with a run."""
        for window in self.windows:
            if window.ended == float("inf"):
                window.ended, window.ended_at = file_end_clock(), at
        last = max((w.ended for w in self.windows), default=float("-inf"))
        deadline = time.monotonic() + FILE_TICK_WAIT
        while file_clock() <= last and time.monotonic() < deadline:
            time.sleep(FILE_TICK_WAIT / 20)

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
        """Whether a change that counts arrived during a cycle and settled.  It only looks:
        the burst stays in the ChangeSet until it is taken, so an editor's save stays one
        change, and a scratch file made and removed again within a burst is none.  ``q`` acts
        at once (QuitRequested); the other keys wait for the cycle's end."""
        paths, keys = self.changes.peek()
        if any(k in QUIT_KEYS for k in keys):
            raise QuitRequested
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
    the runner says it found no tests when it exits 0 anyway; ``plugins`` the entry-point group
    of its plugins, whose distributions a warm interpreter must never import ahead (pytest
    rewrites their asserts on import, and warns about a module imported before it could).
    """

    name: str
    argv: tuple[str, ...]
    module: str | None = None
    install: str = ""
    no_tests_exit: frozenset[int] = frozenset()
    env: tuple[tuple[str, str], ...] = ()
    preload: tuple[str, ...] = ()
    ran_none: str = ""
    plugins: str = ""

    def command(
        self, package: Package, extra: Sequence[str], python: str | None = None
    ) -> list[str]:
        """The run's command line.  A runner that is a Python module runs with the package's
        interpreter, with ``-X faulthandler`` (a run that times out can then be asked where it
        hangs).  ``{package}`` becomes the package's path only where it is a whole argument
        (``make_runner`` refuses it inside one), so no directory name can become code."""
        argv = [python, *self.argv[1:]] if self.module and python else list(self.argv)
        argv = [str(package.path) if arg == PACKAGE_ARG else arg for arg in argv]
        if self.module is not None:
            argv[1:1] = ["-X", "faulthandler"]
        return argv + list(extra)

    def verdict(self, code: int, output: str) -> Verdict:
        if code in self.no_tests_exit:
            return Verdict.NO_TESTS
        if code == 0:
            ran_none = self.ran_none and re.search(self.ran_none, output, re.M)
            return Verdict.NO_TESTS if ran_none else Verdict.OK
        return Verdict.FAILED


PACKAGE_ARG = "{package}"  # in a runner command: the package's path, as one argument
PACKAGE_ENV = "AUTOTEST_PACKAGE"  # every run finds the package's path here too
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
        plugins="pytest11",
    ),
    "unittest": Runner(
        "unittest", (sys.executable, "-m", "unittest", "discover", "-t", "."), "unittest", "",
        frozenset({5}), ran_none=UNITTEST_RAN_NONE,
    ),
}  # fmt: skip


def plugin_modules(group: str) -> frozenset[str]:
    """The top-level modules of every installed distribution with an entry point in ``group``
    (all of them: pytest marks a plugin's whole distribution for assertion rewriting)."""
    if not group:
        return frozenset()
    from importlib import metadata

    names: set[str] = set()
    for dist in metadata.distributions():
        points = [p for p in dist.entry_points if p.group == group]
        names.update(p.value.split(":")[0].split(".")[0].strip() for p in points)
        for file in (dist.files or ()) if points else ():
            top = file.parts[0] if file.parts else ""
            if top.endswith(".py") or (len(file.parts) > 1 and file.name.endswith(".py")):
                names.add(top[:-3] if top.endswith(".py") else top)
    return frozenset(n for n in names if n.isidentifier())


def make_runner(spec: str, where: str = "--runner") -> Runner:
    """A built-in runner by name, or a command line with ``{package}`` split like a shell would
    (but never run by one).  A command is looked up on the PATH the runs get.  ``where``
    names the setting in errors."""
    if spec in BUILTIN_RUNNERS:
        return BUILTIN_RUNNERS[spec]
    try:
        argv = shlex.split(spec)
    except ValueError as exc:
        raise UsageError(f"{where} {spec!r}: {exc}") from None
    if not argv:
        raise UsageError(f"{where}: empty command")
    embedded = [arg for arg in argv if PACKAGE_ARG in arg and arg != PACKAGE_ARG]
    if embedded:
        raise UsageError(
            f"{where} {spec!r}: {PACKAGE_ARG} must be an argument of its own, not part of "
            f"{embedded[0]!r} (a directory's name would become part of a command); "
            f"the run finds the package's path in ${PACKAGE_ENV}"
        )
    found = shutil.which(argv[0], path=activated_path(sys.executable))
    if PACKAGE_ARG not in argv and not found:
        raise UsageError(
            f"{where} {spec!r}: not one of auto, {', '.join(BUILTIN_RUNNERS)} and not a "
            "command containing {package}"
        )
    return Runner("command", tuple(argv))


def activated_path(python: str) -> str:
    """PATH as activating ``python``'s environment makes it: its scripts directory first."""
    rest = [p for p in os.environ.get("PATH", os.defpath).split(os.pathsep) if p]
    first = scripts_dir(python)
    return os.pathsep.join([first, *(p for p in rest if p != first)])


def check_runner(runner: Runner, python: str = sys.executable, needed_by: str = "") -> None:
    """Fail early, with what to install, when the runner cannot start at all."""
    if runner.module is None:
        found = shutil.which(runner.argv[0], path=activated_path(python))
        if found is None and not os.path.isfile(runner.argv[0]):
            raise UsageError(f"runner command not found: {runner.argv[0]}")
        return
    if not module_installed(python, runner.module):
        raise UsageError(
            f"{runner.name} is not installed for {python}{needed_by}; "
            f"install it: {python} -m pip install {runner.install}"
        )
    if runner.name == "nose" and python == sys.executable and sys.version_info >= (3, 10):
        from importlib import metadata

        with contextlib.suppress(metadata.PackageNotFoundError):
            if metadata.version("nose").startswith("1.3."):
                raise UsageError(
                    "the classic nose 1.3 does not run on Python 3.10+; replace it: "
                    f"{sys.executable} -m pip uninstall -y nose && "
                    f"{sys.executable} -m pip install pynose"
                )


def module_installed(python: str, module: str) -> bool:
    """Whether ``python`` can import ``module`` from what is installed (asked of the other
    interpreter itself, from a neutral directory, when it is not this one)."""
    if python == sys.executable:
        import importlib.util

        try:
            return importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            return False
    probe = f"import importlib.util,sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    try:
        done = subprocess.run(
            [python, "-I", "-c", probe], capture_output=True, timeout=GIT_TIMEOUT,
            cwd=tempfile.gettempdir(),
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@dataclass(frozen=True)
class Choice:
    """How one package runs: the runner and the interpreter, each with the reason why."""

    runner: Runner
    reason: str
    python: str = sys.executable
    python_reason: str = ""


PYTEST_CONFIG = (
    ("pyproject.toml", "tool.pytest.ini_options"),
    ("pytest.ini", ""),
    (".pytest.ini", ""),
    ("setup.cfg", "tool:pytest"),
    ("tox.ini", "pytest"),
)
PYTEST_IMPORT = re.compile(rb"^\s*(?:import|from)\s+_?pytest\b", re.M)
FIXTURE_TEST = re.compile(rb"^\s*(?:async\s+)?def\s+test\w*\s*\(\s*(?!self\b|cls\b|\))\w", re.M)


def has_table(path: Path, table: str) -> bool:
    """Whether the config file has the ``[table]``; TOML is parsed where this Python can, and
    otherwise (or when it does not parse) searched for the header."""
    if path.suffix == ".toml":
        with contextlib.suppress(OSError, ValueError):
            data = load_toml(path)
            if data is not None:
                found: Any = data
                for key in table.split("."):
                    found = found.get(key) if isinstance(found, dict) else None
                return isinstance(found, dict)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return re.search(rf"^\[{re.escape(table)}\][ \t]*$", text, re.M) is not None


def pytest_config(package: Package, root: Path) -> str | None:
    """The nearest file from the package directory up to the root that configures pytest."""
    directory = package.path
    while True:
        for name, table in PYTEST_CONFIG:
            path = directory / name
            if path.is_file() and (not table or has_table(path, table)):
                where = path.relative_to(root).as_posix()
                return f"{where} [{table}]" if table else where
        if directory == root or root not in directory.parents:
            return None
        directory = directory.parent


def package_python_files(package: Package) -> Iterable[str]:
    """The package's own Python files: not those of packages or virtualenvs inside it."""
    for directory, dirnames, filenames in os.walk(package.path):
        dirnames[:] = sorted(
            d for d in dirnames
            if not holds_no_packages(d, os.path.join(directory, d))
            and not any(os.path.isfile(os.path.join(directory, d, m)) for m in PACKAGE_MARKERS)
        )  # fmt: skip
        yield from (os.path.join(directory, f) for f in sorted(filenames) if f.endswith(".py"))


def pytest_style(package: Package) -> str | None:
    """Why pytest would claim the package by its files: a conftest.py, a test module importing
    pytest, or a test taking arguments (pytest fixtures, which nose cannot give)."""
    for path in package_python_files(package):
        name = os.path.basename(path)
        rel = os.path.relpath(path, package.path).replace(os.sep, "/")
        if name == "conftest.py":
            return f"{rel} in the package"
        if not (name.startswith("test") or name.endswith("_test.py")):
            continue
        try:
            with open(path, "rb") as f:
                source = f.read()
        except OSError:
            continue
        if PYTEST_IMPORT.search(source):
            return f"{rel} imports pytest"
        if FIXTURE_TEST.search(source):
            return f"{rel} has tests taking pytest fixtures"
    return None


def runner_for(
    package: Package, root: Path, explicit: Runner | None, by_glob: Sequence[tuple[str, Runner]]
) -> tuple[Runner, str]:
    """The runner for one package, and why: ``--runner``, then the first matching glob of the
    ``runners`` setting, then pytest where pytest would claim the package, else nose."""
    if explicit is not None:
        return explicit, "--runner"
    for glob, runner in by_glob:
        if glob_matches(package.rel, glob) or fnmatch.fnmatchcase(package.rel, glob):
            return runner, f"runners {glob!r}"
    claim = pytest_config(package, root) or pytest_style(package)
    if claim:
        return BUILTIN_RUNNERS["pytest"], claim
    return BUILTIN_RUNNERS["nose"], "no pytest configuration, conftest.py or pytest-style test"


def python_for(package: Package, by_glob: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """The interpreter for one package, and why: a virtualenv the ``venvs`` setting names for
    it, else its own ``.venv`` or ``venv``, else the one running autotest."""
    named = [(g, v) for g, v in by_glob if glob_matches(package.rel, g) or package.rel == g]
    candidates = [(package.path / v, f"venvs {g!r}") for g, v in named[:1]]
    candidates += [(package.path / n, f"its own {n}") for n in (".venv", "venv")]
    for venv, reason in candidates:
        python = venv_python(venv)
        if python is not None:
            return str(python), reason
    return sys.executable, ""


def choose(
    packages: Sequence[Package], root: Path, spec: str,
    runners: Sequence[tuple[str, str]], venvs: Sequence[tuple[str, str]],
) -> dict[Package, Choice]:  # fmt: skip
    """Each package's runner and interpreter, as the settings and its files decide."""
    explicit = None if spec == "auto" else make_runner(spec)
    by_glob = [(glob, make_runner(name, f"runners {glob!r}:")) for glob, name in runners]
    chosen: dict[Package, Choice] = {}
    for package in packages:
        runner, reason = runner_for(package, root, explicit, by_glob)
        python, python_reason = python_for(package, venvs)
        chosen[package] = Choice(runner, reason, python, python_reason)
    return chosen


def stale_choices(
    packages: Sequence[Package], chosen: Mapping[Package, Choice], changed: Iterable[str]
) -> list[Package]:
    """The packages whose runner and interpreter must be chosen again after a change: those not
    chosen yet and those holding a changed path; every one when a path outside every package
    changed (a root config may set pytest up for all).  The others' files did not change, so
    they are not read again."""
    paths = list(changed)
    if any(owner_of(p, packages) is None for p in paths):
        return list(packages)
    owners = {owner_of(p, packages) for p in paths}
    return [p for p in packages if p not in chosen or p in owners]


def check_choices(choices: Mapping[Package, Choice], strict: bool = True) -> dict[Package, str]:
    """The runners missing for autotest's own interpreter (when ``strict``, at start): one
    line naming what is missing, for which packages, and how to install it.  A runner missing
    from a package's own virtualenv (or, later, from autotest's) stops nothing else: those
    packages are returned with how to install it, and each could not run."""
    users: dict[tuple[Runner, str], list[Package]] = {}
    for package, choice in sorted(choices.items(), key=lambda item: item[0].rel):
        users.setdefault((choice.runner, choice.python), []).append(package)
    unrunnable: dict[Package, str] = {}
    for (runner, python), packages in users.items():
        rels = [p.rel for p in packages]
        named = ", ".join(rels[:5]) + (f" and {len(rels) - 5} more" if len(rels) > 5 else "")
        try:
            check_runner(runner, python, f" (needed by {named})" if len(users) > 1 else "")
        except UsageError as exc:
            if strict and python == sys.executable:
                raise
            fix = f"{python} -m pip install {runner.install}" if runner.install else str(exc)
            unrunnable.update(dict.fromkeys(packages, fix))
    return unrunnable


TEST_EXTRAS = ("test", "tests", "testing", "dev")
TEST_REQUIREMENTS = (
    "test-requirements.txt", "requirements-test.txt", "requirements-tests.txt",
    "requirements_test.txt", "requirements/test.txt", "tests/requirements.txt",
    "requirements-dev.txt", "dev-requirements.txt",
)  # fmt: skip


def install_test_deps_command(package: Package, python: str) -> str:
    """The package's own way to install its test dependencies, as a command to paste here: a
    test requirements file, a dependency group or a test extra; empty when it declares none."""
    where = os.path.relpath(package.path)
    where = str(package.path) if where.startswith("..") else where.replace(os.sep, "/")
    for name in TEST_REQUIREMENTS:
        if (package.path / name).is_file():
            return f"{python} -m pip install -r {shlex.quote(f'{where}/{name}')}"
    data: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        data = load_toml(package.path / "pyproject.toml") or {}
    groups = data.get("dependency-groups", {})
    extras = data.get("project", {}).get("optional-dependencies", {})
    for name in TEST_EXTRAS:
        if isinstance(groups, dict) and name in groups:
            group = shlex.quote(f"{where}/pyproject.toml:{name}")
            return f"{python} -m pip install --group {group}"
        if isinstance(extras, dict) and name in extras:
            return f"{python} -m pip install -e {shlex.quote(f'{where}[{name}]')}"
    return ""


# ---------------------------------------------------------------------------------------------
# One run: one package's test process
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    """One package's verdict.  ``output`` is what the terminal shows of the run: all of it, or
    its head when ``omitted`` lines follow, then ``tail``; ``saved`` holds the whole output of a
    run that did not pass; ``hint`` is how to install what a run that could not run needs."""

    package: Package
    verdict: Verdict
    seconds: float
    output: str
    note: str = ""
    warm: bool = False  # forked from the warm interpreter
    tail: str = ""
    omitted: int = 0
    saved: str = ""
    hint: str = ""
    forked_failed: bool = False  # a forked run failed, so this cold one ran to confirm it

    @property
    def passed(self) -> bool:
        return self.verdict is not Verdict.FAILED

    @property
    def failed_only_forked(self) -> bool:
        """Failed forked from a warm interpreter, passed cold: the package is to run cold."""
        return self.forked_failed and self.passed


MISSING_MODULE = re.compile(r"(?:ModuleNotFoundError|ImportError): No module named '([\w.]+)'")
TESTS_FAILED = re.compile(r"\bfailures=\d|\b\d+ failed\b")  # nose/unittest, pytest
NOSE_FIXTURES = re.compile(r"doesn't support pytest fixtures")
SKIPPED = re.compile(r"^OK \(.*\bSKIP=\d")


@dataclass(frozen=True)
class Output:
    """What a run printed, read once from its file: only the head and tail are kept, and the
    few facts the verdict needs, so that no output of any size is held in memory."""

    head: str
    tail: str
    omitted: int
    missing: tuple[str, ...] = ()
    tests_failed: bool = False
    fixtures_skipped: bool = False
    skipped: bool = False

    @property
    def excerpt(self) -> str:
        return self.head + self.tail


def read_output(out: IO[bytes]) -> Output:
    """The head and the tail of a run's output file, and what it says, read line by line."""
    import collections

    out.seek(0)
    head: list[str] = []
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    count = 0
    missing: dict[str, None] = {}
    found = {"failed": False, "fixtures": False, "skipped": False}
    for raw in iter(lambda: out.readline(LINE_LIMIT), b""):
        line = raw.decode("utf-8", "replace")
        count += 1
        if count <= HEAD_LINES:
            head.append(line)
        else:
            tail.append(line)
        if "No module named" in line and (match := MISSING_MODULE.search(line)):
            missing[match.group(1)] = None
        found["failed"] = found["failed"] or bool(TESTS_FAILED.search(line))
        found["fixtures"] = found["fixtures"] or bool(NOSE_FIXTURES.search(line))
        found["skipped"] = found["skipped"] or bool(SKIPPED.match(line))
    omitted = max(0, count - HEAD_LINES - TAIL_LINES)
    return Output(
        "".join(head), "".join(tail), omitted, tuple(missing),
        found["failed"], found["fixtures"], found["skipped"],
    )  # fmt: skip


def output_dir(root: Path) -> Path:
    """Where the whole output of failing runs is kept: outside the repository, one directory
    per repository and user."""
    import hashlib

    digest = hashlib.sha1(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    name = f"autotest-output{user_suffix()}"
    return Path(tempfile.gettempdir()) / name / f"{root.name}-{digest}"


def save_output(out: IO[bytes], path: Path | None) -> str:
    """Copy the run's output file to ``path``; the path, or empty when it cannot be written."""
    if path is None:
        return ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        out.seek(0)
        with open(path, "wb") as f:
            shutil.copyfileobj(out, f)
    except OSError:
        return ""
    return str(path)


@dataclass(frozen=True)
class Needs:
    """What tells a module that cannot be had here from one the code broke: ``missing`` gives
    the first of the modules a failing run could not import that is neither installed for the
    package's interpreter nor provided by a package of the repository; ``hint`` the package's
    way to install its test dependencies (read from its files only when a run needs it)."""

    missing: Callable[[Sequence[str]], str | None]
    hint: Callable[[], str] = lambda: ""


def pycache_dir() -> str:
    """One bytecode cache for every repository (the prefix mirrors absolute paths), per user."""
    return os.path.join(tempfile.gettempdir(), f"autotest-pycache{user_suffix()}")


def run_environment(runner: Runner, pycache: str, python: str = sys.executable) -> dict[str, str]:
    """The test process's environment: ``python``'s environment as if activated (its scripts
    first on PATH, so ``python``, ``pytest`` or any console script in a command resolve there),
    the runner's defaults, and bytecode in a cache outside the tree (so runs write nothing
    that could look like a change)."""
    env = dict(os.environ)
    env["PATH"] = activated_path(python)
    prefix = os.path.dirname(scripts_dir(python))
    if os.path.isfile(os.path.join(prefix, "pyvenv.cfg")):
        env["VIRTUAL_ENV"] = prefix
        env.pop("PYTHONHOME", None)
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
    prints megabytes can never block, and stdout and stderr stay interleaved in order; only its
    head and tail are read back, and the whole of a failing run's is copied to ``saved``.

    With ``confirm``, a forked run that fails, forked from a warm interpreter that had imported
    modules ahead, is run again cold, and the cold run's is the verdict: a module imported
    ahead that a test expects not to be imported yet must never show as a failure."""

    def __init__(
        self, package: Package, command: Sequence[str], env: Mapping[str, str], runner: Runner,
        timeout: float | None, launcher: Launcher | None = None, saved: Path | None = None,
        needs: Needs | None = None, confirm: bool = False,
    ) -> None:  # fmt: skip
        self.package = package
        self.command = list(command)
        self.env = dict(env)
        self.runner = runner
        self.timeout = timeout
        self.saved = saved
        self.needs = needs
        self.confirm = confirm
        self.forked_failed = False
        self.out: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed by _result)
        self.started = time.monotonic()
        self.proc: subprocess.Popen[bytes] | WarmProcess | None = None
        self.handle: int | None = None  # a cold process's pidfd, where there are pidfds
        self.error = ""
        try:
            if launcher is not None:
                self.proc = launcher.launch(package, command, env, self.out)
            if self.proc is None:
                self._start_cold()
        except OSError as exc:
            self._cannot_start(exc)

    def _cannot_start(self, exc: OSError) -> None:
        self.proc = None
        self.error = f"autotest: cannot start {self.command[0]}: {exc.strerror or exc}\n"

    def _start_cold(self) -> None:
        self.proc = subprocess.Popen(
            self.command, cwd=self.package.path, env=self.env, stdin=subprocess.DEVNULL,
            stdout=self.out, stderr=subprocess.STDOUT, **own_process_group(),
        )  # fmt: skip
        self.handle = process_handle(self.proc.pid)

    def _again_cold(self) -> bool:
        """Whether a forked run that failed was started again cold, to confirm it (once)."""
        if not self.confirm or not isinstance(self.proc, WarmProcess) or not self.proc.preloaded:
            return False
        self.confirm, self.forked_failed = False, True
        self.out.seek(0)
        self.out.truncate()
        self.started = time.monotonic()
        try:
            self._start_cold()
        except OSError as exc:
            self._cannot_start(exc)
        return True

    def wait_handle(self) -> int | None:
        """What a cycle can wait on until this run may have ended: a descriptor that becomes
        readable then, ``NOW`` when there is no need to wait, or None when it must be polled."""
        if self.proc is None:
            return NOW
        if isinstance(self.proc, WarmProcess):
            return self.proc.wait_handle()
        return self.handle

    def poll(self) -> RunResult | None:
        """The result once the process has ended (or was killed for its timeout), else None."""
        if self.proc is None:
            self._append(self.error)
            return self._result(Verdict.FAILED)
        code = self.proc.poll()
        if code is None:
            if self.timeout is not None and time.monotonic() - self.started > self.timeout:
                self._show_where_it_hangs()
                self.kill()
                self._append(f"\nautotest: timed out after {self.timeout:g}s; killed\n")
                return self._result(Verdict.FAILED, "timed out")
            return None
        kill_leftovers(self.proc.pid)
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            self._append(f"\nautotest: killed by {name}\n")
            return self._result(Verdict.FAILED, name)
        output = read_output(self.out)
        verdict = self.runner.verdict(code, output.excerpt)
        if verdict is Verdict.FAILED and self._again_cold():
            return None
        if verdict is Verdict.FAILED and not output.tests_failed and self.needs is not None:
            needed = self.needs.missing(output.missing) if output.missing else None
            if needed:
                return self._result(Verdict.COULD_NOT_RUN, f"needs {needed}", output)
        if verdict is not Verdict.FAILED and self._skipped_pytest_tests(output):
            self._append(NOSE_CANNOT_RUN.format(rel=self.package.rel))
            return self._result(Verdict.FAILED, "pytest-style tests")
        note = "" if code in (0, 1) or verdict is not Verdict.FAILED else f"exit {code}"
        return self._result(verdict, note, output)

    def _append(self, text: str) -> None:
        """autotest's own word at the end of the run's output."""
        self.out.seek(0, os.SEEK_END)
        self.out.write(text.encode())
        self.out.flush()

    def _show_where_it_hangs(self) -> None:
        """A Python run prints its stacks (see ``show_stacks``) before it is killed."""
        if self.proc is None or self.runner.module is None:
            return
        show_stacks(self.proc.pid)
        deadline = time.monotonic() + DUMP_WAIT
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL)

    def _skipped_pytest_tests(self, output: Output) -> bool:
        """nose skips tests that take pytest fixtures and still exits 0: it says so only when
        verbose, so a quiet run's skips are checked against the package's tests."""
        if self.runner.name != "nose":
            return False
        return output.fixtures_skipped or (output.skipped and bool(pytest_style(self.package)))

    def _result(self, verdict: Verdict, note: str = "", output: Output | None = None) -> RunResult:
        if output is None:
            output = read_output(self.out)
        failed = verdict in (Verdict.FAILED, Verdict.COULD_NOT_RUN)
        saved = save_output(self.out, self.saved) if failed else ""
        self.out.close()
        self._close_handle()
        seconds = time.monotonic() - self.started
        warm = isinstance(self.proc, WarmProcess)
        hint = self.needs.hint() if self.needs and verdict is Verdict.COULD_NOT_RUN else ""
        return RunResult(
            self.package, verdict, seconds, output.head, note, warm,
            output.tail, output.omitted, saved, hint, self.forked_failed,
        )  # fmt: skip

    def kill(self) -> None:
        if self.proc is not None:
            kill_tree(self.proc.pid)
            with contextlib.suppress(Exception):
                self.proc.wait()
        self._close_handle()

    def _close_handle(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(OSError):
                os.close(self.handle)
            self.handle = None


NOW = -1  # a run's wait handle when there is nothing to wait for: it is polled at once


class Unrunnable:
    """A package whose own interpreter lacks its runner: it could not run, and says how to
    install what it needs, without a process."""

    def __init__(self, package: Package, runner: Runner, fix: str) -> None:
        self.package = package
        self.runner = runner
        self.fix = fix

    def poll(self) -> RunResult:
        needs = f"needs {self.runner.install or self.runner.name}"
        return RunResult(self.package, Verdict.COULD_NOT_RUN, 0.0, "", needs, hint=self.fix)

    def wait_handle(self) -> int:
        return NOW

    def kill(self) -> None:
        pass


NOSE_CANNOT_RUN = (
    "\nautotest: nose skipped tests of {rel} that take pytest fixtures, and cannot run them; "
    "run it with pytest: --runner auto (the default) or pytest, or "
    'runners = {{ "{rel}" = "pytest" }} in [tool.autotest]\n'
)


# ---------------------------------------------------------------------------------------------
# Warm runner: a pre-started interpreter forks each run
# ---------------------------------------------------------------------------------------------
#
# A warm interpreter has imported the runner (and nothing from the repository); it forks a
# fresh child for a run, which saves the interpreter's and the runner's start-up.  It runs
# ``serve_warm`` below, whose source it reads from its stdin, so that the code is linted and
# type-checked with the rest and ``ps`` shows one short line.
#
# There is one per runner and interpreter: autotest's own, and each package virtualenv's (the
# program below runs on any Python from 3.9; InterpreterFacts are asked of the others).
#
# A forked child inherits its interpreter's hash seed, so unless PYTHONHASHSEED fixes it, each
# warm interpreter serves one cycle, and a fresh one (a fresh seed) starts in the background at
# the cycle's first run: a package runs once per cycle, so each of its runs sees a seed that
# differs from its last one, as with cold runs, while a cycle of many packages pays for one
# interpreter start, not one per package.
#
# It also imports ahead what the runs taught it: each forked run reports the modules it
# imported, and those from outside the repository (LearnedPreloads) are imported by the next
# warm interpreter of that Python before it forks, each checked (interpreter_state), first in
# a throwaway forked probe (unless an earlier warm interpreter imported and kept it), then for
# real: one whose import fails is skipped; one that starts a
# thread or changes what a forked run would see otherwise than a cold one (the environment,
# sys.path, the working directory, signal handlers, the standard streams) or imports a module
# of the repository is dropped, and when that happens for real it ends the warm interpreter and
# the next one starts without it.  When the runs taught it more, the fresh interpreter started
# after a cycle imports that too (even where PYTHONHASHSEED keeps one interpreter otherwise).
#
# The protocol, over a socket pair, one line per message:
#   server -> autotest   ``drop NAME WHY``      a learned module is not imported ahead, and why
#   server -> autotest   ``ready``              the runner and the learned modules are imported;
#                                               requests may come
#   autotest -> server   a JSON object {"cwd", "env", "args", "report"}, with the run's output
#                        file passed alongside as a descriptor (SCM_RIGHTS), and, when
#                        "report" is true, a second file for the modules the run imported
#   server -> autotest   ``pid PID``            the run was forked, as process PID
#   server -> autotest   ``exit PID CODE``      it ended; CODE as Popen.returncode reads
# An ``exit`` may arrive before its ``pid`` is read.  ``pid`` is sent once the run is a session
# (and process group) of its own, so that its group can be killed.  When autotest goes away
# (the socket closes, SIGTERM, or on Linux its death however it died) the server kills every
# run it forked with all they started, pid read or not, and ends without a word.


def run_forked(
    module: str, request: dict[str, Any], out: int, started: int, report: int | None
) -> NoReturn:  # pragma: no cover
    """In the forked child: become the run autotest asked for, as a cold start would be (a
    session of its own); closing ``started`` tells the server that it is one.  At its end it
    writes the modules it imported to ``report``, when there is one."""
    import faulthandler
    import os
    import runpy
    import signal
    import sys

    before = set(sys.modules)
    for signum in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    os.setsid()
    os.close(started)
    set_parent_death_signal(signal.SIGKILL)
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
    faulthandler.enable()  # as -X faulthandler does cold: SIGABRT prints where it hangs
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            with contextlib.suppress(Exception):  # as the interpreter says it, on stderr
                sys.stderr.write(f"{exc.code}\n")
                sys.stderr.flush()
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    if report is not None:
        with contextlib.suppress(Exception):
            report_imports(report, before)
    os._exit(code)


def report_imports(fd: int, before: set[str]) -> None:  # pragma: no cover
    """In the forked child, at its end: each module the run imported with its file, a line
    each, for autotest to learn from."""
    import os
    import sys

    lines = []
    for name, module in list(sys.modules.items()):
        if name not in before:
            file = getattr(module, "__dict__", {}).get("__file__")
            if isinstance(file, str) and "\t" not in name + file and "\n" not in name + file:
                lines.append(f"{name}\t{file}\n")
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.writelines(lines)


def is_installed_code(file: str, root: str, site_dirs: Sequence[str]) -> bool:
    """Whether a module's file is code that does not change between saves: outside the
    repository ``root``, or in one of the interpreter's site directories (a .venv kept in the
    repository).  Paths are compared real, as given in ``root`` and ``site_dirs``."""
    import os

    real = os.path.realpath(file)

    def under(folder: str) -> bool:
        return real == folder or real.startswith(folder.rstrip(os.sep) + os.sep)

    return not under(root) or any(under(d) for d in site_dirs)


def interpreter_state() -> dict[str, Any]:  # pragma: no cover (runs in the warm interpreter)
    """What importing a module ahead could change so that a forked run sees otherwise than a
    cold one: the threads (a fork keeps only the forking one), and what each forked run resets
    or sets anew (the environment, sys.path, the working directory, signal handlers, the
    standard streams, the warning filters)."""
    import os
    import signal
    import sys
    import threading
    import warnings

    handlers = {}
    for number in signal.valid_signals():
        with contextlib.suppress(ValueError, OSError):
            handlers[int(number)] = signal.getsignal(number)
    return {
        "threads": threading.active_count(),
        "environment": dict(os.environ),
        "sys.path": list(sys.path),
        "working directory": os.getcwd(),
        "signal handlers": handlers,
        "standard streams": [id(sys.stdin), id(sys.stdout), id(sys.stderr)],
        "warning filters": list(warnings.filters),
        "modules": set(sys.modules),
    }


def state_change(
    before: dict[str, Any], after: dict[str, Any], is_ours: Callable[[str], bool]
) -> str:
    """Why a module whose import turned the interpreter's state ``before`` into ``after`` must
    not be imported ahead, or ''.  ``is_ours`` says whether a module name is the repository's."""
    if after["threads"] > before["threads"]:
        return "starts a thread"
    keys = ("environment", "sys.path", "working directory", "signal handlers", "warning filters")
    for key in keys:
        if after[key] != before[key]:
            return f"changes the {key}"
    if after["standard streams"] != before["standard streams"]:
        return "replaces a standard stream"
    ours = sorted(n for n in after["modules"] - before["modules"] if is_ours(n))
    return f"imports {ours[0]} from the repository" if ours else ""


def checked_import(  # pragma: no cover (runs in the warm interpreter)
    name: str, root: str, site_dirs: Sequence[str]
) -> tuple[str, bool]:
    """Import ``name`` and say why it must not be imported ahead ('' when it may), and whether
    that import left the interpreter changed.  A warning it issued counts as a change: a cold
    run would have met it under the run's own filters (pytest's ``filterwarnings = error``
    fails on it; its summary lists it), a forked one would never see it."""
    import importlib
    import sys
    import warnings

    def is_ours(module: str) -> bool:
        file = getattr(sys.modules.get(module), "__dict__", {}).get("__file__")
        return isinstance(file, str) and not is_installed_code(file, root, site_dirs)

    failed = ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = interpreter_state()
        try:
            importlib.import_module(name)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: a module is odd
            failed = f"its import failed ({type(exc).__name__})"
        changed = state_change(before, interpreter_state(), is_ours)
    if caught and not changed:
        changed = f"issues a {caught[0].category.__name__} when imported"
    return changed or failed, bool(changed)


def probe_learned(  # pragma: no cover (runs in the warm interpreter)
    names: Sequence[str], root: str, site_dirs: Sequence[str]
) -> dict[str, str]:
    """The learned modules unfit to import ahead, and why, found by importing them all in a
    forked probe (whatever they change dies with it); all of them when the probe crashed."""
    import json
    import os
    import signal
    import sys

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:  # whatever happens, the probe never goes on as a second server
            os.close(read)
            set_parent_death_signal(signal.SIGKILL)
            unfit = {}
            for name in names:
                if name not in sys.modules:
                    why, _ = checked_import(name, root, site_dirs)
                    if why:
                        unfit[name] = why
            with os.fdopen(write, "w") as f:
                json.dump(unfit, f)
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        text = f.read()
    os.waitpid(pid, 0)
    try:
        return dict(json.loads(text))
    except ValueError:
        return {name: "checking its import crashed" for name in names}


def import_learned(  # pragma: no cover (runs in the warm interpreter)
    names: Sequence[str], proven: Collection[str], root: str, site_dirs: Sequence[str],
    send: Callable[[str], None],
) -> None:  # fmt: skip
    """Import the learned modules, each checked again; those not ``proven`` in an earlier warm
    interpreter are first probed, so that one restart drops all the unfit at once (a module may
    still be fit only beside one found unfit).  A module that changed this interpreter ends it,
    as nothing can undo an import, after saying which and why."""
    import os
    import sys

    unproven = [name for name in names if name not in proven]
    unfit = probe_learned(unproven, root, site_dirs) if unproven else {}
    for name, why in unfit.items():
        send(f"drop {name} {why}")
    for name in names:
        if name in sys.modules or any(name == u or name.startswith(u + ".") for u in unfit):
            continue
        why, changed = checked_import(name, root, site_dirs)
        if why:
            send(f"drop {name} {why}")
        if changed:
            os._exit(0)


def warm_up(  # pragma: no cover (runs in the warm server)
    module: str, preload: Sequence[str], learned: Sequence[str], proven: Collection[str],
    root: str, site_dirs: Sequence[str], send: Callable[[str], None],
) -> None:  # fmt: skip
    """Import the runner and the learned modules, and do once what every run would do again:
    list the site directories, and freeze what is imported so that no forked run's garbage
    collection walks it."""
    import gc
    import importlib
    import importlib.metadata

    importlib.import_module(module)
    for name in preload:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    import_learned(learned, proven, root, site_dirs, send)
    with contextlib.suppress(Exception):  # (importlib.metadata caches it per directory mtime)
        for _ in importlib.metadata.distributions():
            pass
    gc.freeze()


def serve_warm(  # pragma: no cover
    module: str, fd: int, preload: Sequence[str], parent: int, learned: Sequence[str] = (),
    proven: Collection[str] = (), root: str = "", site_dirs: Sequence[str] = (),
) -> None:  # fmt: skip
    """The warm interpreter's program: import the runner and the learned modules, then fork a
    run per request.  When autotest goes away it kills every run it forked and ends at once,
    without a word."""
    import json
    import os
    import signal
    import socket

    children: set[int] = set()

    def shutdown(*_: object) -> NoReturn:
        for pid in list(children):
            for kill in (os.kill, os.killpg):
                with contextlib.suppress(OSError):
                    kill(pid, signal.SIGKILL)
        os._exit(0)

    signal.signal(signal.SIGTERM, shutdown)
    set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent:  # autotest died before it could be told
        shutdown()
    sock = socket.socket(fileno=fd)

    def send(line: str) -> None:
        try:
            sock.sendall(line.encode() + b"\n")
        except OSError:
            shutdown()

    def reap(*_: object) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            children.discard(pid)
            with contextlib.suppress(OSError):  # what the run started goes with it
                os.killpg(pid, signal.SIGKILL)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            send(f"exit {pid} {code}")

    warm_up(module, preload, learned, proven, root, site_dirs, send)
    send("ready")
    signal.signal(signal.SIGCHLD, reap)
    buffer, fds = b"", []
    while True:
        try:
            message, more_fds, _, _ = socket.recv_fds(sock, 1 << 20, 2)
        except InterruptedError:
            continue
        except OSError:
            shutdown()
        if not message:
            shutdown()
        buffer += message
        fds += more_fds
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            request = json.loads(line)
            out = fds.pop(0)
            report = fds.pop(0) if request.get("report") else None
            send(f"pid {fork_run(module, request, out, report, sock, children)}")


def fork_run(  # pragma: no cover (runs in the warm server)
    module: str, request: dict[str, Any], out: int, report: int | None, sock: socket.socket,
    children: set[int],
) -> int:  # fmt: skip
    """Fork the run and record it before SIGCHLD or SIGTERM is handled; return once it is a
    session of its own, so that autotest can kill its group as soon as it reads the pid."""
    import os
    import signal

    held = {signal.SIGCHLD, signal.SIGTERM}
    started, child_started = os.pipe()
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    pid = os.fork()
    if pid == 0:
        sock.close()
        os.close(started)
        run_forked(module, request, out, child_started, report)
    children.add(pid)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
    os.close(child_started)
    os.close(out)
    if report is not None:
        os.close(report)
    with contextlib.suppress(OSError):
        os.read(started, 1)  # end of file: the child's setsid is done (or it is gone)
    os.close(started)
    return pid


SERVER_FUNCTIONS = (
    set_parent_death_signal, run_forked, report_imports, is_installed_code, interpreter_state,
    state_change, checked_import, probe_learned, import_learned, warm_up, fork_run, serve_warm,
)  # fmt: skip


def warm_server_source(
    module: str, fd: int, preload: Sequence[str], learned: Sequence[str] = (),
    proven: Collection[str] = (), root: str = "", site_dirs: Sequence[str] = (),
) -> bytes:  # fmt: skip
    """The warm interpreter's program: the functions it runs (SERVER_FUNCTIONS), and the
    call that starts it."""
    import inspect

    header = "from __future__ import annotations\nimport contextlib\n"
    functions = "".join(inspect.getsource(f) + "\n" for f in SERVER_FUNCTIONS)
    call = f"serve_warm({module!r}, {fd}, {tuple(preload)!r}, {os.getpid()}"
    if learned:
        call += f", {tuple(learned)!r}, {sorted(proven)!r}, {root!r}, {tuple(site_dirs)!r}"
    return (header + functions + call + ")\n").encode()


def installed_stamp(site_dirs: Sequence[str]) -> tuple[int, ...]:
    """When what is installed for an interpreter last changed: ``pip install`` adds or
    removes entries in its site-packages, which changes the directory's mtime."""
    return tuple(os.stat(p).st_mtime_ns if os.path.isdir(p) else 0 for p in site_dirs)


def site_directories() -> tuple[str, ...]:
    """This interpreter's site directories, as real paths."""
    import site

    places = [*getattr(site, "getsitepackages", list)(), site.getusersitepackages()]
    return tuple(os.path.realpath(p) for p in places)


@dataclass(frozen=True)
class InterpreterFacts:
    """What warming an interpreter takes knowing: where its installed code lives (what the
    runs import from there may be imported ahead, even inside the repository), and the
    top-level modules of the distributions that register the runner's plugins."""

    site_dirs: tuple[str, ...]
    plugins: frozenset[str]


def interpreter_facts(python: str, plugin_group: str) -> InterpreterFacts | None:
    """The facts of ``python``, asked of it when it is not autotest's own (a package's
    virtualenv); None when it cannot serve forked runs (no fork, or older than 3.9) or did not
    answer."""
    if python == sys.executable:
        if not can_fork_server():
            return None
        return InterpreterFacts(site_directories(), plugin_modules(plugin_group))
    import inspect

    program = (
        "from __future__ import annotations\nimport json, os, socket, sys\n"
        + "".join(inspect.getsource(f) for f in (site_directories, plugin_modules))
        + "if hasattr(os, 'fork') and hasattr(socket, 'send_fds'):\n"
        + f"    print(json.dumps([site_directories(), sorted(plugin_modules({plugin_group!r}))]))"
    )
    try:
        done = subprocess.run(
            [python, "-c", program], capture_output=True, text=True, timeout=60,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        site_dirs, plugins = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return InterpreterFacts(tuple(site_dirs), frozenset(plugins))


def preload_candidates(
    reported: Iterable[tuple[str, str]], root: str, site_dirs: Sequence[str]
) -> list[str]:
    """Of the modules a run imported (name, file), those a warm interpreter may import ahead:
    installed code, never the repository's (its code changes between saves), never a
    ``__main__`` or one without a file."""
    return [
        name
        for name, file in reported
        if name and not name.startswith("__") and file
        and is_installed_code(file, root, site_dirs)
    ]  # fmt: skip


@functools.cache
def is_standard_library(top: str) -> bool:
    """Whether a top-level module comes with Python: ``-v`` lists the others by name, as what a
    user installed is what they look for."""
    if top in getattr(sys, "stdlib_module_names", ()):  # Python 3.10+, less generated modules
        return True
    import importlib.util
    import sysconfig

    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    origin = spec.origin if spec is not None else None
    if origin in ("built-in", "frozen"):
        return True
    places = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")}
    where = os.path.realpath(origin or "")
    return "site-packages" not in where and any(
        where.startswith(place + os.sep) for place in places
    )


def read_report(report: IO[bytes]) -> list[tuple[str, str]]:
    """The (name, file) lines a forked run wrote at its end."""
    report.seek(0)
    text = report.read().decode("utf-8", "surrogateescape")
    return [tuple(line.split("\t", 1)) for line in text.splitlines() if "\t" in line]  # type: ignore[misc]


@dataclass(frozen=True)
class Preloads:
    """What ``-v`` says of one warm interpreter: what it imports ahead, the learned modules it
    must not (and why), and whether its runs taught it nothing to import ahead (rather than
    nothing yet)."""

    runner: str
    python: str
    names: tuple[str, ...]
    dropped: Mapping[str, str]
    none_to_learn: bool


class LearnedPreloads:
    """What the forked runs of one interpreter taught: the modules from outside the repository
    they imported, in the order first seen, less those a warm interpreter dropped (and why).
    Those a warm interpreter imported ahead and kept are proven: the next ones import them
    without probing them first."""

    def __init__(self, root: Path, site_dirs: Sequence[str] | None = None) -> None:
        self.root = os.path.realpath(root)
        self.site_dirs = tuple(site_dirs) if site_dirs is not None else site_directories()
        self.names: dict[str, None] = {}
        self.dropped: dict[str, str] = {}
        self.proven: set[str] = set()
        self.taught = False  # a forked run has reported what it imported

    def learn(self, reported: Iterable[tuple[str, str]]) -> None:
        self.taught = True
        for name in preload_candidates(reported, self.root, self.site_dirs):
            if name not in self.dropped:
                self.names.setdefault(name)

    def drop(self, name: str, why: str) -> None:
        """Never import ``name`` ahead again, nor its submodules (they would import it)."""
        self.dropped[name] = why
        for known in [n for n in self.names if n == name or n.startswith(name + ".")]:
            del self.names[known]
            self.proven.discard(known)

    def prove(self, imported: Iterable[str]) -> None:
        self.proven.update(name for name in imported if name in self.names)

    def give_up(self, why: str) -> None:
        for name in list(self.names):
            self.drop(name, why)

    def for_runner(self, never: Collection[str]) -> tuple[str, ...]:
        """The modules to import ahead for a runner that must never get ``never`` ahead."""
        return tuple(n for n in self.names if n.split(".")[0] not in never)


class WarmProcess:
    """A forked run seen through the warm server: enough of Popen's face for ``Run``.  Once it
    has ended, the modules it reported having imported are handed to the launcher."""

    def __init__(
        self, launcher: WarmLauncher, pid: int, report: IO[bytes] | None = None,
        preloaded: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        self.launcher = launcher
        self.pid = pid
        self.returncode: int | None = None
        self.report = report
        self.preloaded = preloaded  # what its warm interpreter had imported ahead

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.launcher.exit_code(self.pid, block=False)
            self._ended()
        return self.returncode

    def wait(self) -> int:
        while self.returncode is None:
            self.returncode = self.launcher.exit_code(self.pid, block=True)
        self._ended()
        return self.returncode

    def wait_handle(self) -> int | None:
        return self.launcher.wait_handle(self.pid)

    def _ended(self) -> None:
        if self.returncode is not None and self.report is not None:
            with self.report:
                self.launcher.learn(read_report(self.report))
            self.report = None


class WarmServer:
    """One warm interpreter and its end of the socket.  ``learned`` takes its ``drop``s;
    ``preloaded`` is what it was asked to import ahead of the runs."""

    def __init__(
        self, module: str, preload: Sequence[str], env: Mapping[str, str],
        learned: LearnedPreloads | None = None, preloaded: tuple[str, ...] = (),
        python: str = sys.executable,
    ) -> None:  # fmt: skip
        self.used = False  # it has forked a run, so its hash seed has been seen
        self.learned = learned
        self.preloaded = preloaded
        self.exits: dict[int, int] = {}
        self.running: set[int] = set()
        self.buffer = b""
        self.ready = False
        self.sock: socket.socket | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        where = (
            (learned.proven & set(preloaded), learned.root, learned.site_dirs)
            if learned is not None
            else ((), "", ())
        )
        ours, theirs = socket.socketpair()
        bootstrap = "import sys; exec(sys.stdin.read())"
        try:
            self.proc = subprocess.Popen(
                [python, "-c", bootstrap, "autotest-warm", module],
                pass_fds=[theirs.fileno()], env=dict(env), stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            assert self.proc.stdin is not None
            with self.proc.stdin:
                self.proc.stdin.write(
                    warm_server_source(module, theirs.fileno(), preload, preloaded, *where)
                )
        except OSError:
            ours.close()
            return
        finally:
            theirs.close()
        self.sock = ours

    @property
    def alive(self) -> bool:
        return self.sock is not None

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
        if kind == "drop" and self.learned is not None:
            _, name, why = line.split(" ", 2)
            self.learned.drop(name, why)
        elif kind == "ready":
            self.ready = True
            if self.learned is not None:
                self.learned.prove(self.preloaded)
        elif kind == "exit":
            self.exits[int(numbers[0])] = int(numbers[1])
            self.running.discard(int(numbers[0]))
        elif kind == "pid":
            pid = int(numbers[0])
            if pid not in self.exits:  # a quick run may have ended before its pid was read
                self.running.add(pid)
            return pid
        return None

    def is_ready(self, wait: float) -> bool:
        """Whether the interpreter is ready, waiting up to ``wait`` seconds for it (0: take in
        what it said so far)."""
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

    def fork(self, request: bytes, out: IO[bytes], report: IO[bytes] | None) -> int | None:
        """The pid of the run forked for ``request``; None when the interpreter is gone."""
        assert self.sock is not None
        fds = [out.fileno()] + ([report.fileno()] if report is not None else [])
        try:
            socket.send_fds(self.sock, [request], fds)
            self.sock.settimeout(WARM_REPLY_TIMEOUT)
            while True:
                pid = self._handle(self._read_line())
                if pid is not None:
                    return pid
        except OSError:
            self.close()
            return None

    def wait_handle(self, pid: int) -> int:
        """The socket an ``exit`` for ``pid`` will come on, or NOW when it is already here."""
        return NOW if pid in self.exits or self.sock is None else self.sock.fileno()

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
        """Closing the socket and SIGTERM each make the interpreter kill what it forked and
        end; it is killed outright only if it does not end in time."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=SERVER_EXIT_WAIT)
            except subprocess.TimeoutExpired:
                kill_tree(self.proc.pid)
                with contextlib.suppress(Exception):
                    self.proc.wait(timeout=SERVER_EXIT_WAIT)
            self.proc = None


class WarmLauncher:
    """Starts runs by forking them from a warm interpreter.  Where there is no fork, when the
    runner is not a Python module, or when the warm interpreter died, ``launch`` returns None
    and the run starts cold.  With ``learned``, the runs report what they imported, and the
    warm interpreter imports ahead what they taught (less the runner's plugins).

    An interpreter's hash seed is fixed when it starts, so unless PYTHONHASHSEED fixes it, each
    interpreter serves one cycle: the first run it forks starts its successor, which has the
    rest of the cycle to get ready for the next one."""

    def __init__(
        self, runner: Runner, env: Mapping[str, str], facts: InterpreterFacts | None,
        learned: LearnedPreloads | None = None, python: str = sys.executable,
    ) -> None:  # fmt: skip
        """``facts`` are ``interpreter_facts(python, runner.plugins)``: None leaves runs cold."""
        self.runner = runner
        self.env = dict(env)
        self.learned = learned
        self.python = python
        self.site_dirs = facts.site_dirs if facts is not None else ()
        self.never = facts.plugins if facts is not None else frozenset()
        self.restarts = 0  # warm interpreters in a row that ended dropping a learned module
        self.fresh_seeds = "PYTHONHASHSEED" not in self.env
        self.spare: WarmServer | None = None  # the next run forks from this one
        self.successor: WarmServer | None = None  # the next cycle's spare, getting ready
        self.serving: dict[int, WarmServer] = {}  # each forked run, by pid, with its server
        self.installed = installed_stamp(self.site_dirs)
        self.usable = facts is not None and runner.module is not None
        self._start_spare()

    def _wanted(self) -> tuple[str, ...]:
        """What a warm interpreter started now imports ahead."""
        return self.learned.for_runner(self.never) if self.learned is not None else ()

    def _new_server(self) -> WarmServer | None:
        if not self.usable or self.runner.module is None:
            return None
        return WarmServer(
            self.runner.module, self.runner.preload, self.env, self.learned, self._wanted(),
            self.python,
        )  # fmt: skip

    def _start_spare(self) -> None:
        self.spare = self._new_server()

    def _replace_spare(self) -> None:
        """A new spare for the next runs; the old one ends once its runs have."""
        old, self.spare = self.spare, None
        self._retire(old)
        self._drop_successor()
        self._start_spare()

    def _drop_successor(self) -> None:
        old, self.successor = self.successor, None
        self._retire(old)

    def _restart_if_installs_changed(self) -> None:
        """A warm interpreter read the installed .pth files when it started: after a
        ``pip install``, start a new one."""
        if not self.usable or installed_stamp(self.site_dirs) == self.installed:
            return
        self.installed = installed_stamp(self.site_dirs)
        facts = interpreter_facts(self.python, self.runner.plugins)
        self.never = facts.plugins if facts is not None else frozenset()
        self.usable = facts is not None
        self._replace_spare()

    def _retire(self, server: WarmServer | None) -> None:
        if server is not None and server not in self.serving.values():
            server.close()

    def wait_ready(self, command: Sequence[str] = ()) -> None:
        """Wait for the spare interpreter (it starts while the previous run goes on).  One that
        ended dropping a learned module is replaced by one without it, waited for in the same
        time; one still importing ahead when the time is up may hang in a learned module's
        import: learning is given up, and the next runs fork from one without any."""
        self._restart_if_installs_changed()
        deadline = time.monotonic() + WARM_START_TIMEOUT
        while self.spare is not None:
            spare = self.spare
            if spare.is_ready(max(0.0, deadline - time.monotonic())):
                return
            learned, timed_out = self.learned, spare.alive
            self.spare = None
            self._retire(spare)
            if learned is None or not spare.preloaded:
                return  # forked runs are over: runs start cold
            if timed_out:
                learned.give_up("the warm interpreter was not ready in time with it")
                self._start_spare()
                return
            if not set(spare.preloaded) - set(learned.for_runner(self.never)):
                return  # it ended without dropping anything: not the learned modules' fault
            self.restarts += 1
            if self.restarts > PRELOAD_RESTARTS:
                learned.give_up("too many modules unfit to import ahead")
            self._start_spare()

    def settle(self) -> None:
        """Take in what the spare interpreter said so far (drops, ready), without waiting."""
        if self.spare is not None:
            self.spare.is_ready(0.0)

    @property
    def preloaded(self) -> tuple[str, ...]:
        """What the spare interpreter imports ahead of the runs."""
        return self.spare.preloaded if self.spare is not None else ()

    def launch(
        self, package: Package, command: Sequence[str], env: Mapping[str, str], out: IO[bytes]
    ) -> WarmProcess | None:
        """Fork the run; None when it has to start cold."""
        prefix = self.runner.command(package, (), self.python)
        if list(command[: len(prefix)]) != prefix:
            return None
        self.wait_ready()
        server = self.spare
        if server is None or not server.alive:
            return None
        report = tempfile.TemporaryFile() if self.learned is not None else None  # noqa: SIM115
        request = json.dumps(
            {"cwd": str(package.path), "env": dict(env), "args": list(command[len(prefix) :]),
             "report": report is not None}
        )  # fmt: skip
        pid = server.fork(request.encode() + b"\n", out, report)
        if pid is None:
            if report is not None:
                report.close()
            self.spare = None
            return None
        self.serving[pid] = server
        if not server.used and self.fresh_seeds and self.successor is None:
            self.successor = self._new_server()
        server.used = True
        return WarmProcess(self, pid, report, server.preloaded)

    def renew(self) -> None:
        """After a cycle: the next one forks from a fresh interpreter when the used one's hash
        seed has been seen (unless PYTHONHASHSEED fixes it), or when the runs taught modules to
        import ahead that it does not.  That is the successor started at the cycle's first run,
        unless what it imports ahead is no longer what was learned; the used one ends once its
        runs have."""
        spare = self.spare
        if spare is None:
            return
        wanted = set(self._wanted())
        learned_more = bool(wanted - set(spare.preloaded))
        if learned_more:
            self.restarts = 0
        if not learned_more and not (self.fresh_seeds and spare.used):
            return
        successor, self.successor = self.successor, None
        if successor is not None and set(successor.preloaded) != wanted:
            self._retire(successor)
            successor = None
        if successor is None:
            self._replace_spare()
        else:
            self.spare = successor
            self._retire(spare)

    def wait_handle(self, pid: int) -> int:
        """What to wait on for run ``pid``'s ``exit`` (NOW when there is nothing to wait on)."""
        server = self.serving.get(pid)
        return NOW if server is None else server.wait_handle(pid)

    def learn(self, reported: Iterable[tuple[str, str]]) -> None:
        if self.learned is not None:
            self.learned.learn(reported)

    def exit_code(self, pid: int, block: bool) -> int | None:
        server = self.serving.get(pid)
        if server is None:
            return -signal.SIGKILL
        code = server.exit_code(pid, block)
        if code is not None:
            del self.serving[pid]
            if server is not self.spare:
                self._retire(server)
        return code

    def close(self) -> None:
        for server in {*self.serving.values(), self.spare, self.successor}:
            if server is not None:
                server.close()
        self.serving.clear()
        self.spare = self.successor = None


@dataclass
class WarmTimes:
    """One package's best times for its current code, cold and forked."""

    cold: float | None = None
    warm: float | None = None
    skip_next: bool = False  # its code just changed: the next run also compiles it


class Launcher(Protocol):
    """What a Run needs to start forked: a WarmLauncher, or the WarmPool of several."""

    def launch(
        self, package: Package, command: Sequence[str], env: Mapping[str, str], out: IO[bytes]
    ) -> WarmProcess | None: ...

    def wait_ready(self, command: Sequence[str]) -> None: ...

    def renew(self) -> None: ...

    def close(self) -> None: ...


class WarmPool:
    """One warm interpreter per runner and interpreter in use (autotest's own, or a package's
    virtualenv), each started at the first run that needs it; one that cannot serve forked
    runs (no fork, or older than 3.9) leaves its runs cold.  As each holds in memory what it
    imported ahead, only the virtualenvs of the WARM_VIRTUALENVS packages changed last are
    kept warm; other packages with their own run cold.  With a ``root``, what the runs import
    from outside it is learned, one set per interpreter."""

    def __init__(self, env: Mapping[str, str], root: Path | None = None) -> None:
        self.env = dict(env)
        self.root = root
        self.launchers: dict[tuple[str, str], WarmLauncher] = {}  # by runner and interpreter
        self.learned: dict[str, LearnedPreloads] = {}
        self.recent: list[str] = []  # virtualenvs' interpreters, of the packages changed last

    def _kept_warm(self, python: str) -> bool:
        return python == sys.executable or python in self.recent

    def launcher_for(self, command: Sequence[str]) -> WarmLauncher | None:
        """The warm launcher for a command running a built-in runner with an interpreter
        (``python [-X option] -m MODULE ...``), started now if need be."""
        if not command or "-m" not in command[1:4]:
            return None
        module = command[command.index("-m") + 1]
        runner = next((r for r in BUILTIN_RUNNERS.values() if r.module == module), None)
        if runner is None or not self._kept_warm(command[0]):
            return None
        self.prepare([(runner, command[0])])
        return self.launchers[runner.name, command[0]]

    def wait_ready(self, command: Sequence[str]) -> None:
        launcher = self.launcher_for(command)
        if launcher is not None:
            launcher.wait_ready()

    def launch(
        self, package: Package, command: Sequence[str], env: Mapping[str, str], out: IO[bytes]
    ) -> WarmProcess | None:
        launcher = self.launcher_for(command)
        return None if launcher is None else launcher.launch(package, command, env, out)

    def renew(self) -> None:
        for launcher in self.launchers.values():
            launcher.renew()

    def prepare(self, uses: Iterable[tuple[Runner, str]], changed: Iterable[str] = ()) -> None:
        """Start the warm interpreters of these runners with these interpreters, where not
        started yet, so that they are ready by the time forked runs begin; the interpreters of
        the packages just ``changed`` are kept warm first."""
        self._keep_warm(changed)
        for runner, python in uses:
            if not self._kept_warm(python):
                continue
            if runner.module and (runner.name, python) not in self.launchers:
                facts = interpreter_facts(python, runner.plugins)
                learned = self._learned_for(python, facts)
                launcher = WarmLauncher(runner, self.env, facts, learned, python)
                self.launchers[runner.name, python] = launcher

    def _keep_warm(self, changed: Iterable[str]) -> None:
        """Put these interpreters first, and end the warm ones that fell off the end."""
        for python in changed:
            if python != sys.executable:
                self.recent = [python] + [p for p in self.recent if p != python]
        self.recent = self.recent[:WARM_VIRTUALENVS]
        for key in [k for k in self.launchers if not self._kept_warm(k[1])]:
            self.launchers.pop(key).close()

    def _learned_for(self, python: str, facts: InterpreterFacts | None) -> LearnedPreloads | None:
        if self.root is None or facts is None:
            return None
        if python not in self.learned:
            self.learned[python] = LearnedPreloads(self.root, facts.site_dirs)
        return self.learned[python]

    def preloads(self) -> list[Preloads]:
        """Per runner and interpreter: what its warm interpreter imports ahead."""
        shown = []
        for (name, python), launcher in sorted(self.launchers.items()):
            learned = launcher.learned
            if learned is not None:
                launcher.settle()
                kept = tuple(n for n in launcher.preloaded if n in learned.names)
                none = learned.taught and not learned.names
                shown.append(Preloads(name, python, kept, dict(learned.dropped), none))
        return shown

    def close(self) -> None:
        for launcher in self.launchers.values():
            launcher.close()
        self.launchers.clear()


class WarmPolicy:
    """When runs are forked.  The first cycle runs cold, which gives cold times to compare
    with.  Then each package's best cold and best forked times are kept for its current code
    (a change drops both, and the first run after it, which also compiles, is not counted);
    after each cycle, once ``JUDGE_AFTER`` packages (or all, and at least one) have both, the
    sums decide whether runs are forked.  To keep that judgement alive, one run per cycle goes
    the other way when its package lacks that time."""

    def __init__(self, launcher: Launcher | None = None) -> None:
        self.launcher = launcher
        self.times: dict[Package, WarmTimes] = {}
        self.forking = True
        self.cold_cycle_done = False
        self.probed = False
        self.cold_only: set[Package] = set()  # failed forked, passed cold

    def launcher_for(self, package: Package) -> Launcher | None:
        """The launcher when this run is to be forked, else None."""
        if self.launcher is None or not self.cold_cycle_done or package in self.cold_only:
            return None
        times = self.times.get(package, WarmTimes())
        known = (times.cold, times.warm) if self.forking else (times.warm, times.cold)
        if not self.probed and known[0] is None and known[1] is not None:
            self.probed = True
            return None if self.forking else self.launcher
        return self.launcher if self.forking else None

    def code_changed(self, packages: Iterable[Package]) -> None:
        for package in packages:
            self.times[package] = WarmTimes(skip_next=True)

    def record(self, result: RunResult) -> None:
        if result.failed_only_forked:
            self.cold_only.add(result.package)
        if result.verdict is Verdict.FAILED and result.note:
            return  # killed, timed out, or no start: says nothing about speed
        times = self.times.setdefault(result.package, WarmTimes())
        if times.skip_next:
            times.skip_next = False
            return
        best = times.warm if result.warm else times.cold
        best = result.seconds if best is None else min(best, result.seconds)
        if result.warm:
            times.warm = best
        else:
            times.cold = best

    def cycle_done(self) -> None:
        self.cold_cycle_done = True
        self.probed = False
        if self.launcher is not None:
            self.launcher.renew()

    def judge(self, package_count: int) -> tuple[float, float, bool] | None:
        """Judge again: the summed warm and cold times and the new decision when it changed,
        else None."""
        if self.launcher is None:
            return None
        both = [t for t in self.times.values() if t.cold is not None and t.warm is not None]
        if not both or len(both) < min(JUDGE_AFTER, package_count):
            return None
        warm = sum(t.warm or 0.0 for t in both)
        cold = sum(t.cold or 0.0 for t in both)
        forking = warm < cold
        if forking == self.forking:
            return None
        self.forking = forking
        return warm, cold, forking

    def close(self) -> None:
        if self.launcher is not None:
            self.launcher.close()
            self.launcher = None


# ---------------------------------------------------------------------------------------------
# Cycle: packages in order, up to --jobs at once, until the first failure in order
# ---------------------------------------------------------------------------------------------


class Startable(Protocol):
    """What run_cycle needs of a run: ``Run`` is one; tests pass stand-ins."""

    def poll(self) -> RunResult | None: ...

    def kill(self) -> None: ...

    def wait_handle(self) -> int | None: ...


def wait_for_runs(runs: Iterable[Startable], timeout: float) -> None:
    """Block until one of the runs may have ended, or ``timeout`` passed: on the warm
    interpreters' sockets and the cold processes' pidfds, at once when one has ended already;
    a run that offers nothing to wait on (no pidfds here) is polled every POLL_INTERVAL."""
    handles = [run.wait_handle() for run in runs]
    if NOW in handles:
        return
    if None in handles:
        timeout = min(timeout, POLL_INTERVAL)
    wait_readable((h for h in handles if h is not None), timeout)


@dataclass
class CycleOutcome:
    """What one cycle did: the verdicts it reported, in order, and why it ended."""

    steps: list[Step]
    results: list[RunResult] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def failures(self) -> list[RunResult]:
        return [r for r in self.results if r.verdict is Verdict.FAILED]

    @property
    def failure(self) -> RunResult | None:
        """The first failing package, in the order."""
        return next(iter(self.failures), None)

    @property
    def could_not_run(self) -> list[RunResult]:
        return [r for r in self.results if r.verdict is Verdict.COULD_NOT_RUN]

    @property
    def passed_count(self) -> int:
        return sum(r.verdict in (Verdict.OK, Verdict.NO_TESTS) for r in self.results)

    @property
    def passed(self) -> bool:
        return self.failure is None and not self.interrupted

    @property
    def all_ran(self) -> bool:
        """Every package ran and passed: what ``--once`` exits 0 for."""
        return self.passed and not self.could_not_run

    @property
    def not_run(self) -> int:
        return len(self.steps) - len(self.results)


def run_cycle(
    steps: Sequence[Step],
    start: Callable[[Package], Startable],
    jobs: int,
    changed_meanwhile: Callable[[], bool],
    restart: bool,
    on_result: Callable[[RunResult], None],
    wait: Callable[[Iterable[Startable], float], None] = wait_for_runs,
    clock: Callable[[], float] = time.monotonic,
    keep_going: bool = False,
    wake_every: float = CYCLE_WAKE,
) -> CycleOutcome:
    """Run packages in order, up to ``jobs`` at once, reporting verdicts in order.

    A failure cancels the runs after it in the order and starts no more, but lets the earlier
    ones finish: one of them may fail too, and the earliest failure is the one reported.  With
    ``keep_going`` nothing is cancelled.  A change arriving meanwhile stops the cycle once the
    running packages finish (with ``restart``, at once) so that a new cycle can start with it.
    While runs are in flight it waits on them (``wait``), waking at least every ``wake_every``
    seconds to look for changes and keys.
    """
    outcome = CycleOutcome(list(steps))
    started = clock()
    queue = list(enumerate(steps))
    running: dict[int, Startable] = {}
    done: dict[int, RunResult] = {}
    first_failure = len(steps)

    def cancel_after(index: int) -> None:
        queue.clear()
        for later in [i for i in running if i > index]:
            running.pop(later).kill()

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
            for index in sorted(finished):
                del running[index]
                done[index] = finished[index]
                if not keep_going and not finished[index].passed and index < first_failure:
                    first_failure = index
                    cancel_after(index)
            while len(outcome.results) in done and len(outcome.results) <= first_failure:
                result = done[len(outcome.results)]
                outcome.results.append(result)
                on_result(result)
            if len(outcome.results) > first_failure:
                break
            if not finished and running:
                wait(running.values(), wake_every)
    finally:
        for run in running.values():
            run.kill()
    outcome.seconds = clock() - started
    return outcome


# ---------------------------------------------------------------------------------------------
# CI: affected, shards, plan, JUnit
# ---------------------------------------------------------------------------------------------
#
# For a CI system that fans jobs out over machines: which packages a change affects, the K-th of
# N slices of a cycle, the cycle as JSON, the packages' remembered run times, and one JUnit XML
# report per cycle built from the runners' own reports.  All decisions are pure functions.


def affected(
    packages: Iterable[Package], changed: Iterable[Package], uses: Mapping[Package, set[Package]]
) -> set[Package]:
    """The changed packages and every package that uses one of them, however indirectly."""
    known = set(packages)
    users: dict[Package, set[Package]] = {}
    for package in known:
        for used in uses.get(package, ()):
            users.setdefault(used, set()).add(package)
    reached = {p for p in changed if p in known}
    frontier = list(reached)
    while frontier:
        found = {u for p in frontier for u in users.get(p, ()) if u not in reached}
        reached |= found
        frontier = sorted(found, key=lambda p: p.rel)
    return reached


def shard(
    steps: Sequence[Step], k: int, n: int, durations: Mapping[str, float] | None = None
) -> list[Step]:
    """The K-th (from 1) of N disjoint slices of a cycle, in the cycle's order.

    The slices are cut from the set of packages alone, never from the order (which follows the
    changes), so N jobs given the same arguments cover every package once.  Packages are dealt
    longest first to the least loaded slice: by their known durations, a package with none
    counting as the average of the known ones; with none known, every package weighs the same,
    which deals them round-robin by path."""
    durations = durations or {}
    rels = sorted({step.package.rel for step in steps})
    known = [durations[r] for r in rels if r in durations]
    guess = sum(known) / len(known) if known else 1.0
    weight = {r: durations.get(r, guess) for r in rels}
    loads = [0.0] * n
    slice_of: dict[str, int] = {}
    for rel in sorted(rels, key=lambda r: (-weight[r], r)):
        lightest = min(range(n), key=lambda i: (loads[i], i))
        slice_of[rel] = lightest
        loads[lightest] += weight[rel]
    return [step for step in steps if slice_of[step.package.rel] == k - 1]


PLAN_VERSION = 1


@dataclass(frozen=True)
class Command:
    """How one package's tests are run: the runner's name, the interpreter (None for a
    command), and the argv, run from the package directory."""

    runner: str
    interpreter: str | None
    argv: tuple[str, ...]


def plan_json(
    root: Path,
    steps: Sequence[Step],
    command_for: Callable[[Package], Command],
    uses: Mapping[Package, set[Package]],
    name_of: Callable[[Package], str] = lambda p: read_metadata(p).name,
) -> str:
    """The cycle as JSON, for a CI job that builds its matrix from it (schema in the README)."""
    entries = []
    for step in steps:
        command = command_for(step.package)
        entries.append(
            {
                "path": step.package.rel,
                "name": name_of(step.package),
                "reason": step.reason,
                "runner": command.runner,
                "interpreter": command.interpreter,
                "argv": list(command.argv),
                "dependencies": sorted(p.rel for p in uses.get(step.package, ())),
            }
        )
    return json.dumps({"version": PLAN_VERSION, "root": str(root), "packages": entries}, indent=2)


def write_atomically(path: str, data: bytes) -> None:
    """The file whole or not at all: a CI step may read it at any moment, and an interrupted
    write must not leave a truncated file behind."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(suffix=".tmp", prefix=".autotest-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def durations_memory(root: Path) -> str:
    """Where this machine remembers a repository's run times: per user, per root."""
    digest = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"autotest{user_suffix()}", digest, "durations.json")


def read_durations(path: str) -> dict[str, float]:
    """Seconds by package path, from a JSON object; nothing when the file does not exist.
    Raises ValueError for a file that is not such an object."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(data, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in data.values()
    ):
        raise ValueError("expected a JSON object of package paths to seconds")
    return {str(k): float(v) for k, v in data.items()}


def write_durations(path: str, durations: Mapping[str, float]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    rounded = {rel: round(seconds, 3) for rel, seconds in sorted(durations.items())}
    write_atomically(path, (json.dumps(rounded, indent=2) + "\n").encode())


def junit_args(runner_name: str, xml_path: str) -> tuple[str, ...]:
    """Arguments that make a built-in runner write its own per-test XML to ``xml_path``.

    The path is absolute because runners resolve it against their cwd, the package.  They go
    last, so they win over a package's own config.  pytest gets no ``junit_family``: its
    default (xunit2) and the legacy xunit1 have the same cases, and forcing one would override
    the package's choice.  nose2 ships its junitxml plugin but does not load it."""
    path = os.path.abspath(xml_path)
    if runner_name == "nose":
        return ("--with-xunit", f"--xunit-file={path}")
    if runner_name == "pytest":
        return (f"--junitxml={path}",)
    if runner_name == "nose2":
        return ("--plugin", "nose2.plugins.junitxml", "--junit-xml", "--junit-xml-path", path)
    return ()


JUNIT_TAIL_CHARS = 20_000  # of a package's output, kept in its package-level case
_NOT_XML_1_0 = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_COUNTED = (("failures", "failure"), ("errors", "error"), ("skipped", "skipped"))


def xml_text(text: str) -> str:
    """Text that XML 1.0 can hold: ElementTree writes NUL or ESC as is, which no parser then
    reads back, so they are spelled out like Python escapes instead."""
    return _NOT_XML_1_0.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def cut_short(result: RunResult) -> bool:
    """Timed out, killed by a signal (noted by name, or by number when it has none), or any
    verdict other than the three a finished run gives (it could not run): what the runner
    wrote, if anything, is not the whole story."""
    if result.verdict not in (Verdict.OK, Verdict.FAILED, Verdict.NO_TESTS):
        return True
    note = result.note
    killed = note == "timed out" or note.startswith("SIG") or note.isdigit()
    return result.verdict is Verdict.FAILED and killed


def package_suite(result: RunResult, runner_xml: bytes | None) -> ET.Element:
    """The package's <testsuite>: the runner's own cases, plus a package-level case carrying
    autotest's verdict when there are none, when the run was cut short, or when it failed with
    no failing case.  Counts are recomputed from the cases because runners disagree on them
    (nose writes ``skip=``, pytest nests suites in <testsuites>)."""
    cases = runner_cases(runner_xml)
    failing = any(case.find(tag) is not None for case in cases for tag in ("failure", "error"))
    if not cases or cut_short(result) or (result.verdict is Verdict.FAILED and not failing):
        cases.append(package_case(result))
    suite = ET.Element("testsuite", name=xml_text(result.package.rel), tests=str(len(cases)))
    for key, tag in _COUNTED:
        suite.set(key, str(sum(case.find(tag) is not None for case in cases)))
    suite.set("time", f"{result.seconds:.3f}")
    suite.extend(cases)
    return suite


def runner_cases(runner_xml: bytes | None) -> list[ET.Element]:
    """The runner's per-test cases, or none when it wrote no file or only part of one (a run
    killed mid-write), so the package-level case stands in."""
    if not runner_xml:
        return []
    try:
        root = ET.fromstring(runner_xml)
    except ET.ParseError:
        return []
    return list(root.iter("testcase"))


def package_case(result: RunResult) -> ET.Element:
    """One case for the whole package: an error when the run was cut short (not the tests'
    fault), a failure when its tests failed, skipped when there were none."""
    rel = xml_text(result.package.rel)
    case = ET.Element("testcase", classname=rel, name="(package)")
    case.set("time", f"{result.seconds:.3f}")
    if cut_short(result):
        tag: str | None = "error"
    else:
        tag = {Verdict.OK: None, Verdict.NO_TESTS: "skipped"}.get(result.verdict, "failure")
    if tag is not None:
        reason = result.verdict.value + (f" ({result.note})" if result.note else "")
        child = ET.SubElement(case, tag, message=xml_text(reason))
        child.text = xml_text(result.output[-JUNIT_TAIL_CHARS:])
    return case


def junit_document(suites: Sequence[ET.Element]) -> bytes:
    root = ET.Element("testsuites")
    for key in ("tests", *(key for key, _ in _COUNTED)):
        root.set(key, str(sum(int(suite.get(key, "0")) for suite in suites)))
    root.set("time", f"{sum(float(suite.get('time', '0')) for suite in suites):.3f}")
    root.extend(suites)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_report(path: str, suites: Sequence[ET.Element]) -> None:
    """The cycle's JUnit XML report, written whole or not at all."""
    write_atomically(path, junit_document(suites))


class JunitReport:
    """One JUnit XML report per cycle.  Each run writes its runner's XML to a fresh file in a
    private temporary directory; after every verdict the report is rewritten with the suites so
    far, so a cycle that stops early or is interrupted leaves what ran."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.scratch = tempfile.mkdtemp(prefix="autotest-junit-")
        self.runs = 0
        self.pending: dict[Package, str] = {}
        self.suites: list[ET.Element] = []

    def start_cycle(self) -> None:
        """A new cycle starts an empty report (written at once, so it exists)."""
        self.suites = []
        self.pending.clear()
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        write_report(self.path, self.suites)

    def run_args(self, runner_name: str, package: Package) -> tuple[str, ...]:
        """The runner's arguments for a fresh per-run XML file."""
        self.runs += 1
        xml_path = os.path.join(self.scratch, f"{self.runs}.xml")
        self.pending[package] = xml_path
        return junit_args(runner_name, xml_path)

    def add(self, result: RunResult) -> None:
        xml_path = self.pending.pop(result.package, "")
        runner_xml = None
        with contextlib.suppress(OSError):
            with open(xml_path, "rb") as f:
                runner_xml = f.read()
            os.unlink(xml_path)
        self.suites.append(package_suite(result, runner_xml))
        write_report(self.path, self.suites)

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


def own_outputs(root: Path, written: Iterable[str | None]) -> list[str]:
    """The files autotest itself writes inside the tree, as globs: never a change."""
    rels = [os.path.relpath(os.path.abspath(p), root) for p in written if p]
    return [r.replace(os.sep, "/") for r in rels if not r.startswith("..")]


class CiJob:
    """What the CI options make of a session: the cycle narrowed by --affected and --shard,
    the run times kept for --shard to balance by, and the --junit-xml report.  Files it cannot
    write later are told to ``on_error``; bad ones at the start are usage errors."""

    def __init__(
        self, root: Path, affected: bool, shard: tuple[int, int] | None,
        durations_file: str | None, junit_path: str | None,
        on_error: Callable[[str, str], None],
    ) -> None:  # fmt: skip
        self.affected = affected
        self.shard = shard
        self.memory = durations_memory(root)
        self.durations_file = durations_file
        self.on_error = on_error
        self.durations = self.known_durations()
        self.junit = JunitReport(junit_path) if junit_path else None
        if self.junit is not None:
            try:
                self.junit.start_cycle()
            except OSError as exc:
                self.junit.close()
                raise UsageError(f"--junit-xml {junit_path}: {exc.strerror or exc}") from None

    def known_durations(self) -> dict[str, float]:
        """--durations FILE alone when given (so every job of a matrix balances alike), else
        this machine's memory of earlier runs."""
        if self.durations_file:
            try:
                return read_durations(self.durations_file)
            except ValueError as exc:
                raise UsageError(f"--durations {self.durations_file}: {exc}") from None
        with contextlib.suppress(ValueError):
            return read_durations(self.memory)
        return {}

    def steps(
        self, packages: Sequence[Package], changed: Mapping[Package, float],
        failed: Iterable[Package], graph: DependencyGraph,
    ) -> tuple[list[Step], int]:  # fmt: skip
        """The cycle as --affected and --shard narrow it, and how many packages the shards
        were cut from."""
        uses = graph.uses
        steps = cycle_order(packages, changed, failed, uses, graph.labels)
        if self.affected:
            hit = affected(packages, changed, uses)
            steps = [s for s in steps if s.package in hit]
        pool = len(steps)
        if self.shard is not None:
            steps = shard(steps, *self.shard, self.durations)
        return steps, pool

    def run_args(self, runner_name: str, package: Package) -> tuple[str, ...]:
        return () if self.junit is None else self.junit.run_args(runner_name, package)

    def cycle_started(self) -> None:
        self._write_report(JunitReport.start_cycle)

    def recorded(self, result: RunResult) -> None:
        self._write_report(lambda junit: junit.add(result))

    def _write_report(self, write: Callable[[JunitReport], None]) -> None:
        if self.junit is not None:
            try:
                write(self.junit)
            except OSError as exc:
                self.on_error(self.junit.path, exc.strerror or str(exc))

    def cycle_ended(self, outcome: CycleOutcome, current: Iterable[str]) -> None:
        """Keep the cycle's run times on this machine and in --durations FILE.  A shard's run
        keeps none: the other jobs of its matrix must slice by the same times."""
        ran = outcome.results + ([outcome.failure] if outcome.failure else [])
        if not ran or self.shard is not None:
            return
        keep = set(current)
        for path in (self.memory, self.durations_file):
            if path:
                times = {r.package.rel: r.seconds for r in ran}
                try:
                    with contextlib.suppress(ValueError):
                        times = {**read_durations(path), **times}
                    write_durations(path, {r: t for r, t in times.items() if r in keep})
                except OSError as exc:
                    if path == self.durations_file:
                        self.on_error(path, exc.strerror or str(exc))

    def close(self) -> None:
        if self.junit is not None:
            self.junit.close()


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
    return terminal_has_colours()


STYLES = {"ok": "32", "fail": "1;31", "dim": "2", "bold": "1", "warn": "33"}
VERDICT_STYLES = {
    Verdict.OK: "ok", Verdict.FAILED: "fail", Verdict.NO_TESTS: "dim", Verdict.COULD_NOT_RUN: "warn"
}  # fmt: skip
VERDICT_COLUMN = len("FAILED (timed out)")  # every verdict, with a short note, fits


def counted(number: int, noun: str) -> str:
    """``1 package``, ``3 packages``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


NOTHING_TO_IMPORT_AHEAD = "nothing; its runs import nothing else from outside the repository"


def listed_preloads(names: Sequence[str]) -> str:
    """``pydantic, httpx, with 12 standard-library packages (94 modules)``: what a user
    installed, by name, the standard library as a count."""
    tops = sorted({n.split(".")[0] for n in names})
    installed = [t for t in tops if not is_standard_library(t)]
    shown = ", ".join(installed[:10])
    if len(installed) > 10:
        shown += f" and {len(installed) - 10} more"
    if len(installed) < len(tops):
        stdlib = counted(len(tops) - len(installed), "standard-library package")
        shown = f"{shown}, with {stdlib}" if shown else stdlib
    return f"{shown} ({counted(len(names), 'module')})"


def every(count: int) -> str:
    """``all 3 packages``; ``the 1 package`` (never ``all 1 package``)."""
    return "the 1 package" if count == 1 else f"all {count} packages"


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


@dataclass(frozen=True)
class Running:
    """A package running now: its place in the cycle's order, and for how long it has run."""

    package: Package
    position: int
    total: int
    seconds: float


class Progress:
    """Which packages of the cycle are running, and since when: what the status line shows."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.positions: dict[Package, int] = {}
        self.since: dict[Package, float] = {}

    def cycle(self, steps: Sequence[Step]) -> None:
        self.positions = {step.package: number for number, step in enumerate(steps, 1)}
        self.since = {}

    def started(self, package: Package) -> None:
        self.since[package] = self.clock()

    def ended(self, package: Package) -> None:
        self.since.pop(package, None)

    def running(self) -> list[Running]:
        now, total = self.clock(), len(self.positions)
        return sorted(
            (Running(p, self.positions.get(p, 0), total, now - t) for p, t in self.since.items()),
            key=lambda r: r.position,
        )


class StatusLine:
    """The one line rewritten in place on a terminal while packages run."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.text = ""  # on screen now, to be erased before the next line

    def show(self, text: str, painted: str) -> None:
        if text == self.text:
            return
        self.erase()
        if text:
            self.text = text
            self.stream.write(painted)
            self.stream.flush()

    def erase(self) -> None:
        """Blank it and return to its start (spaces, no escape sequence: any terminal, and
        NO_COLOR, take it)."""
        if self.text:
            self.stream.write("\r" + " " * len(self.text) + "\r")
            self.text = ""
            self.stream.flush()


class Terminal:
    """Where the user reads: the stream, its colours, and the status line rewritten in place.
    ``Notices`` and ``Reporter`` below say what is written."""

    def __init__(self, stream: IO[str], color: bool, width: int = 0, root: Path | None = None):
        self.stream = stream
        self.data = stream  # where --plan's JSON goes, when notices go elsewhere
        self.color = color
        self.width = width
        self.root = root or Path.cwd()
        self.full_output = False
        self.warned_unreadable: set[str] = set()
        self.live = hasattr(stream, "isatty") and stream.isatty()  # a status line goes here
        self.status = StatusLine(stream)
        self.named_again: dict[Package, float] = {}  # not on a terminal: when to name a run

    def paint(self, text: str, style: str) -> str:
        return f"\033[{STYLES[style]}m{text}\033[0m" if self.color else text

    def say(self, text: str = "") -> None:
        self.erase_status()
        self.stream.write(text + "\n")
        self.stream.flush()

    def erase_status(self) -> None:
        self.status.erase()

    # While packages run: one line rewritten in place on a terminal, else a line now and then.

    def running(self, runs: Sequence[Running]) -> None:
        if not self.live:
            self.still_running(runs)
            return
        parts = [f"{r.position}/{r.total} {shown(r.package.rel)} {int(r.seconds)}s" for r in runs]
        columns = shutil.get_terminal_size((80, 24)).columns or 80  # 3.9 says 0 for no size
        text = ("running " + ", ".join(parts))[: max(columns - 1, 10)] if parts else ""
        self.status.show(text, self.paint(text, "dim"))

    def still_running(self, runs: Sequence[Running]) -> None:
        """So that a CI log is never silent: a run is named after 30s, and again each minute."""
        for run in runs:
            due = self.named_again.get(run.package, STILL_RUNNING_AFTER)
            if run.seconds >= due:
                self.named_again[run.package] = due + STILL_RUNNING_EVERY
                self.note(f"still running: {shown(run.package.rel)} ({int(due)}s)")

    def warn(self, text: str) -> None:
        self.say(self.paint(f"autotest: {text}", "warn"))

    def note(self, text: str) -> None:
        self.say(self.paint(f"autotest: {text}", "dim"))

    def rel(self, path: str) -> str:
        return shown(os.path.relpath(path, self.root))


class Notices(Terminal):
    """The few notices between cycles: what autotest found, watches, the loop guard, the warm
    runner; and what the Watcher has to say (``WatchNotices``)."""

    def cannot_notify(self) -> None:
        self.warn("--notify: this system has no way to show a notification "
                  "(notify-send on Linux, osascript on macOS); going on without")  # fmt: skip

    def runner_from_config(self, spec: str, where: str) -> None:
        """A repository's config runs a command of its choosing: it is never run unseen."""
        self.note(f"runner from {where}: {shown(spec)}")

    def watching(self, count: int, how: str) -> None:
        root = shown(str(self.root))
        self.note(f"watching {counted(count, 'package')} in {root} ({how}); Ctrl+C to stop")

    def root_gone(self) -> None:
        self.warn(f"{shown(str(self.root))} is gone; stopping")

    def packages_changed(self, added: Iterable[str], removed: Iterable[str]) -> None:
        words = [f"+{shown(r)}" for r in sorted(added)] + [f"-{shown(r)}" for r in sorted(removed)]
        self.say(self.paint(f"packages: {' '.join(words)}", "dim"))

    def not_in_package(self, arg: str) -> None:
        self.warn(f"{arg} is in no package; ignored")

    def testing_packages(self, count: int, found: int) -> None:
        """The start of a run without watching: what it tests, and where."""
        of = f"{count} of {found} packages" if count != found else counted(count, "package")
        self.note(f"{of} in {self.root}")

    def not_packages(self, left_out: Iterable[tuple[str, str]]) -> None:
        """The projects found that are not packages, and why (for ``--explain``)."""
        for rel, why in left_out:
            self.note(f"not a package: {shown(rel)} ({why})")

    def cannot_parse(self, path: str, why: str) -> None:
        if f"{path}: {why}" not in self.warned_unreadable:
            self.warned_unreadable.add(f"{path}: {why}")
            self.warn(f"cannot read {self.rel(path)} ({why}); what it declares is left out")

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

    def preloads(self, per_runner: Sequence[Preloads]) -> None:
        """What each warm interpreter imports ahead, learned from the runs (--explain)."""
        for p in per_runner:
            runner = p.runner
            if p.python != sys.executable:
                runner += f" ({self.rel(p.python)})"
            what = listed_preloads(p.names) if p.names else "nothing yet"
            if not p.names and p.none_to_learn:
                what = "nothing" if p.dropped else NOTHING_TO_IMPORT_AHEAD
            self.say(self.paint(f"      warm {runner} imports ahead: {what}", "dim"))
            for name, why in sorted(p.dropped.items())[:5]:
                self.say(self.paint(f"      warm {runner} does not import {name}: {why}", "dim"))

    def forked_run_differed(self, rel: str) -> None:
        self.note(
            f"{shown(rel)} failed when forked from the warm interpreter, and passed when run "
            "again cold; its runs start cold from now on"
        )

    def warm_judged(self, warm: float, cold: float, forking: bool) -> None:
        if forking:
            self.note(
                f"forked runs are faster again ({warm:.2f}s against {cold:.2f}s cold, for the "
                "same packages); forking runs from now on"
            )
            return
        self.note(
            f"forked runs were no faster than cold ones ({warm:.2f}s against {cold:.2f}s, for "
            "the same packages); starting runs cold from now on"
        )

    # What the Watcher has to say (WatchNotices).

    def unreadable(self, path: str) -> None:
        if path not in self.warned_unreadable:
            self.warned_unreadable.add(path)
            self.warn(f"cannot read {shown(path)}; skipped, and changes below it are not seen")

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
        self.warn(f"cannot watch {shown(path)}: {reason}")

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


class Reporter(Notices):
    """Everything the user reads of a cycle: the header, the order, one line per package, the
    failing run's output, one summary; and the notices (``Notices``)."""

    # Cycles: the header, the order, a line per package, the summary.

    def header(self, text: str) -> None:
        self.say(self.paint(text, "bold"))

    def resuming(self, count: int) -> None:
        self.header(f"testing the {counted(count, 'package')} not run yet")

    def testing_all(self, count: int) -> None:
        self.header(f"testing {every(count)}")

    def testing_failed(self, count: int) -> None:
        self.header(f"testing {count} failed")

    def no_failed(self) -> None:
        self.say("no failed packages")

    def explain(self, steps: Sequence[Step]) -> None:
        for number, step in enumerate(steps, 1):
            reason = f"  ({shown(step.reason)})" if step.reason else ""
            self.say(self.paint(f"  {number:>2}. {shown(step.package.rel)}{reason}", "dim"))

    def explain_choices(self, choices: Mapping[Package, Choice]) -> None:
        """Which runner and interpreter each package gets, and why, grouped."""
        groups: dict[str, list[str]] = {}
        for package, choice in sorted(choices.items(), key=lambda item: item[0].rel):
            name = choice.runner.name if choice.runner.module else " ".join(choice.runner.argv)
            groups.setdefault(f"{name} ({choice.reason})", []).append(package.rel)
            if choice.python != sys.executable:
                where = self.rel(choice.python)
                groups.setdefault(f"python {where} ({choice.python_reason})", []).append(
                    package.rel
                )
        for what, rels in groups.items():
            self.say(self.paint(f"      {what}: {', '.join(rels)}", "dim"))

    def verdict(self, result: RunResult) -> None:
        self.named_again.pop(result.package, None)
        style = VERDICT_STYLES[result.verdict]
        label = result.verdict.value
        note = f" ({result.note})" if result.note else ""
        after = ""
        if result.verdict is Verdict.COULD_NOT_RUN or len(label + note) > VERDICT_COLUMN:
            after = f"  {result.note}" if result.note else ""
        else:
            label += note
        self.say(
            f"{shown(result.package.rel):<{self.width}}  "
            f"{self.paint(f'{label:<{VERDICT_COLUMN}}', style)}"
            f"  {self.paint(f'{result.seconds:.2f}s', 'dim')}{self.paint(after, style)}"
        )
        if result.verdict is Verdict.COULD_NOT_RUN:
            self.could_not_run_hint(result)
        elif result.verdict is Verdict.FAILED:
            self.failing_output(result)

    def could_not_run_hint(self, result: RunResult) -> None:
        module = result.note.removeprefix("needs ")
        where = f"; its output: {result.saved}" if result.saved else ""
        if result.hint:
            self.say(f"  {module} is not installed; install its test dependencies: {result.hint}")
        else:
            self.say(f"  {module} is not installed, nor provided by a package here{where}")

    def failing_output(self, result: RunResult) -> None:
        """The run's output: head, a line for what is left out, tail; or, with --full-output,
        all of it, copied from the saved file in pieces."""
        if self.full_output and result.saved and result.omitted:
            with contextlib.suppress(OSError), open(result.saved, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 16), b""):
                    self.stream.write(chunk.decode("utf-8", "replace"))
                self.stream.flush()
                return
        self.stream.write(result.output)
        if result.omitted:
            where = f"; full output: {result.saved}" if result.saved else ""
            lines = counted(result.omitted, "line")
            self.stream.write(self.paint(f"... {lines} omitted{where}", "dim") + "\n")
        self.stream.write(result.tail)
        if not (result.tail or result.output).endswith("\n"):
            self.stream.write("\n")
        self.stream.flush()

    def summary(self, outcome: CycleOutcome) -> None:
        took = self.paint(f"in {outcome.seconds:.2f}s", "dim")
        passed = outcome.passed_count
        self.named_again.clear()
        missing = ", ".join(f"{shown(r.package.rel)} ({r.note})" for r in outcome.could_not_run)
        if outcome.interrupted:
            done = len(outcome.results)
            self.say(self.paint(f"changed during the run: starting over ({done} done)", "warn"))
        elif outcome.failures:
            names = ", ".join(shown(r.package.rel) for r in outcome.failures)
            unable = f", {len(outcome.could_not_run)} could not run: {missing}" if missing else ""
            rest = f"{passed} passed, {outcome.not_run} not run{unable}"
            self.say(f"{self.paint(f'{names} FAILED', 'fail')}; {rest} {took}")
        elif missing:
            ran = f"{passed} of {counted(len(outcome.results), 'package')} passed"
            unable = self.paint(f"could not run: {missing}", "warn")
            self.say(f"{self.paint(ran, 'ok')}; {unable} {took}")
        else:
            everything = f"{every(passed)} passed"
            self.say(f"{self.paint(everything, 'ok')} {took}")

    # CI: narrowed cycles, the plan, the report.

    def narrowed(self, count: int, pool: int, total: int, ci: CiJob, changes: int = 1) -> None:
        """The first line of a CI job: what it tests of how many packages, and where; or why
        it tests nothing."""
        where = f"in {self.root}"
        if not pool:
            what = "none of the changes lies in" if changes else "nothing changed in"
            self.say(
                f"nothing affected: {what} one of the {total} packages {where}; nothing to test"
            )
        elif ci.shard is None:
            self.header(f"testing {counted(count, 'affected package')} of {total} {where}")
        elif not count:
            k, n = ci.shard
            shared = f"{counted(pool, 'package')} {where} shared among {n} shards"
            self.say(f"shard {k}/{n} is empty: {shared}; nothing to test")
        else:
            k, n = ci.shard
            noun = "affected package" if ci.affected else "package"
            in_all = f" ({total} in all)" if ci.affected else ""
            self.header(f"testing shard {k}/{n}: {count} of {counted(pool, noun)}{in_all} {where}")

    def plan(self, text: str) -> None:
        self.data.write(text + "\n")
        self.data.flush()

    def cannot_write(self, path: str, reason: str) -> None:
        self.warn(f"cannot write {path}: {reason}")

    def menu(self) -> None:
        self.say(self.paint("[Enter/a] run all  [f] run failed  [q] quit", "dim"))

    def clear(self) -> None:
        self.erase_status()
        if self.live or self.color:
            self.stream.write("\033[2J\033[3J\033[H")
        self.stream.flush()

    def bell(self) -> None:
        self.stream.write("\a")
        self.stream.flush()

    def alert(self, outcome: CycleOutcome, bell: bool, desktop: bool, was_failing: bool) -> None:
        """After a cycle: the bell and a notification for a failure, a notification when
        everything passes again."""
        if outcome.failure is not None:
            if bell:
                self.bell()
            if desktop:
                notify("autotest", f"{shown(outcome.failure.package.rel)} FAILED")
        elif desktop and was_failing:
            notify("autotest", "all packages pass again")


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
    runner: str = "auto"
    runners: tuple[tuple[str, str], ...] = ()
    venvs: tuple[tuple[str, str], ...] = ()
    runner_args: tuple[str, ...] = ()
    jobs: int = 1
    timeout: float | None = None
    restart: bool = False
    keep_going: bool = False
    full_output: bool = False
    debounce: float = DEFAULT_DEBOUNCE
    ignore: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    poll: bool = False
    warm: bool = True
    explain: bool = False
    clear: bool = False
    bell: bool = False
    notify: bool = False
    affected: bool = False
    shard: tuple[int, int] | None = None
    durations: str | None = None
    plan: bool = False
    junit_xml: str | None = None
    runner_from: str = ""  # the config file that set the runner, if one did
    runners_from: str = ""  # and the one that set per-package runners


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


def pair(value: str) -> tuple[str, str]:
    """``GLOB=VALUE``, as the command line and setup.cfg give a table's entries."""
    if not isinstance(value, str):
        raise argparse.ArgumentTypeError(f"expected a string, got {value!r}")
    glob, sep, rest = value.partition("=")
    if not sep or not glob.strip() or not rest.strip():
        raise argparse.ArgumentTypeError(f"expected GLOB=VALUE, got {value!r}")
    return unquoted(glob), unquoted(rest)


def unquoted(text: str) -> str:
    """A value without the quotes around it as a whole (quotes inside it are its own)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def shard_spec(value: str) -> tuple[int, int]:
    """``K/N``: the K-th of N slices, counted from 1."""
    found = re.fullmatch(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*", value)
    if found and 1 <= int(found[1]) <= int(found[2]):
        return int(found[1]), int(found[2])
    raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N, got {value!r}")


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
    ``paths`` (any number of values after the option, which may be repeated), ``table``
    (``GLOB=VALUE``, repeatable on the command line; a TOML table, or such lines in setup.cfg),
    ``positional`` (the command line's own arguments; a list or a string in config), ``args``
    (after ``--`` on the command line; a list or a shell-quoted string in config)."""

    name: str
    kind: str
    help: str
    read: Callable[[str], Any] = str
    metavar: str | None = None
    short: str = ""
    in_config: bool = True
    takes: tuple[type, ...] = (int, float, str)  # a ``value``'s types in pyproject.toml

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
    Setting("once", "flag", "run one cycle and exit: 0 all passed, 1 a package failed or "
            "could not run", in_config=False),
    Setting("changed", "paths", "order the first cycle as if these paths had just changed "
            "(repeatable, may be empty)", metavar="PATH", in_config=False),
    Setting("since", "value", "order the first cycle by what git reports changed since REF "
            "(committed, staged, unstaged, untracked)", metavar="REF", in_config=False),
    Setting("runner", "value", "for every package: auto (pytest where pytest is configured or "
            "its tests need it, else nose), nose, nose2, pytest, unittest, or a command with "
            "{package}", metavar="NAME|CMD", takes=(str,)),
    Setting("runners", "table", "the runner for packages matching GLOB (repeatable); "
            "--runner wins", metavar="GLOB=NAME|CMD"),
    Setting("venvs", "table", "the virtualenv (relative to the package) for packages matching "
            "GLOB (repeatable); by default a package's own .venv or venv", metavar="GLOB=DIR"),
    Setting("runner-args", "args", "arguments for the runner (on the command line: after --)"),
    Setting("jobs", "value", "packages run at once; auto: one per core", job_count, "N|auto",
            short="j"),
    Setting("timeout", "value", "kill and fail a package run that takes longer", positive,
            "SECONDS"),
    Setting("restart", "flag", "a change during a run kills that run at once"),
    Setting("keep-going", "flag", "run every package even after a failure, and show each one"),
    Setting("full-output", "flag", "show the whole output of a failing run, not its head and tail"),
    Setting("debounce", "value", "quiet time that closes a burst of changes", non_negative,
            "SECONDS"),
    Setting("ignore", "list", "never react to matching paths, nor find packages there "
            "(repeatable)", metavar="GLOB"),
    Setting("exclude", "list", "never test the packages matching (repeatable)", metavar="GLOB"),
    Setting("poll", "flag", "poll the tree instead of OS notifications"),
    Setting("warm", "flag", "start every run cold instead of forking it from a warm interpreter"),
    Setting("explain", "flag", "say why each package runs where it does, with which runner and "
            "interpreter, and what warm interpreters import ahead", short="v"),
    Setting("clear", "flag", "clear the screen before each cycle"),
    Setting("bell", "flag", "ring the terminal bell when a package fails"),
    Setting("notify", "flag", "desktop notification when a cycle fails or recovers"),
    Setting("affected", "flag", "test only the changed packages and those that use them",
            in_config=False),
    Setting("shard", "value", "test only the K-th of N disjoint slices of the cycle", shard_spec,
            "K/N", in_config=False),
    Setting("durations", "value",
            "run times for --shard to balance by; each run that is not a shard writes them",
            metavar="FILE", in_config=False),
    Setting("plan", "flag", "print the cycle as JSON and run nothing", in_config=False),
    Setting("junit-xml", "value", "write each cycle's JUnit XML report to FILE", metavar="FILE",
            in_config=False),
)  # fmt: skip

# The settings that say what changed: --affected needs one of them.
SAYS_WHAT_CHANGED = ("changed", "since")
# The settings that narrow a single cycle; watching runs whole cycles.
ONE_CYCLE_ONLY = ("affected", "shard")


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
    if setting.kind in ("list", "table"):
        read: Callable[[str], Any] = pair if setting.kind == "table" else str
        parser.add_argument(*flags, dest=setting.field, action="append", type=read,
                            metavar=setting.metavar, help=text)  # fmt: skip
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
            "q quits. Every option but "
            + ", ".join(f"--{s.name}" for s in SETTINGS if not s.in_config)
            + " can also be set under the same name in [tool.autotest] of the root "
            "pyproject.toml or [autotest] of setup.cfg; the packages to test as packages = [...]."
        ),
        argument_default=None,
    )
    for setting in SETTINGS:
        if setting.kind != "args":
            add_setting(parser, setting)
    parser.add_argument(
        "--version", action="version", version=version_line(),
        help="print the versions of autotest, Python and watchdog, and exit",
    )  # fmt: skip
    return parser


def version_line() -> str:
    try:
        from importlib import metadata

        watchdog = f"watchdog {metadata.version('watchdog')}"
    except Exception:
        watchdog = "no watchdog"
    python = ".".join(map(str, sys.version_info[:3]))
    return f"autotest {VERSION} (Python {python}, {watchdog})"


TYPE_NAMES = {str: "a string", int: "a number", float: "a number"}


def expected(types: Sequence[type]) -> str:
    return " or ".join(dict.fromkeys(TYPE_NAMES[t] for t in types))


def is_one_of(value: Any, types: Sequence[type]) -> bool:
    return isinstance(value, tuple(types)) and not isinstance(value, bool)


def strings(
    value: Any, split: Callable[[str], list[str]], items: Sequence[type] = (str,)
) -> tuple[str, ...]:
    """A config value that is a list of strings, or one string split into them."""
    if isinstance(value, str):
        return tuple(split(value))
    if isinstance(value, list) and all(is_one_of(v, items) for v in value):
        return tuple(map(str, value))
    what = "strings" if tuple(items) == (str,) else "strings or numbers"
    raise argparse.ArgumentTypeError(f"expected a list of {what}, got {shown_value(value)}")


def shown_value(value: Any) -> str:
    return "a table" if isinstance(value, dict) else shown(repr(value))


def setting_from_config(setting: Setting, value: Any) -> Any:
    """A config file's value, checked against what the setting takes."""
    if setting.kind == "flag":
        if isinstance(value, (dict, list)):
            raise argparse.ArgumentTypeError(f"expected true or false, got {shown_value(value)}")
        return config_bool(value)
    if setting.kind in ("list", "positional"):
        return strings(value, str.split)
    if setting.kind == "table":
        if isinstance(value, dict):
            value = [f"{k}={v}" for k, v in value.items()]
        return tuple(pair(p) for p in strings(value, str.splitlines) if p.strip())
    if setting.kind == "args":
        return strings(value, shlex.split, (str, int, float))
    if not is_one_of(value, setting.takes):
        raise argparse.ArgumentTypeError(
            f"expected {expected(setting.takes)}, got {shown_value(value)}"
        )
    return setting.read(str(value))


def config_error(path: Path, exc: Exception) -> UsageError:
    """A config file that cannot be parsed, as one line: where, and the parser's first words."""
    errors = getattr(exc, "errors", None)  # configparser.ParsingError: (line, text) pairs
    line = errors[0][0] if errors else getattr(exc, "lineno", None)
    if errors:
        message = f"cannot parse {errors[0][1]}"
    else:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UsageError(f"{shown(str(path))}{f', line {line}' if line else ''}: {shown(message)}")


def tool_table(data: dict[str, Any], pyproject: Path) -> Any:
    """``[tool.autotest]``, checked to be a table where there is one."""
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise UsageError(
            f"{shown(str(pyproject))}: tool: expected a table, got {shown_value(tool)}"
        )
    section = tool.get("autotest")
    if section is not None and not isinstance(section, dict):
        raise UsageError(
            f"{shown(str(pyproject))}: tool.autotest: expected a table ([tool.autotest]), "
            f"got {shown_value(section)}"
        )
    return section


def config_sections(root: Path) -> list[tuple[str, Any]]:
    """``[autotest]`` of setup.cfg, then ``[tool.autotest]`` of pyproject.toml, as found."""
    found: list[tuple[str, Any]] = []
    setup_cfg = root / "setup.cfg"
    if setup_cfg.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(setup_cfg, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError) as exc:
            raise config_error(setup_cfg, exc) from None
        if parser.has_section("autotest"):
            found.append(("setup.cfg [autotest]", dict(parser.items("autotest"))))
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = load_toml(pyproject)
        except (OSError, ValueError, UnicodeDecodeError, RecursionError, MemoryError) as exc:
            raise config_error(pyproject, exc) from None
        if (section := tool_table(data, pyproject)) is not None:
            found.append(("pyproject.toml [tool.autotest]", section))
    return found


def read_config(root: Path, origins: dict[str, str] | None = None) -> dict[str, Any]:
    """The settings the repository holds, by setting name; pyproject.toml wins.  ``origins``
    is told where each was found."""
    by_name = {s.name: s for s in SETTINGS if s.in_config}
    settings: dict[str, Any] = {}
    for where, section in config_sections(root):
        for key, value in section.items():
            name = key.replace("_", "-")
            if name not in by_name:
                raise UsageError(
                    f"{where}: unknown setting {shown(repr(key))} (known: {', '.join(by_name)})"
                )
            try:
                settings[name] = setting_from_config(by_name[name], value)
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise UsageError(f"{where}: {shown(key)}: {exc}") from None
            if origins is not None:
                origins[name] = where
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
    try:
        if not stat.S_ISDIR(os.stat(root).st_mode):
            raise UsageError(f"root {shown(repr(str(root)))} is not a directory")
        root = root.resolve()
    except OSError as exc:
        raise UsageError(f"root {shown(repr(str(root)))}: {exc.strerror or exc}") from None
    given = {  # an empty --changed says "nothing changed"; no positional says nothing
        s.name: tuple(value) if isinstance(value, list) else value
        for s in SETTINGS
        if s.kind != "args"
        and (value := getattr(args, s.field)) is not None
        and not (s.kind == "positional" and value == [])
    }
    origins: dict[str, str] = {}
    merged = {**read_config(root, origins), **given, "root": root}
    if "runner" in given and "runners" not in given:  # --runner is for every package
        merged.pop("runners", None)
    if runner_args is not None:
        merged["runner-args"] = runner_args
    for name in ("runner", "runners"):
        if name not in given and name in origins:
            merged[f"{name}-from"] = origins[name]
    options = Options(**{name.replace("-", "_"): value for name, value in merged.items()})
    check_combination(options, set(given))
    return options


def check_combination(options: Options, given: Container[str]) -> None:
    """Settings that mean nothing without others.  An empty ``--changed`` says that nothing
    changed (a hook on a clean tree), which is something."""
    if options.affected and not any(name in given for name in SAYS_WHAT_CHANGED):
        raise UsageError("--affected needs to know what changed: give --changed or --since")
    for name in ONE_CYCLE_ONLY:
        if getattr(options, name) and not (options.once or options.plan):
            raise UsageError(f"--{name} narrows one cycle: give it with --once or --plan")


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
        self.dropped: set[str] = set()  # directories skipped as unreadable
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
        self.dropped = set(found.unreadable)
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
        """Read the graph; a package that can no longer be read is dropped, with a notice (it
        comes back when a change below it finds it readable again)."""
        while True:
            try:
                self.graph = dependency_graph(self.all, self.root, self.scan)
                break
            except OSError as exc:
                owner = owner_of(os.fsdecode(exc.filename or ""), self.all)
                if owner is None:
                    raise
                self.reporter.unreadable(str(owner.path))
                self.dropped.add(str(owner.path))
                self.all = [p for p in self.all if p != owner]
        for path, why in self.graph.unreadable:
            self.reporter.cannot_parse(path, why)
        chosen = {p for c in self.chosen for p in self.matching(c)} if self.chosen else set()
        self.packages = [
            p
            for p in self.all
            if (not self.chosen or p in chosen)
            and not any(glob_matches(p.rel, g) for g in self.exclude)
        ]
        self.reporter.width = max((len(shown(p.rel)) for p in self.packages), default=0)

    def follow(self, paths: Iterable[str]) -> None:
        """Rediscover packages when directories or metadata came or went; read the graph
        again when code changed (only the changed files are read again)."""
        paths = list(paths)
        self.scan.forget(paths)
        metadata = any(is_metadata_file(p) for p in paths)
        code = any(p.endswith(".py") and owner_of(p, self.all) for p in paths)
        dropped = any(p.startswith(d + os.sep) for p in paths for d in self.dropped)
        if metadata or dropped or any(not os.path.isfile(p) for p in paths):
            self.refresh(metadata or code or dropped)
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

    def owner_dir(self, path: str) -> str | None:
        owner = owner_of(path, self.packages)
        return None if owner is None else str(owner.path)

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


def no_packages(root: Path) -> UsageError:
    return UsageError(
        f"no packages under {shown(str(root))} (a package is a directory holding "
        f"{', '.join(PACKAGE_MARKERS[:-1])} or {PACKAGE_MARKERS[-1]}); pass --root DIR"
    )


def announce_settings(options: Options, reporter: Reporter) -> None:
    """Before anything runs: a runner from the repository's config is named, and a
    notification that cannot be sent is said once."""
    if options.runner_from:
        reporter.runner_from_config(options.runner, options.runner_from)
    if options.runners_from:
        for glob, spec in options.runners:
            if spec not in BUILTIN_RUNNERS:
                reporter.runner_from_config(f"{glob} = {spec}", options.runners_from)
    if options.notify and not can_notify():
        reporter.cannot_notify()


def changes_given(options: Options, tree: PackageSet, reporter: Reporter) -> dict[str, float]:
    """What the command line says changed: ``--changed`` paths first, the first one first,
    then what changed ``--since`` a commit, the most recently modified first.  A path in no
    package is named, except under ``--affected``, where it is simply no change."""
    changed: dict[str, float] = {}
    now = time.monotonic()
    for index, arg in enumerate(options.changed):
        path = path_named(arg, options.root, tree.all)
        if path is None:
            if not options.affected:
                reporter.not_in_package(arg)
        else:
            changed.setdefault(path, now - index * 1e-6)
    if options.since is not None:
        since = [p for p in changed_since_ref(options.root, options.since) if p not in changed]
        since = [p for p in since if owner_of(p, tree.all)]
        since.sort(key=lambda p: -os.stat(p).st_mtime if os.path.exists(p) else 0.0)
        for index, path in enumerate(since):
            changed[path] = now - 1.0 - index * 1e-6
    return changed


class RunnerChoices:
    """Which runner and interpreter each package gets, and what follows for its runs: the
    command, the packages that cannot run here, the modules the repository provides."""

    def __init__(self, options: Options, tree: PackageSet) -> None:
        self.options = options
        self.tree = tree
        self.by_package: dict[Package, Choice] = {}
        self.unrunnable: dict[Package, str] = {}
        self.provided: set[str] | None = None
        self.choose(None, strict=True)

    def __getitem__(self, package: Package) -> Choice:
        return self.by_package[package]

    def choose(self, changed: Iterable[str] | None, strict: bool = False) -> None:
        """Every package's choice, read again only where ``changed`` paths may have changed
        it (all of them when ``changed`` is None); then which of those cannot run here (at
        start, ``strict``: a runner missing for autotest's own interpreter is an error), which
        asks a package's own interpreter in a subprocess.  A plan runs nothing, so its machine
        needs no runner."""
        options, packages = self.options, self.tree.packages
        stale = packages if changed is None else stale_choices(packages, self.by_package, changed)
        fresh = choose(stale, options.root, options.runner, options.runners, options.venvs)
        kept = {p: c for p, c in self.by_package.items() if p not in fresh}
        self.by_package = {p: fresh.get(p) or kept[p] for p in packages}
        if not options.plan:  # only the choices made again are checked again
            still = {p: fix for p, fix in self.unrunnable.items() if p in kept}
            self.unrunnable = {**still, **check_choices(fresh, strict)}
        self.provided = None

    def command_for(self, package: Package) -> Command:
        """The one answer to how a package's tests run: what --plan shows, and what runs."""
        choice = self.by_package[package]
        argv = choice.runner.command(package, self.options.runner_args, choice.python)
        interpreter = choice.python if choice.runner.module else None
        return Command(choice.runner.name, interpreter, tuple(argv))

    def unavailable(self, modules: Sequence[str], python: str) -> str | None:
        """The first module a run missed that cannot be had here: not installed for its
        interpreter and provided by no package of the repository.  None when any of them is
        the repository's own (a sibling that no longer provides it is a plain failure)."""
        if self.provided is None:
            packages = self.tree.packages
            self.provided = {m for p in packages for m in provided_modules(p)}
            self.provided |= {read_metadata(p).name.replace("-", "_") for p in packages}
        for module in modules:
            if any(
                module == p or module.startswith(p + ".") or p.startswith(module + ".")
                for p in self.provided
            ):
                return None
        return next((m for m in modules if not module_installed(python, m)), None)


class CycleRuns:
    """The runs of one cycle: started (cold, forked or not at all), waited on with the status
    line, recorded, and killed if the cycle ends first.  The session decides what a cycle
    holds; this runs it.  It reads the session's parts as they are at each run (the warm
    policy is replaced when watching starts)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.progress = Progress()
        self.live: list[Run] = []  # this cycle's runs: none may outlive autotest

    def run(self, steps: Sequence[Step], watching: bool) -> CycleOutcome:
        session = self.session
        session.ci.cycle_started()
        self.progress.cycle(steps)
        session.guard.cycle_started(time.monotonic())
        try:
            outcome = run_cycle(
                steps,
                self.start_run,
                session.options.jobs,
                session.intake.changed_meanwhile if watching else lambda: False,
                session.options.restart,
                self.record,
                keep_going=session.options.keep_going,
                wait=self.pause,
            )
        finally:
            self.end_runs()
            session.guard.cycle_ended(time.monotonic())
        session.ci.cycle_ended(outcome, (p.rel for p in session.packages))
        return outcome

    def start_run(self, package: Package) -> Run | Unrunnable:
        """Start a run.  Between a cold process's start and its record, a signal waits: no
        run can be left behind (a forked one the warm interpreter kills itself)."""
        self.session.guard.run_started(str(package.path))
        choice = self.session.choices[package]
        if package in self.session.choices.unrunnable:
            return Unrunnable(package, choice.runner, self.session.choices.unrunnable[package])
        command = self.session.choices.command_for(package)
        argv = [*command.argv, *self.session.ci.run_args(command.runner, package)]
        env = {
            **run_environment(choice.runner, pycache_dir(), choice.python),
            PACKAGE_ENV: str(package.path),
        }
        saved = output_dir(self.session.root) / (package.rel.replace("/", "__") + ".log")
        needs = Needs(
            lambda modules: self.session.choices.unavailable(modules, choice.python),
            lambda: install_test_deps_command(package, choice.python),
        )
        launcher = self.session.warm.launcher_for(package)
        if launcher is not None:
            launcher.wait_ready(argv)
        timeout = self.session.options.timeout
        confirm = package not in self.session.failed  # a new failure, if forked, is confirmed
        with self.session.signals.deferred():
            run = Run(package, argv, env, choice.runner, timeout, launcher, saved, needs, confirm)
            self.live.append(run)
        self.progress.started(package)
        return run

    def record(self, result: RunResult) -> None:
        self.session.guard.run_ended(str(result.package.path))
        self.progress.ended(result.package)
        self.session.reporter.verdict(result)
        if result.failed_only_forked:
            self.session.reporter.forked_run_differed(result.package.rel)
        self.session.warm.record(result)
        self.session.ci.recorded(result)

    def pause(self, runs: Iterable[Startable], seconds: float) -> None:
        """While packages run: the status line, then a wait on the runs (run_cycle wakes at
        least every CYCLE_WAKE, well within the status line's second)."""
        self.session.reporter.running(self.progress.running())
        wait_for_runs(runs, seconds)

    def end_runs(self) -> None:
        """Kill what is still running of this cycle's runs (those run_cycle has not seen)."""
        for run in self.live:
            if run.proc is not None and run.proc.poll() is None:
                run.kill()
        self.live.clear()
        with contextlib.suppress(OSError, ValueError):  # the terminal may have hung up
            self.session.reporter.erase_status()


class Session:
    """The main loop, and the only place tests run: fed by the Intake, it orders each cycle,
    runs it and reports it."""

    def __init__(
        self, options: Options, reporter: Reporter, signals: Signals | None = None
    ) -> None:
        self.options = options
        self.root = options.root
        self.reporter = reporter
        self.signals = signals or Signals()
        reporter.root = options.root
        reporter.full_output = options.full_output
        announce_settings(options, reporter)
        written = own_outputs(self.root, (options.junit_xml, options.durations))
        self.rules = IgnoreRules(self.root, (*options.ignore, *written))
        self.tree = PackageSet(self.root, reporter, self.rules, options.packages, options.exclude)
        if not self.tree.all:
            raise no_packages(self.root)
        if not self.tree.packages:
            raise UsageError(f"--exclude leaves no package of {len(self.tree.all)} to test")
        self.choices = RunnerChoices(options, self.tree)
        self.first_changes = changes_given(options, self.tree, reporter)
        self.env = run_environment(Runner("none", ()), pycache_dir())
        self.changes = ChangeSet()
        self.guard = LoopGuard(self.tree.owner_dir)
        self.intake = Intake(
            self.changes, self.rules, self.guard, options.debounce, reporter.echoes
        )
        self.warm = WarmPolicy()
        self.pool: WarmPool | None = None
        self.failed: set[Package] = set()
        self.unfinished: set[Package] = set()  # not run yet by a cycle cut short for changes
        self.last_passed = True
        self.last_status = 0
        report = None if options.plan else options.junit_xml
        self.ci = CiJob(self.root, options.affected, options.shard, options.durations, report,
                        reporter.cannot_write)  # fmt: skip
        self.runs = CycleRuns(self)

    @property
    def packages(self) -> list[Package]:
        return self.tree.packages

    def cycle(self, changed: Mapping[str, float], only: set[Package] | None = None) -> CycleOutcome:
        graph = self.tree.graph
        owners = self.tree.owners(changed)
        steps = cycle_order(self.packages, owners, self.failed, graph.uses, graph.labels)
        if only is not None:
            steps = [s for s in steps if s.package in only]
        self.choices.choose(list(changed) if changed else None)
        if self.options.explain:
            self.reporter.explain(steps)
            self.reporter.explain_choices({s.package: self.choices[s.package] for s in steps})
        if self.pool is not None and self.warm.launcher is not None:  # warms up meanwhile
            chosen = [self.choices[s.package] for s in steps]
            changed_first = [self.choices[p].python for p in owners]
            self.pool.prepare([(c.runner, c.python) for c in chosen], changed_first)
            if self.options.explain:
                self.reporter.preloads(self.pool.preloads())
        outcome = self.runs.run(steps, watching=not self.options.once)
        self.failed.difference_update(r.package for r in outcome.results)
        self.failed.update(r.package for r in outcome.failures)
        self.unfinished = (
            (self.unfinished | {s.package for s in steps}) - {r.package for r in outcome.results}
            if outcome.interrupted
            else set()
        )
        self.reporter.summary(outcome)
        if not outcome.interrupted:
            self.after_cycle(outcome)
        self.warm.cycle_done()
        judged = self.warm.judge(len(self.packages))
        if judged is not None:
            self.reporter.warm_judged(*judged)
        return outcome

    def begin(self) -> None:
        if self.options.clear:
            self.reporter.clear()

    def after_cycle(self, outcome: CycleOutcome) -> None:
        options = self.options
        self.reporter.alert(outcome, options.bell, options.notify, not self.last_passed)
        self.last_passed = outcome.passed
        self.last_status = 0 if outcome.all_ran else 1  # what --once would have exited

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
        """The first cycle, then the import scan kept for the next start (not before: the
        first test should start as early as it can)."""
        changed = self.first_changes
        outcome = self.run_changes(changed, self.tree.all) if changed else self.run_all()
        self.tree.save()
        return outcome

    def tell_packages(self) -> None:
        if self.options.explain:
            self.reporter.not_packages(self.tree.left_out)

    def once(self) -> int:
        self.reporter.testing_packages(len(self.packages), len(self.tree.all))
        self.tell_packages()
        return 0 if self.first_cycle().all_ran else 1

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
        folders = [str(self.root), *(str(p.path) for p in self.packages)]
        unapplied = self.rules.unapplied_gitignore(folders)
        if unapplied is not None:
            self.reporter.gitignore_not_applied(unapplied)
        if self.options.warm:
            with self.signals.deferred():
                self.pool = WarmPool(self.env, self.root)
                self.warm = WarmPolicy(self.pool)
        try:
            with KeyReader(self.changes.press) if interactive else contextlib.nullcontext():
                outcome = self.first_cycle()
                while True:
                    if interactive and not outcome.interrupted:
                        self.reporter.menu()
                    request = self.intake.next_request(resume=bool(self.unfinished))
                    if request.kind == "quit":
                        break
                    outcome = self.respond(request)
        except QuitRequested:
            pass  # q during a run: run_cycle has killed the runs on the way out
        finally:
            watcher.stop()
        return self.last_status

    def respond(self, request: Request) -> CycleOutcome:
        if request.kind == "all":
            return self.run_all()
        if request.kind == "failed":
            return self.run_failed()
        if request.kind == "resume":
            return self.run_unfinished()
        batch = request.paths
        if not self.root.is_dir():
            raise UsageError(f"the root {shown(str(self.root))} is gone; stopping")
        looping = self.guard.observe(batch)
        if looping:
            self.reporter.loop_found(looping)
        before = self.packages
        self.tree.follow(batch)
        self.failed &= set(self.packages)
        self.warm.code_changed(self.tree.owners(batch))
        forget_bytecode(batch, self.env.get("PYTHONPYCACHEPREFIX"))
        return self.run_changes(batch, list({*before, *self.packages}))

    def close(self) -> None:
        """Kill whatever still runs; safe to call again (a signal may cut a first call short)."""
        self.runs.end_runs()
        self.warm.close()
        self.ci.close()
        self.tree.save()


class CiSession(Session):
    """One CI job: a single cycle narrowed by --affected and --shard, or only its plan."""

    def first_cycle(self) -> CycleOutcome:
        changed = self.first_changes
        steps, pool = self.narrowed_steps(changed)
        self.begin()
        said = len(self.options.changed) + (self.options.since is not None)
        self.reporter.narrowed(len(steps), pool, len(self.packages), self.ci, said)
        return self.cycle(changed, only={s.package for s in steps}) if steps else CycleOutcome([])

    def once(self) -> int:
        """One CI job; its first line names the root (see ``Reporter.narrowed``)."""
        self.tell_packages()
        return 0 if self.first_cycle().all_ran else 1

    def narrowed_steps(self, changed: Mapping[str, float]) -> tuple[list[Step], int]:
        return self.ci.steps(self.packages, self.tree.owners(changed), self.failed, self.tree.graph)

    def plan(self) -> int:
        """Print the cycle as JSON and run nothing."""
        steps, _ = self.narrowed_steps(self.first_changes)
        self.reporter.plan(
            plan_json(self.root, steps, self.choices.command_for, self.tree.graph.uses)
        )
        return 0


def run_session(
    argv: Sequence[str], reporter: Reporter, signals: Signals, sessions: list[Session]
) -> int:
    try:
        options = parse_options(argv)
        if options.plan:  # stdout carries the JSON alone; notices go to stderr
            reporter.stream = sys.stderr
        ci = options.plan or options.affected or options.shard
        session = (CiSession if ci else Session)(options, reporter, signals)
        sessions.append(session)
        if options.plan:
            return session.plan()  # type: ignore[attr-defined]
        if options.once:
            return session.once()
        return session.watch(interactive=sys.stdin is not None and sys.stdin.isatty())
    except UsageError as exc:
        with contextlib.suppress(OSError, ValueError):
            reporter.erase_status()
            sys.stderr.write(f"autotest: error: {shown(str(exc))}\n")
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Every way out ends here: a signal exits 128 + its number, a closed stdout quietly, and
    whatever was started is killed first."""
    with contextlib.suppress(AttributeError, ValueError):  # a name that is not UTF-8 is no crash
        sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    reporter = Reporter(sys.stdout, use_color(sys.stdout))
    signals = Signals()
    signals.install()
    silence_watchdog()
    sessions: list[Session] = []
    try:
        try:
            return run_session(sys.argv[1:] if argv is None else argv, reporter, signals, sessions)
        except OSError as exc:  # stdout closed (| head), or its terminal hung up
            if not isinstance(exc, BrokenPipeError) and exc.errno != errno.EIO:
                raise
            return 1 if isinstance(exc, BrokenPipeError) else 128 + SIGHUP_NUMBER
        finally:
            for session in sessions:
                session.close()
    except Terminated as exc:
        for session in sessions:  # again: the signal may have cut the first close short
            session.close()
        return 128 + exc.signum
    except KeyboardInterrupt:
        return 130
    finally:
        signals.settle()
        flush_or_quiet()


if __name__ == "__main__":
    sys.exit(main())

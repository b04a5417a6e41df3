"""Every POSIX/Windows branch in one place: signals, process groups, killing a tree, the
parent-death signal, keys, notifications, a closed stdout, the inotify limit and the watches
granted, file clocks and birth times.  Each has a working fallback where the call is missing.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

from .basics import KEY_POLL, LEFTOVER_WAIT, POLL_INTERVAL, TASKKILL_TIMEOUT, Terminated
from .state import POSIX
from .warm_server import child_pids, kill_with_group


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


def kill_leftovers(pid: int, mark: str = "") -> None:
    """What an ended run's tests started and left behind goes with them: on POSIX its process
    group; on Linux also what escaped the group (a daemon: fork, setsid, fork), which became
    autotest's child (see ``become_child_subreaper``) and carries the run's ``mark``.  Elsewhere
    nothing is left to find."""
    if POSIX:
        kill_tree(pid)
        if mark:
            end_marked_children(lambda found: found == mark)
        reap_adopted_zombies()


RUN_MARK = "AUTOTEST_RUN"  # in each cold run's environment: which run a process comes from


def run_mark() -> str:
    """A new run's mark: this autotest's pid, then a part of its own."""
    import uuid

    return f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def is_own_mark(mark: str) -> bool:
    """Whether ``mark`` is one of this autotest's runs'."""
    return mark.startswith(f"{os.getpid()}-")


def mark_of(pid: int) -> str | None:
    """The run mark in process ``pid``'s environment (None without one, or once it ended)."""
    prefix = f"{RUN_MARK}=".encode()
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            entries = f.read().split(b"\0")
    except OSError:
        return None
    found = [e[len(prefix) :] for e in entries if e.startswith(prefix)]
    return found[0].decode("ascii", "replace") if found else None


def end_marked_children(matches: Callable[[str], bool]) -> None:
    """Kill, with their process groups, this process's children whose run mark ``matches``,
    and reap them; again for what their end orphans in turn, until none is left."""
    deadline = time.monotonic() + LEFTOVER_WAIT
    while time.monotonic() < deadline:
        found = [pid for pid in child_pids() if matches(mark_of(pid) or "")]
        if not found:
            return
        for pid in found:
            kill_with_group(pid)
        for pid in found:
            reap(pid, deadline)


def reap(pid: int, deadline: float) -> None:
    """Wait for child ``pid`` killed a moment ago, so that it leaves no zombie."""
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done or time.monotonic() >= deadline:
            return
        time.sleep(POLL_INTERVAL)


def reap_adopted_zombies() -> None:
    """Reap the children that ended on their own after a run's process left them orphaned to
    autotest (``sh -c 'sleep 1 &'``), so that none stays a zombie while autotest watches.  Such
    a child is in another session than autotest's and does not lead its own; autotest's own
    children (runs, warm interpreters) lead theirs, and notifications share autotest's, so no
    process a Popen waits for is ever reaped here."""
    with contextlib.suppress(OSError):
        ours = os.getsid(0)
        for pid in child_pids():
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
                if fields[0] == "Z" and int(fields[3]) not in (pid, ours):
                    os.waitpid(pid, os.WNOHANG)


def end_every_leftover() -> None:
    """autotest is ending: whatever any of its runs left behind ends too."""
    if POSIX:
        end_marked_children(is_own_mark)


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


def free_room(fd: int, path: str) -> int | None:
    """Free bytes for this user on the file system of the open file ``fd`` (at ``path``, where
    there is no fstatvfs); None when it cannot be told."""
    try:
        if hasattr(os, "fstatvfs"):
            found = os.fstatvfs(fd)
            return found.f_bavail * found.f_frsize
        return shutil.disk_usage(path).free
    except OSError:
        return None


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


def closed_at_start(name: str) -> bool:
    """Whether ``sys.stdout`` or ``sys.stderr`` was closed when autotest started (``>&-``):
    Python then sets it to None."""
    return getattr(sys, name) is None


def quiet_closed_stderr() -> None:
    """A stderr closed at start (``2>&-``) becomes /dev/null: an error still says nothing and
    exits 2, and no file autotest opens later takes descriptor 2 by chance (a run's output
    file would receive the errors of everything then)."""
    if not closed_at_start("stderr"):
        return
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        if devnull != 2:
            os.dup2(devnull, 2)
            os.close(devnull)
        sys.stderr = open(2, "w", errors="backslashreplace", closefd=False)  # noqa: SIM115


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
    always put back as it was, however autotest ends.  While ``held()`` says so (another
    program has the terminal: the debugger) nothing is read.  Without termios (Windows)
    msvcrt reads the keys; with neither there are no keys.
    """

    def __init__(self, press: Callable[[str], None], held: Callable[[], bool] = bool) -> None:
        self.press = press
        self.held = held
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
            if self.held():
                time.sleep(KEY_POLL)
                continue
            if POSIX:
                try:
                    if not select.select([self.fd], [], [], KEY_POLL)[0]:
                        continue
                    data = os.read(self.fd, 1)
                except (OSError, ValueError):
                    return
                if not data:
                    return
                key = data.decode("latin-1")
            else:
                import msvcrt

                key = msvcrt.getwch()  # type: ignore[attr-defined,unused-ignore]
            self.press(key)

    @contextlib.contextmanager
    def cooked(self) -> Iterator[None]:
        """The terminal as it was before autotest (lines, echo) while another program uses
        it, then cbreak again."""
        if self.saved is None:
            yield
            return
        import termios
        import tty

        with contextlib.suppress(OSError, termios.error):
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, termios.error):
                tty.setcbreak(self.fd)

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import termios

            with contextlib.suppress(OSError, termios.error):  # a hung-up terminal: EIO
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def run_in_foreground(argv: Sequence[str], cwd: str, env: Mapping[str, str]) -> int:
    """Run a program that owns the terminal until it ends (a debugger): on POSIX in a process
    group of its own made the terminal's foreground, so Ctrl+C reaches it and not autotest;
    elsewhere simply waited for."""
    if not POSIX or not sys.stdin.isatty():
        return subprocess.run(list(argv), cwd=cwd, env=dict(env), check=False).returncode
    fd = sys.stdin.fileno()
    proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), preexec_fn=new_process_group)
    ours = os.getpgrp()
    with contextlib.suppress(OSError):
        tcsetpgrp_quietly(fd, proc.pid)
    try:
        return proc.wait()
    finally:
        with contextlib.suppress(OSError):
            tcsetpgrp_quietly(fd, ours)


def new_process_group() -> None:  # pragma: no cover (runs in the child, before exec)
    os.setpgid(0, 0)


def tcsetpgrp_quietly(fd: int, pgrp: int) -> None:
    """Make ``pgrp`` the terminal's foreground group; taking it back from the background
    would stop autotest with SIGTTOU, so that signal is ignored meanwhile."""
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(fd, pgrp)
    finally:
        signal.signal(signal.SIGTTOU, previous)


NOW = -1  # a run's wait handle when there is nothing to wait for: it is polled at once

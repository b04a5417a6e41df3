"""autotest's side of the warm runner: starting warm interpreters, asking them to fork runs,
learning from each run what may be imported ahead next time, and a forked run seen as a
process.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from .basics import (
    ASK_TIMEOUT,
    POLL_INTERVAL,
    PRELOAD_RESTARTS,
    SERVER_EXIT_WAIT,
    SPARE_MEMORY,
    WARM_REPLY_TIMEOUT,
    WARM_START_TIMEOUT,
)
from .discovery import Package
from .platform import NOW, can_fork_server, kill_tree
from .runners import Runner, RunStart
from .warm_server import (
    BOOTSTRAP,
    is_installed_code,
    plugin_modules,
    print_interpreter_facts,
    sent_call,
    serve_warm,
    site_directories,
)


def warm_server_call(
    module: str, fd: int, preload: Sequence[str], learned: Sequence[str] = (),
    proven: Collection[str] = (), root: str = "", site_dirs: Sequence[str] = (),
) -> bytes:  # fmt: skip
    """What a fresh interpreter reads to become a warm server for ``module``."""
    args = (module, fd, list(preload), os.getpid(), list(learned), sorted(proven), root)
    return sent_call(serve_warm, *args, list(site_dirs))


def installed_stamp(site_dirs: Sequence[str]) -> tuple[int, ...]:
    """When what is installed for an interpreter last changed: ``pip install`` adds or
    removes entries in its site-packages, which changes the directory's mtime."""
    return tuple(os.stat(p).st_mtime_ns if os.path.isdir(p) else 0 for p in site_dirs)


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
    try:
        done = subprocess.run(
            [python, "-c", BOOTSTRAP, "autotest-facts"], capture_output=True, timeout=ASK_TIMEOUT,
            input=sent_call(print_interpreter_facts, plugin_group),
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


class SpareKept(enum.Enum):
    """Whether a runner and interpreter keep a spare warm interpreter, as ``-v`` says it."""

    UNSAID = "unsaid"  # one interpreter is not ready yet, or PYTHONHASHSEED makes one enough
    KEPT = "kept"
    OVER_BUDGET = "over budget"

    @property
    def ready(self) -> int:
        """How many interpreters are kept ready."""
        return 2 if self is SpareKept.KEPT else 1


@dataclass(frozen=True)
class Preloads:
    """What ``-v`` says of one warm interpreter: what it imports ahead, the learned modules it
    must not (and why), whether its runs taught it nothing to import ahead (rather than
    nothing yet), and whether a spare is kept, with what one interpreter takes."""

    runner: str
    python: str
    names: tuple[str, ...]
    dropped: Mapping[str, str]
    none_to_learn: bool
    spare: SpareKept = SpareKept.UNSAID
    resident: int = 0  # bytes


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
        self.own: dict[Package, set[str]] = {}  # what each package's runs imported

    def learn(self, reported: Iterable[tuple[str, str]], package: Package | None = None) -> None:
        """Take in what a forked run imported: for the warm interpreters to come, and as what
        that package's runs may see imported ahead."""
        self.taught = True
        candidates = preload_candidates(reported, self.root, self.site_dirs)
        if package is not None:
            self.own.setdefault(package, set()).update(candidates)
        for name in candidates:
            if name not in self.dropped:
                self.names.setdefault(name)

    def hidden_from(self, package: Package, preloaded: Iterable[str]) -> list[str]:
        """Of what a warm interpreter imported ahead, what ``package``'s runs never imported
        themselves: learned from other packages, so a forked run of this one must not see it
        (a cold run would not).  Until the package's own runs taught something, all of it."""
        own = self.own.get(package, set())
        return sorted(name for name in preloaded if name not in own)

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
        preloaded: tuple[str, ...] = (), package: Package | None = None,
    ) -> None:  # fmt: skip
        self.launcher = launcher
        self.package = package
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
                self.launcher.learn(read_report(self.report), self.package)
            self.report = None


class WarmServer:
    """One warm interpreter and its end of the socket.  ``learned`` takes its ``drop``s;
    ``preloaded`` is what it was asked to import ahead of the runs."""

    def __init__(
        self, module: str, preload: Sequence[str], env: Mapping[str, str],
        learned: LearnedPreloads | None = None, preloaded: tuple[str, ...] = (),
        python: str = sys.executable,
    ) -> None:  # fmt: skip
        self.served: set[Package] = set()  # whose runs it forked: they have seen its hash seed
        self.resident = 0  # its resident memory once ready, in bytes (0: not known)
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
        try:
            self.proc = subprocess.Popen(
                [python, "-c", BOOTSTRAP, "autotest-warm", module],
                pass_fds=[theirs.fileno()], env=dict(env), stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            assert self.proc.stdin is not None
            with self.proc.stdin:
                self.proc.stdin.write(
                    warm_server_call(module, theirs.fileno(), preload, preloaded, *where)
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
            self.resident = int(numbers[0]) if numbers else 0
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


def fork_choice(
    package: Package | None, ready: Sequence[WarmServer], last: WarmServer | None
) -> WarmServer | None:
    """The ready interpreter a run of ``package`` forks from: never ``last``, the one that forked
    its last run (its hash seed again), and one whose seed it never had where there is one; of
    those, the first started, so that the younger stay fresh for the packages that need them.
    None: the run has to wait for one."""
    allowed = [s for s in ready if s is not last]
    unseen = [s for s in allowed if package not in s.served]
    return next(iter(unseen or allowed), None)


def surplus(ready: Sequence[WarmServer], kept: int) -> list[WarmServer]:
    """The ready interpreters to end so that ``kept`` remain: those whose seed runs have seen
    first, the first started first."""
    used = [s for s in ready if s.served]
    fresh = [s for s in ready if not s.served]
    return (used + fresh)[: max(0, len(ready) - kept)]


def wants_another(servers: Sequence[WarmServer], kept: int, fresh_seeds: bool) -> bool:
    """Whether to start one more interpreter: one at a time (each start takes a core for a
    while), while fewer than ``kept`` have a seed no run has seen.  With PYTHONHASHSEED set
    every seed is the same, and one is enough."""
    if any(not s.ready for s in servers):
        return False
    if not fresh_seeds:
        return not servers
    return sum(not s.served for s in servers) < kept


def spare_kept(fresh_seeds: bool, resident: int, budget: int) -> SpareKept:
    """Whether a spare is kept: only where seeds change from run to run, and one interpreter
    (``resident`` bytes, 0 when not known yet) fits the ``budget``."""
    if not fresh_seeds or not resident:
        return SpareKept.UNSAID
    return SpareKept.KEPT if resident <= budget else SpareKept.OVER_BUDGET


class WarmSet:
    """The warm interpreters of one runner and interpreter: those kept (ready or starting, the
    first started first), which of them forked each package's last run, and the runs each is
    serving.  One no longer kept ends, or once its runs have."""

    def __init__(self, fresh_seeds: bool) -> None:
        self.fresh_seeds = fresh_seeds  # no PYTHONHASHSEED: each interpreter has its own seed
        self.kept: list[WarmServer] = []
        self.last: dict[Package, WarmServer] = {}  # which one forked each package's last run
        self.serving: dict[int, WarmServer] = {}  # each forked run, by pid, with its server

    def ready(self) -> list[WarmServer]:
        """Those ready, having taken in what each said so far (drops, ready), without waiting."""
        return [s for s in self.kept if s.is_ready(0.0)]

    def starting(self) -> WarmServer | None:
        return next((s for s in self.kept if not s.ready), None)

    def choice(self, package: Package | None) -> WarmServer | None:
        last = self.last.get(package) if package is not None else None
        return fork_choice(package, self.ready(), last)

    def forked(self, server: WarmServer, pid: int, package: Package) -> None:
        self.serving[pid] = server
        if self.fresh_seeds:
            server.served.add(package)
            self.last[package] = server

    def retire(self, server: WarmServer) -> None:
        if server in self.kept:
            self.kept.remove(server)
        if server not in self.serving.values():
            server.close()

    def ended(self, pid: int) -> None:
        """Run ``pid`` ended: its server ends too if it is no longer kept."""
        server = self.serving.pop(pid)
        if server not in self.kept:
            self.retire(server)

    def close(self) -> None:
        for server in {*self.serving.values(), *self.kept}:
            server.close()
        self.serving.clear()
        self.kept.clear()


class WarmLauncher:
    """Starts runs by forking them from a warm interpreter.  Where there is no fork, when the
    runner is not a Python module, or when the warm interpreters died, ``launch`` returns None
    and the run starts cold.  With ``learned``, the runs report what they imported, and the
    warm interpreters import ahead what they taught (less the runner's plugins).

    An interpreter's hash seed is fixed when it starts, so unless PYTHONHASHSEED fixes it, no run
    of a package forks from the one that forked its last run.  Two are kept ready while one fits
    ``spare_budget`` (a spare): a run always has one to fork from, however soon it comes.  The
    first run an interpreter forks starts its successor, which gets ready in the background;
    none starts between a save and its run's fork, which it would slow down."""

    def __init__(
        self, runner: Runner, env: Mapping[str, str], facts: InterpreterFacts | None,
        learned: LearnedPreloads | None = None, python: str = sys.executable,
        spare_budget: int = SPARE_MEMORY,
    ) -> None:  # fmt: skip
        """``facts`` are ``interpreter_facts(python, runner.plugins)``: None leaves runs cold."""
        self.runner = runner
        self.env = dict(env)
        self.learned = learned
        self.python = python
        self.site_dirs = facts.site_dirs if facts is not None else ()
        self.never = facts.plugins if facts is not None else frozenset()
        self.restarts = 0  # warm interpreters in a row that ended dropping a learned module
        self.warm = WarmSet(fresh_seeds="PYTHONHASHSEED" not in self.env)
        self.spare_budget = spare_budget  # the bytes a spare interpreter may take
        self.resident = 0  # the most bytes one warm interpreter took so far (0: not known yet)
        self.installed = installed_stamp(self.site_dirs)
        self.usable = facts is not None and runner.module is not None
        self._take_in()

    def _wanted(self) -> tuple[str, ...]:
        """What a warm interpreter started now imports ahead."""
        return self.learned.for_runner(self.never) if self.learned is not None else ()

    def spare(self) -> SpareKept:
        return spare_kept(self.warm.fresh_seeds, self.resident, self.spare_budget)

    def _take_in(self, start: bool = True) -> None:
        """Take in what the interpreters said so far, without waiting: one that ended is let go,
        and with ``start`` the next one starts when one is wanted, in the place of one beyond
        those kept."""
        warm = self.warm
        for server in [s for s in warm.kept if not s.is_ready(0.0) and not s.alive]:
            if server.ready:
                warm.retire(server)
            else:
                self._ended_early(server, timed_out=False)
        self.resident = max([self.resident, *(s.resident for s in warm.kept if s.ready)])
        module, kept = self.runner.module, self.spare().ready
        if start and self.usable and module and wants_another(warm.kept, kept, warm.fresh_seeds):
            for server in surplus(warm.kept, kept):  # room for it, from those runs used
                warm.retire(server)
            args = (self.runner.preload, self.env, self.learned, self._wanted(), self.python)
            warm.kept.append(WarmServer(module, *args))

    def _ended_early(self, server: WarmServer, timed_out: bool) -> None:
        """An interpreter ended before it was ready, or was not ready in time.  One that ended
        dropping a learned module is followed by one without it; one still importing ahead when
        the time was up may hang in a learned module's import: learning is given up, and the
        next one imports nothing ahead.  Otherwise none follows: runs start cold once the
        interpreters ready have been used."""
        self.warm.retire(server)
        learned = self.learned
        if learned is None or not server.preloaded:
            self.usable = False
        elif timed_out:
            learned.give_up("the warm interpreter was not ready in time with it")
        elif not set(server.preloaded) - set(learned.for_runner(self.never)):
            self.usable = False  # it ended without dropping anything: not the modules' fault
        else:
            self.restarts += 1
            if self.restarts > PRELOAD_RESTARTS:
                learned.give_up("too many modules unfit to import ahead")

    def _restart_if_installs_changed(self) -> None:
        """A warm interpreter read the installed .pth files when it started: after a
        ``pip install``, new ones take over."""
        if self.usable and installed_stamp(self.site_dirs) != self.installed:
            self.installed = installed_stamp(self.site_dirs)
            facts = interpreter_facts(self.python, self.runner.plugins)
            self.never = facts.plugins if facts is not None else frozenset()
            self.usable = facts is not None
            for server in list(self.warm.kept):
                self.warm.retire(server)

    def wait_ready(
        self, runner: Runner | None = None, python: str = "", package: Package | None = None
    ) -> None:
        """Wait until an interpreter that a run of ``package`` may fork from is ready (they
        start while earlier runs go on); one that ended dropping a learned module is followed
        by one without it, waited for in the same time."""
        self._restart_if_installs_changed()
        deadline = time.monotonic() + WARM_START_TIMEOUT
        while True:
            self._take_in(start=False)
            if self.warm.choice(package) is not None:
                return
            self._take_in()  # none to fork from: the next one has to start now
            starting = self.warm.starting()
            if starting is None:
                return
            if starting.is_ready(max(0.0, deadline - time.monotonic())):
                continue
            timed_out = starting.alive
            self._ended_early(starting, timed_out)
            if timed_out:
                self._take_in()  # the next one starts now, for the runs to come
                return

    def settle(self) -> None:
        """Take in what the interpreters said so far (drops, ready), without waiting."""
        self.warm.ready()

    @property
    def preloaded(self) -> tuple[str, ...]:
        """What the interpreter started last imports ahead of the runs."""
        kept = self.warm.kept
        return kept[-1].preloaded if kept else ()

    def launch(self, start: RunStart, out: IO[bytes]) -> WarmProcess | None:
        """Fork the run; None when it has to start cold.  It never waits for a warm interpreter
        (the caller did, in ``wait_ready``): it runs while signals are held, so that no run is
        left behind, and Ctrl+C must not wait on an interpreter's start."""
        if (start.runner, start.python) != (self.runner, self.python):
            return None
        server = self.warm.choice(start.package)
        if server is None:
            return None
        learned = self.learned
        report = tempfile.TemporaryFile() if learned is not None else None  # noqa: SIM115
        hide = [] if learned is None else learned.hidden_from(start.package, server.preloaded)
        request = json.dumps(
            {"cwd": str(start.package.path), "env": dict(start.env), "args": list(start.args),
             "report": report is not None, "hide": hide}
        )  # fmt: skip
        pid = server.fork(request.encode() + b"\n", out, report)
        if pid is None:
            if report is not None:
                report.close()
            self.warm.retire(server)
            return None
        self.warm.forked(server, pid, start.package)
        self._take_in()  # its seed is seen now: the next one may start
        return WarmProcess(self, pid, report, server.preloaded, start.package)

    def renew(self) -> None:
        """After a cycle: the interpreters that do not import ahead what was learned (more, or
        less since a module was dropped) end, as do the ready ones beyond those kept (during a
        cycle, only to make room for a new one: the packages still to run would move to
        another, which would then want a successor too), and the next one starts if wanted."""
        wanted = set(self._wanted())
        stale = [s for s in self.warm.kept if set(s.preloaded) != wanted]
        if any(wanted - set(s.preloaded) for s in stale):
            self.restarts = 0
        ready = [s for s in self.warm.ready() if s not in stale]
        for server in [*stale, *surplus(ready, self.spare().ready)]:
            self.warm.retire(server)
        self._take_in()

    def wait_handle(self, pid: int) -> int:
        """What to wait on for run ``pid``'s ``exit`` (NOW when there is nothing to wait on)."""
        server = self.warm.serving.get(pid)
        return NOW if server is None else server.wait_handle(pid)

    def learn(self, reported: Iterable[tuple[str, str]], package: Package | None = None) -> None:
        if self.learned is not None:
            self.learned.learn(reported, package)

    def exit_code(self, pid: int, block: bool) -> int | None:
        server = self.warm.serving.get(pid)
        if server is None:
            return -signal.SIGKILL
        code = server.exit_code(pid, block)
        if code is not None:
            self.warm.ended(pid)
        return code

    def close(self) -> None:
        self.warm.close()


@dataclass
class WarmTimes:
    """One package's best times for its current code, cold and forked."""

    cold: float | None = None
    warm: float | None = None
    skip_next: bool = False  # its code just changed: the next run also compiles it


class Launcher(Protocol):
    """What a Run needs to start forked: a WarmLauncher, or the WarmPool of several."""

    def launch(self, start: RunStart, out: IO[bytes]) -> WarmProcess | None: ...

    def wait_ready(self, runner: Runner, python: str, package: Package) -> None: ...

    def renew(self) -> None: ...

    def close(self) -> None: ...

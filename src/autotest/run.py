"""One package's test process, cold or forked: its bounded output, its timeout, its RunResult."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable

from .basics import (
    DUMP_WAIT,
    HEAD_LINES,
    LINE_LIMIT,
    OUTPUT_ROOM,
    POLL_INTERVAL,
    TAIL_LINES,
    Verdict,
)  # fmt: skip
from .discovery import Package
from .junit import FailingTest, RunnerReport, failing_tests, take_report
from .platform import (
    NOW,
    RUN_MARK,
    free_room,
    kill_leftovers,
    kill_tree,
    own_process_group,
    process_handle,
    run_mark,
    scripts_dir,
    show_stacks,
)
from .runners import InstallCommand, Runner, RunStart, activated_path, pytest_style
from .state import private_subdir, state_path
from .warm_client import Launcher, WarmProcess


@dataclass(frozen=True)
class Missing:
    """A module a run could not import that cannot be had here; ``provider`` is the package of
    the repository that provides it (relative path) when that package is not installed for
    the run's interpreter, whose environment is ``venv`` (relative path)."""

    module: str
    provider: str = ""
    venv: str = ""

    @property
    def note(self) -> str:
        """``needs mocket``, ``needs langgraph (libs/lg, not installed in libs/sdk/.venv)``."""
        where = f" ({self.provider}, not installed in {self.venv})" if self.provider else ""
        return f"needs {self.module}{where}"


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
    hint: InstallCommand | None = None
    forked_failed: bool = False  # a forked run failed, so this cold one ran to confirm it
    unwritable: tuple[str, ...] = ()  # where autotest could not write the run's output, and why
    runner_xml: bytes = b""  # the runner's own JUnit XML report, when it wrote one
    failing_tests: tuple[FailingTest, ...] = ()  # a failed run's, from that report
    missing: Missing | None = None  # what a run that could not run needs

    @property
    def failed(self) -> bool:
        """FAILED: not ok, not "no tests", and not "could not run" (not the code's fault)."""
        return self.verdict is Verdict.FAILED

    @property
    def failed_only_forked(self) -> bool:
        """Failed forked from a warm interpreter, passed cold: the package is to run cold."""
        return self.forked_failed and not self.failed


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
    summary_seen: bool = True  # the runner's summary lines came, in order

    @property
    def excerpt(self) -> str:
        return self.head + self.tail


def read_output(out: IO[bytes], summary: Sequence[str] = (), hidden: str = "") -> Output:
    """The head and the tail of a run's output file, and what it says, read line by line: the
    ``summary`` lines are looked for in all of it, since a report after them (coverage) may
    push them out of the tail.  Lines holding ``hidden`` are left out: pytest names the private
    report autotest asked for ("generated xml file"), a file the user never asked for and that
    is gone by then."""
    import collections

    out.seek(0)
    head: list[str] = []
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    count = 0
    missing: dict[str, None] = {}
    found = {"failed": False, "fixtures": False, "skipped": False}
    awaited = [re.compile(pattern) for pattern in summary]
    for raw in iter(lambda: out.readline(LINE_LIMIT), b""):
        line = raw.decode("utf-8", "replace")
        if hidden and hidden in line:
            continue
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
        if awaited and awaited[0].search(line):
            awaited.pop(0)
    omitted = max(0, count - HEAD_LINES - TAIL_LINES)
    return Output(
        "".join(head), "".join(tail), omitted, tuple(missing),
        found["failed"], found["fixtures"], found["skipped"], not awaited,
    )  # fmt: skip


def output_dir(root: Path) -> Path | None:
    """Where the whole output of failing runs is kept: outside the repository, in the private
    state directory, one directory per repository; None when there is no such directory."""
    import hashlib

    digest = hashlib.sha1(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return state_path("output", f"{root.name}-{digest}")


def save_output(out: IO[bytes], path: Path | None) -> str:
    """Copy the run's output file to ``path``, in a 0700 directory: written to a fresh 0600
    file renamed into place, so that nothing planted at ``path`` (a link) is ever followed.
    The path, or empty when it cannot be written."""
    if path is None or not private_subdir(path.parent):
        return ""
    try:
        fd, temp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    except OSError:
        return ""
    try:
        out.seek(0)
        with open(fd, "wb") as f:
            shutil.copyfileobj(out, f)
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        return ""
    return str(path)


@dataclass(frozen=True)
class Needs:
    """What tells a module that cannot be had here from one the code broke: ``missing`` gives
    the first of the modules a failing run could not import that is neither installed for the
    package's interpreter nor provided by a package of the repository; ``hint`` the package's
    way to install its test dependencies (read from its files only when a run needs it)."""

    missing: Callable[[Sequence[str]], Missing | None]
    hint: Callable[[], InstallCommand | None] = lambda: None
    install: Callable[[Missing], InstallCommand | None] = lambda missing: None


def run_environment(
    runner: Runner, pycache: str | None, python: str = sys.executable
) -> dict[str, str]:
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
    if pycache is not None and not env.get("PYTHONDONTWRITEBYTECODE"):
        env.setdefault("PYTHONPYCACHEPREFIX", pycache)
    return env


def cached_bytecode(place: str, stem: str) -> list[str]:
    """The bytecode of module ``stem`` that any Python cached in ``place``: one file per
    version tag and optimization level (``stem.cpython-39.pyc``, ``stem.pypy310.opt-1.pyc``)."""
    pattern = re.compile(re.escape(stem) + r"\.[^.]+(?:\.opt-\d+)?\.pyc")
    try:
        names = os.listdir(place)
    except OSError:
        return []
    return [os.path.join(place, n) for n in names if pattern.fullmatch(n)]


def forget_bytecode(paths: Iterable[str], prefix: str | None) -> None:
    """Delete the cached bytecode of changed sources, whichever Python wrote it (a package's
    own virtualenv may be another version than autotest's).  Python trusts a cache whose
    recorded mtime (whole seconds) and size match, so a second save of the same size within a
    second would otherwise run the old code."""
    for path in paths:
        if not path.endswith(".py"):
            continue
        folder, name = os.path.split(path)
        places = [os.path.join(folder, "__pycache__")]
        if prefix:
            places.append(os.path.join(prefix, os.path.splitdrive(folder)[1].lstrip(os.sep)))
        for place in places:
            for cached in cached_bytecode(place, name[:-3]):
                with contextlib.suppress(OSError):
                    os.unlink(cached)


class Run:
    """One package's test process.  Output goes to an anonymous file, not a pipe, so a run that
    prints megabytes can never block, and stdout and stderr stay interleaved in order; only its
    head and tail are read back, and the whole of a failing run's is copied to ``saved``.

    With ``confirm``, a forked run that fails, forked from a warm interpreter that had imported
    modules ahead, is run again cold, and the cold run's is the verdict: a module imported
    ahead that a test expects not to be imported yet must never show as a failure."""

    def __init__(
        self, start: RunStart, timeout: float | None, launcher: Launcher | None = None,
        saved: Path | None = None, needs: Needs | None = None, confirm: bool = False,
        report: RunnerReport | None = None, spent: float = 0.0,
    ) -> None:  # fmt: skip
        """``spent``: the seconds of ``timeout`` the package's first stage took already."""
        self.mark = run_mark()  # in its environment, cold or forked: what it leaves is found
        start = dataclasses.replace(start, env={**start.env, RUN_MARK: self.mark})
        self.start = start
        self.package = start.package
        self.command = start.argv
        self.runner = start.runner
        self.timeout = timeout
        self.spent = spent
        self.saved = saved
        self.needs = needs
        self.confirm = confirm
        self.report = report  # where the runner writes its JUnit XML, read and deleted at the end
        self.forked_failed = False
        self.started = time.monotonic()
        self.proc: subprocess.Popen[bytes] | WarmProcess | None = None
        self.handle: int | None = None  # a cold process's pidfd, where there are pidfds
        self.error = ""
        self.unwritable: tuple[str, ...] = ()  # autotest's own I/O failed: no verdict of the tests
        try:
            self.out: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed by _result)
        except OSError as exc:
            self.out = io.BytesIO()  # never given to a process: the run does not start
            self.unwritable = (tempfile.gettempdir(), exc.strerror or str(exc))
            return
        try:
            if launcher is not None:
                self.proc = launcher.launch(start, self.out)
            if self.proc is None:
                self._start_cold()
        except OSError as exc:
            self._cannot_start(exc)

    def _cannot_start(self, exc: OSError) -> None:
        self.proc = None
        self.error = f"autotest: cannot start {self.command[0]}: {exc.strerror or exc}\n"

    def _start_cold(self) -> None:
        self.proc = subprocess.Popen(
            self.command, cwd=self.package.path, env=dict(self.start.env), stdin=subprocess.DEVNULL,
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
        if self.unwritable:
            return self._result(Verdict.COULD_NOT_RUN, "output not written")
        if self.proc is None:
            self._append(self.error)
            return self._result(Verdict.FAILED)
        code = self.proc.poll()
        if code is None:
            elapsed = time.monotonic() - self.started + self.spent
            if self.timeout is not None and elapsed > self.timeout:
                self._show_where_it_hangs()
                self.kill()
                self._append(f"\nautotest: timed out after {self.timeout:g}s; killed\n")
                return self._result(Verdict.FAILED, "timed out")
            return None
        kill_leftovers(self.proc.pid, self.mark)
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            self._append(f"\nautotest: killed by {name}\n")
            return self._result(Verdict.FAILED, name)
        output = self._read_output()
        verdict = self.runner.verdict(code, output.excerpt)
        if verdict is Verdict.FAILED and self._out_of_room():
            return self._result(Verdict.COULD_NOT_RUN, "output not written", output)
        if verdict is Verdict.NO_TESTS and self.start.name_filter:
            verdict = Verdict.NO_MATCH
        expected = self.runner.expects_summary(self.start.args)
        cut_short = verdict is Verdict.OK and expected and not output.summary_seen
        if cut_short and self._again_cold():
            return None
        if cut_short:
            self._append(CUT_SHORT.format(runner=self.runner.name))
            return self._result(Verdict.FAILED, "cut short")
        if verdict is Verdict.FAILED and self._again_cold():
            return None
        if verdict is Verdict.FAILED and not output.tests_failed and self.needs is not None:
            needed = self.needs.missing(output.missing) if output.missing else None
            if needed:
                return self._result(Verdict.COULD_NOT_RUN, needed.note, output, needed)
        if verdict is not Verdict.FAILED and self._skipped_pytest_tests(output):
            self._append(NOSE_CANNOT_RUN.format(rel=self.package.rel))
            return self._result(Verdict.FAILED, "pytest-style tests")
        note = "" if code in (0, 1) or verdict is not Verdict.FAILED else f"exit {code}"
        return self._result(verdict, note, output)

    def _out_of_room(self) -> bool:
        """Whether the file system holding the run's output is (nearly) full: then the run
        failed for want of room to write what it printed, autotest's own I/O, and its failure
        says nothing of the tests."""
        room = free_room(self.out.fileno(), tempfile.gettempdir())
        if room is None or room >= OUTPUT_ROOM:
            return False
        self.unwritable = (tempfile.gettempdir(), os.strerror(errno.ENOSPC))
        return True

    def _append(self, text: str) -> None:
        """autotest's own word at the end of the run's output (lost where there is no room)."""
        with contextlib.suppress(OSError):
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

    def _read_output(self) -> Output:
        return read_output(self.out, self.runner.summary, self.report.path if self.report else "")

    def _result(
        self, verdict: Verdict, note: str = "", output: Output | None = None,
        missing: Missing | None = None,
    ) -> RunResult:  # fmt: skip
        if output is None:
            output = self._read_output()
        runner_xml = take_report(self.report)
        failing = failing_tests(runner_xml, self.package.path) if verdict is Verdict.FAILED else ()
        failed = verdict in (Verdict.FAILED, Verdict.COULD_NOT_RUN)
        saved = save_output(self.out, self.saved) if failed else ""
        self.out.close()
        self._close_handle()
        seconds = time.monotonic() - self.started
        warm = isinstance(self.proc, WarmProcess)
        hint = None
        if self.needs and missing is not None:
            hint = self.needs.install(missing) if missing.provider else self.needs.hint()
        return RunResult(
            self.package, verdict, seconds, output.head, note, warm,
            output.tail, output.omitted, saved, hint, self.forked_failed, self.unwritable,
            runner_xml, failing, missing,
        )  # fmt: skip

    def kill(self) -> None:
        if self.proc is not None:
            kill_tree(self.proc.pid)
            with contextlib.suppress(Exception):
                self.proc.wait()
            kill_leftovers(self.proc.pid, self.mark)
        take_report(self.report)
        self._close_handle()

    def _close_handle(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(OSError):
                os.close(self.handle)
            self.handle = None


class Unrunnable:
    """A package whose own interpreter lacks its runner: it could not run, and says how to
    install what it needs, without a process."""

    def __init__(self, package: Package, runner: Runner, fix: InstallCommand | None) -> None:
        self.package = package
        self.runner = runner
        self.fix = fix

    def poll(self) -> RunResult:
        missing = Missing(self.runner.install or self.runner.argv[0])
        return RunResult(
            self.package, Verdict.COULD_NOT_RUN, 0.0, "", missing.note, hint=self.fix,
            missing=missing,
        )  # fmt: skip

    def wait_handle(self) -> int:
        return NOW

    def kill(self) -> None:
        pass


CUT_SHORT = (
    "\nautotest: {runner} exited 0 but never printed its summary: the process ended before "
    "every test had run (a test called os._exit or the like), which is not a pass\n"
)


NOSE_CANNOT_RUN = (
    "\nautotest: nose skipped tests of {rel} that take pytest fixtures, and cannot run them; "
    "run it with pytest: --runner auto (the default) or pytest, or "
    'runners = {{ "{rel}" = "pytest" }} in [tool.autotest]\n'
)

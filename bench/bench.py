#!/usr/bin/env python3
"""Benchmark of utilities/autotest.py: what a save costs, measured against plain runs.

Usage::

    python bench/bench.py [--quick] [--trials N]

It builds synthetic repositories (git work trees when git is installed) in a temporary
directory, runs autotest on them as a real process, and prints the machine, then ONE Markdown
table, then notes.  Every figure is the median of repeated trials (5 by default; --quick runs 3
and uses smaller trees and a shorter idle window), and each row shows a baseline measured in the
same run, the ratio of autotest's figure to it, and the goal.

1. save -> first test body: every test body's first statement appends ``time.time()`` to a
   marker file.  autotest watches (warm runner, then --no-warm); once its first cycle's summary
   line is out, the bench saves a source file at T0 and takes the first marker time after T0.
   Baseline: a cold ``python -m nose`` in that package, from launch to its first marker.
2. time to first failure: 8 packages whose test sleeps 0.4 s; a breaking save in the last one,
   until its ``FAILED`` verdict line.  Baseline: the 8 packages run in order with cold
   ``python -m nose`` until the failure.
3. all green with ``-j 2`` against ``-j 1``: 4 packages of 1 s each, ``autotest --once``.
4. idle CPU of the watcher (utime+stime from /proc/PID/stat) per 10 s after its first cycle.
   Baseline: a bare watchdog Observer watching the same tree over the same windows.
5. a tree with 6,000 ignored directories (a .venv with pyvenv.cfg, a venv under another name,
   node_modules at the root and inside a package): inotify watches autotest holds (from its
   start-up line) against the directories outside ignored trees; process start -> first test
   body (baseline: cold nose in the first package); peak RSS (VmHWM) against a bare recursive
   watchdog Observer on the same tree.
6. where pytest-watcher and pytest-watch are importable here: their save -> first test body on
   a one-package repository (as the baseline), against autotest --runner pytest on the same
   repository.  Under watchdog 7 pytest-watcher's default pattern ``*.py`` matches no file in a
   subdirectory, so the bench passes it ``--patterns '*.py,**/*.py'`` (and says so).  A tool
   that is not installed or does not run gets its row skipped, with the reason.
7. 40 packages of one quick test: a save in the first -> every test body has run, after two
   warm-up saves (the first forked cycle teaches the warm interpreter what to import ahead).
   Baseline: 40 cold ``python -m nose`` runs in a row.  A note breaks the time per package
   down: previous verdict line -> test module imported (starting the run), -> test body
   (collection), -> its own verdict line (the test, the end, autotest noticing and reporting).
8. a package whose tests import a library installed outside the repository (a module on
   PYTHONPATH in a temporary site directory) whose import takes 0.7 s: save -> first test body
   after two warm-up saves.  Baseline: a cold ``python -m nose``.  Unless PYTHONHASHSEED is set,
   no run forks from the warm interpreter of its package's last run (a fresh hash seed), and
   each new interpreter imports the library again; 8a saves at a person's pace (2 s after each
   verdict), 8b at once after each verdict (it forks from the spare interpreter kept ready
   beside the one the last run forked from), and 8c at once with PYTHONHASHSEED=0 (one
   interpreter serves every cycle).
9. the same with pydantic (bench/requirements.txt) under ``--runner pytest``, at a person's
   pace; baselines: a cold ``python -m pytest`` (9a) and pytest-watcher's save -> first test
   body (9b, at the same pace).
10. a generated monorepo of 100 packages of 200 source files each, every file importing the
   package below it (the import scan reads all 20,000): process start -> first test body, and
   peak RSS of autotest after its first cycle.  Baselines: cold nose in the first package (shown
   for scale; the start-up goal is on the figure itself, as in 5b), and a bare recursive
   watchdog Observer on the same tree.
11. a package of 30 test modules of 0.15 s each, each importing one module of the package: a
   breaking save to the module only the 24th imports -> FAILED (11a), and a save that breaks
   nothing -> ok (11b), each against the same watcher with ``--no-stages`` (the whole package
   in one run, in collection order).

--quick: 3 trials, 2,000 ignored directories in 5, and 5 s idle windows (scaled to 10 s).
--only N [N ...] runs only those scenarios.

Environment: every process the bench starts gets the caller's environment WITHOUT
PYTHONDONTWRITEBYTECODE (a user's shell does not set it, and it changes what is measured:
cold runs compile instead of reading bytecode, and autotest keeps its bytecode outside the tree
only when bytecode is written), without FORCE_COLOR, and with NO_COLOR=1.

The output of autotest is read by a reader thread; every wait is on a condition with a deadline,
never a fixed sleep.  Each process starts in its own session, and every process the bench
started, with its process group and descendants, is killed when the bench ends, Ctrl+C included.
Progress goes to stderr; the report goes to stdout.  Exit status: 0 when every goal is met,
1 when one is missed or a figure could not be measured, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
AUTOTEST = ROOT / "utilities" / "autotest.py"
PYTHON = sys.executable

SUMMARY = re.compile(
    r"^(all \d+ packages passed|the 1 package passed|\S.* FAILED; |changed during the run)"
)
WATCHING = re.compile(r"^autotest: watching \d+ packages? in .* \((?P<how>[^()]*)\); Ctrl\+C")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# A bare watchdog Observer, the way watchdog's documentation starts one: the floor for idle CPU
# and memory of anything built on watchdog.
BARE_OBSERVER = """\
import sys, time
from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer
observer = Observer()
observer.schedule(FileSystemEventHandler(), sys.argv[1], recursive=True)
observer.start()
print("ready", flush=True)
while True:
    time.sleep(1)
"""

TEST_HEADER = """\
import time

from {module} import VALUE

MARKER = {marker!r}
"""

TEST_BODY = """

def test_{module}_{index}():
    with open(MARKER, "a") as f: f.write(repr(time.time()) + "\\n")
{sleep}    assert VALUE == 1
"""


class BenchError(Exception):
    """A measurement could not be taken (a deadline passed, a process ended early)."""


def say(text: str) -> None:
    """Progress, on stderr so that stdout holds the report alone."""
    sys.stderr.write(f"[bench] {text}\n")
    sys.stderr.flush()


def bench_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: bytecode written as usual, no colours."""
    drop = ("PYTHONDONTWRITEBYTECODE", "FORCE_COLOR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat from the state on (field 3 is index 0), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, found through the parent ids in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = proc_stat(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    frontier = [pid]
    while frontier:
        following = [c for p in frontier for c in children.get(p, [])]
        found.extend(following)
        frontier = following
    return found


def cpu_seconds(pid: int) -> float:
    fields = proc_stat(pid)
    if fields is None:
        raise BenchError(f"process {pid} has ended")
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def run_seconds(pid: int) -> float:
    """Time on a CPU of all the process's threads, in nanoseconds from schedstat: the same
    thing as utime+stime without the clock tick's 10 ms granularity."""
    total = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    return total / 1e9


def peak_rss_mb(pid: int) -> float:
    """VmHWM in MB (10**6 bytes)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        raise BenchError(f"process {pid} has ended") from None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise BenchError(f"no VmHWM for process {pid}")


def inotify_watches(pid: int) -> int | None:
    """Watches the process really holds, counted in /proc/PID/fdinfo (None if unreadable)."""
    total = 0
    try:
        names = os.listdir(f"/proc/{pid}/fdinfo")
    except OSError:
        return None
    for name in names:
        with contextlib.suppress(OSError):
            text = Path(f"/proc/{pid}/fdinfo/{name}").read_text()
            total += sum(1 for line in text.splitlines() if line.startswith("inotify wd:"))
    return total


class Output:
    """A child's stdout, read line by line by a thread, each line with the time it arrived."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: list[tuple[float, str]] = []
        self.eof = False
        self._cond = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._cond:
                self.lines.append((time.time(), line))
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    def count(self) -> int:
        with self._cond:
            return len(self.lines)

    def text(self, last: int | None = None) -> str:
        with self._cond:
            lines = self.lines if last is None else self.lines[-last:]
            return "\n".join(line for _, line in lines)

    def wait_for(
        self, pattern: str | re.Pattern[str], start: int = 0, timeout: float = 30
    ) -> tuple[int, float, re.Match[str]]:
        """Wait until a line from index ``start`` on matches: the index after it, the time it
        arrived, and the match."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index in range(start, len(self.lines)):
                    at, line = self.lines[index]
                    found = regex.search(line)
                    if found:
                        return index + 1, at, found
                start = max(start, len(self.lines))
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.eof:
                    why = "output ended" if self.eof else f"none within {timeout:g}s"
                    raise BenchError(
                        f"no line matching {regex.pattern!r} ({why}); last lines:\n"
                        + "\n".join(line for _, line in self.lines[-25:])
                    )
                self._cond.wait(min(remaining, 0.5))


@dataclass
class Child:
    label: str
    proc: subprocess.Popen[bytes]
    out: Output | None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self) -> str:
        return self.out.text(last=25) if self.out is not None else ""


class Processes:
    """Every process the bench starts, each in a session of its own, so that the terminal's
    Ctrl+C reaches the bench alone and the bench kills each group (and every descendant that
    left it, such as autotest's warm runner and its forked runs) itself."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def start(
        self,
        label: str,
        argv: Sequence[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        capture: bool = True,
    ) -> Child:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env if env is not None else bench_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if capture else subprocess.DEVNULL,
            start_new_session=True,
        )
        child = Child(label, proc, Output(proc.stdout) if proc.stdout is not None else None)
        self.children.append(child)
        return child

    def run(
        self,
        label: str,
        argv: Sequence[str],
        cwd: Path,
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> Child:
        """Start and wait for the end (killing it at the deadline)."""
        child = self.start(label, argv, cwd, env)
        try:
            child.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(child)
            raise BenchError(f"{label} took longer than {timeout:g}s:\n{child.tail()}") from None
        self.stop(child)
        return child

    def stop(self, child: Child, grace: float = 5.0) -> None:
        """SIGTERM (autotest then stops its warm runner and runs itself), then SIGKILL to the
        process group and every descendant and their groups."""
        seen = set(descendants(child.pid)) if child.alive() else set()
        if child.alive():
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=grace)
        if child.alive():
            seen |= set(descendants(child.pid))
        own_group = os.getpgrp()
        groups = {child.pid}
        for pid in seen:
            with contextlib.suppress(OSError):
                groups.add(os.getpgid(pid))
        for group in groups - {own_group, 0}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        for pid in seen:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(timeout=grace)
        if child.proc.stdout is not None:
            with contextlib.suppress(OSError):
                child.proc.stdout.close()
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        for child in list(self.children):
            self.stop(child, grace=2.0)

    @contextlib.contextmanager
    def started(
        self,
        label: str,
        argv: Sequence[str],
        cwd: Path,
        env: dict[str, str] | None = None,
    ) -> Iterator[Child]:
        child = self.start(label, argv, cwd, env)
        try:
            yield child
        except BenchError as exc:
            raise BenchError(f"{label}: {exc}") from None
        finally:
            self.stop(child)


def wait_until(what: str, predicate: Callable[[], bool], timeout: float) -> None:
    """Poll a condition until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.005)


# ---------------------------------------------------------------------------------------------
# Repositories
# ---------------------------------------------------------------------------------------------


class Marker:
    """The file every test body appends ``time.time()`` to, first thing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def times(self) -> list[float]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        found: list[float] = []
        for line in text.split("\n")[:-1]:  # a line still being written has no newline yet
            with contextlib.suppress(ValueError):
                found.append(float(line))
        return found

    def after(self, t0: float) -> list[float]:
        return sorted(t for t in self.times() if t > t0)

    def first_after(self, t0: float, timeout: float = 30, child: Child | None = None) -> float:
        """The first test body that started after ``t0``, waiting for one."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.after(t0)
            if found:
                return found[0]
            if child is not None and not child.alive():
                raise BenchError(f"{child.label} ended before a test ran:\n{child.tail()}")
            if time.monotonic() > deadline:
                tail = f":\n{child.tail()}" if child is not None else ""
                raise BenchError(f"no test body started within {timeout:g}s of the save{tail}")
            time.sleep(0.002)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_package(root: Path, rel: str, marker: Marker, tests: int = 1, sleep: float = 0) -> Path:
    """A package as users lay it out: pyproject.toml, a module, tests/ that import it.  Returns
    the module's source file (``VALUE = 1``; the tests assert it)."""
    name = Path(rel).name
    module = name.replace("-", "_")
    package = root / rel
    write(
        package / "pyproject.toml",
        f'[project]\nname = "{name}"\nversion = "0.1.0"\ndependencies = []\n',
    )
    source = package / module / "__init__.py"
    write(source, "VALUE = 1\n")
    write(package / "tests" / "__init__.py", "")
    pause = f"    time.sleep({sleep!r})\n" if sleep else ""
    text = TEST_HEADER.format(module=module, marker=str(marker.path))
    text += "".join(TEST_BODY.format(module=module, index=i, sleep=pause) for i in range(tests))
    write(package / "tests" / f"test_{module}.py", text)
    return source


def make_git(root: Path, ignored: Sequence[str] = ()) -> None:
    """A git work tree (autotest asks git what it ignores), as nearly every repository is."""
    rules = ["__pycache__/", "*.py[co]", ".pytest_cache/", "*.egg-info/", *ignored]
    write(root / ".gitignore", "\n".join(rules) + "\n")
    if shutil.which("git"):
        subprocess.run(["git", "init", "-q", str(root)], check=True, capture_output=True)


def save(source: Path, value: int, tag: int) -> float:
    """Save the module in place, as an editor does; the time just before the write is T0."""
    text = f"VALUE = {value}  # save {tag}\n"
    t0 = time.time()
    source.write_text(text)
    return t0


def make_nested(base: Path, count: int, fanout: int = 10) -> int:
    """Exactly ``count`` directories below ``base`` (three levels deep, like installed
    distributions); returns the count."""
    made = 0
    top = 0
    while made < count:
        group = base / f"dist{top:04d}"
        group.mkdir(parents=True)
        made += 1
        for sub in range(fanout):
            if made >= count:
                break
            inner = group / f"sub{sub}"
            inner.mkdir()
            made += 1
            if made < count and sub % 3 == 0:
                (inner / "data").mkdir()
                made += 1
        top += 1
    return made


def clean_directories(root: Path) -> int:
    """Directories outside ignored trees, the root included: what a watcher needs to watch."""
    ignored_names = {".git", ".venv", "venv", "node_modules", "__pycache__", ".pytest_cache"}
    count = 0
    stack = [root]
    while stack:
        directory = stack.pop()
        count += 1
        for entry in os.scandir(directory):
            if not entry.is_dir(follow_symlinks=False):
                continue
            if entry.name in ignored_names or entry.name.endswith(".egg-info"):
                continue
            if os.path.isfile(os.path.join(entry.path, "pyvenv.cfg")):
                continue
            stack.append(Path(entry.path))
    return count


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    """A limit on autotest's figure divided by the baseline's, or on the figure itself."""

    limit: float
    on_ratio: bool
    strict: bool = False
    unit: str = "x"

    def text(self) -> str:
        sign = "<" if self.strict else "<="
        if self.on_ratio:
            return f"{sign} {self.limit:.2f}x"
        return f"{sign} {self.limit:g}{self.unit}"

    def met(self, value: float, baseline: float) -> bool:
        figure = value / baseline if self.on_ratio else value
        return figure < self.limit if self.strict else figure <= self.limit


@dataclass
class Row:
    number: str
    measure: str
    value: str = "-"
    baseline: str = "-"
    ratio: str = "-"
    goal: str = "-"
    met: str = "-"


def seconds(x: float) -> str:
    return f"{x:.3f} s"


def median(samples: Sequence[float]) -> float:
    if not samples:
        raise BenchError("no samples")
    return float(statistics.median(samples))


def measured(
    number: str,
    measure: str,
    values: Sequence[float],
    baselines: Sequence[float],
    goal: Goal | None,
    show: Callable[[float], str] = seconds,
) -> Row:
    """A row of medians; with no goal it is there for comparison only."""
    value, baseline = median(values), median(baselines)
    ratio = f"{value / baseline:.2f}x" if baseline else "-"
    return Row(
        number,
        measure,
        show(value),
        show(baseline),
        ratio,
        goal.text() if goal else "-",
        "-" if goal is None else "yes" if goal.met(value, baseline) else "**no**",
    )


def skipped(number: str, measure: str, reason: str) -> Row:
    return Row(number, measure, f"skipped: {reason}")


def failed(number: str, measure: str, error: str) -> Row:
    first = error.strip().splitlines()[0] if error.strip() else "error"
    return Row(number, measure, f"error: {first}", met="**no**")


def markdown(rows: Sequence[Row]) -> str:
    header = ["#", "measure (baseline)", "autotest", "baseline", "ratio", "goal", "met"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for r in rows:
        cells = [r.number, r.measure, r.value, r.baseline, r.ratio, r.goal, r.met]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------


@dataclass
class Bench:
    tmp: Path
    trials: int
    quick: bool
    procs: Processes = field(default_factory=Processes)
    notes: list[str] = field(default_factory=list)

    def autotest(
        self, root: Path, *args: str, env: dict[str, str] | None = None
    ) -> contextlib.AbstractContextManager[Child]:
        argv = [PYTHON, str(AUTOTEST), "--root", str(root), *args]
        label = " ".join(["autotest", *args]) if args else "autotest"
        return self.procs.started(label, argv, root, env)

    def cold_nose(
        self,
        package: Path,
        marker: Marker,
        env: dict[str, str] | None = None,
        runner: str = "nose",
    ) -> float:
        """A cold ``python -m nose`` (or ``runner``) in the package: launch -> its first test
        body."""
        t0 = time.time()
        argv = [PYTHON, "-m", runner]
        child = self.procs.run(f"python -m {runner}", argv, package, timeout=60, env=env)
        if child.proc.returncode != 0:
            raise BenchError(f"{runner} failed in {package}:\n{child.tail()}")
        return marker.first_after(t0, timeout=1) - t0

    def note_judgement(self, child: Child, what: str) -> None:
        if child.out is not None and "forked runs were no faster" in child.out.text():
            self.notes.append(f"{what}: autotest judged forked runs no faster and went cold.")


def save_to_first_body(bench: Bench) -> list[Row]:
    """1. Latency of a save to the first test body, warm and --no-warm, against cold nose."""
    root = bench.tmp / "latency"
    marker = Marker(bench.tmp / "markers" / "latency")
    sources = {n: make_package(root, n, marker, tests=3) for n in ("alpha", "beta", "gamma")}
    make_git(root)
    source = sources["beta"]
    say("1: baseline, cold python -m nose in the package")
    bench.cold_nose(root / "beta", marker)  # warm the disk cache and bytecode
    baselines = []
    for trial in range(bench.trials):
        source.write_text(f"VALUE = 1  # baseline {trial}\n")  # as if just saved
        baselines.append(bench.cold_nose(root / "beta", marker))
    rows = []
    # The goal is the default's; --no-warm adds the debounce to a cold start, for comparison.
    for number, mode, args, goal in (
        ("1a", "default (warm runner)", (), Goal(1.0, True, True)),
        ("1b", "--no-warm", ("--no-warm",), None),
    ):
        measure = f"save -> first test body, {mode} (cold `python -m nose` launch -> test)"
        say(f"{number}: autotest {' '.join(args)} watching, {bench.trials} saves")
        try:
            with bench.autotest(root, *args) as child:
                assert child.out is not None
                child.out.wait_for(SUMMARY, timeout=60)
                latencies, headers = [], []
                for trial in range(bench.trials):
                    start = child.out.count()
                    t0 = save(source, 1, trial)
                    latencies.append(marker.first_after(t0, child=child) - t0)
                    _, at, _ = child.out.wait_for("^changed: ", start, timeout=60)
                    headers.append(at - t0)
                    child.out.wait_for(SUMMARY, start, timeout=60)
                bench.note_judgement(child, number)
            bench.notes.append(
                f"{number}: of the {median(latencies):.3f} s, save -> the cycle's `changed:` "
                f"line took {median(headers):.3f} s (debounce 0.05 s, git check-ignore, "
                "ordering); the rest is starting the run up to its first test body."
            )
            rows.append(measured(number, measure, latencies, baselines, goal))
        except BenchError as exc:
            rows.append(failed(number, measure, str(exc)))
            say(str(exc))
    return rows


def first_failure(bench: Bench) -> list[Row]:
    """2. A breaking save in the last of 8 slow packages, until its FAILED verdict."""
    measure = (
        "breaking save in the last of 8 packages -> its FAILED line (8 cold nose runs in order)"
    )
    root = bench.tmp / "failure"
    marker = Marker(bench.tmp / "markers" / "failure")
    names = [f"pkg{i}" for i in range(1, 9)]
    sources = {n: make_package(root, n, marker, tests=1, sleep=0.4) for n in names}
    make_git(root)
    last = names[-1]
    try:
        say("2: baseline, the 8 packages in order with cold nose until the failure")
        for name in names:  # warm-up: disk cache and bytecode
            bench.procs.run("nose", [PYTHON, "-m", "nose"], root / name, timeout=60)
        baselines = []
        for trial in range(bench.trials):
            sources[last].write_text(f"VALUE = 2  # baseline {trial}\n")
            t0 = time.monotonic()
            for name in names:
                child = bench.procs.run("nose", [PYTHON, "-m", "nose"], root / name, timeout=60)
                if child.proc.returncode != 0:
                    baselines.append(time.monotonic() - t0)
                    if name != last:
                        raise BenchError(f"{name} failed, not {last}:\n{child.tail()}")
                    break
            else:
                raise BenchError(f"the broken {last} passed under nose")
        sources[last].write_text("VALUE = 1\n")
        say(f"2: autotest watching, {bench.trials} breaking saves")
        with bench.autotest(root) as child:
            assert child.out is not None
            child.out.wait_for(SUMMARY, timeout=120)
            times = []
            verdict = re.compile(rf"^{last}\s+FAILED")
            for trial in range(bench.trials):
                start = child.out.count()
                t0 = save(sources[last], 2, trial)
                _, at, _ = child.out.wait_for(verdict, start, timeout=60)
                times.append(at - t0)
                child.out.wait_for(SUMMARY, start, timeout=60)
                start = child.out.count()
                save(sources[last], 1, trial)
                child.out.wait_for(r"^all \d+ packages passed", start, timeout=120)
            bench.note_judgement(child, "2")
        return [measured("2", measure, times, baselines, Goal(0.35, True))]
    except BenchError as exc:
        say(str(exc))
        return [failed("2", measure, str(exc))]


def parallel_jobs(bench: Bench) -> list[Row]:
    """3. Wall time of an all-green --once with -j 2 against -j 1, 4 packages of 1 s."""
    measure = "all green, 4 packages of 1 s, `--once -j 2` wall time (`--once -j 1`)"
    root = bench.tmp / "jobs"
    marker = Marker(bench.tmp / "markers" / "jobs")
    for i in range(1, 5):
        make_package(root, f"unit{i}", marker, tests=1, sleep=1.0)
    make_git(root)
    argv = [PYTHON, str(AUTOTEST), "--root", str(root), "--once"]

    def once(jobs: int) -> float:
        t0 = time.monotonic()
        child = bench.procs.run(f"autotest --once -j {jobs}", [*argv, "-j", str(jobs)], root)
        took = time.monotonic() - t0
        if child.proc.returncode != 0:
            raise BenchError(f"autotest --once -j {jobs} exited {child.proc.returncode}")
        return took

    try:
        say(f"3: autotest --once, -j 1 and -j 2 alternately, {bench.trials} each")
        once(2)  # warm-up
        one, two = [], []
        for _ in range(bench.trials):
            one.append(once(1))
            two.append(once(2))
        return [measured("3", measure, two, one, Goal(0.65, True))]
    except BenchError as exc:
        say(str(exc))
        return [failed("3", measure, str(exc))]


def idle_cpu(bench: Bench) -> list[Row]:
    """4. CPU the idle watcher spends per 10 s, against a bare watchdog Observer."""
    window = 5.0 if bench.quick else 10.0
    scaled = "" if window == 10.0 else f", {window:g} s windows scaled"
    measure = f"idle CPU per 10 s after the first cycle{scaled} (bare watchdog Observer)"
    root = bench.tmp / "latency"  # the repository of scenario 1
    try:
        say(f"4: idle CPU, {bench.trials} windows of {window:g} s")
        bare_argv = [PYTHON, "-c", BARE_OBSERVER, str(root)]
        with contextlib.ExitStack() as stack:
            child = stack.enter_context(bench.autotest(root))
            bare = stack.enter_context(bench.procs.started("bare observer", bare_argv, root))
            assert child.out is not None and bare.out is not None
            child.out.wait_for(SUMMARY, timeout=60)
            bare.out.wait_for("^ready$", timeout=60)
            mine, helpers, floor, fine, fine_floor = [], [], [], [], []
            for _ in range(bench.trials):
                kids = descendants(child.pid)
                before = (cpu_seconds(child.pid), sum(map(cpu_seconds, kids)))
                base_before = cpu_seconds(bare.pid)
                precise = (run_seconds(child.pid), run_seconds(bare.pid))
                time.sleep(window)  # the measurement window itself, not a wait for the watcher
                scale = 10 / window
                mine.append((cpu_seconds(child.pid) - before[0]) * scale)
                helpers.append((sum(map(cpu_seconds, kids)) - before[1]) * scale)
                floor.append((cpu_seconds(bare.pid) - base_before) * scale)
                fine.append((run_seconds(child.pid) - precise[0]) * scale)
                fine_floor.append((run_seconds(bare.pid) - precise[1]) * scale)
            bench.notes.append(
                f"4: utime+stime count whole clock ticks ({1 / CLOCK_TICKS:.3f} s); schedstat "
                f"(ns) gives autotest {median(fine) * 1000:.2f} ms per 10 s idle, the bare "
                f"Observer {median(fine_floor) * 1000:.2f} ms; autotest's children (the warm "
                f"runner) used {median(helpers):.3f} s besides."
            )
        return [measured("4", measure, mine, floor, Goal(0.05, False, True, " s"))]
    except BenchError as exc:
        say(str(exc))
        return [failed("4", measure, str(exc))]


def big_tree(bench: Bench) -> list[Row]:
    """5. Watches, start-up and memory on a tree with thousands of ignored directories."""
    total = 2000 if bench.quick else 6000
    root = bench.tmp / "bigtree"
    marker = Marker(bench.tmp / "markers" / "bigtree")
    names = ["api", "core", "models", "utils", "web", "workers"]
    for name in names:
        make_package(root, name, marker, tests=2)
        for sub in ("handlers", "schemas"):  # not "io": a stdlib name
            write(root / name / name / sub / "__init__.py", "")
        write(root / name / "docs" / "index.md", "docs\n")
    # .venv (a name ignored anyway), a virtualenv known only by its pyvenv.cfg, node_modules at
    # the root and inside a package.
    shares = {".venv": 0.4, "tools/py-env": 0.1, "node_modules": 0.3, "web/node_modules": 0.2}
    made = 0
    for index, (rel, share) in enumerate(shares.items()):
        count = total - made if index == len(shares) - 1 else int(total * share)
        base = root / rel
        if base.name != "node_modules":
            write(base / "pyvenv.cfg", "home = /usr/bin\ninclude-system-site-packages = false\n")
        made += make_nested(base / ("lib" if base.name != "node_modules" else ""), count)
    if made != total:
        raise BenchError(f"made {made} ignored directories, not {total}")
    make_git(root, ["node_modules/", ".venv/"])
    clean = clean_directories(root)
    label = f"{total:,} ignored dirs"
    rows: list[Row] = []
    watch_measure = f"{label}: inotify watches held (directories outside ignored trees: {clean})"
    start_measure = f"{label}: process start -> first test body (cold nose launch -> test)"
    rss_measure = f"{label}: peak RSS of the watcher (bare recursive watchdog Observer)"
    try:
        say("5: baselines: cold nose in the first package, a bare recursive Observer")
        first = root / names[0]
        bench.cold_nose(first, marker)
        nose_times = [bench.cold_nose(first, marker) for _ in range(bench.trials)]
        bare_rss, bare_watches = [], []
        for _ in range(bench.trials):
            argv = [PYTHON, "-c", BARE_OBSERVER, str(root)]
            with bench.procs.started("bare observer", argv, root) as bare:
                assert bare.out is not None
                bare.out.wait_for("^ready$", timeout=120)
                bare_rss.append(peak_rss_mb(bare.pid))
                bare_watches.append(inotify_watches(bare.pid) or 0)
        say(f"5: autotest started {bench.trials} times on the tree")
        watches, held, startup, rss, helper_rss = [], [], [], [], []
        for _ in range(bench.trials):
            t0 = time.time()
            with bench.autotest(root) as child:
                assert child.out is not None
                _, _, found = child.out.wait_for(WATCHING, timeout=60)
                how = re.match(r"inotify, (\d+) watches", found.group("how"))
                if how is None:
                    raise BenchError(f"autotest watches by {found.group('how')}, not inotify")
                watches.append(float(how.group(1)))
                startup.append(marker.first_after(t0, timeout=60, child=child) - t0)
                child.out.wait_for(SUMMARY, timeout=120)
                held.append(inotify_watches(child.pid) or 0)
                rss.append(peak_rss_mb(child.pid))
                helper_rss.append(0.0)
                for pid in descendants(child.pid):
                    with contextlib.suppress(BenchError):
                        helper_rss[-1] += peak_rss_mb(pid)
        rows.append(
            measured(
                "5a",
                watch_measure,
                watches,
                [float(clean)] * len(watches),
                Goal(2.0, True),
                show=lambda x: f"{x:.0f}",
            )
        )
        rows.append(measured("5b", start_measure, startup, nose_times, Goal(3.0, False, unit=" s")))
        rows.append(
            measured(
                "5c",
                rss_measure,
                rss,
                bare_rss,
                Goal(60.0, False, True, " MB"),
                show=lambda x: f"{x:.1f} MB",
            )
        )
        bench.notes.append(
            f"5: inotify watches counted in /proc/PID/fdinfo after the first cycle: autotest "
            f"{median(held):.0f} (its start-up line says {median(watches):.0f}); the bare "
            f"recursive Observer {median(bare_watches):.0f}. Peak RSS of autotest's warm "
            f"runner (a process of its own, not in 5c): {median(helper_rss):.1f} MB."
        )
    except BenchError as exc:
        say(str(exc))
        for number, measure in (("5a", watch_measure), ("5b", start_measure), ("5c", rss_measure)):
            if not any(r.number == number for r in rows):
                rows.append(failed(number, measure, str(exc)))
    return rows


MONOREPO_SOURCE = '''"""Module {index} of {module}: generated, shaped like hand-written code."""

from __future__ import annotations

import json
import os
from pathlib import Path

{sibling}


class Thing{index}:
    """A thing."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, object]:
        with open(os.path.join(self.path, "x.json")) as f:
            return dict(json.load(f))


def helper_{index}(value: int) -> int:
    from json import dumps  # a late import, as real code has

    return len(dumps(value)) + {index}
'''


def other_watchers(bench: Bench) -> list[Row]:
    """6. pytest-watcher and pytest-watch against autotest --runner pytest, one package."""
    tools: tuple[tuple[str, str, str, list[str]], ...] = (
        ("6a", "pytest-watcher", "pytest_watcher", [".", "--now"]),
        ("6b", "pytest-watch", "pytest_watch", []),
    )

    def measure_of(tool: str) -> str:
        return f"save -> first test body, `autotest --runner pytest` ({tool})"

    if importlib.util.find_spec("pytest") is None:
        return [skipped(n, measure_of(t), "pytest is not installed") for n, t, _, _ in tools]
    available = [t for t in tools if importlib.util.find_spec(t[2]) is not None]
    rows = {n: skipped(n, measure_of(t), f"{t} is not installed") for n, t, _, _ in tools}
    if not available:
        return list(rows.values())
    root = bench.tmp / "single"
    marker = Marker(bench.tmp / "markers" / "single")
    tests = 3
    source = make_package(root, "app", marker, tests=tests)
    make_git(root)
    package = root / "app"
    tag = iter(range(1_000_000))
    runs: dict[str, float] = {}

    def saves(child: Child, settle: Callable[[int], None], name: str) -> list[float]:
        """Save ``trials`` times; ``settle(start)`` waits until the run is over."""
        latencies = []
        for _ in range(bench.trials):
            start = child.out.count() if child.out is not None else 0
            t0 = save(source, 1, next(tag))
            latencies.append(marker.first_after(t0, child=child) - t0)
            settle(start)
            runs[name] = runs.get(name, 0) + len(marker.after(t0)) / tests / bench.trials
        return latencies

    try:
        say(f"6: autotest --runner pytest watching, {bench.trials} saves")
        with bench.autotest(root, "--runner", "pytest") as child:
            assert child.out is not None
            out = child.out
            out.wait_for(SUMMARY, timeout=60)

            def cycle_over(start: int) -> None:
                out.wait_for(SUMMARY, start, timeout=60)

            mine = saves(child, cycle_over, "autotest")
            bench.note_judgement(child, "6")
    except BenchError as exc:
        say(str(exc))
        return [failed(n, measure_of(t), str(exc)) for n, t, _, _ in tools]

    env = bench_env(PATH=os.pathsep.join([os.path.dirname(PYTHON), os.environ.get("PATH", "")]))
    for number, tool, module, args in available:
        if module == "pytest_watcher" and shutil.which("pytest", path=env["PATH"]) is None:
            rows[number] = skipped(number, measure_of(tool), "no `pytest` command on PATH")
            continue
        if module == "pytest_watcher" and not watchdog_matches_names():
            args = [*args, "--patterns", "*.py,**/*.py"]
            bench.notes.append(
                f"{number}: pytest-watcher's default pattern `*.py` matches no file below the "
                "top directory under watchdog 7 (it matches whole paths since watchdog PR "
                "#1101), so it would never rerun for a save in app/app/; the bench passes "
                "`--patterns '*.py,**/*.py'`."
            )
        say(f"6: {tool} watching, {bench.trials} saves")
        try:
            t0 = time.time()
            argv = [PYTHON, "-m", module, *args]
            with bench.procs.started(tool, argv, package, env) as child:

                def idle(_: int, pid: int = child.pid, name: str = tool) -> None:
                    wait_until(f"{name}'s test run to end", lambda: not descendants(pid), 60)

                marker.first_after(t0, timeout=60, child=child)
                idle(0)
                theirs = saves(child, idle, tool)
            rows[number] = measured(number, measure_of(tool), mine, theirs, Goal(1.0, True))
        except BenchError as exc:
            say(str(exc))
            rows[number] = skipped(
                number, measure_of(tool), f"it did not run: {exc}".split("\n")[0]
            )
    extra = [f"{name} {count:.1f}" for name, count in runs.items()]
    bench.notes.append(f"6: test runs per save: {', '.join(extra)}.")
    return [rows[n] for n, _, _, _ in tools]


# ---------------------------------------------------------------------------------------------
# Monorepo scale: many packages, slow third-party imports, a large tree
# ---------------------------------------------------------------------------------------------

TIMED_TEST = """\
import time

with open({timeline!r}, "a") as f: f.write("{name} import " + repr(time.time()) + "\\n")

from {module} import VALUE


def test_{module}():
    with open({marker!r}, "a") as f: f.write(repr(time.time()) + "\\n")
    with open({timeline!r}, "a") as f: f.write("{name} body " + repr(time.time()) + "\\n")
    assert VALUE == 1
"""

VERDICT_LINE = re.compile(r"^(?P<name>\S+)\s+ok\s+\d")


def make_timed_package(root: Path, name: str, marker: Marker, timeline: Path) -> Path:
    """A package of one quick test that notes when its test module is imported and when its
    test body runs, for the per-package breakdown."""
    source = make_package(root, name, marker)
    text = TIMED_TEST.format(
        timeline=str(timeline), name=name, module=name, marker=str(marker.path)
    )
    write(root / name / "tests" / f"test_{name}.py", text)
    return source


def breakdown(timeline: Path, verdicts: dict[str, float], order: Sequence[str]) -> str:
    """Per package, medians of: previous verdict line -> test module imported (starting the
    run: ordering, fork or exec, the runner's start-up), -> test body (collection), -> its own
    verdict line (the test, the process's end, autotest noticing it and reporting)."""
    events: dict[tuple[str, str], float] = {}
    for line in timeline.read_text().splitlines():
        name, kind, at = line.split()
        events.setdefault((name, kind), float(at))
    start, collect, end = [], [], []
    for previous, name in zip(order, order[1:]):
        with contextlib.suppress(KeyError):
            start.append(events[(name, "import")] - verdicts[previous])
            collect.append(events[(name, "body")] - events[(name, "import")])
            end.append(verdicts[name] - events[(name, "body")])
    if not start:
        return "no breakdown (no complete package)"
    return (
        f"per package: start {median(start) * 1000:.1f} ms (previous verdict -> test module "
        f"imported), collection {median(collect) * 1000:.1f} ms (-> test body), end "
        f"{median(end) * 1000:.1f} ms (-> its verdict line)"
    )


def many_packages(bench: Bench) -> list[Row]:
    """7. 40 packages of one quick test: a save -> every test body, against 40 cold nose runs."""
    count = 40
    measure = f"{count} packages: save -> all test bodies ({count} cold nose runs in a row)"
    root = bench.tmp / "many"
    marker = Marker(bench.tmp / "markers" / "many")
    timeline = bench.tmp / "markers" / "many-timeline"
    names = [f"pkg{i:02d}" for i in range(1, count + 1)]
    sources = {n: make_timed_package(root, n, marker, timeline) for n in names}
    make_git(root)
    try:
        say(f"7: baseline, {count} cold nose runs in a row")
        for name in names:  # warm-up: disk cache and bytecode
            bench.procs.run("nose", [PYTHON, "-m", "nose"], root / name, timeout=60)
        baselines = []
        for _ in range(bench.trials):
            t0 = time.time()
            for name in names:
                bench.procs.run("nose", [PYTHON, "-m", "nose"], root / name, timeout=60)
            baselines.append(max(marker.after(t0)) - t0)
        say(f"7: autotest watching, {bench.trials} saves (after 2 warm-up saves)")
        with bench.autotest(root) as child:
            assert child.out is not None
            child.out.wait_for(SUMMARY, timeout=120)
            times, details = [], []
            for trial in range(bench.trials + 2):
                start = child.out.count()
                timeline.write_text("")
                t0 = save(sources[names[0]], 1, trial)

                def all_ran(since: float = t0) -> bool:
                    return len(marker.after(since)) >= count

                wait_until("every test body", all_ran, 120)
                if trial >= 2:
                    times.append(max(marker.after(t0)) - t0)
                child.out.wait_for(SUMMARY, start, timeout=120)
                lines = child.out.lines[start:]
                verdicts: dict[str, float] = {}
                for at, line in lines:
                    found = VERDICT_LINE.match(line)
                    if found:
                        verdicts[found["name"]] = at
                order = sorted(verdicts, key=verdicts.__getitem__)
                if trial >= 2:
                    details.append(breakdown(timeline, verdicts, order))
            bench.note_judgement(child, "7")
        bench.notes.append(f"7: {details[len(details) // 2]}.")
        return [measured("7", measure, times, baselines, Goal(0.15, True))]
    except BenchError as exc:
        say(str(exc))
        return [failed("7", measure, str(exc))]


SLOW_LIBRARY = """\
import time

time.sleep({seconds!r})  # the import work of a large library, outside the repository
READY = True
"""

IMPORTING_TEST = """\
import time

from {library} import {name}

from {module} import VALUE

MARKER = {marker!r}


def test_{module}():
    with open(MARKER, "a") as f: f.write(repr(time.time()) + "\\n")
    assert VALUE == 1 and {name}
"""


def importing_package(
    bench: Bench, name: str, module: str, library: str, attribute: str
) -> tuple[Path, Path, Marker]:
    """A git repository ``name`` of one package, ``module``, whose test imports ``attribute``
    from ``library``: the package, its source to save, and the marker its test body writes."""
    root = bench.tmp / name
    marker = Marker(bench.tmp / "markers" / name)
    source = make_package(root, module, marker)
    text = IMPORTING_TEST.format(
        library=library, name=attribute, module=module, marker=str(marker.path)
    )
    write(root / module / "tests" / f"test_{module}.py", text)
    make_git(root)
    return root / module, source, marker


PACE = 2.0  # a person's pace: the next save comes this long after the previous verdict


def warmed_saves(
    bench: Bench,
    child: Child,
    source: Path,
    marker: Marker,
    warmups: int = 2,
    pace: float = PACE,
    headers: list[float] | None = None,
) -> list[float]:
    """save -> first test body, ``trials`` times, after ``warmups`` saves from which autotest
    learns what to import ahead (the first cycle runs cold, the next one forked); each save
    comes ``pace`` seconds after the previous cycle's summary line.  ``headers`` gets each
    measured save's time to the cycle's ``changed:`` line."""
    assert child.out is not None
    child.out.wait_for(SUMMARY, timeout=120)
    latencies = []
    for trial in range(warmups + bench.trials):
        time.sleep(pace)  # the person reading the verdict: the scenario, not a wait for an event
        start = child.out.count()
        t0 = save(source, 1, trial)
        latency = marker.first_after(t0, timeout=60, child=child) - t0
        if trial >= warmups:
            latencies.append(latency)
            if headers is not None:
                headers.append(child.out.wait_for("^changed: ", start, timeout=60)[1] - t0)
        child.out.wait_for(SUMMARY, start, timeout=60)
    return latencies


def preloaded_note(child: Child, number: str) -> str:
    """What autotest -v said last of its warm interpreter: what it imports ahead, and whether it
    keeps a spare, with what one takes."""
    text = child.out.text() if child.out is not None else ""
    lines = [line.strip() for line in text.splitlines()]
    shown = [
        [line for line in lines if what in line][-1:]
        for what in ("imports ahead:", "spare interpreter")
    ]
    said = "; ".join(f"`{line}`" for found in shown for line in found)
    return f"{number}: autotest -v said: {said}." if said else ""


def slow_import(bench: Bench) -> list[Row]:
    """8. A package whose tests import a slow library installed outside the repository: saves
    at a person's pace (8a), at once after each verdict (8b, forked from the spare), and at
    once with PYTHONHASHSEED set (8c, one warm interpreter for every cycle)."""
    seconds_ = 0.7
    measure = (
        f"save -> first test body, tests import a library taking {seconds_:g} s to import, "
        "{pace} (cold `python -m nose` launch -> test)"
    )
    measures = {
        "8a": measure.format(pace=f"saves {PACE:g} s after each verdict"),
        "8b": measure.format(pace="saves at once after each verdict"),
        "8c": measure.format(pace="saves at once, `PYTHONHASHSEED=0`"),
    }
    site = bench.tmp / "site"
    write(site / "slowlib.py", SLOW_LIBRARY.format(seconds=seconds_))
    package, source, marker = importing_package(bench, "slowimport", "app", "slowlib", "READY")
    root = package.parent
    env = bench_env(PYTHONPATH=str(site))
    try:
        say("8: baseline, cold python -m nose")
        bench.cold_nose(package, marker, env)
        baselines = [bench.cold_nose(package, marker, env) for _ in range(bench.trials)]
        say(f"8: autotest -v watching, {bench.trials} saves (after 2 warm-up saves) at each pace")
        with bench.autotest(root, "-v", env=env) as child:
            paced = warmed_saves(bench, child, source, marker)
            at_once = warmed_saves(bench, child, source, marker, warmups=0, pace=0)
            bench.note_judgement(child, "8")
            bench.notes.append(preloaded_note(child, "8"))
        say(f"8: autotest with PYTHONHASHSEED=0 watching, {bench.trials} saves at once")
        with bench.autotest(root, env={**env, "PYTHONHASHSEED": "0"}) as child:
            fixed_seed = warmed_saves(bench, child, source, marker, pace=0)
        return [
            measured("8a", measures["8a"], paced, baselines, Goal(0.25, True)),
            measured("8b", measures["8b"], at_once, baselines, Goal(0.3, True)),
            measured("8c", measures["8c"], fixed_seed, baselines, None),
        ]
    except BenchError as exc:
        say(str(exc))
        return [failed(number, text, str(exc)) for number, text in measures.items()]


def pydantic_package(bench: Bench) -> list[Row]:
    """9. A package whose tests import pydantic, under pytest: against a cold pytest start and
    against pytest-watcher."""
    measure = (
        "pydantic tests: save -> first test body, `--runner pytest`, "
        f"saves {PACE:g} s after each verdict"
    )
    cold_measure = f"{measure} (cold pytest)"
    watcher_measure = f"{measure} (pytest-watcher)"
    if importlib.util.find_spec("pydantic") is None or importlib.util.find_spec("pytest") is None:
        reason = "pydantic or pytest is not installed (bench/requirements.txt)"
        return [skipped("9a", cold_measure, reason), skipped("9b", watcher_measure, reason)]
    package, source, marker = importing_package(
        bench, "pydantic", "models", "pydantic", "BaseModel"
    )
    root = package.parent
    rows: list[Row] = []
    try:
        say("9: baseline, cold python -m pytest")
        bench.cold_nose(package, marker, runner="pytest")
        baselines = [bench.cold_nose(package, marker, runner="pytest") for _ in range(bench.trials)]
        say(f"9: autotest --runner pytest -v watching, {bench.trials} saves")
        with bench.autotest(root, "--runner", "pytest", "-v") as child:
            headers: list[float] = []
            mine = warmed_saves(bench, child, source, marker, headers=headers)
            bench.note_judgement(child, "9")
            bench.notes.append(preloaded_note(child, "9"))
        bench.notes.append(
            f"9: of the {median(mine):.3f} s, save -> the cycle's `changed:` line took "
            f"{median(headers):.3f} s; the rest, {median(mine) - median(headers):.3f} s, is "
            "pytest's own start in the forked run (configuration, plugins, collection)."
        )
        rows.append(measured("9a", cold_measure, mine, baselines, None))
    except BenchError as exc:
        say(str(exc))
        return [failed("9a", cold_measure, str(exc)), failed("9b", watcher_measure, str(exc))]
    if importlib.util.find_spec("pytest_watcher") is None:
        return [*rows, skipped("9b", watcher_measure, "pytest-watcher is not installed")]
    env = bench_env(PATH=os.pathsep.join([os.path.dirname(PYTHON), os.environ.get("PATH", "")]))
    args = ["."] if watchdog_matches_names() else [".", "--patterns", "*.py,**/*.py"]
    try:
        say(f"9: pytest-watcher watching, {bench.trials} saves")
        t0 = time.time()
        argv = [PYTHON, "-m", "pytest_watcher", *args, "--now"]
        theirs = []
        with bench.procs.started("pytest-watcher", argv, package, env) as child:
            marker.first_after(t0, timeout=60, child=child)
            idle = lambda: not descendants(child.pid)  # noqa: E731
            wait_until("pytest-watcher's run to end", idle, 60)
            for trial in range(bench.trials):
                time.sleep(PACE)  # as autotest's saves came
                t0 = save(source, 1, 100 + trial)
                theirs.append(marker.first_after(t0, child=child) - t0)
                wait_until("pytest-watcher's run to end", idle, 60)
        rows.append(measured("9b", watcher_measure, mine, theirs, Goal(1.0, True)))
    except BenchError as exc:
        say(str(exc))
        rows.append(skipped("9b", watcher_measure, f"it did not run: {exc}".split("\n")[0]))
    return rows


def monorepo_startup(bench: Bench) -> list[Row]:
    """10. Start-up and memory on a generated monorepo of 100 packages of 200 files each."""
    count, files = 100, 200
    root = bench.tmp / "monorepo"
    marker = Marker(bench.tmp / "markers" / "monorepo")
    for index in range(count):
        rel = f"{'libs' if index < count // 2 else 'exporter'}/pkg{index:02d}"
        make_package(root, rel, marker)
        below = f"pkg{index - 1:02d}" if index else "json"
        for number in range(files):
            sibling = f"from {below} import VALUE as BELOW_{number}"
            write(
                root / rel / f"pkg{index:02d}" / f"mod{number:03d}.py",
                MONOREPO_SOURCE.format(index=number, module=f"pkg{index:02d}", sibling=sibling),
            )
    make_git(root)
    label = f"{count} packages of {files} files"
    start_measure = f"{label}: process start -> first test body (cold nose launch -> test)"
    rss_measure = f"{label}: peak RSS of autotest (bare recursive watchdog Observer)"
    try:
        say("10: baselines: cold nose in the first package, a bare recursive Observer")
        first = root / "libs" / "pkg00"
        bench.cold_nose(first, marker)
        nose_times = [bench.cold_nose(first, marker) for _ in range(bench.trials)]
        bare_rss = []
        for _ in range(bench.trials):
            argv = [PYTHON, "-c", BARE_OBSERVER, str(root)]
            with bench.procs.started("bare observer", argv, root) as bare:
                assert bare.out is not None
                bare.out.wait_for("^ready$", timeout=120)
                bare_rss.append(peak_rss_mb(bare.pid))
        say(f"10: autotest started {bench.trials} times on the tree")
        startup, rss, watching = [], [], []
        for _ in range(bench.trials):
            t0 = time.time()
            with bench.autotest(root) as child:
                assert child.out is not None
                _, at, _ = child.out.wait_for(WATCHING, timeout=120)
                watching.append(at - t0)
                startup.append(marker.first_after(t0, timeout=120, child=child) - t0)
                child.out.wait_for(SUMMARY, timeout=300)
                rss.append(peak_rss_mb(child.pid))
        bench.notes.append(
            f"10: the first start on the tree, before autotest had kept its import scan, took "
            f"{startup[0]:.3f} s (reading all {count * files:,} files); later starts read the "
            "scan back and stat each file."
        )
        bench.notes.append(
            f"10: process start -> the `watching` line took {median(watching):.3f} s "
            "(discovery, the graph, the watches)."
        )
        return [
            measured("10a", start_measure, startup, nose_times, Goal(1.0, False, unit=" s")),
            measured(
                "10b",
                rss_measure,
                rss,
                bare_rss,
                Goal(60.0, False, unit=" MB"),
                show=lambda x: f"{x:.1f} MB",
            ),
        ]
    except BenchError as exc:
        say(str(exc))
        return [failed("10a", start_measure, str(exc)), failed("10b", rss_measure, str(exc))]


STAGED_TEST = """\
import time

from big.m{index:02d} import VALUE


def test_m{index:02d}():
    time.sleep({sleep!r})
    assert VALUE == {index}
"""


def staged_package(root: Path, count: int, sleep: float) -> Path:
    """A package of ``count`` modules, each with the one test module that imports it."""
    package = root / "big"
    write(package / "pyproject.toml", '[project]\nname = "big"\nversion = "0.1.0"\n')
    write(package / "big" / "__init__.py", "")
    write(package / "tests" / "__init__.py", "")
    for index in range(count):
        write(package / "big" / f"m{index:02d}.py", f"VALUE = {index}\n")
        write(
            package / "tests" / f"test_m{index:02d}.py",
            STAGED_TEST.format(index=index, sleep=sleep),
        )
    return package


def staged_saves(bench: Bench, child: Child, source: Path, index: int) -> tuple[list[float], ...]:
    """Per trial: a breaking save -> the FAILED line, a mending save, then a save that breaks
    nothing -> the ok line."""
    assert child.out is not None
    child.out.wait_for(SUMMARY, timeout=120)
    breaking, harmless = [], []
    for trial in range(bench.trials):
        start = child.out.count()
        t0 = time.time()
        source.write_text(f"VALUE = {index + 100}  # save {trial}\n")
        _, at, _ = child.out.wait_for(r"^big\s+FAILED", start, timeout=120)
        breaking.append(at - t0)
        child.out.wait_for(SUMMARY, start, timeout=120)
        start = child.out.count()
        source.write_text(f"VALUE = {index}  # mended {trial}\n")
        child.out.wait_for(r"^the 1 package passed", start, timeout=120)
        start = child.out.count()
        t0 = time.time()
        source.write_text(f"VALUE = {index}  # harmless {trial}\n")
        _, at, _ = child.out.wait_for(r"^big\s+ok", start, timeout=120)
        harmless.append(at - t0)
        child.out.wait_for(SUMMARY, start, timeout=120)
    return breaking, harmless


def staged_runs(bench: Bench) -> list[Row]:
    """11. Inside a package of 30 test modules of 0.15 s each: a breaking save to the module
    only the 24th test module imports, and a save that breaks nothing, staged against the same
    watcher running the package whole (--no-stages)."""
    count, sleep, index = 30, 0.15, 23
    label = f"{count} test modules of {sleep:g} s in one package"
    measures = {
        "11a": f"{label}: breaking save to `big/m{index}.py` -> FAILED (the same, --no-stages)",
        "11b": f"{label}: save that breaks nothing -> ok (the same, --no-stages)",
    }
    root = bench.tmp / "staged"
    package = staged_package(root, count, sleep)
    make_git(root)
    source = package / "big" / f"m{index:02d}.py"
    try:
        say(f"11: autotest --no-stages watching, {bench.trials} saves of each kind")
        with bench.autotest(root, "--no-stages") as child:
            whole_breaking, whole_harmless = staged_saves(bench, child, source, index)
        say(f"11: autotest watching, {bench.trials} saves of each kind")
        with bench.autotest(root) as child:
            breaking, harmless = staged_saves(bench, child, source, index)
        return [
            measured("11a", measures["11a"], breaking, whole_breaking, Goal(0.2, True)),
            measured("11b", measures["11b"], harmless, whole_harmless, Goal(1.1, True)),
        ]
    except BenchError as exc:
        say(str(exc))
        return [failed(number, text, str(exc)) for number, text in measures.items()]


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def autotest_state_dir() -> Path:
    """Where autotest keeps what it remembers, as README says: $XDG_CACHE_HOME/autotest, else
    ~/.cache/autotest."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "autotest"


def watchdog_matches_names() -> bool:
    """Whether watchdog's pattern ``*.py`` matches a file in a subdirectory (before watchdog 7
    it matched the end of the path; since, the whole path)."""
    try:
        from watchdog.utils.patterns import match_any_paths
    except ImportError:
        return True
    return bool(match_any_paths(["./app/app/__init__.py"], included_patterns=["*.py"]))


def version(*names: str) -> str:
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            return metadata.version(name)
    return "not installed"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def autotest_revision() -> str:
    if not shutil.which("git"):
        return "unknown"
    done = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() or "unknown"


def machine(bench: Bench) -> list[str]:
    tools = ", ".join(
        f"{label} {version(*dists)}"
        for label, dists in (
            ("watchdog", ("watchdog",)),
            ("nose", ("pynose", "nose")),
            ("pytest", ("pytest",)),
            ("pytest-watcher", ("pytest-watcher",)),
            ("pytest-watch", ("pytest-watch",)),
            ("pydantic", ("pydantic",)),
        )
    )
    mode = "--quick" if bench.quick else "full"
    return [
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
        f"Versions: {tools}; autotest {autotest_revision()}",
        f"Run: {mode}, median of {bench.trials} trials per figure",
    ]


def raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="3 trials, smaller trees")
    parser.add_argument("--trials", type=int, help="trials per figure (default 5, --quick 3)")
    parser.add_argument("--only", type=int, nargs="+", metavar="N", help="run these scenarios")
    args = parser.parse_args(argv)
    trials = args.trials if args.trials is not None else (3 if args.quick else 5)
    if trials < 1:
        parser.error("--trials must be 1 or more")
    if not sys.platform.startswith("linux"):
        parser.error("the benchmark reads /proc: it runs on Linux only")
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    signal.signal(signal.SIGTERM, raise_interrupt)
    tmp = Path(tempfile.mkdtemp(prefix="autotest-bench-")).resolve()
    bench = Bench(tmp, trials, args.quick)
    rows: list[Row] = []
    scenarios = (save_to_first_body, first_failure, parallel_jobs, idle_cpu, big_tree)
    scale = (many_packages, slow_import, pydantic_package, monorepo_startup, staged_runs)
    numbered = dict(enumerate((*scenarios, other_watchers, *scale), 1))
    chosen = [numbered[n] for n in sorted(set(args.only or numbered)) if n in numbered]
    header = machine(bench)
    try:
        for scenario in chosen:
            rows.extend(scenario(bench))
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        say("interrupted; stopping every process started")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        bench.procs.stop_all()
        trees = {f"{zlib.crc32(os.fsencode(tree)):08x}" for tree in tmp.iterdir()}
        shutil.rmtree(tmp, ignore_errors=True)
        # autotest keeps bytecode in its state directory, mirroring absolute paths: drop ours.
        state = autotest_state_dir()
        shutil.rmtree(state / "pycache" / str(tmp).lstrip(os.sep), ignore_errors=True)
        # ... and the import scan of each tree, kept under a name that starts with a checksum
        # of the tree's path.
        for kept in (state / "scan").glob("*"):
            if kept.name.split("-", 1)[0] in trees:
                kept.unlink(missing_ok=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    print("\n".join(header))
    print()
    print(markdown(rows))
    if bench.notes:
        print()
        for note in bench.notes:
            print(f"- {note}")
    return 0 if all(r.met != "**no**" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""When runs are forked: one warm interpreter per runner and interpreter in use, and the judgement
of forked against cold times that keeps forking only while it pays.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

from .basics import JUDGE_AFTER, SPARE_MEMORY, WARM_VIRTUALENVS, Verdict
from .discovery import Package
from .run import RunResult
from .runners import BUILTIN_RUNNERS, Runner, RunStart
from .warm_client import (
    InterpreterFacts,
    Launcher,
    LearnedPreloads,
    Preloads,
    SpareKept,
    WarmLauncher,
    WarmProcess,
    WarmTimes,
    interpreter_facts,
)


class WarmPool:
    """One warm launcher per runner and interpreter in use (autotest's own, or a package's
    virtualenv), each started at the first run that needs it; one that cannot serve forked
    runs (no fork, or older than 3.9) leaves its runs cold.  As each warm interpreter holds in
    memory what it imported ahead, only the virtualenvs of the WARM_VIRTUALENVS packages changed
    last are kept warm (other packages with their own run cold), and the spares all together
    take at most SPARE_MEMORY.  With a ``root``, what the runs import from outside it is
    learned, one set per interpreter."""

    def __init__(self, env: Mapping[str, str], root: Path | None = None) -> None:
        self.env = dict(env)
        self.root = root
        self.launchers: dict[tuple[str, str], WarmLauncher] = {}  # by runner and interpreter
        self.learned: dict[str, LearnedPreloads] = {}
        self.recent: list[str] = []  # virtualenvs' interpreters, of the packages changed last

    def _kept_warm(self, python: str) -> bool:
        return python == sys.executable or python in self.recent

    def launcher(self, runner: Runner, python: str) -> WarmLauncher | None:
        """The warm launcher for a built-in runner's runs with this interpreter, started now if
        need be; None where they start cold."""
        if runner not in BUILTIN_RUNNERS.values() or not self._kept_warm(python):
            return None
        self.prepare([(runner, python)])
        self._share_spare_memory()
        return self.launchers[runner.name, python]

    def _share_spare_memory(self) -> None:
        """What each launcher's spare may take: SPARE_MEMORY, less what the spares of the
        launchers started before it take."""
        left = SPARE_MEMORY
        for launcher in self.launchers.values():
            launcher.spare_budget = left
            left -= launcher.resident if launcher.spare() is SpareKept.KEPT else 0

    def wait_ready(self, runner: Runner, python: str, package: Package) -> None:
        launcher = self.launcher(runner, python)
        if launcher is not None:
            launcher.wait_ready(package=package)

    def launch(self, start: RunStart, out: IO[bytes]) -> WarmProcess | None:
        launcher = self.launcher(start.runner, start.python)
        return None if launcher is None else launcher.launch(start, out)

    def renew(self) -> None:
        self._share_spare_memory()
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
        described = []
        for (name, python), launcher in sorted(self.launchers.items()):
            learned = launcher.learned
            if learned is not None:
                launcher.settle()
                kept = tuple(n for n in launcher.preloaded if n in learned.names)
                none = learned.taught and not learned.names
                spare = launcher.spare(), launcher.resident
                described.append(Preloads(name, python, kept, dict(learned.dropped), none, *spare))
        return described

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

    def forking_launcher(self, package: Package) -> Launcher | None:
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

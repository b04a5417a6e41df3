"""Tells the test runs' own writes from a person's edits, by each file's change time against its
own package's runs, so that no run sets off the next and no edit is lost.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

from .basics import ECHO_GRACE, FILE_TICK_WAIT, LOOP_STREAK, RUN_WINDOW_KEPT, STAMP_SLACK
from .discovery import PACKAGE_MARKERS
from .platform import file_clock, file_end_clock


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
        self.windows = [w for w in self.windows if w.ended_at >= at - RUN_WINDOW_KEPT]

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

"""Tells the test runs' own writes from a person's edits, by each file's change time against its
own package's runs, its birth time, and what it held before, so that no run sets off the next
and no edit is lost.
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
from .platform import birth_time, file_clock, file_end_clock


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

    def created(self, path: str) -> bool | None:
        """Whether ``path`` was born while this run ran; None where the system does not say."""
        born = birth_time(path)
        return None if born is None else self.started - STAMP_SLACK <= born <= self.ended


class LoopGuard:
    """Tells the test runs' own writes from a person's edits, so that no run sets off the next.

    A change inside a package made while that package's own run ran may be that run's doing;
    "while" is judged by the file's own change time, so a save just after a run is a person's
    however late its event arrives, and a save while idle is never the runs'.  During the run:

    - a file that holds what it held when the run started (a generator writing it again
      alike) is the run's;
    - a file the run created is the run's, and stays so in later runs (their logs, caches,
      scratch), unless it is what people edit (Python sources, package metadata: a new
      source is tested once, then only when it holds something new);
    - a file that existed before the run (or that git tracks) is a person's save, tested
      after the run, whatever its kind.

    One rewritten differently each time is caught otherwise: when ``LOOP_STREAK`` cycles in a
    row were set off by nothing but files changed during runs, in the same directories, those
    files are named, and from then on what the runs write to them, or create beside them, is
    theirs; the files beside them that people had before are never muted.  A person saving
    during each of a few runs in a row is not taken for a run.
    """

    def __init__(self, owner: Callable[[str], str | None] = lambda path: None) -> None:
        self.owner = owner  # the directory of the package holding a path
        self.windows: list[RunWindow] = []
        self.streak = 0
        self.streak_dirs: frozenset[str] = frozenset()
        self.run_written: set[str] = set()  # named by the streak
        self.run_written_dirs: set[str] = set()  # where the runs create new names each time
        self.run_created: set[str] = set()  # what runs created: theirs in later runs too
        self.digests: dict[str, bytes | None] = {}  # files as last judged, while unchanged

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

    def own_run(self, path: str, at: float) -> RunWindow | None:
        """The run of the package holding ``path`` during which it changed, if any."""
        owner = self.owner(path)
        if owner is None:
            return None
        return next((w for w in self.windows if w.package == owner and w.holds(path, at)), None)

    def some_run_wrote(self, path: str, at: float) -> bool:
        return any(w.holds(path, at) for w in self.windows)

    def is_runs_doing(self, path: str, at: float, tracked: bool = False) -> bool:
        """A change the runs made: never one that starts a run.  ``tracked``: git tracks the
        file, so it is a person's however new its inode (a checkout, an editor's rename)."""
        if path in self.run_written:
            return self.some_run_wrote(path, at)
        if os.path.dirname(path) in self.run_written_dirs and self._created_by_a_run(path, at):
            return True
        window = self.own_run(path, at)
        if window is None:
            self.digests.pop(path, None)  # changed outside its runs: what it held is unknown
            return False
        if path in self.run_created and not tracked:
            return True
        if self._rewritten_alike(path):
            return True
        if is_edited_by_people(path) or tracked:
            return False
        return self._made_by(window, path)

    def _created_by_a_run(self, path: str, at: float) -> bool:
        """Born during a run that wrote it; where birth times are unknown, any run's write."""
        return any(w.holds(path, at) and w.created(path) is not False for w in self.windows)

    def _made_by(self, window: RunWindow, path: str) -> bool:
        """Whether a run of its package made ``path``, this one or one before whose creation
        went unseen (remembered: it stays the runs').  A file gone is taken for a run's
        scratch; one born before its package's runs is a person's; where birth times are
        unknown, the run's (as a loop is worse than a dim line naming the file)."""
        runs = (w for w in self.windows if w.package == window.package)
        if os.path.lexists(path) and not any(w.created(path) is not False for w in runs):
            return False
        self.run_created.add(path)
        return True

    def _rewritten_alike(self, path: str) -> bool:
        """Whether the file holds what it held when last judged, with no change judged outside
        its runs since; remembers what it holds."""
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

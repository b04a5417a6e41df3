"""The main thread's side of the hand-off: one debounce, one question to git per burst, the loop
guard's verdicts, and keys, turned into the next request.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable

from .basics import ROOT_CHECK_EVERY, QuitRequested
from .handoff import ChangeSet
from .ignore import IgnoreRules
from .loop_guard import LoopGuard


class Ask(enum.Enum):
    """What the main loop can be asked to do next."""

    CHANGES = "changes"  # test what changed (the request holds the paths)
    ALL = "all"
    FAILED = "failed"
    RESUME = "resume"  # what a cycle cut short did not run
    PACKAGES = "packages"  # ask for a package filter
    TESTS = "tests"  # ask for a test-name filter
    CLEAR = "clear"  # clear both filters
    DEBUG = "debug"  # the last failing package again, in the debugger
    KEYS = "keys"  # list the keys
    REPLACED = "replaced"  # the root is another directory than the one watched
    QUIT = "quit"


RUN_KEYS = {
    "\n": Ask.ALL, "\r": Ask.ALL, "a": Ask.ALL, "A": Ask.ALL, "f": Ask.FAILED, "F": Ask.FAILED,
    "p": Ask.PACKAGES, "t": Ask.TESTS, "c": Ask.CLEAR, "d": Ask.DEBUG, "w": Ask.KEYS, "?": Ask.KEYS,
}  # fmt: skip


QUIT_KEYS = ("q", "Q")


@dataclass(frozen=True)
class Request:
    """What the main loop is asked to do next, with the paths and when each changed for
    ``Ask.CHANGES``."""

    kind: Ask
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
        on_judged: Callable[[list[str], list[str]], None] | None = None,
        on_git_unanswered: Callable[[int], None] = lambda count: None,
        root_replaced: Callable[[], bool] = lambda: False,
    ) -> None:
        self.changes = changes
        self.rules = rules
        self.guard = guard
        self.debounce = debounce
        self.on_echoes = on_echoes
        self.on_judged = on_judged  # -v: what changed during runs, counted and not
        self.on_git_unanswered = on_git_unanswered
        self.root_replaced = root_replaced  # watches on a directory no longer at the root
        self._ignored: dict[str, bool] = {}
        self._runs_doing: dict[tuple[str, float], bool] = {}

    def _counting(self, paths: Mapping[str, float]) -> tuple[dict[str, float], list[str]]:
        """The paths that count, and those the loop guard takes for the runs' writes.  The
        built-in rules are asked again now that the burst settled: a new virtualenv is known
        as one only once its pyvenv.cfg is written, after its first directories."""
        unknown = [p for p in paths if p not in self._ignored]
        if unknown:
            ignored = self._git_ignored(unknown)
            self._ignored.update(
                (p, p in ignored or self.rules.is_ignored(p, os.path.isdir(p))) for p in unknown
            )
        kept = {p: t for p, t in paths.items() if not self._ignored[p]}
        self._judge(kept)
        echoes = sorted(p for p, t in kept.items() if self._runs_doing[p, t])
        counting = {p: t for p, t in kept.items() if p not in echoes}
        if self.on_judged is not None:
            during = sorted(p for p, t in counting.items() if self.guard.some_run_wrote(p, t))
            if during or echoes:
                self.on_judged(during, echoes)
        return counting, echoes

    def _judge(self, kept: Mapping[str, float]) -> None:
        """The loop guard's verdict on each change not judged yet; git is asked once which of
        those changed during runs it tracks (a tracked file is a person's)."""
        fresh = {p: t for p, t in kept.items() if (p, t) not in self._runs_doing}
        during = [p for p, t in fresh.items() if self.guard.some_run_wrote(p, t)]
        tracked = self.rules.git_tracked(during) if during else set()
        for p, t in fresh.items():
            self._runs_doing[p, t] = self.guard.is_runs_doing(p, t, p in tracked)

    def _git_ignored(self, paths: list[str]) -> set[str]:
        """What git ignores of ``paths``.  When git cannot say, what lies in directories it
        said it ignores, and the rest counts (an edit is never lost to a failed question), and
        the user is told why."""
        ignored = self.rules.git_ignored(paths)
        if ignored is None:
            ignored = self.rules.known_ignored(paths)
            if len(ignored) < len(paths):
                self.on_git_unanswered(len(paths) - len(ignored))
        return ignored

    def say_notices(self) -> None:
        """What the other threads had to tell the user, said now, in the main thread."""
        for notice in self.changes.take_notices():
            notice()

    def changed_meanwhile(self) -> bool:
        """Whether a change that counts arrived during a cycle and settled.  It only looks:
        the burst stays in the ChangeSet until it is taken, so an editor's save stays one
        change, and a scratch file made and removed again within a burst is none.  ``q`` acts
        at once (QuitRequested); the other keys wait for the cycle's end."""
        self.say_notices()
        paths, keys = self.changes.peek()
        if any(k in QUIT_KEYS for k in keys):
            raise QuitRequested
        if not self.changes.settled(self.debounce):
            return False
        counting, _ = self._counting(paths)
        return bool(counting)

    def _root_replaced(self) -> bool:
        """Whether the root is another directory now, or its watch saw it go (where a new one
        may reuse its inode); if so, what changed in the old one is dropped (its removal,
        mostly): the new one is planned and tested whole."""
        if not self.changes.holds(self.rules.root) and not self.root_replaced():
            return False
        self.changes.take_paths()
        self._ignored.clear()
        self._runs_doing.clear()
        return True

    def next_request(self, resume: bool = False) -> Request:
        """Block until a key or a settled burst of changes that count.  With ``resume`` (a
        cycle was cut short for changes), a burst that turns out to hold none still asks for
        the packages not run yet.  The root is checked on each wake, every ``ROOT_CHECK_EVERY``
        while idle: once it is another directory, a new plan is asked for."""
        while True:
            if self._root_replaced():
                return Request(Ask.REPLACED)
            key = self.changes.take_key()
            if key in QUIT_KEYS:
                return Request(Ask.QUIT)
            if key in RUN_KEYS:
                return Request(RUN_KEYS[key])
            if key is not None:
                continue
            if resume and not self.changes.pending():
                return Request(Ask.RESUME)
            self.changes.wait_settled(self.debounce, ROOT_CHECK_EVERY)
            self.say_notices()
            if self.changes.peek()[1] or not self.changes.settled(self.debounce):
                continue  # a key, woken for a notice, or time to check the root again
            if self._root_replaced():
                return Request(Ask.REPLACED)
            paths = self.changes.take_paths()
            counting, echoes = self._counting(paths)
            self._ignored.clear()
            self._runs_doing.clear()
            if echoes:
                self.on_echoes(echoes)
            if counting:
                return Request(Ask.CHANGES, counting)
            if resume:
                return Request(Ask.RESUME)

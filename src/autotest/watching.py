"""watchdog's side: the event handler (cheap filtering, then the hand-off), the watch plan that
spends no watches in ignored trees, and the Watcher that keeps the watches in step with the
tree and turns to polling where the kernel refuses a watch.  What it has to say to the user it
posts on the hand-off; the main thread says it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .basics import (
    GRANT_PATIENCE,
    GRANT_RECHECK,
    GRANT_STALL,
    MOVED_IN_AGE,
    OBSERVER_TIMEOUT,
    RESCAN_FALLBACK,
    STAMP_SLACK,
)
from .handoff import ChangeSet
from .ignore import IgnoreRules, is_leaf_tool_dir
from .platform import birth_time, file_clock, inotify_watch_limit, inotify_watched_inodes

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


def renamed_into_place(path: str) -> bool:
    """Whether an entry reported created holds content older than its arrival: renamed here
    from another watch (another package: watchdog reports the old path half a second later) or
    from outside the tree, or copied with its times.  One stat: cheap in a burst of thousands,
    and the same on every system."""
    try:
        return os.stat(path, follow_symlinks=False).st_mtime < file_clock() - MOVED_IN_AGE
    except OSError:
        return False


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
            fresh = kind == "created"
            moved_in = fresh and renamed_into_place(paths[0])
            self.changes.add(relevant, kind in ("created", "moved"), fresh, moved_in)


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


def directory_identity(path: str) -> tuple[int, int, float] | None:
    """Which directory ``path`` names (its device, inode and birth time, where the system
    records it: a new directory may be given the inode just freed), or None when there is
    none.  A directory removed and made again, or another renamed into its place, is another
    one, and the watches on the old one see nothing of it."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    if not os.path.isdir(path):
        return None
    return (stat.st_dev, stat.st_ino, birth_time(path) or 0.0)


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


def lasting_shortfall(
    count: Callable[[], tuple[int, int] | None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, int] | None:
    """Watches held against watches needed, when fewer are held for good; None when all are,
    or the OS cannot tell.  watchdog adds watches in a thread of its own, slowly on a loaded
    machine, and directories come and go meanwhile: a count below the need is a refusal only
    once it stopped growing for GRANT_STALL (or is still short after GRANT_PATIENCE), never
    after a fixed guess of how long adding takes."""
    start = last_growth = clock()
    best = -1
    while True:
        counted = count()
        if counted is None or counted[0] >= counted[1]:
            return None
        now = clock()
        if counted[0] > best:
            best, last_growth = counted[0], now
        if now - last_growth >= GRANT_STALL or now - start >= GRANT_PATIENCE:
            return counted
        sleep(GRANT_RECHECK)


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

    def shortfall(self, planned: int | None = None) -> tuple[int, int] | None:
        """The watches held and needed when the kernel granted fewer than the tree needs, or
        None (also where the OS cannot tell).  ``planned``: what the plan just made needs;
        while at least that many are held, the tree is not walked again to count."""

        def count() -> tuple[int, int] | None:
            held = self.watched_inodes()
            if held is None:
                return None
            if planned is not None and len(held) >= planned:
                return len(held), planned
            return len(held), plan_watches(self.root, self.rules.excludes_dir).watches

        return lasting_shortfall(count)

    def refused(self, path: str) -> bool:
        """Whether the kernel refused a watch for the new directory ``path`` or one below it
        (watchdog 6 gives up on the rest of a new tree at the first refusal)."""

        def count() -> tuple[int, int] | None:
            held = self.watched_inodes()
            if held is None:
                return None
            inodes = set()
            for directory in [path, *self.directories_below(path)]:
                with contextlib.suppress(OSError):
                    inodes.add(os.stat(directory).st_ino)
            return len(inodes & held), len(inodes)

        return lasting_shortfall(count) is not None

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
        """Start watching; says how (``inotify, 42 watches`` or ``polling every second``).  The
        plan leaves out what the rules' last ``refresh_git_dirs`` found ignored as a whole."""
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
        shortfall = None if self.poll else self.grants.shortfall(plan.watches)
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
                    self._tell(self.notices.watches_not_granted, *shortfall)
                    self._fall_back_later(None)
                return
            if self.rules.is_ignored(path, is_dir=True):
                return  # inside an ignored tree
            if parent in self.flat:
                try:
                    self._schedule_plan(plan_watches(path, self.rules.excludes_dir))
                except OSError as exc:
                    self._tell(self.notices.cannot_watch, path, exc.strerror or str(exc))
            if not self.poll and os.access(path, os.R_OK) and self.grants.refused(path):
                self._tell(self.notices.watch_not_granted, path)
                self._fall_back_later(path)

    def _tell(self, notice: Callable[..., None], *args: Any) -> None:
        """A notice from watchdog's thread: the main thread, which owns the terminal, says it."""
        self.changes.post(functools.partial(notice, *args))

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
                self._tell(self.notices.cannot_watch, watched, exc.strerror or str(exc))
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

"""The hand-off: the one object shared between watchdog's thread (and the key reader) and the
main thread.  Everything else belongs to one thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from typing import Callable

from .basics import CREATED_SETTLE, MOVE_PAIR_WAIT, WAKE_INTERVAL


class ChangeSet:
    """The one hand-off between watchdog's thread (and the key reader) and the main loop.

    Holds each changed path with the time it last changed, the paths created since the main
    loop last took them, the keys pressed, in order, and the notices the other threads have
    for the user (the main thread owns the terminal).  Every method takes the lock; the main
    loop waits on it rather than polling.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._paths: dict[str, float] = {}
        self._created: set[str] = set()
        self._fresh: dict[str, float] = {}  # created in place (not renamed there), and when
        self._moved_in: dict[str, float] = {}  # renamed here from another watch, and when
        self._keys: list[str] = []
        self._notices: list[Callable[[], None]] = []
        self._held = False
        self._last = 0.0

    def add(
        self, paths: Iterable[str], created: bool = False, fresh: bool = False,
        moved_in: bool = False,
    ) -> None:  # fmt: skip
        """Paths changed now; ``created`` ones are new since the main loop last took the paths,
        ``fresh`` ones were created where they are (a writer's temporary file may be one,
        until it is renamed into place), and ``moved_in`` ones may have been renamed here from
        another watch, whose report of their old path comes later."""
        now = self._clock()
        with self._cond:
            for path in paths:
                if created and path not in self._paths:
                    self._created.add(path)
                if fresh:
                    self._fresh.setdefault(path, now)
                if moved_in:
                    self._moved_in.setdefault(path, now)
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
                    self._moved_in.pop(gone, None)
                    self._paths.pop(gone, None)
            else:
                self._paths[path] = now
            self._last = now
            self._cond.notify_all()

    def press(self, key: str) -> None:
        with self._cond:
            self._keys.append(key)
            self._cond.notify_all()

    def post(self, notice: Callable[[], None]) -> None:
        """A notice from another thread, for the main thread to say."""
        with self._cond:
            self._notices.append(notice)
            self._cond.notify_all()

    def take_notices(self) -> list[Callable[[], None]]:
        with self._cond:
            notices, self._notices = self._notices, []
            return notices

    def pending(self) -> bool:
        with self._cond:
            return bool(self._paths or self._keys)

    def holds(self, path: str) -> bool:
        """Whether ``path`` changed in the burst held (without copying a burst of thousands)."""
        with self._cond:
            return path in self._paths

    def peek(self) -> tuple[dict[str, float], list[str]]:
        with self._cond:
            return dict(self._paths), list(self._keys)

    def wait_key(self, timeout: float = WAKE_INTERVAL) -> str | None:
        """The oldest key not yet taken, waiting up to ``timeout`` for one."""
        with self._cond:
            if not self._keys:
                self._cond.wait(timeout)
            return self._keys.pop(0) if self._keys else None

    def hold_keys(self, held: bool) -> None:
        """While held (another program has the terminal), the key reader reads nothing."""
        with self._cond:
            self._held = held

    def keys_held(self) -> bool:
        with self._cond:
            return self._held

    def take_key(self) -> str | None:
        """The oldest key not yet taken."""
        with self._cond:
            return self._keys.pop(0) if self._keys else None

    def take_paths(self) -> dict[str, float]:
        with self._cond:
            paths, self._paths, self._created = self._paths, {}, set()
            self._fresh, self._moved_in = {}, {}
            return paths

    def wait_settled(self, debounce: float, timeout: float | None = None) -> None:
        """Block until a key is pressed or a notice posted, or paths changed and then stayed
        quiet for ``debounce``, or ``timeout`` passed."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                now = self._clock()
                if self._keys or self._notices or (deadline is not None and now >= deadline):
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
        """How long until the burst settles: quiet for ``debounce``, every file created in it
        either gone again or ``CREATED_SETTLE`` old, so that a temporary file written slowly
        and then renamed into place is one change, not two; and every entry renamed here from
        elsewhere ``MOVE_PAIR_WAIT`` old, so that a move between two packages' watches, whose
        source watchdog reports half a second late, is one change too."""
        wait = debounce - (now - self._last)
        if self._fresh:
            wait = max(wait, CREATED_SETTLE - (now - max(self._fresh.values())))
        if self._moved_in:
            wait = max(wait, MOVE_PAIR_WAIT - (now - max(self._moved_in.values())))
        return wait

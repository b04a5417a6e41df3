"""One cycle: packages in order, up to --jobs at once, until the first failure in order (or
through all of them with --keep-going), waiting on the runs rather than polling them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Callable, Protocol

from .basics import CYCLE_WAKE, POLL_INTERVAL, Verdict
from .discovery import Package
from .order import Step
from .platform import NOW, wait_readable
from .run import RunResult


class Startable(Protocol):
    """What run_cycle needs of a run: ``Run`` is one; tests pass stand-ins."""

    def poll(self) -> RunResult | None: ...

    def kill(self) -> None: ...

    def wait_handle(self) -> int | None: ...


def wait_for_runs(runs: Iterable[Startable], timeout: float) -> None:
    """Block until one of the runs may have ended, or ``timeout`` passed: on the warm
    interpreters' sockets and the cold processes' pidfds, at once when one has ended already;
    a run that offers nothing to wait on (no pidfds here) is polled every POLL_INTERVAL."""
    handles = [run.wait_handle() for run in runs]
    if NOW in handles:
        return
    if None in handles:
        timeout = min(timeout, POLL_INTERVAL)
    wait_readable((h for h in handles if h is not None), timeout)


@dataclass
class CycleOutcome:
    """What one cycle did: the verdicts it reported, in order, and why it ended."""

    steps: list[Step]
    results: list[RunResult] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def failures(self) -> list[RunResult]:
        return [r for r in self.results if r.verdict is Verdict.FAILED]

    @property
    def failure(self) -> RunResult | None:
        """The first failing package, in the order."""
        return next(iter(self.failures), None)

    @property
    def could_not_run(self) -> list[RunResult]:
        return [r for r in self.results if r.verdict is Verdict.COULD_NOT_RUN]

    @property
    def passed_count(self) -> int:
        return sum(
            r.verdict in (Verdict.OK, Verdict.NO_TESTS, Verdict.NO_MATCH) for r in self.results
        )

    @property
    def passed(self) -> bool:
        return self.failure is None and not self.interrupted

    @property
    def all_ran(self) -> bool:
        """Every package ran and passed: what ``--once`` exits 0 for."""
        return self.passed and not self.could_not_run

    @property
    def not_run(self) -> int:
        return len(self.steps) - len(self.results)


def run_cycle(
    steps: Sequence[Step],
    start: Callable[[Package], Startable],
    jobs: int,
    changed_meanwhile: Callable[[], bool],
    restart: bool,
    on_result: Callable[[RunResult], None],
    wait: Callable[[Iterable[Startable], float], None] = wait_for_runs,
    clock: Callable[[], float] = time.monotonic,
    keep_going: bool = False,
    wake_every: float = CYCLE_WAKE,
) -> CycleOutcome:
    """Run packages in order, up to ``jobs`` at once, reporting verdicts in order.

    A failure cancels the runs after it in the order and starts no more, but lets the earlier
    ones finish: one of them may fail too, and the earliest failure is the one reported.  With
    ``keep_going`` nothing is cancelled.  A change arriving meanwhile stops the cycle once the
    running packages finish (with ``restart``, at once) so that a new cycle can start with it.
    While runs are in flight it waits on them (``wait``), waking at least every ``wake_every``
    seconds to look for changes and keys.
    """
    outcome = CycleOutcome(list(steps))
    started = clock()
    queue = list(enumerate(steps))
    running: dict[int, Startable] = {}
    done: dict[int, RunResult] = {}
    first_failure = len(steps)

    def cancel_after(index: int) -> None:
        queue.clear()
        for later in [i for i in running if i > index]:
            running.pop(later).kill()

    try:
        while queue or running:
            if changed_meanwhile():
                outcome.interrupted = True
                queue.clear()
                if restart:
                    break
            while queue and len(running) < jobs:
                index, step = queue.pop(0)
                running[index] = start(step.package)
            finished = {i: r for i, r in ((i, run.poll()) for i, run in running.items()) if r}
            for index in sorted(finished):
                del running[index]
                done[index] = finished[index]
                if not keep_going and finished[index].failed and index < first_failure:
                    first_failure = index
                    cancel_after(index)
            while len(outcome.results) in done and len(outcome.results) <= first_failure:
                result = done[len(outcome.results)]
                outcome.results.append(result)
                on_result(result)
            if len(outcome.results) > first_failure:
                break
            if not finished and running:
                wait(running.values(), wake_every)
    finally:
        for run in running.values():
            run.kill()
    outcome.seconds = clock() - started
    return outcome

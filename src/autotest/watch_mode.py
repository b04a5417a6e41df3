"""Watch mode's loop and keys: a cycle on every change, and between cycles what a person asks
for: every package, the failed ones, a package filter (p), a test-name filter (t), clearing
them (c), the last failure again in the debugger (d), the list of keys (w).

A filter's pattern is typed on a one-line prompt read from the same keys (the key reader
never stops: it hands each key to the main thread through the ChangeSet), so changes saved
while typing are kept and tested once the prompt closes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Callable, Protocol

from .cycle import CycleOutcome
from .discovery import Package
from .handoff import ChangeSet
from .intake import Ask, Intake, Request
from .platform import KeyReader, run_in_foreground
from .report import Reporter
from .runners import RunStart, debugger_args


class LineEnd(enum.Enum):
    TYPING = "typing"
    ENTER = "enter"
    ESCAPE = "escape"


def edited(text: str, key: str) -> tuple[str, LineEnd]:
    """A prompt's text after one key: Enter takes it, Esc drops it, Backspace erases."""
    if key in ("\n", "\r"):
        return text, LineEnd.ENTER
    if key == "\x1b":
        return text, LineEnd.ESCAPE
    if key in ("\x7f", "\x08"):
        return text[:-1], LineEnd.TYPING
    return (text + key if key.isprintable() else text), LineEnd.TYPING


def read_line(changes: ChangeSet, echo: Callable[[str, bool], None], text: str) -> str | None:
    """A line typed at the prompt (None when Esc drops it), echoed as it is typed."""
    echo(text, False)
    while True:
        key = changes.wait_key()
        if key is None:
            continue
        text, end = edited(text, key)
        if end is LineEnd.ESCAPE:
            echo(text + "  (dropped)", True)
            return None
        echo(text, end is LineEnd.ENTER)
        if end is LineEnd.ENTER:
            return text.strip()


@dataclass(frozen=True)
class Filters:
    """The filters in force: packages matching one pattern, tests whose names match another
    ("" for none)."""

    packages: str = ""
    tests: str = ""


class Cycles(Protocol):
    """What watch mode asks of the session."""

    failed: set[Package]
    unfinished: set[Package]

    def first_cycle(self) -> CycleOutcome: ...
    def run_all(self) -> CycleOutcome: ...
    def run_failed(self) -> CycleOutcome: ...
    def run_unfinished(self) -> CycleOutcome: ...
    def run_changed(self, changed: Mapping[str, float]) -> CycleOutcome: ...
    def replant(self) -> CycleOutcome: ...


class Narrowing(Protocol):
    """The package set, narrowed by the package filter."""

    def narrow(self, pattern: str) -> bool: ...


class TestFilter(Protocol):
    """The runner choices, which carry the test-name filter into every run."""

    def filter_tests(self, pattern: str) -> list[tuple[Package, str]]: ...
    def run_start(self, package: Package, extra: Sequence[str] = ()) -> RunStart: ...


class WatchMode:
    """The loop between cycles: each request from the intake answered."""

    def __init__(
        self, cycles: Cycles, intake: Intake, reporter: Reporter, tree: Narrowing,
        choices: TestFilter,
    ) -> None:  # fmt: skip
        self.cycles = cycles
        self.intake = intake
        self.changes = intake.changes
        self.reporter = reporter
        self.tree = tree
        self.choices = choices
        self.filters = Filters()
        self.last_failure: Package | None = None

    def loop(self, interactive: bool) -> None:
        keys = KeyReader(self.changes.press, self.changes.keys_held)
        with keys if interactive else contextlib.nullcontext():
            outcome = self.answered(self.cycles.first_cycle())
            while True:
                if interactive and not outcome.interrupted:
                    self.reporter.menu(self.filters.packages, self.filters.tests)
                request = self.intake.next_request(resume=bool(self.cycles.unfinished))
                if request.kind is Ask.QUIT:
                    return
                outcome = self.answered(self.respond(request, keys))

    def answered(self, outcome: CycleOutcome) -> CycleOutcome:
        if outcome.failure is not None:
            self.last_failure = outcome.failure.package
        return outcome

    def respond(self, request: Request, keys: KeyReader) -> CycleOutcome:
        cycles, kind = self.cycles, request.kind
        if kind is Ask.ALL:
            return cycles.run_all()
        if kind is Ask.FAILED:
            return cycles.run_failed()
        if kind is Ask.RESUME:
            return cycles.run_unfinished()
        if kind is Ask.REPLACED:
            return cycles.replant()
        if kind in (Ask.PACKAGES, Ask.TESTS, Ask.CLEAR):
            return cycles.run_all() if self.refiltered(kind) else CycleOutcome([])
        if kind is Ask.DEBUG:
            self.debug(keys)
            return CycleOutcome([])
        if kind is Ask.KEYS:
            self.reporter.keys()
            return CycleOutcome([])
        return cycles.run_changed(request.paths)

    def refiltered(self, kind: Ask) -> bool:
        """Whether the filters changed (then everything they leave runs at once)."""
        if kind is Ask.CLEAR:
            if self.filters == Filters():
                return False
            self.tree.narrow("")
            self.choices.filter_tests("")
            self.filters = Filters()
            return True
        label = "packages" if kind is Ask.PACKAGES else "tests"
        echo = lambda text, done: self.reporter.prompt(label, text, done)  # noqa: E731
        pattern = read_line(self.changes, echo, getattr(self.filters, label))
        if pattern is None:
            return False
        if kind is Ask.PACKAGES:
            if not self.tree.narrow(pattern):
                self.reporter.no_package_matches(pattern)
                return False
        else:
            unfiltered = self.choices.filter_tests(pattern)
            if unfiltered:
                runners, rels = [r for _, r in unfiltered], [p.rel for p, _ in unfiltered]
                self.reporter.cannot_filter_by_name(runners, rels)
        self.filters = dataclasses.replace(self.filters, **{label: pattern})
        return True

    def debug(self, keys: KeyReader) -> None:
        """The last failing package run again in the foreground, stopping in its runner's
        debugger at its first failing test; the terminal is the debugger's until it ends."""
        package = self.last_failure
        if package is None or package not in self.cycles.failed:
            self.reporter.nothing_to_debug()
            return
        start = self.choices.run_start(package)
        extra = debugger_args(start.runner)
        if extra is None:
            self.reporter.cannot_debug(package.rel, start.runner.name)
            return
        argv = [*start.argv, *extra]
        self.reporter.debugging(package.rel, argv)
        self.changes.hold_keys(True)
        try:
            with keys.cooked():
                code = run_in_foreground(argv, str(package.path), start.env)
        finally:
            self.changes.hold_keys(False)
        self.reporter.debugged(code)

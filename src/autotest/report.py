"""Every sentence a user reads during a session is built here: Terminal (the stream, colours,
the status line), Notices (between cycles) and Reporter (a cycle's header, verdicts, failing
output and summary).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable

from .basics import SPARE_MEMORY, STILL_RUNNING_AFTER, STILL_RUNNING_EVERY, Verdict
from .ci import CiJob
from .cycle import CycleOutcome
from .discovery import Package, owner_of
from .junit import FailingTest
from .order import Step
from .platform import notify, terminal_has_colours
from .run import RunResult
from .runners import Choice, combined
from .selection import Selection
from .stages import OneStage, Stages
from .state import StateDir
from .warm_client import Preloads, SpareKept, is_standard_library


def use_color(stream: IO[str]) -> bool:
    """NO_COLOR turns colours off, FORCE_COLOR on; otherwise only on a terminal."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return False
    return terminal_has_colours()


STYLES = {"ok": "32", "fail": "1;31", "dim": "2", "bold": "1", "warn": "33"}


VERDICT_STYLES = {
    Verdict.OK: "ok", Verdict.FAILED: "fail", Verdict.NO_TESTS: "dim", Verdict.NO_MATCH: "dim",
    Verdict.COULD_NOT_RUN: "warn",
}  # fmt: skip


VERDICT_COLUMN = len("FAILED (timed out)")  # every verdict, with a short note, fits


def counted(number: int, noun: str) -> str:
    """``1 package``, ``3 packages``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def megabytes(size: int) -> str:
    return f"{size / 10**6:.0f} MB"


def spare_said(p: Preloads) -> str:
    """Whether a spare interpreter is kept ready, so that a save right after a verdict need not
    wait for one to start, and the memory that costs."""
    budget = f"(all spares: at most {megabytes(SPARE_MEMORY)})"
    if p.spare is SpareKept.KEPT:
        return f"keeps a spare interpreter ready: {megabytes(p.resident)} each {budget}"
    return f"keeps no spare interpreter: one takes {megabytes(p.resident)} {budget}"


NOTHING_TO_IMPORT_AHEAD = "nothing; its runs import nothing else from outside the repository"


def listed_preloads(names: Sequence[str]) -> str:
    """``pydantic, httpx, with 12 standard-library packages (94 modules)``: what a user
    installed, by name, the standard library as a count."""
    tops = sorted({n.split(".")[0] for n in names})
    installed = [t for t in tops if not is_standard_library(t)]
    listed = ", ".join(installed[:10])
    if len(installed) > 10:
        listed += f" and {len(installed) - 10} more"
    if len(installed) < len(tops):
        stdlib = counted(len(tops) - len(installed), "standard-library package")
        listed = f"{listed}, with {stdlib}" if listed else stdlib
    return f"{listed} ({counted(len(names), 'module')})"


def every(count: int) -> str:
    """``all 3 packages``; ``the 1 package`` (never ``all 1 package``)."""
    return "the 1 package" if count == 1 else f"all {count} packages"


def shown(path: str) -> str:
    """A path as one printable line: newlines, other control characters and bytes that are
    not UTF-8 (surrogate escapes) are escaped."""
    return "".join(c if c.isprintable() else escaped(c) for c in path)


def escaped(char: str) -> str:
    """A character that must not reach the terminal as itself, as Python writes it: ``\\x1b``."""
    return ascii(char)[1:-1]


# What a run's output may hold that drives the terminal: a colour (SGR, ESC [ ... m), a line
# end written \r\n, or any other control character (C0 but tab and newline, DEL, C1), which
# starts every other sequence: clear screen, alternate screen, window title, cursor moves.
TERMINAL_CONTROL = re.compile(
    r"(?P<sgr>\x1b\[[0-9;:]*m)|(?P<crlf>\r\n)|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def neutralised(output: str, colours: bool) -> str:
    """A run's output as the terminal may show it: its colours kept (dropped without
    ``colours``), every other control character escaped, so that a test cannot clear the
    screen, switch to the alternate screen, set the window title, move the cursor or hide a
    line behind a carriage return."""

    def replace(found: re.Match[str]) -> str:
        if found["sgr"]:
            return found["sgr"] if colours else ""
        return "\n" if found["crlf"] else escaped(found[0])

    return TERMINAL_CONTROL.sub(replace, output)


def describe_changes(paths: Iterable[str], root: Path, packages: Sequence[Package]) -> str:
    """One short line: the file that changed, or how many changed in how many packages."""
    paths = sorted(paths)
    if len(paths) == 1:
        path = paths[0]
        gone = "" if os.path.lexists(path) else " (removed)"
        return f"changed: {shown(os.path.relpath(path, root))}{gone}"
    owners = {owner_of(p, packages) for p in paths}
    inside = len(owners - {None})
    if not inside:
        return f"changed: {len(paths)} files outside every package"
    text = f"changed: {len(paths)} files in {counted(inside, 'package')}"
    return text + (" and outside them" if None in owners else "")


KEYS_HELP = (
    ("Enter, a", "run every package"),
    ("f", "run the packages that failed"),
    ("p", "test only the packages matching a pattern (a glob or part of a path or name)"),
    ("t", "run only the tests whose names match a pattern (pytest and unittest: -k)"),
    ("c", "clear both filters"),
    ("d", "run the last failing package again, stopping in the debugger at its first failure"),
    ("w, ?", "list these keys"),
    ("q", "quit"),
)


def selection_line(selection: Selection) -> str:
    """``selection -m 'not integration' tests (pyproject.toml hatch env test script unit)``;
    ``selection by testpaths in pytest.ini``; ``selection none (why)``."""
    if not selection.args and selection.source.startswith("testpaths"):
        return f"selection by {selection.source}"
    what = shlex.join(selection.args) if selection.args else "none"
    why = "; ".join(part for part in (selection.source, selection.why_none) if part)
    return f"selection {what} ({why})"


SUMMARY_NAMES = 5  # packages named in a summary or a hint line before "and N more"


def listed(rels: Sequence[str], verbose: bool) -> str:
    """Package paths: all of them with --explain, else the first SUMMARY_NAMES."""
    names = [shown(r) for r in rels]
    if verbose or len(names) <= SUMMARY_NAMES:
        return ", ".join(names)
    return f"{', '.join(names[:SUMMARY_NAMES])} and {len(names) - SUMMARY_NAMES} more"


def wanted_line(module: str, provider: str, needing: Sequence[RunResult], verbose: bool) -> str:
    """One missing module's line: the packages that need it, and how to install it."""
    rels = listed([r.package.rel for r in needing], verbose)
    commands = "; ".join(c.text for c in combined(r.hint for r in needing if r.hint))
    if provider:
        return (
            f"{shown(module)} is provided by {shown(provider)}, which is not installed for "
            f"{rels}; install it: {commands}"
        )
    if commands:
        whose = "its" if len(needing) == 1 else "their"
        return (
            f"{shown(module)} is not installed for {rels}; "
            f"install {whose} test dependencies: {commands}"
        )
    where = f"; its output: {needing[0].saved}" if len(needing) == 1 and needing[0].saved else ""
    return f"{shown(module)} is not installed for {rels}, nor provided by a package here{where}"


def could_not_run_list(results: Sequence[RunResult], verbose: bool) -> str:
    """The summary's packages that could not run, each with what it needs; beyond
    SUMMARY_NAMES (unless --explain) a count of them and of the modules they need."""
    if verbose or len(results) <= SUMMARY_NAMES:
        return ", ".join(f"{shown(r.package.rel)} ({r.note})" for r in results)
    modules = {r.missing.module if r.missing else r.note for r in results}
    return (
        f"{counted(len(results), 'package')}, for want of {counted(len(modules), 'module')} "
        "(listed above; -v names every package)"
    )


def could_not_run_lines(results: Sequence[RunResult], verbose: bool) -> list[str]:
    """After a cycle's verdicts, what the packages that could not run need: one line per
    missing module, naming the packages that need it, with one command (per installer) that
    installs it for all of them; and where autotest itself could not write."""
    lines = []
    by_module: dict[tuple[str, str], list[RunResult]] = {}
    for result in results:
        if result.unwritable:
            where, why = result.unwritable
            lines.append(
                f"autotest could not write {shown(result.package.rel)}'s output in "
                f"{shown(where)} ({why}), so the run says nothing of the tests; free room "
                "there, or set TMPDIR to a directory with room"
            )
        elif result.missing is not None:
            key = (result.missing.module, result.missing.provider)
            by_module.setdefault(key, []).append(result)
    lines += [wanted_line(m, p, needing, verbose) for (m, p), needing in by_module.items()]
    return lines


def failing_test_lines(tests: Sequence[FailingTest]) -> list[str]:
    """At most FAILING_TESTS_SHOWN lines, the last ``... and N more`` when they do not fit."""
    if len(tests) <= FAILING_TESTS_SHOWN:
        return [failing_test_line(t) for t in tests]
    kept = FAILING_TESTS_SHOWN - 1
    return [*(failing_test_line(t) for t in tests[:kept]), f"... and {len(tests) - kept} more"]


FAILING_TESTS_SHOWN = 20  # lines listing a failed run's failing tests, "... and N more" included


FAILING_TEST_CHARS = 200  # of a failing test's line: a message may be a whole repr


def failing_test_line(test: FailingTest) -> str:
    """``tests/test_x.py:12 test_x.test_value: AssertionError: value is 2``, on one line."""
    where = f"{test.location} " if test.location else ""
    line = shown(f"{where}{test.name}: {test.message}" if test.message else f"{where}{test.name}")
    return line if len(line) <= FAILING_TEST_CHARS else line[: FAILING_TEST_CHARS - 3] + "..."


RAISE_WATCHES = "sudo sysctl fs.inotify.max_user_watches=524288"


@dataclass(frozen=True)
class Running:
    """A package running now: its place in the cycle's order, and for how long it has run."""

    package: Package
    position: int
    total: int
    seconds: float
    stage: str = ""  # of a run in two stages, the one running


def stage_lines(rel: str, plan: Stages | OneStage) -> list[str]:
    """How a package's run goes and why (-v): its first stage's test modules, each with why,
    or why it runs whole (nothing when there is nothing to say)."""
    if isinstance(plan, OneStage):
        return [f"      {shown(rel)} runs whole: {shown(plan.why)}"] if plan.why else []
    then = "then all of its tests again" if plan.rest_repeats else "then the rest"
    return [
        f"      {shown(rel)}: {plan.summary}; {then}",
        *(f"        {shown(str(test))}" for test in plan.tests),
    ]


class Progress:
    """Which packages of the cycle are running, and since when: what the status line shows."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.positions: dict[Package, int] = {}
        self.since: dict[Package, float] = {}
        self.stages: dict[Package, str] = {}

    def cycle(self, steps: Sequence[Step]) -> None:
        self.positions = {step.package: number for number, step in enumerate(steps, 1)}
        self.since = {}

    def started(self, package: Package) -> None:
        self.since[package] = self.clock()

    def staged(self, package: Package, stage: str) -> None:
        self.stages[package] = stage

    def ended(self, package: Package) -> None:
        self.since.pop(package, None)
        self.stages.pop(package, None)

    def running(self) -> list[Running]:
        now, total = self.clock(), len(self.positions)
        return sorted(
            (
                Running(p, self.positions.get(p, 0), total, now - t, self.stages.get(p, ""))
                for p, t in self.since.items()
            ),
            key=lambda r: r.position,
        )


class StatusLine:
    """The one line rewritten in place on a terminal while packages run."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.text = ""  # on screen now, to be erased before the next line

    def show(self, text: str, painted: str) -> None:
        if text == self.text:
            return
        self.erase()
        if text:
            self.text = text
            self.stream.write(painted)
            self.stream.flush()

    def erase(self) -> None:
        """Blank it and return to its start (spaces, no escape sequence: any terminal, and
        NO_COLOR, take it)."""
        if self.text:
            self.stream.write("\r" + " " * len(self.text) + "\r")
            self.text = ""
            self.stream.flush()


class Terminal:
    """Where the user reads: the stream, its colours, and the status line rewritten in place.
    ``Notices`` and ``Reporter`` below say what is written."""

    def __init__(self, stream: IO[str], color: bool, width: int = 0, root: Path | None = None):
        self.stream = stream
        self.data = stream  # where --plan's JSON goes, when notices go elsewhere
        self.color = color
        self.width = width
        self.root = root or Path.cwd()
        self.full_output = False
        self.verbose = False  # -v: lists in full
        self.warned_unreadable: set[str] = set()
        self.said_git_unanswered = False
        self.live = hasattr(stream, "isatty") and stream.isatty()  # a status line goes here
        self.status = StatusLine(stream)
        self.named_again: dict[Package, float] = {}  # not on a terminal: when to name a run

    def configure(self, root: Path, full_output: bool, notices_to_stderr: bool) -> None:
        """What the options say of the report, once they are read (errors before that need
        none of it): with ``notices_to_stderr`` (--plan) stdout carries the data alone."""
        self.root = root
        self.full_output = full_output
        if notices_to_stderr:
            self.stream = sys.stderr

    def paint(self, text: str, style: str) -> str:
        return f"\033[{STYLES[style]}m{text}\033[0m" if self.color else text

    def say(self, text: str = "") -> None:
        self.erase_status()
        self.stream.write(text + "\n")
        self.stream.flush()

    def erase_status(self) -> None:
        self.status.erase()

    # While packages run: one line rewritten in place on a terminal, else a line now and then.

    def running(self, runs: Sequence[Running]) -> None:
        if not self.live:
            self.still_running(runs)
            return
        parts = [
            f"{r.position}/{r.total} {shown(r.package.rel)}{f' ({r.stage})' if r.stage else ''} "
            f"{int(r.seconds)}s"
            for r in runs
        ]
        columns = shutil.get_terminal_size((80, 24)).columns or 80  # 3.9 says 0 for no size
        text = ("running " + ", ".join(parts))[: max(columns - 1, 10)] if parts else ""
        self.status.show(text, self.paint(text, "dim"))

    def still_running(self, runs: Sequence[Running]) -> None:
        """So that a CI log is never silent: a run is named after 30s, and again each minute."""
        for run in runs:
            due = self.named_again.get(run.package, STILL_RUNNING_AFTER)
            if run.seconds >= due:
                self.named_again[run.package] = due + STILL_RUNNING_EVERY
                self.note(f"still running: {shown(run.package.rel)} ({int(due)}s)")

    def warn(self, text: str) -> None:
        self.say(self.paint(f"autotest: {text}", "warn"))

    def note(self, text: str) -> None:
        self.say(self.paint(f"autotest: {text}", "dim"))

    def rel(self, path: str) -> str:
        return shown(os.path.relpath(path, self.root))


class Notices(Terminal):
    """The few notices between cycles: what autotest found, watches, the loop guard, the warm
    runner; and what the Watcher has to say (``WatchNotices``)."""

    def cannot_notify(self) -> None:
        self.warn("--notify: this system has no way to show a notification "
                  "(notify-send on Linux, osascript on macOS); going on without")  # fmt: skip

    def state_elsewhere(self, state: StateDir) -> None:
        """The usual private place for bytecode and logs could not be used: where they go."""
        where = (
            f"keeping them in {shown(str(state.path))} for this session"
            if state.path is not None
            else "keeping none"
        )
        self.warn(
            f"cannot keep bytecode, logs and caches in {shown(str(state.usual))} "
            f"({shown(state.refused)}); {where}"
        )

    def runner_from_config(self, spec: str, where: str) -> None:
        """A repository's config runs a command of its choosing: it is never run unseen."""
        self.note(f"runner from {where}: {shown(spec)}")

    def interpreter_from(self, where: str, python: str) -> None:
        """An interpreter the repository brings runs the tests: it is never run unseen."""
        inside = python.startswith(str(self.root) + os.sep)
        self.note(
            f"interpreter from {shown(where)}: {self.rel(python) if inside else shown(python)}"
        )

    def watching(self, count: int, how: str) -> None:
        root = shown(str(self.root))
        self.note(f"watching {counted(count, 'package')} in {root} ({how}); Ctrl+C to stop")

    def root_replaced(self) -> None:
        self.warn(
            f"{shown(str(self.root))} is another directory now (replaced while watched); "
            "watching the new one"
        )

    def packages_changed(self, added: Iterable[str], removed: Iterable[str]) -> None:
        words = [f"+{shown(r)}" for r in sorted(added)] + [f"-{shown(r)}" for r in sorted(removed)]
        self.say(self.paint(f"packages: {' '.join(words)}", "dim"))

    def not_in_package(self, arg: str) -> None:
        self.warn(f"{arg} is in no package; ignored")

    def testing_packages(self, count: int, found: int) -> None:
        """The start of a run without watching: what it tests, and where."""
        of = f"{count} of {found} packages" if count != found else counted(count, "package")
        self.note(f"{of} in {self.root}")

    def not_packages(self, left_out: Iterable[tuple[str, str]]) -> None:
        """The projects found that are not packages, and why (for ``--explain``)."""
        for rel, why in left_out:
            self.note(f"not a package: {shown(rel)} ({why})")

    def cannot_parse(self, path: str, why: str) -> None:
        if f"{path}: {why}" not in self.warned_unreadable:
            self.warned_unreadable.add(f"{path}: {why}")
            self.warn(f"cannot read {self.rel(path)} ({why}); what it declares is left out")

    def echoes(self, paths: Iterable[str]) -> None:
        rels = [self.rel(p) for p in paths]
        names = ", ".join(rels[:3]) + (f" and {len(rels) - 3} more" if len(rels) > 3 else "")
        self.note(
            f"not tested: {names}, changed during its package's run and taken for the run's "
            "doing (save it again to test it)"
        )

    def judged_during_runs(self, admitted: Sequence[str], discarded: Sequence[str]) -> None:
        """-v: what the loop guard made of the changes made while packages ran."""
        for paths, verdict in ((admitted, "a change"), (discarded, "the run's doing")):
            if paths:
                names = ", ".join(self.rel(p) for p in paths)
                self.note(f"changed during a run, taken for {verdict}: {names}")

    def loop_found(self, paths: Sequence[str]) -> None:
        rels = [self.rel(p) for p in paths]
        globs = " ".join(
            f"--ignore {shlex.quote(g)}" for g in sorted({os.path.basename(r) for r in rels})
        )
        self.warn(
            f"each test run changes {', '.join(rels)}, which sets off the next run; "
            f"not reacting to that during runs any more. To ignore it for good: {globs}"
        )

    def preloads(self, per_runner: Sequence[Preloads]) -> None:
        """What each warm interpreter imports ahead, learned from the runs (--explain)."""
        for p in per_runner:
            runner = p.runner
            if p.python != sys.executable:
                runner += f" ({self.rel(p.python)})"
            what = listed_preloads(p.names) if p.names else "nothing yet"
            if not p.names and p.none_to_learn:
                what = "nothing" if p.dropped else NOTHING_TO_IMPORT_AHEAD
            self.say(self.paint(f"      warm {runner} imports ahead: {what}", "dim"))
            for name, why in sorted(p.dropped.items())[:5]:
                self.say(self.paint(f"      warm {runner} does not import {name}: {why}", "dim"))
            if p.spare is not SpareKept.UNSAID:
                self.say(self.paint(f"      warm {runner} {spare_said(p)}", "dim"))

    def forked_run_differed(self, rel: str) -> None:
        self.note(
            f"{shown(rel)} failed when forked from the warm interpreter, and passed when run "
            "again cold; its runs start cold from now on"
        )

    def warm_judged(self, warm: float, cold: float, forking: bool) -> None:
        if forking:
            self.note(
                f"forked runs are faster again ({warm:.2f}s against {cold:.2f}s cold, for the "
                "same packages); forking runs from now on"
            )
            return
        self.note(
            f"forked runs were no faster than cold ones ({warm:.2f}s against {cold:.2f}s, for "
            "the same packages); starting runs cold from now on"
        )

    # What the Watcher has to say (WatchNotices).

    def unreadable(self, path: str) -> None:
        if path not in self.warned_unreadable:
            self.warned_unreadable.add(path)
            self.warn(f"cannot read {shown(path)}; skipped, and changes below it are not seen")

    def too_many_watches(self, needed: int, limit: int) -> None:
        self.warn(
            f"this tree needs {needed} inotify watches but the limit is {limit}; "
            f"polling instead. To watch natively, raise it: {RAISE_WATCHES}"
        )

    def watches_refused(self, reason: str) -> None:
        self.warn(
            f"the OS refused more watches ({reason}); polling instead. "
            f"Raise the limit: {RAISE_WATCHES} fs.inotify.max_user_instances=1024"
        )

    def cannot_watch(self, path: str, reason: str) -> None:
        self.warn(f"cannot watch {shown(path)}: {reason}")

    def watches_not_granted(self, held: int, needed: int) -> None:
        self.warn(
            f"the kernel granted {held} of the {needed} inotify watches this tree needs (other "
            f"programs hold the rest); polling instead. To watch natively, raise the limit: "
            f"{RAISE_WATCHES}"
        )

    def watch_not_granted(self, path: str) -> None:
        self.warn(
            f"the kernel refused an inotify watch for {self.rel(path)} (out of watches); "
            f"polling from now on. To watch natively, raise the limit: {RAISE_WATCHES}"
        )

    def git_unanswered(self, count: int) -> None:
        """git could not say which changed paths it ignores: said once a session."""
        if not self.said_git_unanswered:
            self.said_git_unanswered = True
            self.warn(
                f"git could not say which of {count} changed paths .gitignore excludes "
                "(git check-ignore failed or timed out); they count as changes, and so will "
                "later ones git cannot judge"
            )

    def gitignore_not_applied(self, path: str) -> None:
        self.note(
            f"{self.rel(path)} is not applied: {self.root} is not a git work tree "
            "(use --ignore GLOB for what should never start a run)"
        )


class KeyNotices(Notices):
    """What watch mode's keys say: the menu, the key list, a filter's prompt, the debugger's
    hand-over."""

    def menu(self, packages: str = "", tests: str = "") -> None:
        """The one line after a cycle: the keys, and the filters in force."""
        if packages or tests:
            chosen = f"[p] packages: {shown(packages or 'all')}  [t] tests: {shown(tests or 'all')}"
            keys = f"[Enter/a] run all  [f] run failed  {chosen}  [c] clear  [d] debug  [w] keys"
        else:
            keys = "[Enter/a] run all  [f] run failed  [p]/[t] filter  [d] debug  [w] keys"
        self.say(self.paint(f"{keys}  [q] quit", "dim"))

    def keys(self) -> None:
        """Every key of watch mode, one line each (the key w, or ?)."""
        for key, does in KEYS_HELP:
            self.say(f"  {key:<9} {does}")

    def prompt(self, label: str, text: str, done: bool = False) -> None:
        """The one-line prompt of a filter, rewritten in place as it is typed."""
        self.erase_status()
        self.stream.write(f"\r\033[K{label}: {shown(text)}" + ("\n" if done else ""))
        self.stream.flush()

    def no_package_matches(self, pattern: str) -> None:
        self.warn(f"no package matches {shown(pattern)}; the filter stays as it was")

    def cannot_filter_by_name(self, runners: Sequence[str], packages: Sequence[str]) -> None:
        which = " and ".join(sorted(set(runners)))
        names = ", ".join(shown(p) for p in packages)
        self.note(f"{which} cannot run tests by name: {names} run all their tests")

    def nothing_to_debug(self) -> None:
        self.say("no failing package to debug")

    def cannot_debug(self, rel: str, runner: str) -> None:
        self.say(f"{shown(rel)} runs under {runner}, which has no debugger to hand the terminal to")

    def debugging(self, rel: str, argv: Sequence[str]) -> None:
        command = " ".join(shlex.quote(a) for a in argv)
        self.say(self.paint(f"debugging {shown(rel)}: {shown(command)}", "bold"))

    def debugged(self, code: int) -> None:
        self.note(f"the debugger ended (exit status {code}); watching again")


class Reporter(KeyNotices):
    """Everything the user reads of a cycle: the header, the order, one line per package, the
    failing run's output, one summary; and the notices (``Notices``)."""

    # Cycles: the header, the order, a line per package, the summary.

    def header(self, text: str) -> None:
        self.say(self.paint(text, "bold"))

    def resuming(self, count: int) -> None:
        self.header(f"testing the {counted(count, 'package')} not run yet")

    def testing_all(self, count: int) -> None:
        self.header(f"testing {every(count)}")

    def testing_failed(self, count: int) -> None:
        self.header(f"testing {count} failed")

    def nothing_watched_uses(self, changes: str) -> None:
        """A change outside the packages watched, which none of them uses."""
        self.say(self.paint(f"{changes}: no package tested uses it; nothing to test", "dim"))

    def no_failed(self) -> None:
        self.say("no failed packages")

    def explain(self, steps: Sequence[Step]) -> None:
        for number, step in enumerate(steps, 1):
            reason = f"  ({shown(step.reason)})" if step.reason else ""
            self.say(self.paint(f"  {number:>2}. {shown(step.package.rel)}{reason}", "dim"))

    def explain_choices(self, choices: Mapping[Package, Choice]) -> None:
        """Which runner and interpreter each package gets, and why, grouped."""
        groups: dict[str, list[str]] = {}
        for package, choice in sorted(choices.items(), key=lambda item: item[0].rel):
            name = choice.runner.name if choice.runner.module else shlex.join(choice.runner.argv)
            groups.setdefault(f"{name} ({choice.reason})", []).append(package.rel)
            if choice.python != sys.executable:
                where = self.rel(choice.python)
                groups.setdefault(f"python {where} ({choice.python_reason})", []).append(
                    package.rel
                )
        for what, rels in groups.items():
            self.say(self.paint(f"      {what}: {', '.join(rels)}", "dim"))

    def explain_selections(self, selections: Mapping[Package, Selection]) -> None:
        """Which tests each package runs, and where that came from, grouped (-v)."""
        groups: dict[str, list[str]] = {}
        for package, selection in sorted(selections.items(), key=lambda item: item[0].rel):
            if selection.source or selection.why_none:
                groups.setdefault(selection_line(selection), []).append(package.rel)
        for what, rels in groups.items():
            self.say(self.paint(f"      {what}: {', '.join(shown(r) for r in rels)}", "dim"))

    def stages(self, rel: str, plan: Stages | OneStage) -> None:
        for line in stage_lines(rel, plan):
            self.say(self.paint(line, "dim"))

    def verdict(self, result: RunResult) -> None:
        self.named_again.pop(result.package, None)
        style = VERDICT_STYLES[result.verdict]
        label = result.verdict.value
        note = f" ({result.note})" if result.note else ""
        after = ""
        if result.verdict is Verdict.COULD_NOT_RUN or len(label + note) > VERDICT_COLUMN:
            after = f"  {result.note}" if result.note else ""
        else:
            label += note
        self.say(
            f"{shown(result.package.rel):<{self.width}}  "
            f"{self.paint(f'{label:<{VERDICT_COLUMN}}', style)}"
            f"  {self.paint(f'{result.seconds:.2f}s', 'dim')}{self.paint(after, style)}"
        )
        if result.verdict is Verdict.FAILED:
            self.failing_output(result)

    def could_not_run_hints(self, results: Sequence[RunResult]) -> None:
        for line in could_not_run_lines(results, self.verbose):
            self.say(f"  {line}")

    def failing_output(self, result: RunResult) -> None:
        """The failing tests the runner reported, then the run's output: head, a line for what
        is left out, tail; or, with --full-output, all of it, copied from the saved file line
        by line.  Only its colours reach the terminal as they are (see ``neutralised``), and
        they are reset after it."""
        self.failing_tests(result.failing_tests)
        if self.full_output and result.saved and result.omitted:
            with contextlib.suppress(OSError), open(result.saved, "rb") as f:
                line = ""
                for raw in iter(lambda: f.readline(1 << 16), b""):
                    line = raw.decode("utf-8", "replace")
                    self.stream.write(self.run_output(line))
                self.end_run_output(line)
                return
        self.stream.write(self.run_output(result.output))
        if result.omitted:
            where = f"; full output: {result.saved}" if result.saved else ""
            lines = counted(result.omitted, "line")
            self.stream.write(self.paint(f"... {lines} omitted{where}", "dim") + "\n")
        self.stream.write(self.run_output(result.tail))
        self.end_run_output(result.tail or result.output)

    def run_output(self, text: str) -> str:
        return neutralised(text, self.color)

    def end_run_output(self, last: str) -> None:
        """A colour the run left on is reset, and its last line ended."""
        if self.color:
            self.stream.write("\033[0m")
        if not last.endswith("\n"):
            self.stream.write("\n")
        self.stream.flush()

    def failing_tests(self, tests: Sequence[FailingTest]) -> None:
        """What failed, where and why, above the output it may be lost in."""
        if tests:
            self.say(self.paint(f"{counted(len(tests), 'failing test')}:", "fail"))
            for line in failing_test_lines(tests):
                self.say(f"  {line}")
            self.say(self.paint("output:", "dim"))

    def summary(self, outcome: CycleOutcome) -> None:
        took = self.paint(f"in {outcome.seconds:.2f}s", "dim")
        passed = outcome.passed_count
        self.named_again.clear()
        self.could_not_run_hints(outcome.could_not_run)
        missing = could_not_run_list(outcome.could_not_run, self.verbose)
        if outcome.interrupted:
            done = len(outcome.results)
            self.say(self.paint(f"changed during the run: starting over ({done} done)", "warn"))
        elif outcome.failures:
            names = ", ".join(shown(r.package.rel) for r in outcome.failures)
            unable = f", {len(outcome.could_not_run)} could not run: {missing}" if missing else ""
            rest = f"{passed} passed, {outcome.not_run} not run{unable}"
            self.say(f"{self.paint(f'{names} FAILED', 'fail')}; {rest} {took}")
        elif missing:
            ran = f"{passed} of {counted(len(outcome.results), 'package')} passed"
            unable = self.paint(f"could not run: {missing}", "warn")
            self.say(f"{self.paint(ran, 'ok')}; {unable} {took}")
        else:
            everything = f"{every(passed)} passed"
            unmatched = sum(r.verdict is Verdict.NO_MATCH for r in outcome.results)
            none = f" ({unmatched} with no test matching the filter)" if unmatched else ""
            self.say(f"{self.paint(everything, 'ok')}{none} {took}")

    # CI: narrowed cycles, the plan, the report.

    def narrowed(self, count: int, pool: int, total: int, ci: CiJob, changes: int = 1) -> None:
        """The first line of a CI job: what it tests of how many packages, and where; or why
        it tests nothing."""
        where = f"in {self.root}"
        if not pool:
            what = "none of the changes lies in" if changes else "nothing changed in"
            self.say(
                f"nothing affected: {what} one of the {total} packages {where}; nothing to test"
            )
        elif ci.shard is None:
            self.header(f"testing {counted(count, 'affected package')} of {total} {where}")
        elif not count:
            k, n = ci.shard
            shared = f"{counted(pool, 'package')} {where} shared among {n} shards"
            self.say(f"shard {k}/{n} is empty: {shared}; nothing to test")
        else:
            k, n = ci.shard
            noun = "affected package" if ci.affected else "package"
            in_all = f" ({total} in all)" if ci.affected else ""
            self.header(f"testing shard {k}/{n}: {count} of {counted(pool, noun)}{in_all} {where}")

    def plan(self, text: str) -> None:
        self.data.write(text + "\n")
        self.data.flush()

    def cannot_write(self, path: str, reason: str) -> None:
        self.warn(f"cannot write {path}: {reason}")

    def clear(self) -> None:
        self.erase_status()
        if self.live or self.color:
            self.stream.write("\033[2J\033[3J\033[H")
        self.stream.flush()

    def bell(self) -> None:
        self.stream.write("\a")
        self.stream.flush()

    def alert(self, outcome: CycleOutcome, bell: bool, desktop: bool, was_failing: bool) -> None:
        """After a cycle: the bell and a notification for a failure, a notification when
        everything passes again."""
        if outcome.failure is not None:
            if bell:
                self.bell()
            if desktop:
                notify("autotest", f"{shown(outcome.failure.package.rel)} FAILED")
        elif desktop and was_failing:
            notify("autotest", "all packages pass again")

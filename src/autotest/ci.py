"""For a CI system that fans jobs out over machines: which packages a change affects, the K-th of
N slices of a cycle, the cycle as JSON, the packages' remembered run times, and one JUnit XML
report per cycle built from the runners' own reports.  All decisions are pure functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .basics import UsageError, Verdict
from .cycle import CycleOutcome
from .discovery import Package
from .graph import DependencyGraph, users_of, users_reached
from .junit import runner_cases
from .metadata import read_metadata
from .order import Step, cycle_order
from .run import RunResult
from .state import private_subdir, state_path


def affected(
    packages: Iterable[Package], changed: Iterable[Package], uses: Mapping[Package, set[Package]]
) -> set[Package]:
    """Of ``packages``, the changed ones and every one that uses one of them, however
    indirectly, through any package of ``uses`` (chosen to run or not)."""
    starts = sorted(set(changed), key=lambda p: p.rel)
    reached = set(starts) | set(users_reached(starts, users_of(uses)))
    return reached & set(packages)


def shard(
    steps: Sequence[Step], k: int, n: int, durations: Mapping[str, float] | None = None
) -> list[Step]:
    """The K-th (from 1) of N disjoint slices of a cycle, in the cycle's order.

    The slices are cut from the set of packages alone, never from the order (which follows the
    changes), so N jobs given the same arguments cover every package once.  Packages are dealt
    longest first to the least loaded slice: by their known durations, a package with none
    counting as the average of the known ones; with none known, every package weighs the same,
    which deals them round-robin by path."""
    durations = durations or {}
    rels = sorted({step.package.rel for step in steps})
    known = [durations[r] for r in rels if r in durations]
    guess = sum(known) / len(known) if known else 1.0
    weight = {r: durations.get(r, guess) for r in rels}
    loads = [0.0] * n
    slice_of: dict[str, int] = {}
    for rel in sorted(rels, key=lambda r: (-weight[r], r)):
        lightest = min(range(n), key=lambda i: (loads[i], i))
        slice_of[rel] = lightest
        loads[lightest] += weight[rel]
    return [step for step in steps if slice_of[step.package.rel] == k - 1]


PLAN_VERSION = 1


@dataclass(frozen=True)
class Command:
    """How one package's tests are run: the runner's name, the interpreter (None for a
    command), and the argv, run from the package directory."""

    runner: str
    interpreter: str | None
    argv: tuple[str, ...]
    selection: str = ""  # where the argv's selection of tests came from
    first_stage: tuple[str, ...] = ()  # the tests a watcher would run first, and why


def plan_json(
    root: Path,
    steps: Sequence[Step],
    command_for: Callable[[Package], Command],
    uses: Mapping[Package, set[Package]],
    name_of: Callable[[Package], str] = lambda p: read_metadata(p).name,
) -> str:
    """The cycle as JSON, for a CI job that builds its matrix from it (schema in the README).
    Paths are as ``exact`` writes them: the JSON stays valid UTF-8 whatever the names."""
    entries = []
    for step in steps:
        command = command_for(step.package)
        entries.append(
            {
                **exact("path", step.package.rel),
                "name": name_of(step.package),
                "reason": readable(step.reason),
                "runner": command.runner,
                **exact("interpreter", command.interpreter),
                **exact("argv", list(command.argv)),
                **exact("dependencies", sorted(p.rel for p in uses.get(step.package, ()))),
                "selection": command.selection,
                "first_stage": [readable(test) for test in command.first_stage],
            }
        )
    plan = {"version": PLAN_VERSION, **exact("root", str(root)), "packages": entries}
    return json.dumps(plan, indent=2)


def readable(text: str) -> str:
    """``text`` with each byte of a name that is not UTF-8 (a surrogate escape, as the file
    system's names decode) written as ``\\xNN``."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def is_utf8(text: str) -> bool:
    return readable(text) == text


def exact(key: str, value: str | list[str] | None) -> dict[str, object]:
    """``key``'s value readable, and beside it, when a name in it is not UTF-8, ``KEY_bytes``:
    the exact bytes, base64 (a list of them for a list), which a reader takes instead."""
    if value is None:
        return {key: None}
    if isinstance(value, str):
        if is_utf8(value):
            return {key: value}
        return {key: readable(value), f"{key}_bytes": base64_of(value)}
    if all(map(is_utf8, value)):
        return {key: value}
    return {key: [readable(v) for v in value], f"{key}_bytes": [base64_of(v) for v in value]}


def base64_of(text: str) -> str:
    import base64

    return base64.b64encode(os.fsencode(text)).decode("ascii")


def write_atomically(path: str, data: bytes, mode: int = 0o644) -> None:
    """The file whole or not at all: a CI step may read it at any moment, and an interrupted
    write must not leave a truncated file behind."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(suffix=".tmp", prefix=".autotest-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def durations_memory(root: Path) -> str | None:
    """Where this machine remembers a repository's run times: in the private state
    directory, per root (None when there is none: nothing is remembered)."""
    digest = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    path = state_path("durations", digest, "durations.json")
    return None if path is None else str(path)


def read_durations(path: str) -> dict[str, float]:
    """Seconds by package path, from a JSON object; nothing when the file does not exist.
    Raises ValueError for a file that is not such an object."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(data, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in data.values()
    ):
        raise ValueError("expected a JSON object of package paths to seconds")
    return {str(k): float(v) for k, v in data.items()}


def write_durations(path: str, durations: Mapping[str, float], mode: int = 0o644) -> None:
    """The run times as JSON; ``mode`` 0600 for the machine's own memory of them."""
    folder = os.path.dirname(os.path.abspath(path))
    if mode == 0o600:  # a private file, in private folders
        private_subdir(Path(folder))
    else:
        os.makedirs(folder, exist_ok=True)
    rounded = {rel: round(seconds, 3) for rel, seconds in sorted(durations.items())}
    write_atomically(path, (json.dumps(rounded, indent=2) + "\n").encode(), mode)


JUNIT_TAIL_CHARS = 20_000  # of a package's output, kept in its package-level case


_NOT_XML_1_0 = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


_COUNTED = (("failures", "failure"), ("errors", "error"), ("skipped", "skipped"))


def xml_text(text: str) -> str:
    """Text that XML 1.0 can hold: ElementTree writes NUL or ESC as is, which no parser then
    reads back, so they are spelled out like Python escapes instead."""
    return _NOT_XML_1_0.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def cut_short(result: RunResult) -> bool:
    """Timed out, killed by a signal (noted by name, or by number when it has none), or any
    verdict other than the three a finished run gives (it could not run): what the runner
    wrote, if anything, is not the whole story."""
    if result.verdict not in (Verdict.OK, Verdict.FAILED, Verdict.NO_TESTS, Verdict.NO_MATCH):
        return True
    note = result.note
    killed = note == "timed out" or note.startswith("SIG") or note.isdigit()
    return result.verdict is Verdict.FAILED and killed


def package_suite(result: RunResult, runner_xml: bytes | None) -> ET.Element:
    """The package's <testsuite>: the runner's own cases, plus a package-level case carrying
    autotest's verdict when there are none, when the run was cut short, or when it failed with
    no failing case.  Counts are recomputed from the cases because runners disagree on them
    (nose writes ``skip=``, pytest nests suites in <testsuites>)."""
    cases = runner_cases(runner_xml)
    failing = any(case.find(tag) is not None for case in cases for tag in ("failure", "error"))
    if not cases or cut_short(result) or (result.verdict is Verdict.FAILED and not failing):
        cases.append(package_case(result))
    suite = ET.Element("testsuite", name=xml_text(result.package.rel), tests=str(len(cases)))
    for key, tag in _COUNTED:
        suite.set(key, str(sum(case.find(tag) is not None for case in cases)))
    suite.set("time", f"{result.seconds:.3f}")
    suite.extend(cases)
    return suite


def package_case(result: RunResult) -> ET.Element:
    """One case for the whole package: an error when the run was cut short (not the tests'
    fault), a failure when its tests failed, skipped when there were none."""
    rel = xml_text(result.package.rel)
    case = ET.Element("testcase", classname=rel, name="(package)")
    case.set("time", f"{result.seconds:.3f}")
    if cut_short(result):
        tag: str | None = "error"
    else:
        tag = {Verdict.OK: None, Verdict.NO_TESTS: "skipped", Verdict.NO_MATCH: "skipped"}.get(
            result.verdict, "failure"
        )
    if tag is not None:
        reason = result.verdict.value + (f" ({result.note})" if result.note else "")
        child = ET.SubElement(case, tag, message=xml_text(reason))
        child.text = xml_text(result.output[-JUNIT_TAIL_CHARS:])
    return case


def junit_document(suites: Sequence[ET.Element]) -> bytes:
    root = ET.Element("testsuites")
    for key in ("tests", *(key for key, _ in _COUNTED)):
        root.set(key, str(sum(int(suite.get(key, "0")) for suite in suites)))
    root.set("time", f"{sum(float(suite.get('time', '0')) for suite in suites):.3f}")
    root.extend(suites)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_report(path: str, suites: Sequence[ET.Element]) -> None:
    """The cycle's JUnit XML report, written whole or not at all."""
    write_atomically(path, junit_document(suites))


class JunitReport:
    """One JUnit XML report per cycle, from the runner's report every run gets (``Run``); after
    every verdict the report is rewritten with the suites so far, so a cycle that stops early
    or is interrupted leaves what ran."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.suites: list[ET.Element] = []

    def start_cycle(self) -> None:
        """A new cycle starts an empty report (written at once, so it exists)."""
        self.suites = []
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        write_report(self.path, self.suites)

    def add(self, result: RunResult) -> None:
        self.suites.append(package_suite(result, result.runner_xml))
        write_report(self.path, self.suites)


def own_outputs(root: Path, written: Iterable[str | None]) -> list[str]:
    """The files autotest itself writes inside the tree, as globs: never a change."""
    rels = [os.path.relpath(os.path.abspath(p), root) for p in written if p]
    return [r.replace(os.sep, "/") for r in rels if not r.startswith("..")]


class CiJob:
    """What the CI options make of a session: the cycle narrowed by --affected and --shard,
    the run times kept for --shard to balance by, and the --junit-xml report.  Files it cannot
    write later are told to ``on_error``; bad ones at the start are usage errors."""

    def __init__(
        self, root: Path, affected: bool, shard: tuple[int, int] | None,
        durations_file: str | None, junit_path: str | None,
        on_error: Callable[[str, str], None],
    ) -> None:  # fmt: skip
        self.affected = affected
        self.shard = shard
        self.memory = durations_memory(root)
        self.durations_file = durations_file
        self.on_error = on_error
        self.durations = self.known_durations()
        self.junit = JunitReport(junit_path) if junit_path else None
        if self.junit is not None:
            try:
                self.junit.start_cycle()
            except OSError as exc:
                raise UsageError(f"--junit-xml {junit_path}: {exc.strerror or exc}") from None

    def known_durations(self) -> dict[str, float]:
        """--durations FILE alone when given (so every job of a matrix balances alike), else
        this machine's memory of earlier runs."""
        if self.durations_file:
            try:
                return read_durations(self.durations_file)
            except ValueError as exc:
                raise UsageError(f"--durations {self.durations_file}: {exc}") from None
        if self.memory is not None:
            with contextlib.suppress(ValueError):
                return read_durations(self.memory)
        return {}

    def steps(
        self, packages: Sequence[Package], changed: Mapping[Package, float],
        failed: Iterable[Package], graph: DependencyGraph,
    ) -> tuple[list[Step], int]:  # fmt: skip
        """The cycle as --affected and --shard narrow it, and how many packages the shards
        were cut from."""
        uses = graph.uses
        steps = cycle_order(packages, changed, failed, uses, graph.labels, graph.weak)
        if self.affected:
            hit = affected(packages, changed, uses)
            steps = [s for s in steps if s.package in hit]
        pool = len(steps)
        if self.shard is not None:
            steps = shard(steps, *self.shard, self.durations)
        return steps, pool

    def cycle_started(self) -> None:
        self._write_report(JunitReport.start_cycle)

    def recorded(self, result: RunResult) -> None:
        self._write_report(lambda junit: junit.add(result))

    def _write_report(self, write: Callable[[JunitReport], None]) -> None:
        if self.junit is not None:
            try:
                write(self.junit)
            except OSError as exc:
                self.on_error(self.junit.path, exc.strerror or str(exc))

    def cycle_ended(self, outcome: CycleOutcome, current: Iterable[str]) -> None:
        """Keep the cycle's run times on this machine and in --durations FILE.  A shard's run
        keeps none: the other jobs of its matrix must slice by the same times."""
        ran = outcome.results + ([outcome.failure] if outcome.failure else [])
        if not ran or self.shard is not None:
            return
        keep = set(current)
        for path in (self.memory, self.durations_file):
            if path:
                times = {r.package.rel: r.seconds for r in ran}
                try:
                    with contextlib.suppress(ValueError):
                        times = {**read_durations(path), **times}
                    mode = 0o600 if path == self.memory else 0o644
                    write_durations(path, {r: t for r, t in times.items() if r in keep}, mode)
                except OSError as exc:
                    if path == self.durations_file:
                        self.on_error(path, exc.strerror or str(exc))

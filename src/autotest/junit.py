"""The runners' own structured reports: the option that makes nose, pytest or nose2 write JUnit
XML, a private file per run to write it to, the cases it holds, and the failing tests in it.

Every run asks for one (unittest and commands have no such option), not only --junit-xml's: a
failing test's name, place and message are what the user needs first, and they can sit
anywhere in thousands of lines of output, while the report names them whatever was printed.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .state import private_subdir, state_path


def junit_args(runner_name: str, xml_path: str) -> tuple[str, ...]:
    """Arguments that make a built-in runner write its own per-test XML to ``xml_path``.

    The path is absolute because runners resolve it against their cwd, the package.  They go
    last, so they win over a package's own config.  pytest gets no ``junit_family``: its
    default (xunit2) and the legacy xunit1 have the same cases, and forcing one would override
    the package's choice.  nose2 ships its junitxml plugin but does not load it."""
    path = os.path.abspath(xml_path)
    if runner_name == "nose":
        return ("--with-xunit", f"--xunit-file={path}")
    if runner_name == "pytest":
        return (f"--junitxml={path}",)
    if runner_name == "nose2":
        return ("--plugin", "nose2.plugins.junitxml", "--junit-xml", "--junit-xml-path", path)
    return ()


@dataclass(frozen=True)
class RunnerReport:
    """Where one run's runner writes its report, and the arguments that make it do so."""

    path: str
    args: tuple[str, ...]


def runner_report(runner_name: str) -> RunnerReport | None:
    """A fresh private file (mode 0600, in the private state directory when there is one,
    never in the tree) for one run's report; None for a runner that cannot write one."""
    if not junit_args(runner_name, "report.xml"):
        return None
    reports = state_path("reports")
    where = str(reports) if reports is not None and private_subdir(reports) else None
    fd, path = tempfile.mkstemp(prefix="autotest-junit-", suffix=".xml", dir=where)
    os.close(fd)
    return RunnerReport(path, junit_args(runner_name, path))


def take_report(report: RunnerReport | None) -> bytes:
    """What the runner wrote (empty when it wrote nothing), and the file is gone."""
    if report is None:
        return b""
    data = b""
    with contextlib.suppress(OSError), open(report.path, "rb") as f:
        data = f.read()
    with contextlib.suppress(OSError):
        os.unlink(report.path)
    return data


def runner_cases(runner_xml: bytes | None) -> list[ET.Element]:
    """The runner's per-test cases, or none when it wrote no file or only part of one (a run
    killed mid-write)."""
    if not runner_xml:
        return []
    try:
        root = ET.fromstring(runner_xml)
    except ET.ParseError:
        return []
    return list(root.iter("testcase"))


def joined_reports(*reports: bytes) -> bytes:
    """One report of the cases of several (the stages of one run), or the one that holds any."""
    held = [r for r in reports if runner_cases(r)]
    if len(held) < 2:
        return held[0] if held else b""
    joined = ET.Element("testsuites")
    for report in held:
        root = ET.fromstring(report)
        joined.extend([root] if root.tag == "testsuite" else list(root))
    return ET.tostring(joined)


@dataclass(frozen=True)
class FailingTest:
    """One failing (or erroring) test as its runner reported it: its name, the file and line
    in the package where it failed (empty when the report does not say), and the message."""

    name: str
    location: str
    message: str


PYTEST_PLACE = re.compile(r"^([^\s:][^:\n]*\.py):(\d+): ", re.M)  # tests/test_x.py:12: Error


TRACEBACK_PLACE = re.compile(r'^\s*File "([^"\n]+\.py)", line (\d+)', re.M)


def failing_tests(runner_xml: bytes, package_dir: Path) -> tuple[FailingTest, ...]:
    """The failing tests of a runner's report, in its order."""
    found = []
    for case in runner_cases(runner_xml):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is None:
            continue
        classname, name = case.get("classname", ""), case.get("name", "")
        text = problem.text or ""
        found.append(
            FailingTest(
                f"{classname}.{name}" if classname else name,
                failure_place(text, package_dir),
                failure_message(problem.get("message", ""), problem.get("type", ""), text),
            )
        )
    return tuple(found)


def failure_place(text: str, package_dir: Path) -> str:
    """``tests/test_x.py:12``: the last place of a failure's traceback inside the package (a
    test's own line, not the library's that raised), relative to it."""
    places = [(m.start(), m[1], m[2]) for m in PYTEST_PLACE.finditer(text)]
    places += [(m.start(), m[1], m[2]) for m in TRACEBACK_PLACE.finditer(text)]
    inside = []
    for _start, path, line in sorted(places):
        rel = os.path.relpath(os.path.join(package_dir, path), package_dir)
        if not rel.startswith("..") and "site-packages" not in rel:
            inside.append(f"{rel.replace(os.sep, '/')}:{line}")
    return inside[-1] if inside else ""


PYTEST_ERROR_LINE = re.compile(r"^E\s+(\S.*)$", re.M)  # pytest's "E   ImportError: ..."


def failure_message(message: str, kind: str, text: str) -> str:
    """The failure's message on one line: the report's message (with the exception's type,
    when the report keeps it apart), else the traceback's last line.  For pytest's bare
    "collection failure", the error its traceback ends with."""
    errors = PYTEST_ERROR_LINE.findall(text)
    if message == "collection failure" and errors:
        message = errors[-1]
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        lines = [line.strip() for line in text.splitlines() if line.strip()][-1:]
    first = lines[0] if lines else ""
    kind = kind.rsplit(".", 1)[-1]
    if kind and not first.startswith(kind):
        first = f"{kind}: {first}" if first else kind
    return first

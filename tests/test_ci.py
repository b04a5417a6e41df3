"""CI: --affected, --shard, --durations, --plan, --junit-xml, and the README's two workflows run
as written against a temporary git repository."""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    AUTOTEST,
    FAILING_TEST,
    ROOT,
    Repo,
    Watch,
    bare_venv,
    clean_env,
    default_signals,
    load_autotest,
    wait_until,
)

at = load_autotest()

VERDICT = re.compile(r"^(?P<rel>\S+)\s{2,}(?P<verdict>ok|no tests|FAILED(?: \([^)]*\))?)\s")
SAMPLE = """\
import unittest


class SampleTest(unittest.TestCase):
    def test_pass(self):
        pass

    def test_fail(self):
        print("captured \\x1b[31m red")
        self.assertEqual(1, 2)

    def test_error(self):
        raise RuntimeError("boom \\x00")

    @unittest.skip("not today")
    def test_skip(self):
        pass
"""
SLEEPING_TEST = "import time\n\n\ndef test_slow():\n    time.sleep(60)\n"

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def ci_env(tmp_path: Path) -> dict[str, str]:
    """No bytecode (fresh repositories), and a temporary directory and a cache of the test's
    own; the cache holds the machine's memory of run times."""
    tmp = tmp_path / "machine-tmp"
    tmp.mkdir(exist_ok=True)
    cache = str(tmp_path / "machine-cache")
    return clean_env(PYTHONDONTWRITEBYTECODE="1", TMPDIR=str(tmp), XDG_CACHE_HOME=cache)


def autotest(
    root: Path, tmp_path: Path, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(AUTOTEST), "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=ci_env(tmp_path),
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )


def ran(output: str) -> list[str]:
    return [m["rel"] for m in map(VERDICT.match, output.splitlines()) if m]


def one_line(done: subprocess.CompletedProcess[str], code: int, stream: str = "stdout") -> str:
    """The run's only output: one line on ``stream``, nothing on the other."""
    text, other = (done.stdout, done.stderr) if stream == "stdout" else (done.stderr, done.stdout)
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert len(text.splitlines()) == 1 and other == "", (done.stdout, done.stderr)
    assert "Traceback" not in text
    return text.strip()


def monorepo(repo: Repo, marker: Path | None = None) -> list[str]:
    """A workspace: core <- api <- web-app (by distribution names with dashes), a src-layout
    tool that uses nothing, and a namespace package found by its imports."""
    repo.write("pyproject.toml", "[tool.pytest.ini_options]\naddopts = '-q'\n")
    touch = f"open({str(marker)!r}, 'a').close()\n" if marker else ""
    repo.package("libs/core", name="acme-core", tests=touch + "def test_ok():\n    pass\n")
    repo.package("libs/api", name="acme-api", deps=["acme_core>=1"])
    repo.package("services/web-app", name="web-app", deps=["Acme.API"])
    repo.write("tools/cli/pyproject.toml", '[project]\nname = "acme-cli"\n')
    repo.write("tools/cli/src/acme_cli/__init__.py", "VALUE = 1\n")
    repo.write("tools/cli/tests/test_cli_tool.py", "def test_ok():\n    pass\n")
    repo.write("exporter/foo-http/setup.cfg", "[metadata]\nname = foo-http\n")
    repo.write("exporter/foo-http/acme/foo_http/__init__.py", "import acme_api\n")
    repo.write("exporter/foo-http/tests/test_foo.py", "def test_ok():\n    pass\n")
    return ["exporter/foo-http", "libs/api", "libs/core", "services/web-app", "tools/cli"]


def plan(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stdout + done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def paths(data: dict[str, Any]) -> list[str]:
    return [p["path"] for p in data["packages"]]


def steps(*rels: str) -> list[Any]:
    return [at.Step(at.Package(Path("/r") / r, r), "") for r in rels]


def result(rel: str, verdict: Any, note: str = "", output: str = "out") -> Any:
    return at.RunResult(at.Package(Path("/r") / rel, rel), verdict, 1.5, output, note)


# ---------------------------------------------------------------------------------------------
# affected, shard, shard_spec: the pure decisions
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def graph() -> tuple[dict[str, Any], dict[Any, set[Any]]]:
    """core <- api <- web; api <- worker; tool alone; a <-> b (a cycle)."""
    named = {r: at.Package(Path("/r") / r, r) for r in ("core", "api", "web", "worker", "tool")}
    named.update({r: at.Package(Path("/r") / r, r) for r in ("a", "b")})
    uses = {
        named["api"]: {named["core"]},
        named["web"]: {named["api"]},
        named["worker"]: {named["api"]},
        named["a"]: {named["b"]},
        named["b"]: {named["a"]},
    }
    return named, uses


def test_affected_is_the_changed_and_everything_that_uses_them(graph: Any) -> None:
    named, uses = graph
    hit = at.affected(named.values(), [named["core"]], uses)
    assert {p.rel for p in hit} == {"core", "api", "web", "worker"}
    assert {p.rel for p in at.affected(named.values(), [named["web"]], uses)} == {"web"}
    assert {p.rel for p in at.affected(named.values(), [named["a"]], uses)} == {"a", "b"}
    assert at.affected(named.values(), [], uses) == set()


def test_affected_ignores_packages_that_are_gone(graph: Any) -> None:
    named, uses = graph
    gone = at.Package(Path("/r/gone"), "gone")
    assert at.affected(named.values(), [gone], uses) == set()


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 12])
def test_shards_cover_every_package_exactly_once_in_the_cycle_order(n: int) -> None:
    cycle = steps(*(f"pkg{i:02}" for i in range(10)))
    random.Random(n).shuffle(cycle)
    slices = [at.shard(cycle, k, n) for k in range(1, n + 1)]
    covered = [s.package.rel for piece in slices for s in piece]
    assert sorted(covered) == sorted(s.package.rel for s in cycle)
    for piece in slices:
        assert piece == [s for s in cycle if s in piece]  # the cycle's own order
    sizes = [len(piece) for piece in slices]
    assert max(sizes) - min(sizes) <= 1  # by count, without durations


def test_shards_depend_on_the_package_set_never_on_the_order() -> None:
    rels = [f"libs/p{i}" for i in range(7)]
    durations = {"libs/p1": 9.0, "libs/p4": 3.0}
    seen = set()
    for order in itertools.islice(itertools.permutations(rels), 0, 5000, 97):
        cut = tuple(
            frozenset(s.package.rel for s in at.shard(steps(*order), k, 3, durations))
            for k in (1, 2, 3)
        )
        seen.add(cut)
    assert len(seen) == 1


def test_shards_balance_by_known_durations() -> None:
    cycle = steps("a", "b", "c", "d", "e")
    durations = {"a": 10.0, "b": 4.0, "c": 3.0, "d": 2.0, "e": 1.0}
    slices = [[s.package.rel for s in at.shard(cycle, k, 2, durations)] for k in (1, 2)]
    assert slices == [["a"], ["b", "c", "d", "e"]]


def test_a_package_without_a_duration_weighs_the_average_of_the_known() -> None:
    cycle = steps("a", "b", "c", "new")
    durations = {"a": 6.0, "b": 2.0, "c": 1.0}  # new weighs 3
    slices = [[s.package.rel for s in at.shard(cycle, k, 2, durations)] for k in (1, 2)]
    assert slices == [["a"], ["b", "c", "new"]]


def test_more_shards_than_packages_leaves_some_empty() -> None:
    assert [len(at.shard(steps("a", "b"), k, 4)) for k in (1, 2, 3, 4)] == [1, 1, 0, 0]


@pytest.mark.parametrize(
    ("text", "expected"), [("1/4", (1, 4)), ("4/4", (4, 4)), (" 2 / 3 ", (2, 3)), ("1/1", (1, 1))]
)
def test_shard_spec_reads_k_of_n(text: str, expected: tuple[int, int]) -> None:
    assert at.shard_spec(text) == expected


@pytest.mark.parametrize("text", ["0/4", "5/4", "a/b", "3", "1/0", "-1/4", "", "1/4/2", "²/4"])
def test_shard_spec_refuses_what_is_not_k_of_n(text: str) -> None:
    with pytest.raises(Exception, match="K/N"):
        at.shard_spec(text)


def test_durations_file_round_trips_and_refuses_what_is_not_seconds(tmp_path: Path) -> None:
    path = str(tmp_path / "sub" / "durations.json")
    assert at.read_durations(path) == {}
    at.write_durations(path, {"libs/b": 2.0004, "libs/a": 1})
    assert at.read_durations(path) == {"libs/a": 1.0, "libs/b": 2.0}
    for bad in ("[1, 2]", '{"a": "slow"}', '{"a": -1}', '{"a": true}', "not json"):
        Path(path).write_text(bad)
        with pytest.raises(ValueError):
            at.read_durations(path)


def test_durations_memory_is_per_user_and_per_repository(tmp_path: Path) -> None:
    one, other = at.durations_memory(tmp_path / "a"), at.durations_memory(tmp_path / "b")
    assert one != other and one.endswith("durations.json")
    assert Path(one).is_relative_to(at.state_dir().path)  # the user's private directory


def test_plan_json_lists_each_step_with_its_command_and_dependencies() -> None:
    core, api = at.Package(Path("/r/libs/core"), "libs/core"), at.Package(Path("/r/api"), "api")
    order = [at.Step(core, "changed"), at.Step(api, "uses libs/core")]
    commands = {
        core: at.Command("nose", "/py", ("/py", "-m", "nose", "tests"), "its tests/ directory"),
        api: at.Command("command", None, ("make", "test")),
    }
    names = {core: "core", api: "acme-api"}
    text = at.plan_json(Path("/r"), order, commands.get, {api: {core}}, names.get)
    assert json.loads(text) == {
        "version": 1,
        "root": "/r",
        "packages": [
            {"path": "libs/core", "name": "core", "reason": "changed", "runner": "nose",
             "interpreter": "/py", "argv": ["/py", "-m", "nose", "tests"],
             "selection": "its tests/ directory", "dependencies": [], "first_stage": []},
            {"path": "api", "name": "acme-api", "reason": "uses libs/core", "runner": "command",
             "interpreter": None, "argv": ["make", "test"], "selection": "",
             "dependencies": ["libs/core"], "first_stage": []},
        ],
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------
# JUnit pieces: the runners' own XML, merged (real runner processes)
# ---------------------------------------------------------------------------------------------

RUNNERS = {
    "nose": ("-m", "nose"),
    "pytest": ("-m", "pytest", "-p", "no:cacheprovider"),
    "nose2": ("-m", "nose2"),
    "unittest": ("-m", "unittest", "discover", "-t", "."),
}


def run_runner(runner: str, package: Path, xml_path: Path) -> Any:
    """Run as autotest does: cwd the package, the XML path relative to another directory."""
    command = [
        sys.executable, *RUNNERS[runner], *at.junit_args(runner, os.path.relpath(xml_path))
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=package, capture_output=True, timeout=60, env=clean_env())
    output = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    verdict = at.Verdict.OK if proc.returncode == 0 else at.Verdict.FAILED
    return at.RunResult(at.Package(package, f"libs/{runner}"), verdict, 1.5, output)


@pytest.fixture(scope="module")
def merged(tmp_path_factory: pytest.TempPathFactory) -> ET.Element:
    """One report over all four runners, written and parsed back."""
    top = tmp_path_factory.mktemp("cycle")
    suites = []
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(top)
        for runner in RUNNERS:
            package = top / runner
            (package / "tests").mkdir(parents=True)
            (package / "tests" / "__init__.py").write_text("")
            (package / "tests" / "test_sample.py").write_text(SAMPLE)
            xml_path = top / f"{runner}.xml"
            outcome = run_runner(runner, package, xml_path)
            runner_xml = xml_path.read_bytes() if xml_path.exists() else None
            suites.append(at.package_suite(outcome, runner_xml))
    at.write_report(str(top / "report.xml"), suites)
    assert set(os.listdir(top)) == {"nose.xml", "pytest.xml", "nose2.xml", "report.xml", *RUNNERS}
    return ET.parse(top / "report.xml").getroot()


def suite_of(report: ET.Element, name: str) -> ET.Element:
    found = [s for s in report if s.get("name") == name]
    assert len(found) == 1, [s.get("name") for s in report]
    return found[0]


@pytest.mark.parametrize("runner", ["nose", "pytest", "nose2"])
def test_runner_cases_are_merged(merged: ET.Element, runner: str) -> None:
    suite = suite_of(merged, f"libs/{runner}")
    cases = {case.get("name"): {child.tag for child in case} for case in suite}
    erred = "failure" if runner == "pytest" else "error"  # pytest: a TestCase's raise fails
    assert {name: tags & {"failure", "error", "skipped"} for name, tags in cases.items()} == {
        "test_pass": set(),
        "test_fail": {"failure"},
        "test_error": {erred},
        "test_skip": {"skipped"},
    }
    assert all(case.get("classname") == "tests.test_sample.SampleTest" for case in suite)
    expected = {"tests": 4, "failures": 1, "errors": 1, "skipped": 1}
    if runner == "pytest":
        expected.update(failures=2, errors=0)
    assert {key: int(suite.get(key, "-1")) for key in expected} == expected


def test_unittest_gets_one_package_case(merged: ET.Element) -> None:
    (case,) = suite_of(merged, "libs/unittest")
    assert (case.get("classname"), case.get("name")) == ("libs/unittest", "(package)")
    failure = case.find("failure")
    assert failure is not None and failure.get("message") == "FAILED"
    assert "test_fail" in (failure.text or "") and "\\x00" in (failure.text or "")


def test_report_totals_add_up(merged: ET.Element) -> None:
    for key in ("tests", "failures", "errors", "skipped"):
        assert int(merged.get(key, "-1")) == sum(int(s.get(key, "0")) for s in merged)
    assert merged.get("tests") == "13"
    assert float(merged.get("time", "0")) == pytest.approx(6.0)


def test_killed_run_keeps_runner_cases_and_adds_an_error() -> None:
    runner_xml = b'<testsuite><testcase classname="t" name="test_a"/></testsuite>'
    suite = at.package_suite(result("libs/core", at.Verdict.FAILED, "SIGKILL"), runner_xml)
    assert [(case.get("name"), [c.tag for c in case]) for case in suite] == [
        ("test_a", []),
        ("(package)", ["error"]),
    ]
    assert (suite.get("tests"), suite.get("errors"), suite.get("failures")) == ("2", "1", "0")


def test_failed_run_whose_cases_all_passed_still_fails() -> None:
    runner_xml = b'<testsuites><testsuite><testcase name="test_a"/></testsuite></testsuites>'
    suite = at.package_suite(result("libs/core", at.Verdict.FAILED, "exit 3"), runner_xml)
    assert suite.get("failures") == "1" and suite[-1].get("name") == "(package)"


@pytest.mark.parametrize("runner_xml", [None, b"", b'<testsuite><testcase name="test_a"'])
def test_missing_or_truncated_runner_xml_falls_back(runner_xml: bytes | None) -> None:
    (case,) = at.package_suite(result("libs/core", at.Verdict.FAILED, output="tail"), runner_xml)
    failure = case.find("failure")
    assert case.get("name") == "(package)" and failure is not None and failure.text == "tail"


@pytest.mark.parametrize(
    ("verdict", "note", "tag"),
    [("OK", "", None), ("NO_TESTS", "", "skipped"), ("FAILED", "timed out", "error"),
     ("FAILED", "exit 3", "failure")],
)  # fmt: skip
def test_package_case_per_verdict(verdict: str, note: str, tag: str | None) -> None:
    (case,) = at.package_suite(result("libs/core", at.Verdict[verdict], note), None)
    assert [child.tag for child in case] == ([tag] if tag else [])


def test_control_characters_still_parse(tmp_path: Path) -> None:
    output = "\x1b[31mred\x1b[0m \x00 \x07 \ufffe ok\ttab\n"
    outcome = result("libs/\x1bcore", at.Verdict.FAILED, "SIGSEGV", output)
    at.write_report(str(tmp_path / "r.xml"), [at.package_suite(outcome, None)])
    suite = ET.parse(tmp_path / "r.xml").getroot()[0]
    assert suite.get("name") == "libs/\\x1bcore"
    assert suite[0][0].text == "\\x1b[31mred\\x1b[0m \\x00 \\x07 \\ufffe ok\ttab\n"


def test_report_is_written_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "report.xml"
    at.write_report(str(path), [at.package_suite(result("a", at.Verdict.OK), None)])
    assert os.listdir(tmp_path) == ["report.xml"]
    assert path.read_bytes().startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    before = path.read_bytes()

    def fail(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        at.write_report(str(path), [])
    assert os.listdir(tmp_path) == ["report.xml"] and path.read_bytes() == before


# ---------------------------------------------------------------------------------------------
# --affected, end to end
# ---------------------------------------------------------------------------------------------


def test_affected_runs_the_changed_package_and_its_users_in_order(
    repo: Repo, tmp_path: Path
) -> None:
    monorepo(repo)
    done = autotest(repo.path, tmp_path, "--once", "--affected", "--changed", "libs/api")
    assert done.returncode == 0, done.stdout + done.stderr
    assert ran(done.stdout) == ["libs/api", "exporter/foo-http", "services/web-app"]
    assert done.stdout.splitlines()[0] == f"testing 3 affected packages of 5 in {repo.path}"


def test_affected_follows_uses_transitively(repo: Repo, tmp_path: Path) -> None:
    monorepo(repo)
    done = autotest(
        repo.path, tmp_path, "--once", "--affected", "-v", "--changed", "libs/core/acme_core"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert ran(done.stdout) == ["libs/core", "libs/api", "exporter/foo-http", "services/web-app"]
    assert "   3. exporter/foo-http  (uses libs/api (imports))" in done.stdout.splitlines()


def test_an_excluded_package_still_carries_its_users_edges(repo: Repo, tmp_path: Path) -> None:
    """core <- api <- (foo-http, web-app): with libs/api excluded, a change in libs/core still
    reaches the packages that use it through libs/api, as a watch cycle's order does."""
    monorepo(repo)
    args = ("--once", "--affected", "--changed", "libs/core/acme_core/__init__.py")
    done = autotest(repo.path, tmp_path, *args, "--exclude", "libs/api")
    assert done.returncode == 0, done.stdout + done.stderr
    assert ran(done.stdout) == ["libs/core", "exporter/foo-http", "services/web-app"]
    plan = autotest(repo.path, tmp_path, "--plan", *args[1:], "--exclude", "libs/api")
    assert [p["path"] for p in json.loads(plan.stdout)["packages"]] == ran(done.stdout)


def test_affected_reaches_users_through_a_package_that_is_not_chosen(graph: Any) -> None:
    named, uses = graph
    chosen = [p for name, p in named.items() if name != "api"]
    hit = at.affected(chosen, [named["core"]], uses)
    assert {p.rel for p in hit} == {"core", "web", "worker"}


def test_affected_stops_at_the_first_failure_with_status_1(repo: Repo, tmp_path: Path) -> None:
    monorepo(repo)
    repo.write("libs/api/tests/test_acme_api.py", FAILING_TEST)
    done = autotest(repo.path, tmp_path, "--once", "--affected", "--changed", "libs/core")
    assert done.returncode == 1, done.stdout + done.stderr
    assert ran(done.stdout) == ["libs/core", "libs/api"]


def test_nothing_affected_is_one_line_and_exit_0(repo: Repo, tmp_path: Path) -> None:
    monorepo(repo)
    repo.write("README.md", "docs\n")
    done = autotest(
        repo.path, tmp_path, "--once", "--affected", "--changed", "README.md", ".github/ci.yml"
    )
    assert one_line(done, 0) == (
        f"nothing affected: none of the changes lies in one of the 5 packages in {repo.path}; "
        "nothing to test"
    )


def test_affected_without_knowing_what_changed_is_a_usage_error(repo: Repo, tmp_path: Path) -> None:
    monorepo(repo)
    line = one_line(autotest(repo.path, tmp_path, "--once", "--affected"), 2, "stderr")
    assert line.startswith("autotest: error: --affected") and "--changed" in line


@pytest.mark.parametrize("option", [["--affected", "--changed", "libs/api"], ["--shard", "1/2"]])
def test_narrowing_a_watch_is_a_usage_error(repo: Repo, tmp_path: Path, option: list[str]) -> None:
    monorepo(repo)
    line = one_line(autotest(repo.path, tmp_path, *option), 2, "stderr")
    assert "--once or --plan" in line


# ---------------------------------------------------------------------------------------------
# --shard and --durations, end to end
# ---------------------------------------------------------------------------------------------


def test_shard_jobs_cover_every_package_exactly_once(repo: Repo, tmp_path: Path) -> None:
    everything = monorepo(repo)
    runs = []
    for _ in range(2):
        cut = []
        for k in (1, 2, 3):
            done = autotest(repo.path, tmp_path, "--once", "--shard", f"{k}/3")
            assert done.returncode == 0, done.stdout + done.stderr
            assert done.stdout.splitlines()[0].startswith(f"testing shard {k}/3: ")
            cut.append(ran(done.stdout))
        runs.append(cut)
    assert sorted(rel for piece in runs[0] for rel in piece) == everything
    assert all(piece for piece in runs[0])
    assert runs[0] == runs[1]  # deterministic: no run of a shard changes the next one's slices


def test_shards_of_the_affected_do_not_depend_on_the_order_of_the_changes(
    repo: Repo, tmp_path: Path
) -> None:
    monorepo(repo)
    one = ["--changed", "tools/cli", "libs/api"]
    other = ["--changed", "libs/api", "tools/cli"]
    cuts = []
    for changed in (one, other):
        cut = [
            set(paths(plan(autotest(repo.path, tmp_path, "--plan", "--affected", "--shard",
                                    f"{k}/2", *changed))))
            for k in (1, 2)
        ]  # fmt: skip
        cuts.append(cut)
    assert cuts[0] == cuts[1]
    assert set.union(*cuts[0]) == {"tools/cli", "libs/api", "exporter/foo-http", "services/web-app"}
    assert not set.intersection(*cuts[0])


@pytest.mark.parametrize("spec", ["0/4", "5/4", "a/b", "3", "1/0", "-1/4", ""])
def test_bad_shard_is_one_line_and_exit_2(repo: Repo, tmp_path: Path, spec: str) -> None:
    monorepo(repo)
    line = one_line(autotest(repo.path, tmp_path, "--once", f"--shard={spec}"), 2, "stderr")
    assert line.startswith("autotest: error: ") and "--shard" in line and "K/N" in line


def test_empty_shard_is_one_line_and_exit_0(repo: Repo, tmp_path: Path) -> None:
    repo.package("libs/core")
    repo.package("libs/api")
    done = autotest(repo.path, tmp_path, "--once", "--shard", "3/3")
    assert one_line(done, 0) == (
        f"shard 3/3 is empty: 2 packages in {repo.path} shared among 3 shards; nothing to test"
    )


def test_once_writes_durations_and_shards_balance_by_them(repo: Repo, tmp_path: Path) -> None:
    everything = monorepo(repo)
    durations = tmp_path / "ci-cache" / "durations.json"
    done = autotest(repo.path, tmp_path, "--once", "--durations", str(durations))
    assert done.returncode == 0, done.stdout + done.stderr
    written = json.loads(durations.read_text())
    assert sorted(written) == everything and all(t > 0 for t in written.values())

    durations.write_text(json.dumps({**written, "libs/core": 100.0}))
    cut = [
        paths(plan(autotest(repo.path, tmp_path, "--plan", "--shard", f"{k}/2", "--durations",
                            str(durations))))
        for k in (1, 2)
    ]  # fmt: skip
    assert cut[0] == ["libs/core"] and sorted(cut[1]) == sorted(set(everything) - {"libs/core"})


def test_the_machine_remembers_durations_between_runs(repo: Repo, tmp_path: Path) -> None:
    everything = monorepo(repo)
    assert autotest(repo.path, tmp_path, "--once").returncode == 0
    cache = Path(ci_env(tmp_path)["XDG_CACHE_HOME"])
    [memory] = (cache / "autotest" / "durations").glob("*/durations.json")
    assert stat.S_IMODE(memory.stat().st_mode) == 0o600
    assert sorted(json.loads(Path(memory).read_text())) == everything
    remembered = {**dict.fromkeys(everything, 1.0), "tools/cli": 50.0}
    Path(memory).write_text(json.dumps(remembered))
    first = paths(plan(autotest(repo.path, tmp_path, "--plan", "--shard", "1/2")))
    assert first == ["tools/cli"]
    assert autotest(repo.path, tmp_path, "--once", "--shard", "2/2").returncode == 0
    assert json.loads(Path(memory).read_text()) == remembered  # a shard's run keeps no times


def test_bad_durations_file_is_one_line_and_exit_2(repo: Repo, tmp_path: Path) -> None:
    monorepo(repo)
    bad = repo.write("durations.json", "[1, 2]")
    done = autotest(repo.path, tmp_path, "--once", "--shard", "1/2", "--durations", str(bad))
    assert "durations.json" in one_line(done, 2, "stderr")


# ---------------------------------------------------------------------------------------------
# --plan, end to end
# ---------------------------------------------------------------------------------------------


def test_plan_prints_the_cycle_as_json_and_runs_nothing(repo: Repo, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    monorepo(repo, marker)
    done = autotest(repo.path, tmp_path, "--plan", "--changed", "libs/api", "--", "-v")
    data = plan(done)
    assert not marker.exists()
    assert data["version"] == 1 and data["root"] == str(repo.path.resolve())
    assert paths(data) == [
        "libs/api", "exporter/foo-http", "services/web-app", "libs/core", "tools/cli"
    ]  # fmt: skip
    api, foo, web = data["packages"][:3]
    assert api == {
        "path": "libs/api",
        "name": "acme-api",
        "reason": "changed",
        "runner": "pytest",  # the root configures pytest
        "interpreter": sys.executable,
        "argv": [sys.executable, "-X", "faulthandler", "-m", "pytest", "tests", "-v"],
        "selection": "its tests/ directory",  # after it, the runner arguments
        "dependencies": ["libs/core"],
        "first_stage": [],  # a directory changed: it would run whole
    }
    assert (foo["name"], foo["reason"], foo["dependencies"]) == (
        "foo-http", "uses libs/api (imports)", ["libs/api"]
    )  # fmt: skip
    assert (web["name"], web["dependencies"]) == ("web-app", ["libs/api"])
    assert data["packages"][3]["reason"] == "used by 3 packages"  # the rest: bases first


def test_plan_honours_affected_and_shard(repo: Repo, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    monorepo(repo, marker)
    args = ["--plan", "--affected", "--changed", "libs/core"]
    whole = paths(plan(autotest(repo.path, tmp_path, *args)))
    assert whole == ["libs/core", "libs/api", "exporter/foo-http", "services/web-app"]
    halves = [
        paths(plan(autotest(repo.path, tmp_path, *args, "--shard", f"{k}/2"))) for k in (1, 2)
    ]
    assert sorted(halves[0] + halves[1]) == sorted(whole)
    assert all(half == [p for p in whole if p in half] for half in halves)
    assert not marker.exists()


def test_plan_with_nothing_to_test_is_an_empty_list(repo: Repo, tmp_path: Path) -> None:
    monorepo(repo)
    done = autotest(repo.path, tmp_path, "--plan", "--affected", "--changed", "README.md")
    assert plan(done)["packages"] == [] and done.stderr == ""


def test_plan_shows_a_command_runner_without_an_interpreter(repo: Repo, tmp_path: Path) -> None:
    repo.package("libs/core")
    data = plan(autotest(repo.path, tmp_path, "--plan", "--runner", "make -C {package} test"))
    (entry,) = data["packages"]
    assert (entry["runner"], entry["interpreter"]) == ("command", None)
    assert entry["argv"] == ["make", "-C", str(repo.path.resolve() / "libs/core"), "test"]


def test_plan_needs_neither_the_runner_nor_watchdog(repo: Repo, tmp_path: Path) -> None:
    """The README's plan job installs nothing but Python."""
    python = str(bare_venv(tmp_path / "bare"))
    assert subprocess.run([python, "-c", "import nose"], capture_output=True).returncode
    monorepo(repo)
    done = subprocess.run(
        [python, str(AUTOTEST), "--root", str(repo.path), "--plan", "--affected", "--changed",
         "libs/api"],
        capture_output=True, text=True, timeout=60, env=ci_env(tmp_path),
    )  # fmt: skip
    data = plan(done)
    assert paths(data) == ["libs/api", "exporter/foo-http", "services/web-app"]
    assert data["packages"][0]["interpreter"] == python


def test_plan_sends_notices_to_stderr(repo: Repo, tmp_path: Path) -> None:
    monorepo(repo)
    done = autotest(repo.path, tmp_path, "--plan", "--changed", "nowhere.txt", "libs/api")
    assert paths(plan(done))[0] == "libs/api"
    assert "nowhere.txt is in no package" in done.stderr


# ---------------------------------------------------------------------------------------------
# --junit-xml, end to end
# ---------------------------------------------------------------------------------------------


def junit_repo(repo: Repo) -> None:
    """A passing package, a failing one (pass, fail, error, skip), and one after it."""
    repo.package("libs/core")
    repo.package("services/api-server", name="api-server", tests=SAMPLE)
    repo.package("tools/zeta")


@pytest.mark.parametrize("runner", ["nose", "pytest", "nose2"])
def test_junit_report_merges_the_runners_cases_and_names_the_failing_test(
    repo: Repo, tmp_path: Path, runner: str
) -> None:
    junit_repo(repo)
    report = tmp_path / "reports" / "junit.xml"
    done = autotest(
        repo.path, tmp_path, "--once", "--runner", runner, "--junit-xml", str(report),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    root = ET.parse(report).getroot()
    assert [s.get("name") for s in root] == ["libs/core", "services/api-server"]  # zeta: not run
    core = suite_of(root, "libs/core")
    assert [c.get("name") for c in core] == ["test_ok"]
    assert all(c.find(tag) is None for c in core for tag in ("failure", "error", "skipped"))
    failing = suite_of(root, "services/api-server")
    (failed,) = [c for c in failing if c.get("name") == "test_fail"]
    assert failed.find("failure") is not None
    assert "SampleTest" in (failed.get("classname") or "")
    assert "1 != 2" in ET.tostring(failed, encoding="unicode")
    assert [c.get("name") for c in failing if c.find("skipped") is not None] == ["test_skip"]
    assert int(root.get("tests", "0")) == 5
    assert os.listdir(report.parent) == ["junit.xml"]  # no temporary file left


def test_junit_report_with_parallel_runs_is_in_the_cycle_order(repo: Repo, tmp_path: Path) -> None:
    everything = monorepo(repo)
    report = tmp_path / "report.xml"
    done = autotest(repo.path, tmp_path, "--once", "-j", "3", "--junit-xml", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    root = ET.parse(report).getroot()
    assert sorted(ran(done.stdout)) == everything
    assert [s.get("name") for s in root] == ran(done.stdout)
    assert all(len(suite) == 1 and suite[0].get("name") == "test_ok" for suite in root)


def test_junit_report_for_unittest_is_one_package_case(repo: Repo, tmp_path: Path) -> None:
    junit_repo(repo)
    report = tmp_path / "report.xml"
    done = autotest(
        repo.path, tmp_path, "--once", "--runner", "unittest", "--junit-xml", str(report)
    )
    assert done.returncode == 1, done.stdout + done.stderr
    core, failing = ET.parse(report).getroot()
    assert [(c.get("name"), [e.tag for e in c]) for c in core] == [("(package)", ["skipped"])]
    (case,) = failing
    failure = case.find("failure")
    assert failure is not None and failure.get("message") == "FAILED"
    assert "FAIL: test_fail" in (failure.text or "")


@pytest.mark.parametrize("runner", ["nose", "pytest"])
def test_junit_report_names_a_timeout_as_a_package_error(
    repo: Repo, tmp_path: Path, runner: str
) -> None:
    repo.package("libs/core")
    repo.package("libs/slow", tests=SLEEPING_TEST)
    report = tmp_path / "report.xml"
    done = autotest(
        repo.path, tmp_path, "--once", "--runner", runner, "--timeout", "2",
        "--junit-xml", str(report),
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    core, slow = ET.parse(report).getroot()
    assert [c.get("name") for c in core] == ["test_ok"]
    assert [c.get("name") for c in slow][-1] == "(package)"
    error = slow[-1].find("error")
    assert error is not None and error.get("message") == "FAILED (timed out)"


def test_junit_report_is_there_when_nothing_is_tested(repo: Repo, tmp_path: Path) -> None:
    monorepo(repo)
    report = tmp_path / "report.xml"
    done = autotest(
        repo.path, tmp_path, "--once", "--affected", "--changed", "README.md", "--junit-xml",
        str(report),
    )  # fmt: skip
    assert done.returncode == 0
    root = ET.parse(report).getroot()
    assert (root.tag, len(root), root.get("tests")) == ("testsuites", 0, "0")


def test_interrupted_cycle_leaves_a_report_of_what_ran(repo: Repo, tmp_path: Path) -> None:
    repo.package("libs/core")
    repo.package("libs/slow", tests=SLEEPING_TEST)
    report = tmp_path / "report.xml"
    proc = subprocess.Popen(
        [sys.executable, str(AUTOTEST), "--root", str(repo.path), "--once", "--junit-xml",
         str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env=ci_env(tmp_path), preexec_fn=default_signals if os.name == "posix" else None,
    )  # fmt: skip
    try:
        assert wait_until(lambda: report.exists() and b"libs/core" in report.read_bytes(), 30)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    root = ET.parse(report).getroot()
    assert [s.get("name") for s in root] == ["libs/core"]


def test_watching_rewrites_the_report_each_cycle_and_never_reacts_to_it(
    repo: Repo, tmp_path: Path, watch: Callable[..., Watch]
) -> None:
    """The report lies in the tree and is rewritten during every cycle: that is autotest's own
    write, never a change.  From the second cycle on, runs are forked from the warm interpreter
    and still write their per-test XML."""
    repo.package("alpha")
    repo.package("beta")
    report = repo.path / "reports" / "junit.xml"
    w = watch(repo.path, "--junit-xml", str(report), env=ci_env(tmp_path))
    first = w.wait_cycles(1)
    assert w.lines[first - 1].startswith("all 2 packages passed"), w.output
    for number, name in enumerate(("alpha", "beta"), 2):
        source = repo.path / name / name / "__init__.py"
        source.write_text(source.read_text() + "# edited\n")
        end = w.wait_cycles(number)
        assert w.lines[end - 1].startswith("all 2 packages passed"), w.output
        root = ET.parse(report).getroot()
        assert [s.get("name") for s in root] == [name, "alpha" if name == "beta" else "beta"]
        assert all([c.get("name") for c in suite] == ["test_ok"] for suite in root)
    assert w.headers() == [
        "testing all 2 packages",
        "changed: alpha/alpha/__init__.py",
        "changed: beta/beta/__init__.py",
    ], w.output


def test_unwritable_junit_path_is_one_line_and_exit_2(repo: Repo, tmp_path: Path) -> None:
    repo.package("libs/core")
    blocker = repo.write("blocker", "a file, not a folder")
    done = autotest(repo.path, tmp_path, "--once", "--junit-xml", str(blocker / "report.xml"))
    assert "--junit-xml" in one_line(done, 2, "stderr")


# ---------------------------------------------------------------------------------------------
# The README's workflows, run as written
# ---------------------------------------------------------------------------------------------


def workflow_commands() -> list[list[str]]:
    """The autotest command lines of each workflow in README's "Use it in CI", as written."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use it in CI", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    assert len(blocks) == 2, section
    return [
        [re.sub(r"^\s*(-\s+)?(run:\s*)?", "", line) for line in block.splitlines()
         if "utilities/autotest.py" in line]
        for block in blocks
    ]  # fmt: skip


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd, capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return done.stdout


@pytest.fixture
def branch(repo: Repo, tmp_path: Path) -> Repo:
    """A clone whose origin/main is the monorepo, on a branch that changed libs/api."""
    monorepo(repo)
    copy = repo.path / "utilities" / "autotest.py"
    copy.parent.mkdir()
    shutil.copy(AUTOTEST, copy)
    repo.write(".gitignore", "report.xml\nplan.json\n")
    git(repo.path, "init", "-q", "-b", "main")
    git(repo.path, "add", "-A")
    git(repo.path, "commit", "-q", "-m", "start")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo.path, "remote", "add", "origin", str(remote))
    git(repo.path, "push", "-q", "origin", "main")
    git(repo.path, "fetch", "-q", "origin")
    git(repo.path, "checkout", "-q", "-b", "feature")
    repo.write("libs/api/acme_api/__init__.py", "VALUE = 2\n")
    git(repo.path, "commit", "-q", "-am", "change the api")
    return repo


def as_run(line: str, repo: Repo, **matrix: str) -> tuple[list[str], str]:
    """The command line with the matrix filled in, as argv for this Python, and the file its
    stdout goes to."""
    for key, value in matrix.items():
        line = line.replace("${{ matrix." + key + " }}", value)
    command, _, redirect = line.partition(" > ")
    argv = shlex.split(command)
    assert argv[:2] == ["python", "utilities/autotest.py"], line
    argv[0] = sys.executable
    return argv, redirect.strip()


def run_line(argv: list[str], repo: Repo, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=repo.path, capture_output=True, text=True, timeout=120,
        env=ci_env(tmp_path), stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_readme_sharded_workflow_runs_as_written(branch: Repo, tmp_path: Path) -> None:
    (line,) = workflow_commands()[0]
    assert "--since origin/main --affected --shard ${{ matrix.shard }}/4" in line
    tested: list[str] = []
    for k in ("1", "2", "3", "4"):
        argv, _ = as_run(line, branch, shard=k)
        done = run_line(argv, branch, tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        suites = [s.get("name", "") for s in ET.parse(branch.path / "report.xml").getroot()]
        assert suites == ran(done.stdout)
        tested += suites
    assert sorted(tested) == ["exporter/foo-http", "libs/api", "services/web-app"]
    assert git(branch.path, "status", "--porcelain") == ""  # nothing left in the tree


def test_readme_per_package_workflow_runs_as_written(branch: Repo, tmp_path: Path) -> None:
    plan_line, package_line = workflow_commands()[1]
    argv, redirect = as_run(plan_line, branch)
    assert redirect == "plan.json"
    done = run_line(argv, branch, tmp_path)
    data = plan(done)
    matrix = paths(data)  # what jq -c '[.packages[].path]' gives the matrix
    assert matrix == ["libs/api", "exporter/foo-http", "services/web-app"]
    for package in matrix:
        argv, _ = as_run(package_line, branch, package=package)
        done = run_line(argv, branch, tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert ran(done.stdout) == [package]
        suites = [s.get("name") for s in ET.parse(branch.path / "report.xml").getroot()]
        assert suites == [package]


def test_readme_documents_every_exit_status() -> None:
    section = (ROOT / "README.md").read_text().split("## Use it in CI", 1)[1]
    for status in ("**0**", "**1**", "**2**", "**130**", "**143**"):
        assert status in section


def exact_bytes(entry: dict[str, Any], key: str) -> Any:
    """The README's rule for reading a plan's paths back: ``KEY_bytes`` (base64) where it is
    present, else the string's UTF-8."""
    import base64

    if f"{key}_bytes" not in entry:
        value = entry[key]
        return value.encode() if isinstance(value, str) else [v.encode() for v in value]
    found = entry[f"{key}_bytes"]
    if isinstance(found, str):
        return base64.b64decode(found)
    return [base64.b64decode(v) for v in found]


@pytest.mark.skipif(sys.platform != "linux", reason="a name that is not UTF-8 needs Linux")
def test_a_plan_maps_a_name_that_is_not_utf8_back_to_its_bytes(repo: Repo, tmp_path: Path) -> None:
    bad = os.fsdecode(b"bad\xffname")
    repo.package(bad, name="bad-name")
    repo.package("libs/app", deps=["bad-name"])
    repo.package("libs/plain")
    done = subprocess.run(
        [sys.executable, str(AUTOTEST), "--root", str(repo.path), "--plan", "--runner",
         "make -C {package} test"],
        capture_output=True, timeout=120, env=ci_env(tmp_path), stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout.decode("utf-8"))  # strict: valid UTF-8, no lone surrogates
    json.dumps(data, ensure_ascii=False).encode("utf-8")
    by_name = {entry["name"]: entry for entry in data["packages"]}
    entry, app, plain = by_name["bad-name"], by_name["app"], by_name["plain"]
    assert exact_bytes(entry, "path") == b"bad\xffname"
    assert entry["path"] == "bad\\xffname"  # readable as it stands
    package_dir = os.fsencode(repo.path.resolve() / bad)
    assert exact_bytes(entry, "argv") == [b"make", b"-C", package_dir, b"test"]
    assert exact_bytes(app, "dependencies") == [b"bad\xffname"]
    assert "path_bytes" not in plain and "argv_bytes" not in plain  # UTF-8 names stay as they are
    assert exact_bytes(data, "root") == os.fsencode(repo.path.resolve())

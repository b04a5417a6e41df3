"""Inside a package, the tests a save concerns run first: the first stage (the test modules that
import a changed module, and the tests that failed last run), then the rest; what cannot be
traced runs whole.  Real watchers and real runs of each runner, and the pure decisions alone.

Saves are GTK editors' (a temporary renamed over the file): the tests count which test modules
ran in a cycle, and a save that is not atomic can, on a loaded machine, start a cycle on a file
half written and a second one once it is whole.
"""

from __future__ import annotations

import json
import os
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
from test_events import save_gtk

from conftest import Repo, Watch, clean_env, load_autotest, run_autotest

at = load_autotest()


MODULES = 6  # test modules of the package "big", each importing one module of it

TEST_MODULE = """\
import os
import sys
from big.m{i} import VALUE


def test_value_{i}():
    with open(os.environ["STAGES_LOG"], "a") as log:
        log.write("test_m{i}\\n")
    assert VALUE == {i}
"""

UNITTEST_MODULE = """\
import os
import sys
import unittest
from big.m{i} import VALUE


class T(unittest.TestCase):
    def test_value_{i}(self):
        with open(os.environ["STAGES_LOG"], "a") as log:
            log.write("test_m{i}\\n")
        self.assertEqual(VALUE, {i})
"""


def big_package(repo: Repo, unittest: bool = False) -> Path:
    """A package of MODULES modules, each with the one test module that imports it.  Its
    .pytest_cache is there already: pytest's first run making it splits the watch on the
    package, whose rescan can report the whole package changed, a cycle of its own."""
    repo.write("big/pyproject.toml", '[project]\nname = "big"\nversion = "0"\n')
    (repo.path / "big/.pytest_cache").mkdir(parents=True)
    repo.write("big/big/__init__.py")
    repo.write("big/tests/__init__.py")
    template = UNITTEST_MODULE if unittest else TEST_MODULE
    for i in range(MODULES):
        repo.write(f"big/big/m{i}.py", f"VALUE = {i}\n")
        repo.write(f"big/tests/test_m{i}.py", template.format(i=i))
    return repo.path / "big"


def ran(log: Path) -> Counter[str]:
    """Which test modules ran since the log was last emptied, and how often; emptied now."""
    text = log.read_text() if log.exists() else ""
    log.write_text("")
    return Counter(text.split())


def start_watching(watch: object, repo: Repo, log: Path, *args: str) -> Watch:
    env = clean_env(STAGES_LOG=str(log), PYTHONPATH=str(repo.path / "big"))
    w: Watch = watch(repo.path, "-v", *args, env=env)  # type: ignore[operator]
    w.wait_cycles(1, timeout=60)
    return w


@pytest.mark.parametrize("runner", ["pytest", "nose", "nose2", "unittest"])
def test_a_breaking_save_fails_in_the_first_stage_with_only_the_tests_that_import_it(
    repo: Repo, watch: object, tmp_path: Path, runner: str
) -> None:
    big_package(repo, unittest=runner == "unittest")
    log = tmp_path / "ran.log"
    w = start_watching(watch, repo, log, "--runner", runner)
    assert ran(log) == Counter(f"test_m{i}" for i in range(MODULES))

    save_gtk(repo.path / "big/big/m3.py", "VALUE = 33\n")
    end = w.wait_cycles(2, timeout=60)
    assert "big: first stage: 1 of 6 test modules; then" in w.output, w.output
    assert "tests/test_m3.py imports big.m3" in w.output
    assert any("FAILED" in line and "first stage" in line for line in w.lines[:end]), w.output
    assert ran(log) == Counter(["test_m3"])  # the other five never started

    save_gtk(repo.path / "big/big/m3.py", "VALUE = 3\n")
    w.wait_cycles(3, timeout=60)
    counts = ran(log)
    assert set(counts) == {f"test_m{i}" for i in range(MODULES)}, w.output
    if runner in ("pytest", "nose"):  # they leave out what ran first
        assert set(counts.values()) == {1}, counts
    else:  # unittest and nose2 cannot: their second stage runs all again
        assert counts["test_m3"] == 2 and "then all of its tests again" in w.output


def test_the_tests_that_failed_last_run_come_first_by_id(
    repo: Repo, watch: object, tmp_path: Path
) -> None:
    big_package(repo)
    other = "\n\ndef test_other():\n    pass\n"
    repo.write("big/tests/test_m3.py", TEST_MODULE.format(i=3) + other)
    log = tmp_path / "ran.log"
    w = start_watching(watch, repo, log, "--runner", "pytest")
    save_gtk(repo.path / "big/big/m3.py", "VALUE = 33\n")
    w.wait_cycles(2, timeout=60)
    ran(log)
    save_gtk(repo.path / "big/big/m5.py", "VALUE = 5  # still 5\n")  # m3 stays broken
    end = w.wait_cycles(3, timeout=60)
    shown = "\n".join(w.lines[w.lines.index("changed: big/big/m5.py") :])
    assert "tests/test_m3.py::test_value_3 failed last run" in shown
    assert "tests/test_m5.py imports big.m5" in shown
    assert any("FAILED" in line and "first stage" in line for line in w.lines[:end])
    assert ran(log) == Counter(["test_m3", "test_m5"])


def test_a_dependency_change_reaches_the_modules_that_import_it_through_the_package(
    repo: Repo, watch: object, tmp_path: Path
) -> None:
    """app's test imports app.core, which imports big.m3: a change to big.m3 runs that test
    first in app, and the rest of app after."""
    big_package(repo)
    repo.write("app/pyproject.toml", '[project]\nname = "app"\ndependencies = ["big"]\n')
    (repo.path / "app/.pytest_cache").mkdir()
    repo.write("app/app/__init__.py")
    repo.write("app/app/core.py", "from big.m3 import VALUE\n\nDOUBLE = 2 * VALUE\n")
    repo.write("app/tests/__init__.py")
    repo.write(
        "app/tests/test_core.py",
        "from app.core import DOUBLE\n\n\ndef test_double():\n    assert DOUBLE == 6\n",
    )
    repo.write("app/tests/test_plain.py", "def test_plain():\n    pass\n")
    log = tmp_path / "ran.log"
    env = clean_env(
        STAGES_LOG=str(log),
        PYTHONPATH=os.pathsep.join([str(repo.path / "big"), str(repo.path / "app")]),
    )
    w: Watch = watch(repo.path, "-v", "--runner", "pytest", env=env)  # type: ignore[operator]
    w.wait_cycles(1, timeout=60)
    # big's own test of m3 still passes: VALUE == 3 is what it asserts; app's needs 6
    save_gtk(repo.path / "big/big/m3.py", "VALUE = 3\nVALUE = 3  # said twice\n")
    seen = w.wait_for(r"app: first stage: 1 of 2 test modules; then the rest$", timeout=60)
    w.wait_for(r"tests/test_core.py imports app.core, which imports big.m3$", seen - 1)
    w.wait_cycles(2, timeout=60)
    save_gtk(repo.path / "big/big/m5.py", "VALUE = 5  # saved\n")  # app does not import it
    w.wait_for(r"app runs whole: nothing in its tests imports the change$", seen, timeout=60)


@pytest.mark.parametrize(
    ("rel", "text", "why"),
    [
        ("big/tests/conftest.py", "", "big/tests/conftest.py changed (a conftest.py)"),
        ("big/data.json", "{}", "big/data.json changed (not a module)"),
        (
            "big/pyproject.toml",
            '[project]\nname = "big"\n',
            "big/pyproject.toml changed (not a module)",
        ),
        ("big/big/__init__.py", "", "every test module imports the change"),
    ],
)
def test_what_cannot_be_traced_runs_the_whole_package_in_one_stage(
    repo: Repo, watch: object, tmp_path: Path, rel: str, text: str, why: str
) -> None:
    big_package(repo)
    repo.write(rel, text)
    log = tmp_path / "ran.log"
    w = start_watching(watch, repo, log, "--runner", "pytest")
    ran(log)
    save_gtk(repo.path / rel, text + "\n")
    w.wait_cycles(2, timeout=60)
    assert f"big runs whole: {why}" in w.output
    assert set(ran(log).values()) == {1} and "first stage" not in w.output


def test_the_first_run_after_start_runs_whole(repo: Repo, tmp_path: Path) -> None:
    big_package(repo)
    env = clean_env(STAGES_LOG=str(tmp_path / "ran.log"), PYTHONPATH=str(repo.path / "big"))
    done = run_autotest(
        repo.path, "--once", "-v", "--changed", "big/big/m3.py", "--runner", "pytest", env=env
    )
    assert "big runs whole: its first run since autotest started" in done.stdout, done.stdout
    assert done.returncode == 0


def test_a_module_imported_by_a_computed_name_puts_its_importers_first(
    repo: Repo, watch: object, tmp_path: Path
) -> None:
    big_package(repo)
    repo.write(
        "big/tests/test_plugins.py",
        "import importlib\n\nNAMES = ['big.m1']\n\n\ndef test_loads():\n"
        "    for name in NAMES:\n        importlib.import_module(name)\n",
    )
    log = tmp_path / "ran.log"
    w = start_watching(watch, repo, log, "--runner", "pytest")
    save_gtk(repo.path / "big/big/m4.py", "VALUE = 4  # again\n")
    w.wait_cycles(2, timeout=60)
    assert "tests/test_plugins.py imports modules by computed names" in w.output, w.output
    assert "big: first stage: 2 of 7 test modules; then the rest" in w.output


@pytest.mark.parametrize("runner", ["pytest", "nose"])
def test_the_junit_report_holds_both_stages_as_one_package(
    repo: Repo, watch: object, tmp_path: Path, runner: str
) -> None:
    big_package(repo)
    log, report = tmp_path / "ran.log", tmp_path / "junit.xml"
    w = start_watching(watch, repo, log, "--runner", runner, "--junit-xml", str(report))
    save_gtk(repo.path / "big/big/m3.py", "VALUE = 3  # again\n")
    w.wait_cycles(2, timeout=60)
    assert "big: first stage: 1 of 6 test modules" in w.output, w.output
    (suite,) = ET.parse(report).getroot()
    names = sorted(case.get("name", "") for case in suite)
    assert names == [f"test_value_{i}" for i in range(MODULES)]
    assert suite.get("tests") == str(MODULES) and suite.get("failures") == "0"


def test_no_stages_runs_every_package_whole(repo: Repo, watch: object, tmp_path: Path) -> None:
    big_package(repo)
    log = tmp_path / "ran.log"
    w = start_watching(watch, repo, log, "--runner", "pytest", "--no-stages")
    ran(log)
    save_gtk(repo.path / "big/big/m3.py", "VALUE = 33\n")
    w.wait_cycles(2, timeout=60)
    assert "first stage" not in w.output
    assert len(ran(log)) == MODULES


def test_the_plan_names_the_first_stage_of_a_change(repo: Repo) -> None:
    big_package(repo)
    done = run_autotest(repo.path, "--plan", "--changed", "big/big/m3.py", "--runner", "pytest")
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout)["packages"]
    assert entry["first_stage"] == ["tests/test_m3.py imports big.m3"]


# ---------------------------------------------------------------------------------------------
# The decisions on their own
# ---------------------------------------------------------------------------------------------


def module(name: str, *imports: str, dynamic: bool = False, where: str = "") -> object:
    path = where or name.replace(".", "/") + ".py"
    return at.Module(path, name, frozenset(imports), dynamic)


def test_a_change_reaches_modules_through_chains_of_imports() -> None:
    modules = [
        module("big.m3"),
        module("big.util", "big.m3.VALUE"),
        module("tests.test_util", "big.util", "big"),
        module("tests.test_other", "big.m4"),
        module("tests.test_loader", dynamic=True),
    ]
    chains = at.reached_by({"big/m3.py"}, modules)
    assert chains["tests/test_util.py"] == ("big.util", "big.m3")
    assert at.chain_text(chains["tests/test_util.py"]) == "imports big.util, which imports big.m3"
    assert at.chain_text(chains["tests/test_loader.py"]) == "imports modules by computed names"
    assert "tests/test_other.py" not in chains


def test_a_changed_package_init_reaches_every_module_importing_from_the_package() -> None:
    modules = [module("big", where="big/__init__.py"), module("tests.t", "big.m4.VALUE")]
    assert at.reached_by({"big/__init__.py"}, modules)["tests/t.py"] == ("big",)


def test_test_modules_of_two_packages_with_one_name_are_never_taken_for_each_other() -> None:
    modules = [
        module("a.core", where="a/a/core.py"),
        module("tests.test_core", "a.core", where="a/tests/test_core.py"),
        module("b.core", where="b/b/core.py"),
        module("tests.test_core", "b.core", where="b/tests/test_core.py"),
    ]
    assert set(at.reached_by({"a/a/core.py"}, modules)) == {"a/a/core.py", "a/tests/test_core.py"}


def test_relative_imports_are_resolved_against_the_module() -> None:
    assert at.absolute_imports({".m", "..x.y", "."}, "big.sub.mod", False) == {
        "big.sub.m",
        "big.x.y",
        "big.sub",
    }
    assert at.absolute_imports({".m"}, "big.sub", True) == {"big.sub.m"}


def test_a_failed_test_is_found_by_its_module_wherever_the_runners_root_is() -> None:
    failed = [
        at.FailingTest("libs.big.tests.test_a.TestX.test_y[a.b]", "", ""),
        at.FailingTest("tests.test_b.test_z", "", ""),
    ]
    found = at.failed_files(failed, ["tests/test_a.py", "tests/test_b.py", "tests/test_c.py"])
    assert found == {"tests/test_a.py": "TestX.test_y[a.b]", "tests/test_b.py": "test_z"}
    assert at.pytest_node_id("tests/test_a.py", "TestX.test_y[a.b]") == (
        "tests/test_a.py::TestX::test_y[a.b]"
    )


def package_tests(tests: tuple[str, ...], rootdir: str = "") -> object:
    package = at.Package(Path("/r/libs/big"), "libs/big")
    return at.PackageTests(package, tests, Path(rootdir or "/r/libs/big"))


FIRST = (
    at.FirstTest("tests/test_a.py", "failed last run", "test_y"),
    at.FirstTest("tests/test_m3.py", "imports big.m3"),
)


def test_each_pytest_stage_is_the_selection_less_the_other_stages_modules() -> None:
    """Never --deselect: it matches ids as prefixes (test_y would take test_y_more along)."""
    found = package_tests(("tests/test_a.py", "tests/test_m3.py", "tests/test_z.py"), "/r")
    stages = at.pytest_stages(("tests", "-m", "not slow"), found, FIRST)
    assert stages.first == ("tests", "-m", "not slow", "--ignore=tests/test_z.py")
    assert stages.rest == (
        "tests", "-m", "not slow", "--ignore=tests/test_a.py", "--ignore=tests/test_m3.py",
    )  # fmt: skip
    assert str(stages.tests[0]) == "tests/test_a.py::test_y failed last run"


def test_a_test_module_the_selection_names_is_dropped_from_it_not_ignored() -> None:
    """pytest runs a path named on its command line whatever --ignore says."""
    found = package_tests(("tests/test_a.py", "tests/test_m3.py", "tests/test_z.py"))
    named = ("tests/test_a.py", "tests/test_z.py::TestZ", "-m", "unit")
    stages = at.pytest_stages(named, found, FIRST)
    assert stages.first == ("tests/test_a.py", "-m", "unit", "--ignore=tests/test_z.py")
    assert stages.rest[:3] == ("tests/test_z.py::TestZ", "-m", "unit")


def test_each_nose_stage_leaves_out_the_other_stages_modules_by_name() -> None:
    found = package_tests(("tests/test_a.py", "tests/test_m3.py", "tests/test_z.py"))
    stages = at.nose_stages((), found, FIRST)
    own = (r"^\.", r"^_", r"^setup\.py$")  # nose's, which -I replaces
    assert stages.first[1::2] == (*own, r"^test_z\.py$")
    assert stages.rest[1::2] == (*own, r"^test_a\.py$", r"^test_m3\.py$")
    assert set(stages.first[::2]) == set(stages.rest[::2]) == {"-I"}


def test_nose_runs_whole_when_a_first_stage_module_shares_its_name() -> None:
    found = package_tests(("tests/test_m3.py", "tests/unit/test_m3.py", "tests/test_z.py"))
    plan = at.nose_stages((), found, FIRST[1:])
    assert plan == at.OneStage("a test module of the first stage shares its name with another")


def test_unittest_and_nose2_name_modules_and_run_everything_again() -> None:
    found = package_tests(("tests/test_a.py", "tests/test_m3.py", "tests/test_z.py"))
    unittest = at.STAGE_ARGS["unittest"]((), found, FIRST)
    assert unittest.first == ("-k", "tests.test_a.*", "-k", "tests.test_m3.*")
    nose2 = at.STAGE_ARGS["nose2"]((), found, FIRST)
    assert nose2.first == ("tests.test_a", "tests.test_m3")
    assert unittest.rest == nose2.rest == () and unittest.rest_repeats and nose2.rest_repeats


@pytest.mark.parametrize(
    ("paths", "why"),
    [
        (["big/conftest.py"], "big/conftest.py changed (a conftest.py)"),
        (["big/setup.py"], "big/setup.py changed (not a module)"),
        (["big/big/m1.py", "big/README.md"], "big/README.md changed (not a module)"),
    ],
)
def test_a_change_that_cannot_be_traced_runs_whole(paths: list[str], why: str) -> None:
    root = Path("/r")
    change = at.change_of([str(root / p) for p in paths], root)
    runner = at.BUILTIN_RUNNERS["pytest"]
    assert at.whole_run(runner, change, at.History()) == at.OneStage(why)


def test_a_first_run_a_command_and_no_change_run_whole() -> None:
    change = at.change_of(["/r/big/big/m1.py"], Path("/r"))
    pytest_runner = at.BUILTIN_RUNNERS["pytest"]
    first = at.whole_run(pytest_runner, change, None)
    assert first == at.OneStage("its first run since autotest started")
    assert at.whole_run(at.make_runner("make test"), change, at.History()) == at.OneStage()
    assert at.whole_run(pytest_runner, at.Change(), at.History()) == at.OneStage()
    assert at.whole_run(pytest_runner, change, at.History()) is None


def test_only_the_test_modules_the_runner_would_collect_are_chosen(repo: Repo) -> None:
    """A module outside pytest's testpaths or its --ignore, or where nose's or unittest's
    discovery never goes, must not run first: the project's own command would not run it."""
    for rel in (
        "tests/__init__.py", "tests/test_a.py", "tests/slow/test_b.py", "scripts/test_c.py",
        "tests/unit/__init__.py", "tests/unit/test_d.py", "tests/conftest.py",
        "tests/functional_tests/test_e.py",
    ):  # fmt: skip
        repo.write(f"big/{rel}")
    repo.write("big/pyproject.toml", '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    package = at.Package(repo.path / "big", "big")
    files = [str(p) for p in (repo.path / "big").rglob("*.py")]

    def chosen(runner: str, *selection: str) -> tuple[str, ...]:
        choice = at.Selection(tuple(selection))
        return at.candidate_tests(package, at.BUILTIN_RUNNERS[runner], choice, repo.path, files)

    packages = ("tests/test_a.py", "tests/unit/test_d.py")
    assert chosen("pytest") == (
        "tests/functional_tests/test_e.py", "tests/slow/test_b.py", *packages
    )  # fmt: skip
    assert chosen("pytest", "tests", "--ignore", "tests/slow") == (
        "tests/functional_tests/test_e.py", *packages,
    )  # fmt: skip
    assert chosen("nose") == ("tests/functional_tests/test_e.py", *packages)  # named like tests
    assert chosen("unittest") == chosen("nose2") == packages  # packages only


def test_the_timeout_covers_both_stages_together(repo: Repo) -> None:
    """The second stage has what the first left of --timeout: with all of it spent, the
    second stage's run is killed at its first look, and the line names the whole timeout."""
    package = at.Package(repo.package("alpha"), "alpha")
    runner = at.make_runner(f"{sys.executable} -c 'import time; time.sleep(30)'")
    start = at.RunStart(package, runner, sys.executable, (), dict(os.environ))
    run = at.Run(start, 5.0, spent=5.0)
    result = run.poll()
    assert result is not None and result.note == "timed out", result
    assert "timed out after 5s; killed" in result.output + result.tail


def test_a_module_that_the_projects_config_leaves_out_never_runs_first(
    repo: Repo, watch: object, tmp_path: Path
) -> None:
    """pytest's own rules of what it collects hold in both stages: a test module its
    conftest's collect_ignore or its norecursedirs leave out is not run because it imports
    the change (named on the command line, pytest would run it)."""
    repo.write("big/pyproject.toml", '[project]\nname = "big"\n\n[tool.pytest.ini_options]\n'
               'norecursedirs = ["e2e"]\n')  # fmt: skip
    (repo.path / "big/.pytest_cache").mkdir()
    repo.write("big/big/__init__.py")
    repo.write("big/big/core.py", "VALUE = 1\n")
    repo.write("big/conftest.py", 'collect_ignore = ["tests/integration"]\n')
    needs_a_database = "from big.core import VALUE\n\n\ndef test_live():\n    assert False\n"
    repo.write("big/tests/integration/test_pg.py", needs_a_database)
    repo.write("big/tests/e2e/test_live.py", needs_a_database)
    repo.write("big/tests/test_core.py", "from big.core import VALUE\n\n\ndef test_v():\n"
               "    assert VALUE == 1\n")  # fmt: skip
    repo.write("big/tests/test_other.py", "def test_other():\n    pass\n")
    log = tmp_path / "ran.log"
    w = start_watching(watch, repo, log, "--runner", "pytest")
    save_gtk(repo.path / "big/big/core.py", "VALUE = 1  # saved\n")
    lines = w.lines[: w.wait_cycles(2, timeout=60)]
    assert "tests/test_core.py imports big.core" in w.output, w.output
    assert lines[-1].startswith("the 1 package passed"), w.output


def test_a_conftest_that_imports_the_change_reaches_every_test_module_below_it() -> None:
    top = Path("/r/big")
    chains = {"/r/big/tests/unit/conftest.py": ("big.settings",), "/r/big/big/settings.py": ()}
    assert at.why_reached(top, "tests/unit/test_a.py", chains) == (
        "runs under tests/unit/conftest.py, which imports big.settings"
    )
    assert at.why_reached(top, "tests/test_b.py", chains) == ""


def test_a_test_helper_reaches_the_tests_that_import_it_by_either_name(
    repo: Repo, watch: object, tmp_path: Path
) -> None:
    """In a tests/ without __init__.py pytest imports tests/helpers.py as ``helpers``; in one
    with it, as ``tests.helpers``: either way the tests importing it come first."""
    big_package(repo)
    repo.write("big/tests/helpers.py", "from big.m1 import VALUE as ONE\n")
    repo.write("big/tests/test_with_helper.py", "from helpers import ONE\n\n\n"
               "def test_one():\n    assert ONE == 1\n")  # fmt: skip
    (repo.path / "big/tests/__init__.py").unlink()
    log = tmp_path / "ran.log"
    w = start_watching(watch, repo, log, "--runner", "pytest")
    save_gtk(repo.path / "big/big/m1.py", "VALUE = 1  # saved\n")
    seen = w.wait_for(r"big: first stage: 2 of 7 test modules; then the rest$", timeout=60)
    w.wait_for(r"tests/test_with_helper.py imports helpers, which imports big.m1$", seen - 1)


def test_the_name_pytest_imports_a_module_by_starts_below_the_first_folder_no_package() -> None:
    packages = {"/r/big/tests/unit"}
    assert at.basedir_name("/r/big/tests/unit/helpers.py", packages.__contains__) == "unit.helpers"
    assert at.basedir_name("/r/big/tests/helpers.py", packages.__contains__) == "helpers"
    assert at.basedir_name("/r/big/tests/unit/__init__.py", packages.__contains__) == "unit"


def test_a_directory_in_a_change_stands_for_its_files(tmp_path: Path) -> None:
    (tmp_path / "big" / "big").mkdir(parents=True)
    paths = [str(tmp_path / "big"), str(tmp_path / "big/big/m1.py")]
    assert at.change_of(paths, tmp_path).untraceable == ""
    gone = [str(tmp_path / "big/old_tests")]  # a directory removed: nothing tells what it held
    assert at.change_of(gone, tmp_path).untraceable == "big/old_tests changed (not a module)"

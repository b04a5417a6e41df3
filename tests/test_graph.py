"""The package set and the graph of real monorepos: which directories are packages, which
package uses which (and why), the order that follows, the root, and the changes a git hook
names.  Repositories here are shaped like real ones: a uv workspace root, src layouts, test
helpers in dependency groups and test-requirements.txt, fixture projects and templates."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_cli import edit

from conftest import (
    AUTOTEST,
    PASSING_TEST,
    Repo,
    Watch,
    clean_env,
    discovered,
    git,
    load_autotest,
    run_autotest,
)

at = load_autotest()
FAST_ENV = clean_env(PYTHONDONTWRITEBYTECODE="1")
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def once(root: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_autotest(root, "--once", *args, env=FAST_ENV, cwd=cwd)


def ran(output: str) -> list[str]:
    """The packages with a verdict line, in the order run."""
    return [m[1] for m in re.finditer(r"^(\S+)\s{2,}(?:ok|no tests|FAILED)\b", output, re.M)]


def explained(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if re.match(r"^ +\d+\. ", line)]


def project(repo: Repo, rel: str, name: str, module: str, text: str = "", code: str = "") -> None:
    """A src-layout package with one passing test; ``text`` goes on after ``[project]``."""
    repo.write(f"{rel}/pyproject.toml", f'[project]\nname = "{name}"\n{text}')
    repo.write(f"{rel}/src/{module}/__init__.py", code or "VALUE = 1\n")
    repo.write(f"{rel}/tests/test_{module}.py", PASSING_TEST)


def monorepo(repo: Repo) -> None:
    """The shape the issue was found on: a uv workspace root with pytest configured, a core
    package, test helpers named in dependency groups and test-requirements.txt, exporters
    built on the core, a fixture project and a template inside an importable module."""
    repo.write(
        "pyproject.toml",
        '[tool.uv.workspace]\nmembers = ["libs/*", "exporter/*", "apps/*", "tools/*"]\n\n'
        '[tool.pytest.ini_options]\naddopts = "-q"\n',
    )
    project(
        repo, "libs/core", "acme-core", "acme_core",
        'dependencies = ["attrs>=23"]\n\n[dependency-groups]\n'
        'test = ["pytest", "acme-testing"]\ndev = [{include-group = "test"}, "ipython"]\n',
    )  # fmt: skip
    project(repo, "libs/testing", "acme-testing", "acme_testing", 'dependencies = ["acme-core"]\n')
    repo.write("libs/core/tests/fixtures/sample/pyproject.toml", '[project]\nname = "sample"\n')
    repo.write("libs/core/tests/fixtures/sample/sample.py", "import acme_core\n")
    template = "libs/core/src/acme_core/templates/__package_name__"
    repo.write(f"{template}/pyproject.toml", '[project]\nname = "__package_name__"\n')
    repo.write(f"{template}/__module_name__/__init__.py", "import __module_name__\n")
    for kind in ("http", "grpc"):
        rel = f"exporter/acme-exporter-{kind}"
        project(repo, rel, f"acme-exporter-{kind}", f"acme_exporter_{kind}",
                'dependencies = ["acme-core>=1", "requests"]\n')  # fmt: skip
        repo.write(f"{rel}/test-requirements.txt", "-e libs/testing\npytest>=8\n")


# ---------------------------------------------------------------------------------------------
# 1. Topological order
# ---------------------------------------------------------------------------------------------


def named(*rels: str) -> dict[str, Any]:
    return {r: at.Package(Path("/r") / r, r) for r in rels}


def order(packages: dict[str, Any], uses: dict[str, list[str]], changed: dict[str, float],
          failed: tuple[str, ...] = (), labels: dict[tuple[str, str], str] | None = None,
          shuffle: int | None = None) -> list[tuple[str, str]]:  # fmt: skip
    listed = sorted(packages.values(), key=lambda p: p.rel)
    if shuffle is not None:
        random.Random(shuffle).shuffle(listed)
    steps = at.cycle_order(
        listed,
        {packages[r]: t for r, t in changed.items()},
        [packages[r] for r in failed],
        {packages[r]: {packages[u] for u in used} for r, used in uses.items()},
        {(packages[a], packages[b]): text for (a, b), text in (labels or {}).items()},
    )
    return [(s.package.rel, s.reason) for s in steps]


def test_a_dependent_runs_after_the_sibling_it_uses_at_the_same_distance() -> None:
    packages = named("api", "core", "sdk", "tool")
    uses = {"api": ["core", "sdk"], "sdk": ["core"]}
    assert order(packages, uses, {"core": 1.0}) == [
        ("core", "changed"),
        ("sdk", "uses core"),
        ("api", "uses core"),
        ("tool", ""),
    ]


def test_changed_packages_run_after_the_changed_packages_they_use() -> None:
    packages = named("app", "lib")
    assert order(packages, {"app": ["lib"]}, {"app": 2.0, "lib": 1.0})[:2] == [
        ("lib", "changed"),
        ("app", "changed"),
    ]


def test_the_full_cycle_runs_the_base_of_seven_exporters_first() -> None:
    exporters = [f"exporter/e{i}" for i in range(7)]
    packages = named(*exporters, "zz/core", "aa/tool")
    steps = order(packages, {e: ["zz/core"] for e in exporters}, {})
    assert steps[0] == ("zz/core", "used by 7 packages")
    assert steps[1:3] == [("aa/tool", ""), ("exporter/e0", "uses zz/core")]


def test_a_cycle_is_broken_the_same_way_whatever_order_packages_come_in() -> None:
    packages = named("a", "b", "c", "d")
    uses = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["c"]}
    orders = {tuple(order(packages, uses, {}, shuffle=seed)) for seed in range(10)}
    assert len(orders) == 1
    assert list(orders.pop()) == [
        ("a", "used by 3 packages; in a cycle with b, broken at this edge"),
        ("c", "uses a"),
        ("b", "uses c"),
        ("d", "uses c"),
    ]


def test_dependents_are_still_nearest_first_and_say_how_they_use_the_change() -> None:
    packages = named("core", "far", "near", "testing")
    uses = {"near": ["core"], "far": ["near"], "testing": ["core"]}
    labels = {("testing", "core"): "tests"}
    assert order(packages, uses, {"core": 1.0}, labels=labels) == [
        ("core", "changed"),
        ("near", "uses core"),
        ("testing", "uses core (tests)"),
        ("far", "uses near"),
    ]


def test_explain_names_each_edge_and_the_base_runs_first(repo: Repo) -> None:
    monorepo(repo)
    done = once(repo.path, "-v")
    assert done.returncode == 0, done.stdout + done.stderr
    assert explained(done.stdout) == [
        "1. libs/core  (used by 3 packages; in a cycle with libs/testing, broken at this edge "
        "(tests))",
        "2. libs/testing  (uses libs/core)",
        "3. exporter/acme-exporter-grpc  (uses libs/testing (tests))",
        "4. exporter/acme-exporter-http  (uses libs/testing (tests))",
    ]
    helpers = once(repo.path, "-v", "--changed", "libs/testing/src/acme_testing/__init__.py")
    assert explained(helpers.stdout) == [
        "1. libs/testing  (changed)",
        "2. libs/core  (uses libs/testing (tests))",
        "3. exporter/acme-exporter-grpc  (uses libs/testing (tests))",
        "4. exporter/acme-exporter-http  (uses libs/testing (tests))",
    ]


# ---------------------------------------------------------------------------------------------
# 2. Edges from everything declared, and from imports
# ---------------------------------------------------------------------------------------------


def edges(repo: Repo) -> dict[tuple[str, str], str]:
    packages, _ = discovered(repo.path)
    graph = at.dependency_graph(packages, repo.path)
    return {(p.rel, u.rel): graph.labels[(p, u)] for p, used in graph.uses.items() for u in used}


def test_every_kind_of_declaration_makes_a_labelled_edge(repo: Repo) -> None:
    for rel in ("core", "testing", "extra", "docs", "cfg-dep", "py-dep", "named", "pathed"):
        project(repo, f"libs/{rel}", f"acme-{rel}", f"acme_{rel.replace('-', '_')}")
    project(
        repo, "apps/toml", "app-toml", "app_toml",
        'dependencies = ["Acme_Core >= 1; python_version < \'3.13\'"]\n'
        '[project.optional-dependencies]\ndocs = ["acme-docs"]\nfancy = ["acme.extra"]\n'
        '[dependency-groups]\ntest = ["acme-testing"]\nall = [{include-group = "test"}]\n',
    )  # fmt: skip
    repo.write(
        "apps/cfg/setup.cfg",
        "[metadata]\nname = app-cfg\n[options]\ninstall_requires =\n    acme-cfg-dep\n"
        "tests_require = acme-testing\n[options.extras_require]\ndocs = acme-docs\n",
    )
    repo.write(
        "apps/py/setup.py",
        "raise SystemExit('setup.py was run')\nfrom setuptools import setup\n"
        "setup(name='app-py', install_requires=['acme-py-dep'], tests_require=['acme-core'],\n"
        "      extras_require={'docs': 'acme-docs'})\n",
    )
    repo.write("apps/req/setup.py", "from setuptools import setup\nsetup(name='app-req')\n")
    repo.write("apps/req/requirements.txt", "-r requirements/base.txt\nacme-named  # pinned\n")
    repo.write("apps/req/requirements/base.txt", "-e ../../../libs/pathed\n")  # the file's folder
    repo.write("apps/req/test-requirements.txt", "-e libs/testing[test]\n./libs/docs\n")  # root
    assert edges(repo) == {
        ("apps/toml", "libs/core"): "",
        ("apps/toml", "libs/docs"): "extra docs",
        ("apps/toml", "libs/extra"): "extra fancy",
        ("apps/toml", "libs/testing"): "tests",
        ("apps/cfg", "libs/cfg-dep"): "",
        ("apps/cfg", "libs/testing"): "tests",
        ("apps/cfg", "libs/docs"): "extra docs",
        ("apps/py", "libs/py-dep"): "",
        ("apps/py", "libs/core"): "tests",
        ("apps/py", "libs/docs"): "extra docs",
        ("apps/req", "libs/named"): "requirements.txt",
        ("apps/req", "libs/pathed"): "requirements/base.txt",
        ("apps/req", "libs/testing"): "tests",
        ("apps/req", "libs/docs"): "tests",
    }


def test_imports_add_edges_to_what_is_declared(repo: Repo) -> None:
    """A package importing its sibling but declaring only third-party requirements."""
    project(repo, "exporter/http", "acme-exporter-http", "acme_exporter_http")
    project(repo, "libs/ns", "acme-ns-api", "acme_ns", code="")
    repo.write("libs/ns/src/acme/api/__init__.py")  # a namespace package: acme.api
    project(
        repo, "exporter/grpc", "acme-exporter-grpc", "acme_exporter_grpc",
        "dependencies = [\n  \"grpcio >= 1.63.2; python_version < '3.13'\",  # it's pinned\n]\n",
        code="".join(f"from acme_exporter_http import thing{i}\n" for i in range(8)),
    )  # fmt: skip
    repo.write("exporter/grpc/tests/test_more.py", "from acme.api import client\n")
    assert edges(repo) == {
        ("exporter/grpc", "exporter/http"): "imports",
        ("exporter/grpc", "libs/ns"): "tests",
    }


def test_the_import_scan_reads_a_file_again_only_when_it_changed(tmp_path: Path) -> None:
    source = tmp_path / "pkg" / "mod.py"
    source.parent.mkdir()
    source.write_text("import alpha\n")
    scan = at.ImportScan()
    assert scan.imports(str(source)) == {"alpha"}
    stat = os.stat(source)
    source.write_text("import omega\n")  # same size: only the mtime tells
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert scan.imports(str(source)) == {"alpha"}
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert scan.imports(str(source)) == {"omega"}


@pytest.mark.parametrize(
    ("source", "names"),
    [
        (b"import a.b as c, d\n", {"a.b", "d"}),
        (b"from a.b import (c,\n    d as e)\n", {"a.b", "a.b.c", "a.b.d"}),
        (b"from . import x\nfrom .y import z\n", {".", ".x", ".y", ".y.z"}),
        (b"m = importlib.import_module('a.b')\n", {"a.b"}),
        (b"def f():\n    from q import r  # late\n", {"q", "q.r"}),
        (b"x = (" * 200_000 + b"\nimport still_found\n", {"still_found"}),
    ],
)
def test_imports_are_read_from_any_file_even_one_that_does_not_parse(
    source: bytes, names: set[str]
) -> None:
    assert at.imports_in(source) == names


# ---------------------------------------------------------------------------------------------
# 3. Files that cannot be read
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "text"),
    [
        ("pyproject.toml", '[project]\nname = "broken"\ndependencies = ["a"\n'),
        ("pyproject.toml", "x = " + "[" * 5000 + "]" * 5000 + "\n"),
        ("setup.py", "setup(name='broken',\n"),
        ("setup.py", "x = " + "(" * 100_000 + ")" * 100_000 + "\n"),
        ("setup.cfg", "no section header\n"),
    ],
    ids=["toml", "deep-toml", "syntax", "deep-python", "cfg"],
)
def test_an_unreadable_metadata_file_is_one_warning_naming_it(
    repo: Repo, filename: str, text: str
) -> None:
    project(repo, "libs/core", "acme-core", "acme_core")
    repo.write(f"libs/broken/{filename}", text)
    repo.write("libs/broken/tests/test_broken.py", PASSING_TEST)
    done = once(repo.path, "--runner", "unittest")  # nose would read setup.cfg itself
    assert done.returncode == 0, done.stdout + done.stderr
    warnings = [line for line in done.stdout.splitlines() if "cannot read" in line]
    assert len(warnings) == 1, done.stdout
    assert f"libs/broken/{filename}" in warnings[0]
    assert "Traceback" not in done.stdout + done.stderr


# Runs the built file's main() with an audit hook counting each open of a pyproject.toml (the
# event of io.open, which has a mode: Path.open before 3.10 also raises os.open's, without one).
COUNT_READS = """\
import collections, importlib.util, json, sys
spec = importlib.util.spec_from_file_location("autotest", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["autotest"] = module
spec.loader.exec_module(module)
reads = collections.Counter()
def count(event, args):
    if event == "open" and args[1] is not None and str(args[0]).endswith("pyproject.toml"):
        reads[str(args[0])] += 1
sys.addaudithook(count)
status = module.main(["--root", sys.argv[2], "--plan"])
sys.stderr.write(json.dumps(reads))
sys.exit(status)
"""


def test_each_pyproject_toml_is_read_once_for_discovery_metadata_runner_and_selection(
    repo: Repo,
) -> None:
    monorepo(repo)
    repo.write(
        "libs/testing/pyproject.toml",
        '[project]\nname = "acme-testing"\ndependencies = ["acme-core"]\n\n'
        '[tool.hatch.envs.test.scripts]\nunit = "pytest tests/unit"\n',
    )
    done = subprocess.run(
        [sys.executable, "-c", COUNT_READS, str(AUTOTEST), str(repo.path)],
        capture_output=True, text=True, env=FAST_ENV, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    reads = json.loads(done.stderr.splitlines()[-1])
    plan = json.loads(done.stdout)
    assert [p["runner"] for p in plan["packages"]] == ["pytest"] * 4, "configured at the root"
    for entry in plan["packages"]:
        assert reads[str(repo.path / entry["path"] / "pyproject.toml")] == 1, reads


py39 = Path.home() / ".pyenv" / "versions" / "3.9.18" / "bin" / "python"


@pytest.mark.skipif(not py39.exists(), reason="needs a Python 3.9 at ~/.pyenv")
def test_python_39_without_tomli_is_told_what_to_install(repo: Repo) -> None:
    probe = subprocess.run([str(py39), "-c", "import tomli"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip("that Python 3.9 has tomli")
    monorepo(repo)
    done = subprocess.run(
        [str(py39), str(AUTOTEST), "--root", str(repo.path), "--once"],
        capture_output=True, text=True, env=FAST_ENV, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"autotest: error: Python 3.9 reads pyproject.toml with tomli: {py39} -m pip install "
        "'tomli>=1.1'"
    ]


# ---------------------------------------------------------------------------------------------
# 4. Only real packages, and choosing some
# ---------------------------------------------------------------------------------------------


def test_fixtures_templates_and_test_projects_are_not_packages(repo: Repo) -> None:
    monorepo(repo)
    for where in ("tests/integration/dummy", "test/x", "testing/y", "fixtures/z", "testdata/w"):
        repo.write(f"libs/testing/{where}/setup.py", "")
    repo.write("templates/{{cookiecutter.name}}/pyproject.toml", "[project]\n")
    repo.write("tests/helpers-package/pyproject.toml", '[project]\nname = "helpers"\n')
    found = at.discover(repo.path)
    assert [p.rel for p in found.packages] == [
        "exporter/acme-exporter-grpc",
        "exporter/acme-exporter-http",
        "libs/core",
        "libs/testing",
    ]
    assert dict(found.left_out) == {
        "tests/helpers-package": "not a member of the workspace declared in pyproject.toml",
        "libs/core/src/acme_core/templates/__package_name__":
            "inside the Python package libs/core/src/acme_core",
        "libs/core/tests/fixtures/sample": "in the tests of libs/core",
        "libs/testing/fixtures/z": "in the fixtures of libs/testing",
        "libs/testing/test/x": "in the test of libs/testing",
        "libs/testing/testdata/w": "in the testdata of libs/testing",
        "libs/testing/testing/y": "in the testing of libs/testing",
        "libs/testing/tests/integration/dummy": "in the tests of libs/testing",
        "templates/{{cookiecutter.name}}": "a template: {{cookiecutter.name}} is a placeholder",
    }  # fmt: skip


def test_explain_says_which_projects_are_not_packages(repo: Repo) -> None:
    monorepo(repo)
    done = once(repo.path, "-v")
    assert f"autotest: 4 packages in {repo.path}" in done.stdout.splitlines()
    assert (
        "autotest: not a package: libs/core/tests/fixtures/sample (in the tests of libs/core)"
        in done.stdout.splitlines()
    )
    assert "sample" not in "".join(ran(done.stdout))


@needs_git
def test_ignored_and_gitignored_directories_hold_no_packages(repo: Repo) -> None:
    monorepo(repo)
    project(repo, "legacy/old", "old", "old")
    project(repo, "vendor/thing", "thing", "thing")
    repo.write(".gitignore", "vendor/\n")
    git(repo.path, "init", "-q")
    done = once(repo.path, "--ignore", "legacy")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(ran(done.stdout)) == [
        "exporter/acme-exporter-grpc",
        "exporter/acme-exporter-http",
        "libs/core",
        "libs/testing",
    ]


def test_packages_named_on_the_command_line_are_the_only_ones_tested(
    repo: Repo, tmp_path: Path
) -> None:
    monorepo(repo)
    project(repo, "tools/gen", "acme-gen", "acme_gen")
    project(repo, "tools/lint", "acme-lint", "acme_lint")
    done = once(repo.path, "exporter/acme-exporter-http/", "tools/*", "acme-testing")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == f"autotest: 4 of 6 packages in {repo.path}"
    assert ran(done.stdout) == [
        "libs/testing", "exporter/acme-exporter-http", "tools/gen", "tools/lint",
    ]  # fmt: skip
    from_inside = once(repo.path, "..", "-v", cwd=repo.path / "tools" / "gen")
    assert ran(from_inside.stdout) == ["tools/gen", "tools/lint"]
    outside = once(repo.path, str(repo.path / "libs" / "core" / "src"))
    assert ran(outside.stdout) == ["libs/core"]  # a directory inside a package names it


def test_a_change_in_a_package_not_chosen_still_runs_its_chosen_dependents(repo: Repo) -> None:
    monorepo(repo)
    done = once(repo.path, "exporter/*", "-v", "--changed", "libs/core/src/acme_core/__init__.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert explained(done.stdout) == [
        "1. exporter/acme-exporter-grpc  (uses libs/core)",
        "2. exporter/acme-exporter-http  (uses libs/core)",
    ]


def test_packages_and_exclude_in_config_choose_the_packages(repo: Repo) -> None:
    monorepo(repo)
    project(repo, "tools/gen", "acme-gen", "acme_gen")
    repo.write(
        "pyproject.toml",
        '[tool.autotest]\npackages = ["libs/*", "exporter/*"]\nexclude = ["*-grpc"]\n',
    )
    done = once(repo.path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ran(done.stdout) == ["libs/core", "libs/testing", "exporter/acme-exporter-http"]
    assert ran(once(repo.path, "tools/gen").stdout) == ["tools/gen"]


def test_a_package_name_that_matches_nothing_is_one_error_line(repo: Repo) -> None:
    monorepo(repo)
    done = once(repo.path, "libs/testng")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"autotest: error: 'libs/testng' names no package under {repo.path}; "
        "did you mean libs/testing?"
    ]


# ---------------------------------------------------------------------------------------------
# 5. Root, 6. one-package repositories
# ---------------------------------------------------------------------------------------------


def copied(repo: Repo, rel: str) -> Path:
    copy = repo.path / rel / "autotest.py"
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(AUTOTEST, copy)
    return copy


def started_from(copy: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(copy), "--once", *args],
        cwd=cwd, capture_output=True, text=True, env=FAST_ENV, timeout=120,
    )  # fmt: skip


@needs_git
@pytest.mark.parametrize("where", [".", "tools/dev"])
def test_the_root_is_the_git_work_tree_holding_the_script(repo: Repo, where: str) -> None:
    monorepo(repo)
    git(repo.path, "init", "-q")
    (repo.path.parent / "stray.py").write_text("x = " + "(" * 100_000 + "\n")
    (repo.path.parent / "pyproject.toml").write_text("[project\n")
    done = started_from(copied(repo, where), repo.path / "libs")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == f"autotest: 4 packages in {repo.path}"
    assert "Traceback" not in done.stderr


def test_outside_git_the_root_is_the_parent_of_the_scripts_folder(repo: Repo) -> None:
    monorepo(repo)
    done = started_from(copied(repo, "utilities"), repo.path)
    assert done.stdout.splitlines()[0] == f"autotest: 4 packages in {repo.path}"


def test_nothing_outside_the_root_is_scanned(repo: Repo, tmp_path: Path) -> None:
    project(repo, "libs/core", "acme-core", "acme_core")
    outside = tmp_path / "outside"
    (outside / "pkg").mkdir(parents=True)
    (outside / "pkg" / "pyproject.toml").write_text('[project]\nname = "outside"\n')
    (repo.path / "libs" / "link").symlink_to(outside, target_is_directory=True)
    (repo.path / "libs" / "core" / "src" / "link").symlink_to(outside, target_is_directory=True)
    assert [p.rel for p in at.discover(repo.path).packages] == ["libs/core"]


def test_a_repository_that_is_one_package_tests_that_package(repo: Repo) -> None:
    repo.write("pyproject.toml", '[project]\nname = "solo"\ndependencies = []\n')
    repo.write("solo/__init__.py", "VALUE = 1\n")
    repo.write("tests/__init__.py")
    repo.write("tests/test_solo.py", PASSING_TEST)
    repo.write("tests/fixtures/sample/pyproject.toml", '[project]\nname = "sample"\n')
    done = once(repo.path, "--changed", "solo/__init__.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == f"autotest: 1 package in {repo.path}"
    assert ran(done.stdout) == ["repo"]


def test_a_root_of_workspace_config_alone_is_still_no_package(repo: Repo) -> None:
    repo.write("pyproject.toml", "[tool.ruff]\nline-length = 100\n")
    done = once(repo.path)
    assert done.returncode == 2
    assert "no packages under" in done.stderr


# ---------------------------------------------------------------------------------------------
# 7. Hook-friendly changes
# ---------------------------------------------------------------------------------------------


@needs_git
def test_since_takes_committed_staged_unstaged_and_untracked_changes(repo: Repo) -> None:
    monorepo(repo)
    for kind in ("a", "b", "c", "d"):
        project(repo, f"apps/{kind}", f"app-{kind}", f"app_{kind}")
    git(repo.path, "init", "-q")
    git(repo.path, "add", "-A")
    git(repo.path, "commit", "-qm", "base")
    repo.write("apps/a/src/app_a/__init__.py", "VALUE = 2\n")
    git(repo.path, "commit", "-qam", "committed")
    repo.write("apps/b/src/app_b/__init__.py", "VALUE = 2\n")
    git(repo.path, "add", "apps/b")
    repo.write("apps/c/src/app_c/__init__.py", "VALUE = 2\n")
    repo.write("apps/d/src/app_d/new.py", "")
    committed = repo.path / "apps/a/src/app_a/__init__.py"
    os.utime(committed, (committed.stat().st_mtime - 60,) * 2)
    done = once(repo.path, "-v", "--since", "HEAD~1", cwd=repo.path / "exporter")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "changed: 4 files in 4 packages" in done.stdout.splitlines()
    assert sorted(ran(done.stdout)[:4]) == ["apps/a", "apps/b", "apps/c", "apps/d"]
    assert ran(done.stdout)[3] == "apps/a"  # the oldest edit comes last among them


@needs_git
@pytest.mark.parametrize("ref", ["no-such-ref", "--output=x"])
def test_since_an_unknown_ref_is_one_error_line(repo: Repo, ref: str) -> None:
    monorepo(repo)
    git(repo.path, "init", "-q")
    done = once(repo.path, f"--since={ref}")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        f"autotest: error: --since {ref}: git knows no such commit in {repo.path}"
    ]


def test_since_without_git_is_one_error_line(repo: Repo) -> None:
    monorepo(repo)
    done = once(repo.path, "--since", "HEAD")
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1
    assert "not in a git work tree" in done.stderr


@needs_git
def test_the_readme_hook_recipes_work_on_a_clean_tree_from_a_subdirectory(repo: Repo) -> None:
    monorepo(repo)
    git(repo.path, "init", "-q")
    git(repo.path, "add", "-A")
    git(repo.path, "commit", "-qm", "base")
    clean = once(repo.path, "--changed", *git(repo.path, "diff", "--name-only", "HEAD").split())
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "testing all 4 packages" in clean.stdout
    repo.write("libs/testing/src/acme_testing/__init__.py", "VALUE = 2\n")
    names = git(repo.path, "diff", "--name-only", "HEAD").split()  # from the top, as git says
    inside = repo.path / "exporter" / "acme-exporter-http"  # where cwd-relative means http
    hook = once(repo.path, "--changed", *names, cwd=inside)
    since = once(repo.path, "--since", "HEAD", cwd=repo.path / "exporter")
    assert ran(hook.stdout)[:2] == ran(since.stdout)[:2] == ["libs/testing", "libs/core"]


def test_changed_may_be_repeated(repo: Repo) -> None:
    monorepo(repo)
    done = once(repo.path, "--changed", "exporter/acme-exporter-http", "--changed",
                "exporter/acme-exporter-grpc")  # fmt: skip
    assert ran(done.stdout)[:2] == ["exporter/acme-exporter-http", "exporter/acme-exporter-grpc"]


def test_an_import_added_while_watching_makes_an_edge_at_once(
    repo: Repo, watch: Callable[..., Watch]
) -> None:
    project(repo, "libs/core", "acme-core", "acme_core")
    project(repo, "apps/app", "acme-app", "acme_app")
    project(repo, "apps/other", "acme-other", "acme_other")
    w = watch(repo.path, "-v", env=FAST_ENV)
    w.wait_cycles(1)
    repo.write("apps/app/src/acme_app/__init__.py", "def late():\n    import acme_core\n")
    w.wait_cycles(2)
    repo.write("libs/core/src/acme_core/__init__.py", "VALUE = 2\n")
    end = w.wait_cycles(3)
    start = w.lines.index("changed: libs/core/src/acme_core/__init__.py")
    assert explained("\n".join(w.lines[start:end]))[:2] == [
        "1. libs/core  (changed)",
        "2. apps/app  (uses libs/core (imports))",
    ]


def test_the_import_scan_is_kept_between_runs_and_read_again_when_stale(tmp_path: Path) -> None:
    source = tmp_path / "pkg" / "mod.py"
    source.parent.mkdir()
    source.write_text("import acme_core\nimport json\n")
    first = at.ImportScan()
    first.want(frozenset({"acme_core"}))
    assert first.imports(str(source)) == {"acme_core"}  # json is nobody's module here
    kept = str(tmp_path / "cache" / "scan.json")
    first.save(kept)
    stat = os.stat(source)
    source.write_text("import acme_zore\nimport json\n")  # same size
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = at.ImportScan()
    second.load(kept)
    second.want(frozenset({"acme_core"}))
    assert second.imports(str(source)) == {"acme_core"}  # not read: taken from the file
    second.want(frozenset({"acme_core", "acme_zore"}))  # a new package: every file again
    assert second.imports(str(source)) == {"acme_zore"}
    for broken in ("{not json", '{"version": 2, "wanted": null, "sets": [], "files": [1]}'):
        Path(kept).write_text(broken)
        third = at.ImportScan()
        third.load(kept)
        assert third.imports(str(source)) == {"acme_zore", "json"}, "read: no cache"


# ---------------------------------------------------------------------------------------------
# Watching a subset: the packages named, and what they use
# ---------------------------------------------------------------------------------------------


def layered(repo: Repo) -> None:
    """core <- api <- web, and other alone: every package's code imports what it uses."""
    project(repo, "libs/core", "acme-core", "acme_core")
    project(repo, "libs/api", "acme-api", "acme_api", 'dependencies = ["acme-core"]\n')
    project(repo, "apps/web", "acme-web", "acme_web", 'dependencies = ["acme-api"]\n')
    project(repo, "libs/other", "acme-other", "acme_other")


@pytest.mark.parametrize("narrowing", [["apps/web"], ["--exclude", "libs/*"]])
def test_a_subset_watch_runs_the_watched_users_of_a_change_outside_it_and_nothing_else(
    repo: Repo, watch: type[Watch], narrowing: list[str]
) -> None:
    layered(repo)
    w = watch(repo.path, *narrowing, env=FAST_ENV)
    first = w.wait_cycles(1)
    assert [line.split()[0] for line in w.lines[:first] if "  ok " in line] == ["apps/web"]
    edit(repo.path / "libs/core/src/acme_core/__init__.py")  # used by web through libs/api
    second = w.wait_cycles(2)
    assert w.lines[second - 1].startswith("the 1 package passed"), w.output
    assert [line.split()[0] for line in w.lines[first:second] if "  ok " in line] == ["apps/web"]
    edit(repo.path / "libs/other/src/acme_other/__init__.py")  # no watched package uses it
    w.wait_for(r"^changed: libs/other/src/acme_other/__init__\.py: no package tested uses it; "
               r"nothing to test$", start=second)  # fmt: skip
    edit(repo.path / "apps/web/src/acme_web/__init__.py")
    third = w.wait_cycles(3)
    assert w.proc.poll() is None, w.output
    assert "Traceback" not in w.output
    assert w.headers()[-1] == "changed: apps/web/src/acme_web/__init__.py", w.output
    assert third > second


# ---------------------------------------------------------------------------------------------
# The package set of real shapes: workspaces, examples, a root project
# ---------------------------------------------------------------------------------------------


def test_a_workspace_in_a_subdirectory_decides_its_members_and_its_root_is_no_package(
    repo: Repo,
) -> None:
    repo.write(
        "python/pyproject.toml",
        '[tool.uv.workspace]\nmembers = ["packages/*", "tools/cli"]\nexclude = ["packages/old"]\n'
        '\n[dependency-groups]\ndev = ["pytest"]\n\n[tool.ruff]\nline-length = 120\n',
    )
    for name in ("core", "api", "old"):
        project(repo, f"python/packages/{name}", f"acme-{name}", f"acme_{name}")
    project(repo, "python/tools/cli", "acme-cli", "acme_cli")
    project(repo, "python/tools/scratch", "scratch", "scratch")
    project(repo, "python/packages/api/examples/demo", "demo", "demo")
    found = at.discover(repo.path)
    assert [p.rel for p in found.packages] == [
        "python/packages/api", "python/packages/core", "python/tools/cli",
    ]  # fmt: skip
    assert dict(found.left_out) == {
        "python": "workspace or tool configuration only, no project",
        "python/packages/api/examples/demo": "not a member of the workspace declared in "
        "python/pyproject.toml",
        "python/packages/old": "not a member of the workspace declared in python/pyproject.toml",
        "python/tools/scratch": "not a member of the workspace declared in python/pyproject.toml",
    }


def test_examples_samples_and_templates_are_no_packages_and_verbose_says_so(repo: Repo) -> None:
    project(repo, "libs/cli", "acme-cli", "acme_cli")
    project(repo, "libs/core", "acme-core", "acme_core")
    project(repo, "libs/cli/examples/hello", "hello", "hello")
    project(repo, "libs/cli/python-monorepo-example", "monorepo-example", "monorepo_example")
    project(repo, "libs/cli/uv-examples/app", "uv-app", "uv_app")
    project(repo, "samples/quickstart", "quickstart", "quickstart")
    repo.write("_template/pyproject.toml", '[project]\nname = "<REPLACE ME>"\n')
    done = once(repo.path, "-v", "libs/cli")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"autotest: 1 of 2 packages in {repo.path}"
    assert ran(done.stdout) == ["libs/cli"]
    for rel, where in (
        ("_template", "_template"),
        ("libs/cli/examples/hello", "libs/cli/examples"),
        ("libs/cli/python-monorepo-example", "libs/cli/python-monorepo-example"),
        ("libs/cli/uv-examples/app", "libs/cli/uv-examples"),
        ("samples/quickstart", "samples"),
    ):
        assert f"autotest: not a package: {rel} (an example: in {where})" in lines, done.stdout


def test_a_root_project_with_packages_below_is_none_and_its_tests_hold_a_real_package(
    repo: Repo,
) -> None:
    """The shape of a core repository: the root's pyproject.toml has [project], packages lie
    below it, and tests/ holds the test utilities 17 of them use."""
    repo.write("pyproject.toml", '[project]\nname = "acme-dev"\n')
    repo.write("tests/test_root_tooling.py", PASSING_TEST)
    project(repo, "tests/acme-test-utils", "acme-test-utils", "acme_test_utils")
    repo.write("tests/acme-test-utils/tests/fixtures/proj/pyproject.toml", "[project]\n")
    for name in ("sdk", "exporter"):
        project(repo, name, f"acme-{name}", f"acme_{name}", "")
        repo.write(f"{name}/test-requirements.txt", "-e tests/acme-test-utils\n")
    found = at.discover(repo.path)
    assert [p.rel for p in found.packages] == ["exporter", "sdk", "tests/acme-test-utils"]
    assert dict(found.left_out) == {
        "tests/acme-test-utils/tests/fixtures/proj": "in the tests of tests/acme-test-utils",
    }
    done = once(repo.path, "-v", "--changed", "tests/acme-test-utils/src/acme_test_utils")
    assert done.returncode == 0, done.stdout + done.stderr
    assert ran(done.stdout)[0] == "tests/acme-test-utils"
    assert "is in no package" not in done.stdout


def test_a_single_project_root_keeps_its_test_fixtures_as_data(repo: Repo) -> None:
    repo.write("pyproject.toml", '[project]\nname = "acme"\n')
    repo.write("acme/__init__.py", "VALUE = 1\n")
    repo.write("tests/test_acme.py", PASSING_TEST)
    repo.write("tests/fixtures/proj/pyproject.toml", '[project]\nname = "proj"\n')
    found = at.discover(repo.path)
    assert [p.rel for p in found.packages] == [repo.path.name]
    assert dict(found.left_out) == {"tests/fixtures/proj": f"in the tests of {repo.path.name}"}


def test_imports_through_namespace_packages_of_any_depth_and_hatch_environments_make_edges(
    repo: Repo,
) -> None:
    """The shape of a hatch monorepo of integrations: src layouts of three-level namespace
    packages, and test dependencies declared in hatch environments (pyproject.toml or
    hatch.toml)."""
    ns = "vendor_integrations/components/generators"
    for name in ("foo", "bar"):
        repo.write(f"integrations/{name}/pyproject.toml", f'[project]\nname = "{name}-haystack"\n')
        repo.write(f"integrations/{name}/src/{ns}/{name}/__init__.py", "VALUE = 1\n")
        repo.write(f"integrations/{name}/tests/test_{name}.py", PASSING_TEST)
    repo.write(
        "integrations/bar/src/vendor_integrations/components/generators/bar/__init__.py",
        "from vendor_integrations.components.generators.foo import VALUE\n",
    )
    project(repo, "integrations/anthropic", "anthropic-haystack", "anthropic_haystack")
    hatch = '\n[tool.hatch.envs.test]\ndependencies = ["anthropic-haystack", "pytest"]\n'
    project(repo, "integrations/langfuse", "langfuse-haystack", "langfuse_haystack", hatch)
    project(repo, "integrations/tavily", "tavily-haystack", "tavily_haystack")
    repo.write("integrations/tavily/hatch.toml",
               '[envs.default]\nextra-dependencies = ["anthropic-haystack"]\n')  # fmt: skip
    packages = at.discover(repo.path).packages
    graph = at.dependency_graph(packages, repo.path)
    edges = {(u.rel, d.rel): graph.labels[u, d] for u in graph.uses for d in graph.uses[u]}
    assert edges == {
        ("integrations/bar", "integrations/foo"): "imports",
        ("integrations/langfuse", "integrations/anthropic"): "tests",
        ("integrations/tavily", "integrations/anthropic"): "hatch env default",
    }
    provided = at.provided_modules(next(p for p in packages if p.rel == "integrations/foo"))
    assert provided == {"vendor_integrations.components.generators.foo"}

"""Unit tests for the pure functions and small classes of utilities/autotest.py."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import Repo, discovered, load_autotest

at = load_autotest()


def write(root: Path, rel: str, text: str = "") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def pkg(root: Path, rel: str) -> Any:
    return at.Package(root / rel, rel)


def rels(packages: Any) -> list[str]:
    return [p.rel for p in packages]


def required_names(meta: Any) -> set[str]:
    return {d.name for d in meta.declared if d.name}


# ---------------------------------------------------------------------------------------------
# discover, owner_of
# ---------------------------------------------------------------------------------------------


def test_discover_finds_nested_packages_by_any_marker_but_not_the_root(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", "[tool.autotest]\n")
    write(tmp_path, "exporter/foo-http/pyproject.toml")
    write(tmp_path, "exporter/bar-grpc/setup.py")
    write(tmp_path, "legacy/setup.cfg")
    write(tmp_path, "docs/index.rst")
    packages, unreadable = discovered(tmp_path)
    assert rels(packages) == ["exporter/bar-grpc", "exporter/foo-http", "legacy"]
    assert packages[0].path == tmp_path / "exporter" / "bar-grpc"
    assert unreadable == []


TOOL_DIRS = [
    ".git", ".hidden", ".venv", "env", "site-packages", "node_modules", ".tox", ".nox", "build",
    "dist", "__pycache__", "foo.egg-info",
]  # fmt: skip


@pytest.mark.parametrize("skipped", TOOL_DIRS)
def test_discover_skips_tool_directories(tmp_path: Path, skipped: str) -> None:
    write(tmp_path, "real/pyproject.toml")
    if skipped == "env":
        write(tmp_path, "env/pyvenv.cfg", "home = /usr/bin\n")
    write(tmp_path, f"{skipped}/pyproject.toml")
    write(tmp_path, f"{skipped}/inner/setup.py")
    packages, _ = discovered(tmp_path)
    assert rels(packages) == ["real"]


def test_discover_does_not_hang_on_a_symlink_loop(tmp_path: Path) -> None:
    write(tmp_path, "a/pyproject.toml")
    (tmp_path / "a" / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "a" / "self").symlink_to(".", target_is_directory=True)
    found: list[Any] = []
    worker = threading.Thread(target=lambda: found.append(discovered(tmp_path)))
    worker.daemon = True
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "discover hangs on a symlink loop"
    assert rels(found[0][0]) == ["a"]


def test_discover_reports_an_unreadable_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "ok/pyproject.toml")
    locked = tmp_path / "locked"
    write(tmp_path, "locked/inner/pyproject.toml")
    # Tests run as root, for whom chmod 000 does not make a directory unreadable; so the one
    # scandir of that directory is made to fail as it would for an ordinary user.
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    packages, unreadable = discovered(tmp_path)
    assert rels(packages) == ["ok"]
    assert unreadable == [str(locked)]


@pytest.mark.parametrize("inner_first", [False, True])
def test_owner_of_innermost_package_wins(tmp_path: Path, inner_first: bool) -> None:
    outer, inner = pkg(tmp_path, "exporter"), pkg(tmp_path, "exporter/foo-http")
    packages = [inner, outer] if inner_first else [outer, inner]
    assert at.owner_of(str(tmp_path / "exporter/foo-http/foo/x.py"), packages) == inner
    assert at.owner_of(str(tmp_path / "exporter/foo-http"), packages) == inner
    assert at.owner_of(str(tmp_path / "exporter/README.md"), packages) == outer


def test_owner_of_outside_every_package_and_the_prefix_trap(tmp_path: Path) -> None:
    packages = [pkg(tmp_path, "pkg")]
    assert at.owner_of(str(tmp_path / "pkg2" / "x.py"), packages) is None
    assert at.owner_of(str(tmp_path / "README.md"), packages) is None
    assert at.owner_of(str(tmp_path), packages) is None


# ---------------------------------------------------------------------------------------------
# Metadata and the dependency graph
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "normal"),
    [("Foo_Bar", "foo-bar"), ("foo.bar", "foo-bar"), ("FOO-._bar", "foo-bar"), ("a", "a")],
)
def test_normalize_name(name: str, normal: str) -> None:
    assert at.normalize_name(name) == normal


@pytest.mark.parametrize(
    ("requirement", "name"),
    [
        ("Foo_Bar>=1.0", "foo-bar"),
        ("foo.bar[extra1,extra2] >= 2, <3 ; python_version < '3.10'", "foo-bar"),
        ("  zope.interface", "zope-interface"),
        ("pkg;sys_platform=='linux'", "pkg"),
        ("name @ https://example.com/name.zip", "name"),
        ("A", "a"),
        ("", None),
        ("# a comment", None),
        ("-e .", None),
    ],
)
def test_requirement_name(requirement: str, name: str | None) -> None:
    assert at.requirement_name(requirement) == name


def test_read_metadata_from_pyproject(tmp_path: Path) -> None:
    write(
        tmp_path,
        "p/pyproject.toml",
        '[project]\nname = "My_Pkg"\ndependencies = ["Foo_Bar>=1", "baz[x]; os_name == \'nt\'"]\n'
        '[project.optional-dependencies]\ntest = ["qux.lib"]\ndocs = ["Sphinx"]\n',
    )
    meta = at.read_metadata(pkg(tmp_path, "p"))
    assert meta.name == "my-pkg"
    assert labelled(meta) == {
        ("foo-bar", ""),
        ("baz", ""),
        ("qux-lib", "tests"),
        ("sphinx", "extra docs"),
    }


def test_read_metadata_from_setup_cfg(tmp_path: Path) -> None:
    write(
        tmp_path,
        "p/setup.cfg",
        "[metadata]\nname = cfg.pkg\n\n[options]\ninstall_requires =\n"
        "    Foo_Bar>=1\n    baz\n\n[options.extras_require]\ntest =\n    pytest\n    qux\n",
    )
    meta = at.read_metadata(pkg(tmp_path, "p"))
    assert meta.name == "cfg-pkg"
    assert required_names(meta) == {"foo-bar", "baz", "pytest", "qux"}


def test_read_metadata_from_setup_py_without_running_it(tmp_path: Path) -> None:
    write(
        tmp_path,
        "p/setup.py",
        "raise SystemExit('setup.py was executed')\n"
        "from setuptools import setup\n"
        "setup(name='Py_Pkg', install_requires=['Foo_Bar>=1', 'baz'])\n",
    )
    meta = at.read_metadata(pkg(tmp_path, "p"))
    assert (meta.name, required_names(meta)) == ("py-pkg", {"foo-bar", "baz"})


def test_read_metadata_without_a_name_uses_the_directory(tmp_path: Path) -> None:
    write(tmp_path, "Some_Dir/setup.cfg", "[options]\ninstall_requires = foo\n")
    meta = at.read_metadata(pkg(tmp_path, "Some_Dir"))
    assert (meta.name, required_names(meta)) == ("some-dir", {"foo"})


def labelled(meta: Any) -> set[tuple[str, str]]:
    return {(d.name, d.label) for d in meta.declared}


def by_rel(graph: Any) -> dict[str, set[str]]:
    return {p.rel: {u.rel for u in used} for p, used in graph.uses.items()}


def test_dependency_graph_from_declared_names(repo: Repo) -> None:
    repo.package("foo-bar", name="Foo_Bar")
    repo.package("app", deps=["foo-bar>=1", "requests", "app"], code="import json\n")
    repo.package("other", deps=["FOO.BAR[x]; python_version > '3'"])
    packages, _ = discovered(repo.path)
    graph = at.dependency_graph(packages)
    assert by_rel(graph) == {"app": {"foo-bar"}, "foo-bar": set(), "other": {"foo-bar"}}


def test_the_packages_inside_a_package_are_found_whatever_names_sort_between_them() -> None:
    rels = ["a", "a-x", "a/b", "a/b/c", "a/bc", "b"]
    packages = {r: at.Package(Path("/r", r), r) for r in rels}
    nested = at.nested_packages(list(packages.values()))
    inside = {r: sorted(Path(p).relative_to("/r").as_posix() for p in nested[packages[r]])
              for r in rels}  # fmt: skip
    assert inside == {"a": ["a/b", "a/b/c", "a/bc"], "a-x": [], "a/b": ["a/b/c"], "a/b/c": [],
                      "a/bc": [], "b": []}  # fmt: skip


def test_dependency_graph_adds_the_imports_of_code_and_tests(repo: Repo) -> None:
    repo.package("core")
    repo.write("lib/pyproject.toml", '[project]\nname = "lib"\n')
    repo.write("lib/src/libmod/__init__.py")
    repo.write("api/pyproject.toml", '[project]\nname = "company-api"\n')
    repo.write("api/company/api/__init__.py")  # namespace package: no company/__init__.py
    repo.write("web/pyproject.toml", '[project]\nname = "company-web"\n')
    repo.write("web/company/web/__init__.py")
    repo.write("app/pyproject.toml", '[project]\nname = "app"\n')
    repo.write("app/app.py", "from core import VALUE\nimport libmod.sub\n")
    repo.write("app/tests/test_app.py", "from company.api import thing\n")
    repo.write("declared/pyproject.toml", '[project]\nname = "d"\ndependencies = ["lib"]\n')
    repo.write("declared/d.py", "import core\n")  # added to what it declares
    packages, _ = discovered(repo.path)
    graph = at.dependency_graph(packages)
    assert by_rel(graph)["app"] == {"core", "lib", "api"}
    assert by_rel(graph)["declared"] == {"lib", "core"}
    assert by_rel(graph)["web"] == set()
    label = {(p.rel, u.rel): text for (p, u), text in graph.labels.items()}
    assert label[("app", "core")] == "imports"
    assert label[("app", "api")] == "tests"
    assert label[("declared", "lib")] == ""
    assert label[("declared", "core")] == "imports"


# ---------------------------------------------------------------------------------------------
# cycle_order
# ---------------------------------------------------------------------------------------------


def order(packages: dict[str, Any], changed: dict[str, float], failed: list[str],
          uses: dict[str, list[str]]) -> list[tuple[str, str]]:  # fmt: skip
    steps = at.cycle_order(
        sorted(packages.values(), key=lambda p: p.rel),
        {packages[r]: t for r, t in changed.items()},
        [packages[r] for r in failed],
        {packages[r]: {packages[u] for u in used} for r, used in uses.items()},
    )
    return [(s.package.rel, s.reason) for s in steps]


@pytest.fixture
def named() -> dict[str, Any]:
    names = ("aaa", "app", "core", "lib", "tool", "util", "web", "zzz")
    return {r: at.Package(Path("/r") / r, r) for r in names}


def test_cycle_order_changed_dependents_failed_rest(named: dict[str, Any]) -> None:
    """An old failure elsewhere comes after what the change may have broken: it would stop
    the cycle before the change's dependents ran."""
    uses = {"lib": ["core"], "web": ["lib"], "app": ["util"], "util": ["web"]}
    assert order(named, {"core": 2.0, "util": 1.0}, ["tool"], uses) == [
        ("core", "changed"),
        ("util", "changed"),
        ("lib", "uses core"),
        ("app", "uses util"),
        ("web", "uses lib"),
        ("tool", "failed last time"),
        ("aaa", ""),
        ("zzz", ""),
    ]


def test_cycle_order_without_changes_is_failed_then_bases_first(named: dict[str, Any]) -> None:
    assert order(named, {}, ["web", "core"], {"lib": ["core"], "app": ["util"]}) == [
        ("core", "failed last time"),
        ("web", "failed last time"),
        ("util", "used by 1 package"),
        ("aaa", ""),
        ("app", "uses util"),
        ("lib", "uses core"),
        ("tool", ""),
        ("zzz", ""),
    ]


def test_cycle_order_each_package_once_despite_cycles(named: dict[str, Any]) -> None:
    uses = {"lib": ["core"], "core": ["lib"]}
    steps = order(named, {"core": 1.0}, ["core"], uses)
    assert steps[:2] == [("core", "changed"), ("lib", "uses core")]
    assert sorted(r for r, _ in steps) == sorted(named)


def test_cycle_order_a_dependent_that_failed_last_time_runs_as_a_dependent(
    named: dict[str, Any],
) -> None:
    # web uses lib uses core; core changed and lib failed last time: both depend on the
    # change, nearest first, before the unrelated packages.
    steps = order(named, {"core": 1.0}, ["lib", "tool"], {"lib": ["core"], "web": ["lib"]})
    assert steps[:4] == [
        ("core", "changed"),
        ("lib", "uses core"),
        ("web", "uses lib"),
        ("tool", "failed last time"),
    ]


def test_a_cycle_is_broken_at_its_test_or_dev_edge_not_at_a_runtime_dependency(
    named: dict[str, Any],
) -> None:
    """test-utils needs core at run time; core lists test-utils only among its dev tools."""
    packages = [named["core"], named["tool"]]
    uses = {named["tool"]: {named["core"]}, named["core"]: {named["tool"]}}
    labels = {(named["core"], named["tool"]): "group dev"}
    weak = {(named["core"], named["tool"])}
    steps = at.cycle_order(packages, {}, [], uses, labels, weak)
    assert [(s.package.rel, s.reason) for s in steps] == [
        ("core", "used by 1 package; in a cycle with tool, broken at this edge (group dev)"),
        ("tool", "uses core"),
    ]
    reverse = {(named["tool"], named["core"])}  # the other way round, the other way round
    steps = at.cycle_order(packages, {}, [], uses, {}, reverse)
    assert [s.package.rel for s in steps] == ["tool", "core"]


# ---------------------------------------------------------------------------------------------
# IgnoreRules, glob_matches, is_vim_probe
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def rules(tmp_path: Path) -> Any:
    write(tmp_path, "env1/pyvenv.cfg", "home = /usr/bin\n")
    return at.IgnoreRules(tmp_path, ["*.log", "docs/_build", "generated/"])


def ignored(rules: Any, rel: str, is_dir: bool = False) -> bool:
    return bool(rules.is_ignored(os.path.join(rules.root, rel), is_dir))


EDITOR_FILES = [
    "pkg/.x.py.swp", "pkg/.x.py.swx", "pkg/.x.py.swo", "pkg/x.py~", "pkg/4913", "pkg/5036",
    "pkg/#x.py#", "pkg/.#x.py", "pkg/x.py___jb_tmp___", "pkg/x.py___jb_old___",
    "pkg/.goutputstream-ABC", "pkg/x.py.kate-swp",
]  # fmt: skip
TOOL_OUTPUT = [
    "pkg/__pycache__/x.cpython-311.pyc", "pkg/x.pyc", ".coverage", "pkg/.coverage.abc",
    "pkg/.noseids", "pkg/.pytest_cache/v/cache/lastfailed", ".hypothesis/examples/x",
    ".mypy_cache/3.11/x.json", "pkg/.ruff_cache/CACHEDIR.TAG", ".tox/py311/log",
    ".nox/tests/x", "pkg/foo.egg-info/PKG-INFO", "pkg/build/lib/x.py", "pkg/dist/x.whl",
    "env1/lib/python3.11/x.py", "env1/pyvenv.cfg",
]  # fmt: skip
NOT_IGNORED = [
    "development.ini", "pkg/x.py", "pkg/4914", ".coveragerc", "pkg/setup.cfg", "docs/x/_build",
    "pkg/mylog.txt", "other/docs/_build/x",
]  # fmt: skip
USER_IGNORED = ["pkg/out.log", "docs/_build/index.html", "docs/_build", "pkg/generated/x.py"]


@pytest.mark.parametrize("rel", EDITOR_FILES + TOOL_OUTPUT + USER_IGNORED)
def test_is_ignored(rules: Any, rel: str) -> None:
    assert ignored(rules, rel)


@pytest.mark.parametrize(
    "rel", [".hypothesis", ".mypy_cache", ".ruff_cache", ".tox", ".nox", "pkg/__pycache__"]
)
def test_is_ignored_tool_directory_itself(rules: Any, rel: str) -> None:
    assert ignored(rules, rel, is_dir=True)


@pytest.mark.parametrize("rel", NOT_IGNORED)
def test_is_not_ignored(rules: Any, rel: str) -> None:
    assert not ignored(rules, rel)


def test_is_ignored_new_directory_and_outside_root(rules: Any, tmp_path: Path) -> None:
    assert not ignored(rules, "pkg/newdir", is_dir=True)
    assert not rules.is_ignored(str(tmp_path))
    assert rules.is_ignored(str(tmp_path.parent / "elsewhere.py"))
    assert rules.is_ignored(str(tmp_path) + "2/x.py")


def test_is_ignored_virtualenv_made_while_watching(tmp_path: Path) -> None:
    # The order of events while `python -m venv myenv` runs: the directory, then pyvenv.cfg.
    rules = at.IgnoreRules(tmp_path)
    (tmp_path / "myenv" / "bin").mkdir(parents=True)
    assert not ignored(rules, "myenv", is_dir=True)
    write(tmp_path, "myenv/pyvenv.cfg", "home = /usr/bin\n")
    assert ignored(rules, "myenv/pyvenv.cfg")
    assert ignored(rules, "myenv/bin/activate")


@pytest.mark.parametrize(
    ("rel", "glob", "matches"),
    [
        ("a/b/x.log", "*.log", True),
        ("a/generated/x.py", "generated/", True),
        ("a/generated/x.py", "generated", True),
        ("docs/_build/x.html", "docs/_build", True),
        ("docs/_build", "/docs/_build/", True),
        ("pkg/docs/_build/x.html", "docs/_build", False),
        ("a/regenerated/x.py", "generated", False),
        ("a/x.log.py", "*.log", False),
    ],
)
def test_glob_matches(rel: str, glob: str, matches: bool) -> None:
    assert at.glob_matches(rel, glob) is matches


def test_a_glob_for_everything_in_a_directory_covers_the_directory_itself() -> None:
    assert at.glob_matches("docs", "docs/*", is_dir=True)
    assert at.glob_matches("docs/sub", "docs/*", is_dir=True)
    assert not at.glob_matches("docs", "docs/*.md", is_dir=True)
    assert not at.glob_matches("docs", "docs/*"), "a file named docs is not below docs/"
    assert not at.glob_matches("pkg/docs", "docs/*", is_dir=True)


def test_known_tool_directories_are_ignored_outright(tmp_path: Path) -> None:
    rules = at.IgnoreRules(tmp_path)
    for rel in (".benchmarks/Linux-CPython-3.11-64bit/0001_x.json", "__pypackages__/3.11/x.py"):
        assert rules.is_ignored(str(tmp_path / "pkg" / rel)), rel


def test_a_gitignore_outside_git_is_named_as_not_applied(tmp_path: Path) -> None:
    write(tmp_path, "pkg/.gitignore", "*.log\n")
    rules = at.IgnoreRules(tmp_path)
    folders = [str(tmp_path), str(tmp_path / "pkg")]
    assert rules.unapplied_gitignore(folders) == str(tmp_path / "pkg" / ".gitignore")
    git(tmp_path, "init", "-q")
    assert at.IgnoreRules(tmp_path).unapplied_gitignore(folders) is None


@pytest.mark.parametrize(
    ("name", "probe"),
    [
        ("4913", True),
        ("5036", True),
        ("5159", True),
        ("4914", False),
        ("4790", False),
        ("x4913", False),
        ("", False),
    ],
)
def test_is_vim_probe(name: str, probe: bool) -> None:
    assert at.is_vim_probe(name) is probe


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_git_ignored_reads_every_gitignore(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    write(tmp_path, ".gitignore", "*.log\n")
    write(tmp_path, "sub/.gitignore", "generated/\nsecret.txt\n")
    write(tmp_path / ".git", "info/exclude", "local-only.txt\n")
    rules = at.IgnoreRules(tmp_path)
    assert rules.use_git
    ignored = ["a.log", "sub/generated/x.py", "sub/secret.txt", "local-only.txt"]
    ignored += ["with space.log", "ünïcode.log", "new\nline.log"]
    kept = ["keep.py", "secret.txt", "sub/x.py", "ünïcode.py", "new\nline.py"]
    paths = [str(tmp_path / rel) for rel in ignored + kept]
    assert rules.git_ignored(paths) == {str(tmp_path / rel) for rel in ignored}
    assert rules.git_ignored([]) == set()


def test_git_ignored_outside_git_is_empty(tmp_path: Path) -> None:
    write(tmp_path, ".gitignore", "*.log\n")
    rules = at.IgnoreRules(tmp_path)
    assert not rules.use_git
    assert rules.git_ignored([str(tmp_path / "a.log")]) == set()


# ---------------------------------------------------------------------------------------------
# ChangeSet
# ---------------------------------------------------------------------------------------------


def test_changeset_add_take_and_keys() -> None:
    changes = at.ChangeSet()
    assert not changes.pending()
    changes.add(["/r/a.py", "/r/b.py"])
    changes.press("f")
    assert changes.pending()
    assert sorted(changes.take_paths()) == ["/r/a.py", "/r/b.py"]
    assert changes.take_key() == "f"
    assert not changes.pending()
    assert (changes.take_paths(), changes.take_key()) == ({}, None)


def test_changeset_carries_notices_from_another_thread_to_the_main_one() -> None:
    changes = at.ChangeSet()
    said: list[str] = []
    worker = threading.Thread(target=changes.post, args=(lambda: said.append("cannot watch"),))
    worker.start()
    changes.wait_settled(0.01, timeout=30)  # a notice wakes the main thread at once
    worker.join()
    assert said == []
    for notice in changes.take_notices():
        notice()
    assert said == ["cannot watch"] and changes.take_notices() == []


def test_changeset_transient_file_is_no_change() -> None:
    changes = at.ChangeSet()
    changes.add(["/r/pkg/.x.tmp123"], created=True)
    changes.add(["/r/pkg/.x.tmp123"])  # written to
    changes.remove("/r/pkg/.x.tmp123")  # then renamed away
    assert not changes.pending()


def test_changeset_removal_of_an_existing_file_counts() -> None:
    changes = at.ChangeSet()
    changes.add(["/r/old.py"])
    changes.remove("/r/old.py")
    changes.remove("/r/never-seen.py")
    changes.add(["/r/new.py"], created=True)
    assert sorted(changes.take_paths()) == ["/r/never-seen.py", "/r/new.py", "/r/old.py"]
    changes.remove("/r/new.py")  # created before the last take: its removal is a change
    assert list(changes.take_paths()) == ["/r/new.py"]


def in_thread(action: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=action, daemon=True)
    thread.start()
    return thread


def timed(action: Callable[[], None]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def test_wait_settled_waits_for_a_quiet_debounce() -> None:
    changes = at.ChangeSet()
    last_add: list[float] = []

    def burst() -> None:
        for _ in range(6):
            last_add[:] = [time.monotonic()]  # taken first: the ChangeSet's own time is later
            changes.add(["/r/a.py"])
            time.sleep(0.05)

    thread = in_thread(burst)
    changes.wait_settled(0.2, timeout=10)
    settled = time.monotonic()
    thread.join()
    # Measured from the burst's last change, not from the call: a loaded machine may start
    # the waiting late, but it can never end the quiet time early.
    assert 0.2 <= settled - last_add[0] < 5


def test_wait_settled_returns_on_a_key() -> None:
    changes = at.ChangeSet()

    pressed: list[float] = []

    def press() -> None:
        time.sleep(0.1)
        pressed.append(time.monotonic())  # taken first: the key exists only after it
        changes.press("q")

    thread = in_thread(press)
    elapsed = timed(lambda: changes.wait_settled(0.05, timeout=10))
    returned = time.monotonic()
    thread.join()
    assert elapsed < 5 and changes.take_key() == "q"
    assert returned >= pressed[0]  # it returned because of the key, not before it


def test_wait_settled_honours_its_timeout() -> None:
    elapsed = timed(lambda: at.ChangeSet().wait_settled(0.05, timeout=0.3))
    assert 0.29 <= elapsed < 5


# ---------------------------------------------------------------------------------------------
# plan_watches
# ---------------------------------------------------------------------------------------------


def make_dirs(root: Path, *rels: str) -> None:
    for rel in rels:
        (root / rel).mkdir(parents=True, exist_ok=True)


def test_plan_watches_splits_around_a_heavy_ignored_tree(tmp_path: Path) -> None:
    clean = ["pkg", "pkg/mod", "pkg/tests", "docs"]
    make_dirs(tmp_path, *clean, "pkg/__pycache__", ".venv/lib/python3.11/site-packages/x")
    rules = at.IgnoreRules(tmp_path)
    plan = at.plan_watches(str(tmp_path), rules.excludes_dir)
    venv = str(tmp_path / ".venv")
    assert not any(venv == r or venv.startswith(r + os.sep) for r in plan.recursive)
    assert str(tmp_path) in plan.flat
    assert str(tmp_path / "pkg") in plan.recursive  # a __pycache__ leaf is cheap to watch
    for rel in clean:
        path = str(tmp_path / rel)
        assert path in plan.flat or any(path.startswith(r) for r in plan.recursive)
    assert plan.watches <= 2 * (len(clean) + 1)
    assert plan.unreadable == ()


def test_plan_watches_one_recursive_watch_without_ignored_dirs(tmp_path: Path) -> None:
    make_dirs(tmp_path, "a/b/c", "d")
    plan = at.plan_watches(str(tmp_path), at.IgnoreRules(tmp_path).excludes_dir)
    assert plan.recursive == (str(tmp_path),)
    assert plan.flat == ()
    assert plan.watches == 5


# ---------------------------------------------------------------------------------------------
# Runner, make_runner
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runner", "code", "output", "verdict"),
    [
        ("nose", 0, "....\nRan 4 tests in 0.010s\n\nOK\n", "ok"),
        ("nose", 0, "\nRan 0 tests in 0.000s\n\nOK\n", "no tests"),
        ("nose", 1, "Ran 2 tests in 0.1s\nFAILED (failures=1)\n", "FAILED"),
        ("nose", 5, "", "FAILED"),
        ("pytest", 5, "no tests ran in 0.01s\n", "no tests"),
        ("pytest", 0, "1 passed\n", "ok"),
        ("pytest", 1, "1 failed\n", "FAILED"),
        ("pytest", 2, "interrupted\n", "FAILED"),
        ("unittest", 5, "\nRan 0 tests in 0.000s\n\nNO TESTS RAN\n", "no tests"),
        ("unittest", 0, "Ran 0 tests in 0.000s\n", "no tests"),
        ("unittest", 1, "FAILED (errors=1)\n", "FAILED"),
        ("mytool {package}", 0, "Ran 0 tests in 0.000s\n", "ok"),
        ("mytool {package}", 5, "", "FAILED"),
        ("mytool {package}", 139, "", "FAILED"),
    ],
)
def test_runner_verdict(runner: str, code: int, output: str, verdict: str) -> None:
    assert at.make_runner(runner).verdict(code, output).value == verdict


def test_make_runner_builtin() -> None:
    runner = at.make_runner("pytest")
    assert runner.argv == (sys.executable, "-m", "pytest")
    assert runner.module == "pytest"


def test_make_runner_command_substitutes_the_package_as_one_argument(tmp_path: Path) -> None:
    runner = at.make_runner("mytool --root {package} -k 'two words' {package}")
    assert runner.module is None
    package = pkg(tmp_path, "a b; rm -rf ~")
    assert runner.command(package, ["-x"]) == [
        "mytool", "--root", str(package.path), "-k", "two words", str(package.path), "-x",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "spec", ["sh -c 'cd {package} && nosetests'", "mytool --out={package}/out", "x {package}s"]
)
def test_the_package_inside_a_larger_argument_is_refused_with_the_environment_variable(
    spec: str,
) -> None:
    with pytest.raises(at.UsageError, match=r"argument of its own.*\$AUTOTEST_PACKAGE"):
        at.make_runner(spec)


def test_a_python_runner_is_started_with_faulthandler(tmp_path: Path) -> None:
    package = pkg(tmp_path, "alpha")
    command = at.make_runner("nose").command(package, ["-v"])
    assert command == [sys.executable, "-X", "faulthandler", "-m", "nose", "-v"]


@pytest.mark.parametrize("spec", ["no-such-runner-xyz", "", "   ", "mytool 'unclosed {package}"])
def test_make_runner_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(at.UsageError):
        at.make_runner(spec)


# ---------------------------------------------------------------------------------------------
# parse_options, read_config
# ---------------------------------------------------------------------------------------------


def options(root: Path, *args: str) -> Any:
    return at.parse_options(["--root", str(root), *args])


PYPROJECT_CONFIG = """\
[tool.autotest]
runner = "pytest"
runner-args = ["-x", "-q"]
jobs = 2
timeout = 30
restart = true
debounce = 0.2
ignore = ["*.log", "tmp/"]
packages = ["libs/*", "exporter/*"]
exclude = ["*-legacy"]
poll = true
warm = false
explain = true
clear = true
bell = true
notify = true
"""

SETUP_CFG_CONFIG = """\
[autotest]
runner = pytest
runner-args = -x -q
jobs = 2
timeout = 30
restart = yes
debounce = 0.2
ignore = *.log tmp/
packages = libs/* exporter/*
exclude = *-legacy
poll = true
warm = no
explain = on
clear = 1
bell = true
notify = true
"""


@pytest.mark.parametrize(
    ("filename", "text"),
    [("pyproject.toml", PYPROJECT_CONFIG), ("setup.cfg", SETUP_CFG_CONFIG)],
)
def test_config_file(tmp_path: Path, filename: str, text: str) -> None:
    write(tmp_path, filename, text)
    section = "[tool.autotest]" if filename == "pyproject.toml" else "[autotest]"
    assert options(tmp_path) == at.Options(
        root=tmp_path.resolve(), runner="pytest", runner_args=("-x", "-q"), jobs=2,
        timeout=30.0, restart=True, debounce=0.2, ignore=("*.log", "tmp/"), poll=True,
        warm=False, explain=True, clear=True, bell=True, notify=True,
        runner_from=f"{filename} {section}",
        packages=("libs/*", "exporter/*"), exclude=("*-legacy",),
    )  # fmt: skip


def test_defaults_without_config(tmp_path: Path) -> None:
    assert options(tmp_path) == at.Options(root=tmp_path.resolve())


def test_pyproject_wins_over_setup_cfg(tmp_path: Path) -> None:
    write(tmp_path, "setup.cfg", "[autotest]\njobs = 3\nrunner = unittest\n")
    write(tmp_path, "pyproject.toml", '[tool.autotest]\nrunner = "pytest"\n')
    opts = options(tmp_path)
    assert (opts.runner, opts.jobs) == ("pytest", 3)


def test_command_line_wins_over_config(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", PYPROJECT_CONFIG)
    opts = options(tmp_path, "--runner", "unittest", "-j", "3", "--debounce", "0", "--ignore", "x")
    assert (opts.runner, opts.jobs, opts.debounce, opts.ignore) == ("unittest", 3, 0.0, ("x",))
    assert opts.runner_args == ("-x", "-q")


def test_runner_args_after_double_dash(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", PYPROJECT_CONFIG)
    opts = options(tmp_path, "--once", "--", "-k", "foo", "--", "--verbose")
    assert opts.once
    assert opts.runner_args == ("-k", "foo", "--", "--verbose")


def test_command_line_values(tmp_path: Path) -> None:
    opts = options(
        tmp_path, "libs/api", "tools/*", "--changed", "a.py", "b.py", "--timeout", "2.5", "-j",
        "auto", "--no-warm", "-v", "--restart", "--poll", "--changed", "--changed", "c.py",
        "--since", "origin/main", "--exclude", "x", "--exclude", "y",
    )  # fmt: skip
    assert opts.packages == ("libs/api", "tools/*")
    assert opts.changed == ("a.py", "b.py", "c.py")
    assert (opts.since, opts.exclude) == ("origin/main", ("x", "y"))
    assert (opts.timeout, opts.jobs, opts.warm) == (2.5, os.cpu_count() or 1, False)
    assert opts.explain and opts.restart and opts.poll


@pytest.mark.parametrize(
    ("filename", "text"),
    [
        ("pyproject.toml", "[tool.autotest]\ncolour = true\n"),
        ("setup.cfg", "[autotest]\ncolour = true\n"),
        ("pyproject.toml", "[tool.autotest]\njobs = 0\n"),
        ("pyproject.toml", '[tool.autotest]\njobs = "many"\n'),
        ("pyproject.toml", "[tool.autotest]\ntimeout = 0\n"),
        ("setup.cfg", "[autotest]\ntimeout = soon\n"),
        ("setup.cfg", "[autotest]\ndebounce = -1\n"),
        ("pyproject.toml", '[tool.autotest]\npoll = "maybe"\n'),
        ("pyproject.toml", "[tool.autotest\n"),
        ("setup.cfg", "no section header\n"),
    ],
)
def test_bad_config_is_a_usage_error(tmp_path: Path, filename: str, text: str) -> None:
    write(tmp_path, filename, text)
    with pytest.raises(at.UsageError):
        options(tmp_path)


@pytest.mark.parametrize(
    "args",
    [
        ["-j", "0"],
        ["-j", "x"],
        ["--timeout", "0"],
        ["--debounce", "-1"],
        ["--debounce", "nan"],
        ["--timeout", "inf"],
        ["--bogus"],
        ["--since"],
    ],
)
def test_bad_command_line_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    with pytest.raises(at.UsageError):
        options(tmp_path, *args)


def test_an_empty_changed_is_no_change(tmp_path: Path) -> None:
    """A hook's ``--changed $(git diff --name-only HEAD)`` on a clean tree."""
    assert options(tmp_path, "--once", "--changed").changed == ()


def test_packages_on_the_command_line_win_over_config(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[tool.autotest]\npackages = ["libs/*"]\n')
    assert options(tmp_path).packages == ("libs/*",)
    assert options(tmp_path, "tools/x").packages == ("tools/x",)


def test_root_that_is_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(at.UsageError):
        options(tmp_path / "missing")


def test_read_config_names_with_underscores(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[tool.autotest]\nrunner_args = "-x --pdb"\n')
    assert at.read_config(tmp_path) == {"runner-args": ("-x", "--pdb")}


# ---------------------------------------------------------------------------------------------
# describe_changes
# ---------------------------------------------------------------------------------------------


def test_describe_changes(tmp_path: Path) -> None:
    packages = [pkg(tmp_path, "alpha"), pkg(tmp_path, "beta")]
    a1 = write(tmp_path, "alpha/a/one.py")
    a2 = write(tmp_path, "alpha/a/two.py")
    b1 = write(tmp_path, "beta/b.py")
    top = write(tmp_path, "README.md")

    def describe(*paths: Path) -> str:
        return str(at.describe_changes([str(p) for p in paths], tmp_path, packages))

    assert describe(a1) == "changed: alpha/a/one.py"
    assert describe(tmp_path / "beta/gone.py") == "changed: beta/gone.py (removed)"
    assert describe(a1, a2) == "changed: 2 files in 1 package"
    assert describe(a1, a2, b1) == "changed: 3 files in 2 packages"
    assert describe(a1, top) == "changed: 2 files in 1 package and outside them"


# ---------------------------------------------------------------------------------------------
# forget_bytecode
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_prefix", [False, True], ids=["in-tree", "prefix"])
def test_forget_bytecode_removes_the_cache_of_changed_sources_only(
    tmp_path: Path, with_prefix: bool
) -> None:
    source, other = tmp_path / "pkg" / "mod.py", tmp_path / "pkg" / "other.py"
    source.parent.mkdir()
    source.write_text("X = 1\n")
    other.write_text("Y = 1\n")
    prefix = str(tmp_path / "cache") if with_prefix else None
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if prefix:
        env["PYTHONPYCACHEPREFIX"] = prefix
    subprocess.run(
        [sys.executable, "-c", "import mod, other"], cwd=source.parent, env=env, check=True
    )

    def cached() -> list[str]:
        stems = (p.name.split(".")[0] for p in tmp_path.rglob("*.pyc"))
        return sorted(s for s in stems if s in ("mod", "other"))  # the prefix holds the stdlib too

    assert cached() == ["mod", "other"]
    at.forget_bytecode([str(source), str(tmp_path / "pkg" / "data.txt")], prefix)
    assert cached() == ["other"]


# ---------------------------------------------------------------------------------------------
# A monorepo of several dozen packages
# ---------------------------------------------------------------------------------------------


def test_a_monorepo_of_dozens_of_packages_orders_dependents_by_distance(tmp_path: Path) -> None:
    """40 packages two levels deep, src layouts, names spelt differently from their requirement:
    a chain core <- lib01 <- lib02 <- ... plus unrelated tools, all read from metadata."""
    for i in range(1, 31):
        requires = '"Company_Core"' if i == 1 else f'"company.lib{i - 1:02d}>=1"'
        write(
            tmp_path,
            f"libs/lib{i:02d}/pyproject.toml",
            f'[project]\nname = "company-lib{i:02d}"\ndependencies = [{requires}]\n',
        )
        write(tmp_path, f"libs/lib{i:02d}/src/company_lib{i:02d}/__init__.py")
    write(tmp_path, "core/pyproject.toml", '[project]\nname = "company-core"\n')
    for i in range(9):
        write(tmp_path, f"tools/t{i}/setup.cfg", f"[metadata]\nname = tool{i}\n")

    packages, _ = discovered(tmp_path)
    graph = at.dependency_graph(packages)
    by_rel = {p.rel: p for p in packages}
    order = at.cycle_order(packages, {by_rel["core"]: 1.0}, [], graph.uses)

    assert len(packages) == 40
    assert [s.package.rel for s in order[:31]] == ["core"] + [
        f"libs/lib{i:02d}" for i in range(1, 31)
    ]
    assert order[2].reason == "uses libs/lib01"
    assert {s.package.rel for s in order[31:]} == {f"tools/t{i}" for i in range(9)}


# ---------------------------------------------------------------------------------------------
# The warm runner is kept only while it is faster
# ---------------------------------------------------------------------------------------------


class StandInLauncher:
    """Making real forks slower than cold starts is not possible here: this records close()."""

    closed = False
    renewed = 0

    def close(self) -> None:
        self.closed = True

    def renew(self) -> None:
        self.renewed += 1


def timed_result(package: Any, seconds: float, warm: bool) -> Any:
    return at.RunResult(package, at.Verdict.OK, seconds, "", warm=warm)


def three_packages() -> list[Any]:
    return [at.Package(Path(f"/r/{name}"), name) for name in ("alpha", "beta", "gamma")]


def cold_cycle(policy: Any, packages: list[Any], seconds: float = 0.20) -> None:
    assert all(policy.forking_launcher(p) is None for p in packages), "the first cycle runs cold"
    for package in packages:
        policy.record(timed_result(package, seconds, warm=False))
    policy.cycle_done()


@pytest.mark.parametrize(("warm", "kept"), [(0.05, True), (0.30, False)])
def test_the_warm_runner_is_judged_against_cold_runs_of_the_same_packages(
    warm: float, kept: bool
) -> None:
    packages = three_packages()
    launcher = StandInLauncher()
    policy = at.WarmPolicy(launcher)
    cold_cycle(policy, packages)
    assert policy.forking_launcher(packages[0]) is launcher
    policy.record(timed_result(packages[0], warm, warm=True))
    assert policy.judge(len(packages)) is None, "one package is too few"

    for package in packages:
        policy.record(timed_result(package, warm, warm=True))
    judged = policy.judge(len(packages))

    assert (judged is None) is kept
    assert policy.forking is kept
    assert not launcher.closed, "kept for a later judgement"
    if not kept:
        assert judged == pytest.approx((3 * warm, 0.60, False))
        assert policy.forking_launcher(packages[1]) is None


def test_a_run_whose_code_changed_is_not_compared() -> None:
    """The first edit adds a 1 s test: the run after it says nothing about forking."""
    packages = three_packages()
    policy = at.WarmPolicy(StandInLauncher())
    cold_cycle(policy, packages, 0.49)
    policy.code_changed([packages[0]])
    policy.record(timed_result(packages[0], 1.10, warm=True))  # compiles, and runs a new test
    assert policy.judge(len(packages)) is None
    for package in packages[1:]:
        policy.record(timed_result(package, 0.10, warm=True))
    assert policy.judge(len(packages)) is None, "alpha's cold time was for other code"
    assert policy.forking
    assert policy.times[packages[0]].cold is None and policy.times[packages[0]].warm is None


def test_no_judgement_on_zero_packages() -> None:
    policy = at.WarmPolicy(StandInLauncher())
    policy.cycle_done()
    assert policy.judge(0) is None
    assert policy.forking


def test_a_later_cycle_revises_the_judgement_through_one_probe_per_cycle() -> None:
    packages = three_packages()
    launcher = StandInLauncher()
    policy = at.WarmPolicy(launcher)
    cold_cycle(policy, packages)
    for package in packages:
        policy.record(timed_result(package, 0.30, warm=True))
    assert policy.judge(3) == pytest.approx((0.90, 0.60, False))
    policy.cycle_done()

    policy.code_changed([packages[0]])  # alpha's times are gone
    policy.record(timed_result(packages[0], 0.50, warm=False))  # compiles: not counted
    policy.record(timed_result(packages[0], 0.40, warm=False))
    assert policy.forking_launcher(packages[0]) is launcher, "a probe: alpha has no forked time"
    assert policy.forking_launcher(packages[0]) is None, "one probe per cycle"
    policy.record(timed_result(packages[0], 0.05, warm=True))
    for package in packages[1:]:  # the machine got less busy: forked runs are faster now
        policy.code_changed([package])
        policy.record(timed_result(package, 0.20, warm=False))
        policy.record(timed_result(package, 0.20, warm=False))
        policy.record(timed_result(package, 0.05, warm=True))
    assert policy.judge(3) == pytest.approx((0.15, 0.80, True))
    assert policy.forking_launcher(packages[1]) is launcher


def test_a_forked_run_that_timed_out_or_was_killed_is_not_a_time() -> None:
    packages = three_packages()
    policy = at.WarmPolicy(StandInLauncher())
    cold_cycle(policy, packages)
    killed = at.RunResult(packages[0], at.Verdict.FAILED, 9.0, "", "timed out", warm=True)
    policy.record(killed)
    assert policy.times[packages[0]].warm is None


# ---------------------------------------------------------------------------------------------
# Without POSIX (Windows): the fallbacks work rather than crash
# ---------------------------------------------------------------------------------------------


def test_without_posix_runs_start_cold_and_are_killed_by_the_fallback(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This machine is Linux: POSIX is switched off to take the other branches for real."""
    monkeypatch.setattr(at, "POSIX", False)
    package = at.Package(repo.package("alpha"), "alpha")
    runner = at.make_runner(f"{sys.executable} -c 'import time; time.sleep(60)'")
    nose = at.BUILTIN_RUNNERS["nose"]
    facts = at.interpreter_facts(sys.executable, nose.plugins)
    assert facts is None, "no fork server without POSIX"
    launcher = at.WarmLauncher(nose, dict(os.environ), facts)
    assert launcher.warm.kept == [], "no fork server without POSIX"

    run = at.Run(at.RunStart(package, runner, sys.executable, (), dict(os.environ)), None, launcher)
    assert isinstance(run.proc, subprocess.Popen)
    assert run.poll() is None
    run.kill()  # taskkill is not here: the process itself is ended
    result = run.poll()
    assert result is not None and result.verdict is at.Verdict.FAILED

    with at.KeyReader(at.ChangeSet().press) as keys:  # no termios branch, and no msvcrt here
        assert keys.saved is None


def test_describe_changes_outside_every_package(tmp_path: Path) -> None:
    packages = [at.Package(tmp_path / "a", "a")]
    paths = [str(tmp_path / "README.md"), str(tmp_path / "docs" / "x.md")]
    assert (
        at.describe_changes(paths, tmp_path, packages) == "changed: 2 files outside every package"
    )


@pytest.mark.parametrize(
    ("number", "text"), [(0, "0 packages"), (1, "1 package"), (3, "3 packages")]
)
def test_counted_says_one_package_and_many_packages(number: int, text: str) -> None:
    assert at.counted(number, "package") == text


# ---------------------------------------------------------------------------------------------
# Watches granted: a slow count is not a refusal
# ---------------------------------------------------------------------------------------------


class FakeTime:
    """A clock that moves only when slept on, as sched's delayfunc lets a scheduler test."""

    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_watches_added_slowly_are_no_refusal_however_long_it_takes() -> None:
    """On a loaded machine watchdog may take seconds to add a tree's watches: a count that
    keeps growing is waited for."""
    time_ = FakeTime()
    counts = iter([(n, 40) for n in range(0, 40, 2)] + [(40, 40)])

    def count() -> tuple[int, int]:
        time_.sleep(0.3)  # each count sees watchdog a little further on
        return next(counts)

    assert at.lasting_shortfall(count, lambda: time_.now, time_.sleep) is None


def test_a_count_that_stops_short_is_a_refusal_after_the_stall() -> None:
    time_ = FakeTime()
    assert at.lasting_shortfall(lambda: (7, 10), lambda: time_.now, time_.sleep) == (7, 10)
    assert at.GRANT_STALL <= time_.now < at.GRANT_STALL + 2 * at.GRANT_RECHECK
    time_ = FakeTime()
    growing = iter(range(1000))
    assert (
        at.lasting_shortfall(lambda: (next(growing), 10**6), lambda: time_.now, time_.sleep)
        is not None
    ), "still short after GRANT_PATIENCE, growing or not"
    assert time_.now >= at.GRANT_PATIENCE


def test_a_file_run_by_a_command_of_its_own_is_not_run_again_from_bytecode() -> None:
    """``python -c 'runpy.run_path(...)' FILE ARGS``: the options before FILE are a program,
    not the interpreter's options, so there is nothing to run the file again with."""
    argv = ["autotest.py", "--once"]
    assert at.interpreter_options(["python", "-X", "dev", *argv], argv) == ["-X", "dev"]
    assert at.interpreter_options(["python", "-c", "import runpy; ...", *argv], argv) is None
    assert at.interpreter_options(["python", "-m", "wrapper", *argv], argv) is None

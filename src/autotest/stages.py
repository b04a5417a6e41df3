"""Inside a package, the tests a save concerns run first.

A run of a package whose modules changed (or the modules of packages it uses) goes in two
stages: first its test modules that import a changed module, directly or through other modules
of the repository, and those holding the tests that failed in its last run; then the rest.  A
failure in the first stage is the package's verdict at once; it is ``ok`` only once both have
run.  What cannot be traced runs the whole package in one stage: a ``conftest.py``, anything
that is not Python (configuration, metadata, data), the first run after start, a runner that
cannot select.  A module that imports by computed name (``importlib.import_module(name)``) may
import anything, so it counts as importing every change.

The decisions (``whole_run``, ``stage_plan`` and what they call) are pure functions of values;
``Staging`` gathers those values (each package's modules read once per cycle, its last run's
failed tests) and ``StagedRun`` runs the two stages one after the other as one run.
"""

from __future__ import annotations

import functools
import glob
import os
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Protocol

from .basics import Verdict
from .discovery import Package
from .graph import users_reached
from .imports import ImportScan, absolute_imports, is_test_module
from .junit import FailingTest, joined_reports
from .run import RunResult
from .runners import Runner, package_python_files, pytest_config_file, pytest_setting
from .selection import KEPT_WITH_VALUE, Selection


@dataclass(frozen=True)
class Module:
    """A Python file of the repository as the staging sees it: its dotted name, what it
    imports (relative imports resolved), whether it imports by computed names."""

    path: str
    name: str
    imports: frozenset[str]
    dynamic: bool
    alias: str = ""  # the name pytest imports it by, where that is another (``helpers``)


@dataclass(frozen=True)
class PackageTests:
    """A package's test modules as its runner selects them (paths relative to the package),
    and where pytest's node ids start; ``untraceable`` says why they cannot be told apart."""

    package: Package
    tests: tuple[str, ...]
    rootdir: Path
    untraceable: str = ""


@dataclass(frozen=True)
class FirstTest:
    """One test module of the first stage (relative to the package), and why it is there;
    ``test``, the test of it that failed last run, when that is why."""

    module: str
    why: str
    test: str = ""

    def __str__(self) -> str:
        return f"{pytest_node_id(self.module, self.test) if self.test else self.module} {self.why}"


@dataclass(frozen=True)
class Stages:
    """The runner arguments (the selection's, narrowed or widened) of the two stages.  With
    ``rest_repeats`` the runner cannot leave out what ran first, so the second stage runs every
    test of the package again."""

    first: tuple[str, ...]
    rest: tuple[str, ...]
    tests: tuple[FirstTest, ...]
    out_of: int  # the package's test modules
    rest_repeats: bool = False

    @property
    def summary(self) -> str:
        """``first stage: 1 of 30 test modules``, as the status line and -v say it."""
        return f"first stage: {len(self.tests)} of {self.out_of} test modules"


@dataclass(frozen=True)
class OneStage:
    """The whole package in one run, and why (empty when there is nothing to say: no change,
    a runner that runs whole packages)."""

    why: str = ""


def module_name(path: str, package: Package) -> str:
    """The dotted name ``path`` is imported by: below ``src/`` in a src layout, else below the
    package directory (``big.m23``, ``tests.test_m23``; a package's ``__init__.py`` is the
    package)."""
    src = package.path / "src"
    base = src if path.startswith(str(src) + os.sep) else package.path
    rel = os.path.relpath(path, base)[: -len(".py")]
    parts = rel.split(os.sep)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def prefixes(name: str) -> list[str]:
    """``a``, ``a.b``, ``a.b.c`` of ``a.b.c``: every module importing it runs."""
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts) + 1)]


def reached_by(changed: Collection[str], modules: Sequence[Module]) -> dict[str, tuple[str, ...]]:
    """Every module (by path) that imports a changed one (``changed`` paths), directly or
    through others, each with the chain of names that leads there: empty for a changed module
    itself, ending in ``*`` through one that imports by computed names (it may import
    anything).  Test modules of several packages may share a name (``tests.test_core``): by
    path, one is never taken for another."""
    importers: dict[str, list[Module]] = {}
    for module in modules:
        for prefix in {p for name in module.imports for p in prefixes(name)}:
            importers.setdefault(prefix, []).append(module)
    seeds = [m for m in modules if m.path in changed]
    chains: dict[str, tuple[str, ...]] = {m.path: () for m in seeds}
    if seeds:
        dynamic = [m for m in modules if m.dynamic and m.path not in chains]
        chains.update({m.path: ("*",) for m in dynamic})
        seeds += dynamic
    pending = seeds
    while pending:
        reached = pending.pop(0)
        for name in filter(None, (reached.name, reached.alias)):
            for module in importers.get(name, ()):
                if module.path not in chains:
                    chains[module.path] = (name, *chains[reached.path])
                    pending.append(module)
    return chains


def chain_text(chain: tuple[str, ...]) -> str:
    """``imports big.m23``; ``imports big.util, which imports big.m23``."""
    if not chain:
        return "changed"
    if chain == ("*",):
        return "imports modules by computed names"
    said = "imports " + ", which imports ".join(n for n in chain if n != "*")
    return said + (", which imports modules by computed names" if chain[-1] == "*" else "")


@dataclass(frozen=True)
class Change:
    """What staging knows of a cycle's change: the changed paths."""

    paths: tuple[str, ...] = ()
    untraceable: str = ""  # a changed path that can only be run whole, and why


def change_of(paths: Iterable[str], root: Path) -> Change:
    """The change as staging sees it: its paths, or the first that runs packages whole.  A
    directory that is there stands for the files that came or went in it, which are reported
    themselves."""
    paths = tuple(paths)
    for path in paths:
        if os.path.isdir(path):
            continue
        rel = os.path.relpath(path, root).replace(os.sep, "/")
        name = os.path.basename(path)
        if name == "conftest.py":
            return Change(paths, f"{rel} changed (a conftest.py)")
        if not name.endswith(".py") or name == "setup.py":
            return Change(paths, f"{rel} changed (not a module)")
    return Change(paths)


@dataclass(frozen=True)
class History:
    """What staging remembers of a package's last run: the tests that failed in it."""

    failed: tuple[FailingTest, ...] = ()


def failed_files(failed: Iterable[FailingTest], tests: Sequence[str]) -> dict[str, str]:
    """The test modules (of ``tests``) holding the tests that failed, each with one of their
    ids: a report names a test by its module's dotted name, from wherever the runner's root
    is (``tests.test_a.TestX.test_y`` or ``libs.pkg.tests.test_a.TestX.test_y``)."""
    by_name = {t[: -len(".py")].replace("/", "."): t for t in tests}
    found: dict[str, str] = {}
    for test in failed:
        hits = [n for n in by_name if test.name.startswith(n + ".") or f".{n}." in test.name]
        if hits:
            name = max(hits, key=len)
            rest = test.name[test.name.index(name + ".") + len(name) + 1 :]
            found.setdefault(by_name[name], rest)
    return found


def pytest_node_id(file: str, rest: str) -> str:
    """``tests/test_a.py::TestX::test_y[a.b]`` from the module's file and the report's rest."""
    parts: list[str] = []
    depth, word = 0, ""
    for char in rest:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "." and depth == 0:
            parts.append(word)
            word = ""
        else:
            word += char
    return "::".join([file, *parts, word])


def selection_parts(args: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """A pytest selection's positional paths, its options (with their values) and its
    ``--ignore`` paths."""
    paths: list[str] = []
    options: list[str] = []
    ignored: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg in (*KEPT_WITH_VALUE, "-p") and rest:
            value = rest.pop(0)
            options += [arg, value]
            if arg == "--ignore":
                ignored.append(value)
        elif arg.startswith("-"):
            options.append(arg)
            if arg.startswith("--ignore="):
                ignored.append(arg.partition("=")[2])
        else:
            paths.append(arg)
    return paths, options, ignored


NOSE_IGNORED = (r"^\.", r"^_", r"^setup\.py$")  # nose's own, which -I replaces


def first_tests(
    found: PackageTests, chains: Mapping[str, tuple[str, ...]], failed: Mapping[str, str]
) -> list[FirstTest]:
    """The first stage's test modules: those holding a test that failed last time, then those
    that import a changed module."""
    top = found.package.path
    reaching = {t: why for t in found.tests if (why := why_reached(top, t, chains))}
    first = [
        FirstTest(t, f"failed last run, {reaching[t]}")
        if t in reaching
        else FirstTest(t, "failed last run", failed[t])
        for t in found.tests
        if t in failed
    ]
    first += [FirstTest(t, why) for t, why in reaching.items() if t not in failed]
    return first


def why_reached(top: Path, test: str, chains: Mapping[str, tuple[str, ...]]) -> str:
    """Why the change reaches test module ``test`` (relative to ``top``), or "": it imports a
    changed module, or pytest loads a ``conftest.py`` above it that does."""
    path = os.path.join(top, *test.split("/"))
    if path in chains:
        return chain_text(chains[path])
    for conftest, chain in chains.items():
        folder, name = os.path.split(conftest)
        if name == "conftest.py" and path.startswith(folder + os.sep):
            rel = os.path.relpath(conftest, top).replace(os.sep, "/")
            return f"runs under {rel}, which {chain_text(chain)}"
    return ""


def whole_run(runner: Runner, change: Change, history: History | None) -> OneStage | None:
    """Why a package runs whole whatever its tests import, if it does: a runner that runs
    whole packages, no change (a first cycle, a key), a change that cannot be traced, no run
    yet to learn from (``history`` None)."""
    if runner.module is None or not change.paths:
        return OneStage()
    if change.untraceable:
        return OneStage(change.untraceable)
    if history is None:
        return OneStage("its first run since autotest started")
    return None


def stage_plan(
    runner: Runner, selection: Selection, found: PackageTests,
    chains: Mapping[str, tuple[str, ...]], history: History,
) -> Stages | OneStage:  # fmt: skip
    """How a package's run goes, given the modules the change reaches (``chains``, from
    ``reached_by``): in two stages, or whole, and why."""
    if found.untraceable:
        return OneStage(found.untraceable)
    tests = found.tests
    if not tests:
        return OneStage("no test modules to choose from")
    failed = failed_files(history.failed, tests)
    first = first_tests(found, chains, failed)
    if not first:
        return OneStage("nothing in its tests imports the change")
    if len(first) == len(tests):
        if any(t.why == "failed last run" for t in first):
            return OneStage("every test module imports the change or failed last run")
        return OneStage("every test module imports the change")
    build = STAGE_ARGS.get(runner.name)
    if build is None:
        return OneStage()
    return build(selection.args, found, first)


def modules_of(first: Sequence[FirstTest]) -> list[str]:
    """The first stage's test modules, each once, in order."""
    return list(dict.fromkeys(t.module for t in first))


def pytest_stages(
    args: Sequence[str], found: PackageTests, first: Sequence[FirstTest]
) -> Stages | OneStage:
    """pytest: each stage is the whole selection less the other stage's test modules
    (``--ignore``, which matches a path exactly), so pytest's own rules of what it collects
    (``collect_ignore``, ``norecursedirs``, markers) hold in both, and no test runs twice.
    A failed test runs with its module: ``--deselect`` matches ids as prefixes, so
    ``test_a`` would take ``test_a_more`` with it."""
    chosen = modules_of(first)
    others = [t for t in found.tests if t not in chosen]
    return Stages(
        selection_less(args, others), selection_less(args, chosen), tuple(first),
        len(found.tests),
    )  # fmt: skip


def selection_less(args: Sequence[str], modules: Sequence[str]) -> tuple[str, ...]:
    """pytest's selection less test ``modules``: a module it names is dropped from it (pytest
    runs a path named on its command line whatever ``--ignore`` says), any other ignored."""
    paths, options, _ = selection_parts(args)
    left_out = set(modules)
    named = [p for p in paths if os.path.normpath(p.partition("::")[0]).replace(os.sep, "/")
             not in left_out]  # fmt: skip
    return (*named, *options, *(f"--ignore={m}" for m in modules))


def nose_stages(
    args: Sequence[str], found: PackageTests, first: Sequence[FirstTest]
) -> Stages | OneStage:
    """nose: each stage is the whole package less the other stage's test modules, left out
    by file name (``-I``, with nose's own patterns, which it replaces), so nose's own rules of
    what it collects (``--exe``, directories) hold in both; file names must be unique."""
    if args:
        return OneStage("its runner arguments select the tests")
    chosen = modules_of(first)
    names = Counter(os.path.basename(t) for t in found.tests)
    if any(names[os.path.basename(t)] > 1 for t in chosen):
        return OneStage("a test module of the first stage shares its name with another")

    def leaving_out(modules: Iterable[str]) -> tuple[str, ...]:
        patterns = [*NOSE_IGNORED, *(f"^{re.escape(os.path.basename(m))}$" for m in modules)]
        return tuple(arg for pattern in patterns for arg in ("-I", pattern))

    others = [t for t in found.tests if t not in chosen]
    return Stages(leaving_out(others), leaving_out(chosen), tuple(first), len(found.tests))


def dotted_stages(
    args: Sequence[str], found: PackageTests, first: Sequence[FirstTest], unittest: bool = False
) -> Stages | OneStage:
    """unittest and nose2 take test modules by dotted name (unittest's discovery, by name
    pattern), but cannot leave any out: the second stage runs the whole package again."""
    if args:
        return OneStage("its runner arguments select the tests")
    names = [m[: -len(".py")].replace("/", ".") for m in modules_of(first)]
    chosen = tuple(a for n in names for a in ("-k", f"{n}.*")) if unittest else tuple(names)
    return Stages(chosen, (), tuple(first), len(found.tests), rest_repeats=True)


STAGE_ARGS: dict[str, Callable[..., Stages | OneStage]] = {
    "pytest": pytest_stages,
    "nose": nose_stages,
    "nose2": dotted_stages,
    "unittest": functools.partial(dotted_stages, unittest=True),
}


def pytest_places(
    package: Package, selection: Selection, root: Path
) -> tuple[list[str], list[str]]:
    """Where pytest looks for the package's tests, and what it leaves out: the selection's
    paths, else ``testpaths`` (globs expanded), else the package; its ``--ignore`` paths."""
    top = package.path
    paths, _, ignore = selection_parts(selection.args)
    config = pytest_config_file(package, root)
    declared = pytest_setting(config, "testpaths") if not paths and config is not None else ()
    if paths:
        where = [str(top / p.partition("::")[0]) for p in paths]
    elif declared and config is not None:
        where = [w for p in declared for w in glob.glob(str(config[0].parent / p))]
    else:
        where = [str(top)]
    return [os.path.normpath(w) for w in where], [os.path.normpath(top / i) for i in ignore]


NOSE_TEST_MATCH = re.compile(r"(?:^|[\b_\./-])[Tt]est")  # nose's testMatch


def collected(runner: Runner, top: Path, rel: str) -> bool:
    """Whether the runner's discovery reaches a test module by its directories: unittest and
    nose2 descend into packages only; nose also into directories named like tests, src and
    lib (named on their command line, a module they would not find would run all the same)."""
    parts = rel.split("/")[:-1]
    for depth, part in enumerate(parts, 1):
        is_package = (top.joinpath(*parts[:depth]) / "__init__.py").is_file()
        if runner.name == "nose":
            if not (is_package or NOSE_TEST_MATCH.search(part) or part in ("src", "lib")):
                return False
        elif runner.name in ("unittest", "nose2") and not is_package:
            return False
    return True


def candidate_tests(
    package: Package, runner: Runner, selection: Selection, root: Path, files: Iterable[str]
) -> tuple[str, ...]:
    """The package's test modules its runner runs, relative to it: for pytest, in its selected
    paths (or ``testpaths``), outside its ``--ignore`` paths; for the others, where their
    discovery goes."""
    top = package.path
    where, ignored = (
        pytest_places(package, selection, root) if runner.name == "pytest" else ([str(top)], [])
    )

    def under(path: str, places: Iterable[str]) -> bool:
        return any(path == place or path.startswith(place + os.sep) for place in places)

    found = []
    for path in files:
        name = os.path.basename(path)
        if name == "conftest.py" or not is_test_module(name):
            continue
        rel = os.path.relpath(path, top).replace(os.sep, "/")
        if under(path, where) and not under(path, ignored) and collected(runner, top, rel):
            found.append(rel)
    return tuple(sorted(found))


def basedir_name(path: str, is_package: Callable[[str], bool]) -> str:
    """The name pytest's default import mode gives a module: from the first directory above
    it that is no package (which it puts on sys.path), so ``tests/helpers.py`` in a ``tests/``
    without ``__init__.py`` is ``helpers``."""
    folder, name = os.path.split(path)
    parts = [] if name == "__init__.py" else [name[: -len(".py")]]
    while is_package(folder) and os.path.dirname(folder) != folder:
        folder, name = os.path.split(folder)
        parts.insert(0, name)
    return ".".join(parts)


def package_modules(package: Package, files: Iterable[str], scan: ImportScan) -> list[Module]:
    """Each file as a module: its name, its imports read by the scan, and the name pytest
    would import it by when that is another."""

    @functools.cache
    def is_package(folder: str) -> bool:
        return os.path.isfile(os.path.join(folder, "__init__.py"))

    modules = []
    for path in files:
        scanned = scan.scanned(path)
        name = module_name(path, package)
        init = os.path.basename(path) == "__init__.py"
        names = frozenset(absolute_imports(scanned.names, name, init))
        alias = basedir_name(path, is_package)
        modules.append(Module(path, name, names, scanned.dynamic, "" if alias == name else alias))
    return modules


def package_tests(
    package: Package, runner: Runner, selection: Selection, root: Path, files: Iterable[str]
) -> PackageTests:
    """The package's test modules (of its Python ``files``) that its runner selects."""
    tests = candidate_tests(package, runner, selection, root, files)
    config = pytest_config_file(package, root) if runner.name == "pytest" else None
    rootdir = config[0].parent if config is not None else package.path
    named = pytest_setting(config, "python_files") if config is not None else ()
    why = f"its pytest config sets python_files ({' '.join(named)})" if named else ""
    return PackageTests(package, tests, rootdir, why)


class Stage(Protocol):
    """One stage's run, as a cycle sees a run: ``Run`` is one."""

    def poll(self) -> RunResult | None: ...

    def kill(self) -> None: ...

    def wait_handle(self) -> int | None: ...


class StagedRun:
    """A package's run in two stages, as one run: the second starts once the first passed,
    and the verdict covers both.  ``start`` starts a run with the given runner arguments in
    place of the selection's."""

    def __init__(self, stages: Stages, start: Callable[[tuple[str, ...]], Stage]) -> None:
        self.stages = stages
        self.start = start
        self.first: RunResult | None = None
        self.current = start(stages.first)

    def poll(self) -> RunResult | None:
        result = self.current.poll()
        if result is None:
            return None
        if self.first is not None:
            return both_stages(self.first, result)
        if result.verdict is Verdict.FAILED:
            return replace(result, note=joined_note(result.note, "first stage"))
        if result.verdict is Verdict.COULD_NOT_RUN:
            return result
        self.first = result
        self.current = self.start(self.stages.rest)
        return None

    def wait_handle(self) -> int | None:
        return self.current.wait_handle()

    def kill(self) -> None:
        self.current.kill()


def joined_note(*notes: str) -> str:
    return ", ".join(n for n in notes if n)


def both_stages(first: RunResult, second: RunResult) -> RunResult:
    """One verdict for the two stages of a run: the second's when it did not pass; else
    ``ok`` if either ran tests."""
    verdict = second.verdict
    if verdict is Verdict.NO_TESTS and first.verdict is Verdict.OK:
        verdict = Verdict.OK
    return replace(
        second,
        verdict=verdict,
        seconds=first.seconds + second.seconds,
        warm=first.warm and second.warm,
        runner_xml=joined_reports(first.runner_xml, second.runner_xml),
        forked_failed=first.forked_failed or second.forked_failed,
    )


class Staging:
    """What staging keeps: each package's last run (its failed tests); for the cycle at hand,
    its change, the packages it reaches, and their modules, each read once."""

    def __init__(self, root: Path, scan: ImportScan, enabled: bool = True) -> None:
        self.root = root
        self.scan = scan
        self.enabled = enabled
        self.history: dict[Package, History] = {}
        self.change = Change()
        self.reached: frozenset[Package] = frozenset()
        self.dependencies: dict[Package, list[Package]] = {}
        self.modules: dict[Package, list[Module]] = {}

    def cycle(
        self, change: Change, reached: Iterable[Package], uses: Mapping[Package, set[Package]]
    ) -> None:
        """A new cycle, for ``change``, which reaches the packages ``reached`` (those holding
        it and those that use them), in the graph ``uses``."""
        self.change = change if self.enabled else Change()
        self.reached = frozenset(reached)
        self.dependencies = {p: sorted(used, key=lambda u: u.rel) for p, used in uses.items()}
        self.modules = {}

    def plan(
        self, package: Package, runner: Runner, selection: Selection, assume_ran: bool = False
    ) -> Stages | OneStage:
        """How the package's run goes in this cycle; with ``assume_ran`` (--plan), as it would
        once the package has run, with no test failing."""
        history = self.history.get(package, History() if assume_ran else None)
        whole = whole_run(runner, self.change, history)
        if whole is not None or history is None:
            return whole or OneStage()
        if package not in self.reached:
            return OneStage()  # it uses nothing that changed: it runs with the rest
        files = [m.path for m in self.modules_of(package)]
        found = package_tests(package, runner, selection, self.root, files)
        return stage_plan(runner, selection, found, self.chains_to(package), history)

    def chains_to(self, package: Package) -> dict[str, tuple[str, ...]]:
        """The modules the change reaches in the package and in the packages between: those
        it uses, however indirectly, that the change reaches too."""
        between = {package, *users_reached([package], self.dependencies)} & self.reached
        modules = [m for p in sorted(between, key=lambda p: p.rel) for m in self.modules_of(p)]
        return reached_by(self.change.paths, modules)

    def modules_of(self, package: Package) -> list[Module]:
        if package not in self.modules:
            files = package_python_files(package)
            self.modules[package] = package_modules(package, files, self.scan)
        return self.modules[package]

    def record(self, result: RunResult) -> None:
        self.history[result.package] = History(result.failing_tests)

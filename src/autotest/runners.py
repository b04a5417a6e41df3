"""nose, nose2, pytest, unittest or a command: what each needs and how its exit reads; which
runner and which interpreter each package gets, and why; a run's start as values.
"""

from __future__ import annotations

import configparser
import contextlib
import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .basics import ASK_TIMEOUT, UsageError, Verdict, git_tracks_any
from .discovery import PACKAGE_MARKERS, Package, owner_of
from .ignore import glob_matches, holds_no_packages
from .platform import scripts_dir, venv_python
from .toml_files import TomlFiles, load_toml
from .warm_server import BOOTSTRAP, exit_unless_importable, sent_call


@dataclass(frozen=True)
class Runner:
    """How to run one package's tests, and how to read the exit status.

    ``module`` is what ``python -m`` runs (None for a command); ``install`` is what to pip
    install when it is missing; ``env`` holds defaults for the run's environment; ``preload``
    the modules a warm interpreter imports ahead of the runs; ``ran_none`` the line by which
    the runner says it found no tests when it exits 0 anyway; ``plugins`` the entry-point group
    of its plugins, whose distributions a warm interpreter must never import ahead (pytest
    rewrites their asserts on import, and warns about a module imported before it could);
    ``summary`` the lines the runner prints, in this order, once every test has run: an exit 0
    without them is a process a test ended early (``os._exit(0)``), not a pass.  A command
    has none, and is judged by its exit status alone.
    """

    name: str
    argv: tuple[str, ...]
    module: str | None = None
    install: str = ""
    no_tests_exit: frozenset[int] = frozenset()
    env: tuple[tuple[str, str], ...] = ()
    preload: tuple[str, ...] = ()
    ran_none: str = ""
    plugins: str = ""
    summary: tuple[str, ...] = ()

    def command(
        self, package: Package, extra: Sequence[str], python: str | None = None
    ) -> list[str]:
        """The run's command line.  A runner that is a Python module runs with the package's
        interpreter, with ``-X faulthandler`` (a run that times out can then be asked where it
        hangs).  ``{package}`` becomes the package's path only where it is a whole argument
        (``make_runner`` refuses it inside one), so no directory name can become code."""
        argv = [python, *self.argv[1:]] if self.module and python else list(self.argv)
        argv = [str(package.path) if arg == PACKAGE_ARG else arg for arg in argv]
        if self.module is not None:
            argv[1:1] = ["-X", "faulthandler"]
        return argv + list(extra)

    def verdict(self, code: int, output: str) -> Verdict:
        if code in self.no_tests_exit:
            return Verdict.NO_TESTS
        if code == 0:
            ran_none = self.ran_none and re.search(self.ran_none, output, re.M)
            return Verdict.NO_TESTS if ran_none else Verdict.OK
        return Verdict.FAILED

    def expects_summary(self, args: Sequence[str]) -> bool:
        """Whether a run that exited 0 must have printed ``summary`` to pass (pytest's terminal
        turned off by ``-p no:terminal`` prints nothing)."""
        if self.name == "pytest" and "no:terminal" in " ".join(args):
            return False
        return bool(self.summary)


@dataclass(frozen=True)
class RunStart:
    """One package's run as values: the cold start executes ``argv``; a forked one sends the
    runner's ``args`` to the warm interpreter of ``runner`` and ``python``."""

    package: Package
    runner: Runner
    python: str
    args: tuple[str, ...]  # after the runner's own: the runner arguments, then JUnit's
    env: Mapping[str, str]
    name_filter: str = ""  # the test-name filter (the key t) its args carry, if any

    @property
    def argv(self) -> list[str]:
        return self.runner.command(self.package, self.args, self.python)


def name_filter_args(runner: Runner, pattern: str) -> tuple[str, ...] | None:
    """The runner's own option that runs only the tests whose names match ``pattern``; None
    where it has none (nose and nose2 select by dotted name only; a command is opaque)."""
    if runner.name in ("pytest", "unittest") and runner in BUILTIN_RUNNERS.values():
        return ("-k", pattern)
    return None


def debugger_args(runner: Runner) -> tuple[str, ...] | None:
    """What stops the runner at its first failing test in the debugger; None where it has
    no debugger to hand the terminal to (unittest, nose2, a command)."""
    if runner not in BUILTIN_RUNNERS.values():
        return None
    return {"pytest": ("-x", "--pdb"), "nose": ("-x", "--pdb", "--pdb-failures")}.get(runner.name)


PACKAGE_ARG = "{package}"  # in a runner command: the package's path, as one argument


PACKAGE_ENV = "AUTOTEST_PACKAGE"  # every run finds the package's path here too


UNITTEST_RAN_NONE = r"^Ran 0 tests? in"  # unittest's report, which nose and nose2 share


UNITTEST_SUMMARY = (r"^Ran \d+ tests? in ", r"^(OK|FAILED)\b")  # the count, then the outcome


# pytest's last line (between "=" signs, or alone with -q), or with -qq, which drops it, the
# progress reaching 100% after the last test.
PYTEST_SUMMARY = (r"^=* ?(\d+ \w+|no tests ran)\b.* in \d+(\.\d+)?s\b|\[100%\]\s*$",)


BUILTIN_RUNNERS = {
    "nose": Runner(
        "nose", (sys.executable, "-m", "nose"), "nose", "pynose",
        env=(("NOSE_CAPTURE", "1"),),  # capture prints as classic nose did
        preload=("nose.core", "nose.loader", "nose.plugins.manager", "nose.plugins.builtin"),
        ran_none=UNITTEST_RAN_NONE, summary=UNITTEST_SUMMARY,
    ),
    "nose2": Runner(
        "nose2", (sys.executable, "-m", "nose2"), "nose2", "nose2", frozenset({5}),
        preload=("nose2.main", "nose2.plugins.loader.discovery", "nose2.plugins.result"),
        ran_none=UNITTEST_RAN_NONE, summary=UNITTEST_SUMMARY,
    ),
    "pytest": Runner(
        "pytest", (sys.executable, "-m", "pytest"), "pytest", "pytest", frozenset({5}),
        preload=(
            "_pytest.config", "_pytest.main", "_pytest.python", "_pytest.runner",
            "_pytest.terminal", "_pytest.assertion", "_pytest.fixtures",
        ),
        plugins="pytest11", summary=PYTEST_SUMMARY,
    ),
    "unittest": Runner(
        "unittest", (sys.executable, "-m", "unittest", "discover", "-t", "."), "unittest", "",
        frozenset({5}), ran_none=UNITTEST_RAN_NONE, summary=UNITTEST_SUMMARY,
    ),
}  # fmt: skip


def make_runner(spec: str, where: str = "--runner") -> Runner:
    """A built-in runner by name, or a command line with ``{package}`` split like a shell would
    (but never run by one).  A command is looked up on the PATH the runs get.  ``where``
    names the setting in errors."""
    if spec in BUILTIN_RUNNERS:
        return BUILTIN_RUNNERS[spec]
    try:
        argv = shlex.split(spec)
    except ValueError as exc:
        raise UsageError(f"{where} {spec!r}: {exc}") from None
    if not argv:
        raise UsageError(f"{where}: empty command")
    embedded = [arg for arg in argv if PACKAGE_ARG in arg and arg != PACKAGE_ARG]
    if embedded:
        raise UsageError(
            f"{where} {spec!r}: {PACKAGE_ARG} must be an argument of its own, not part of "
            f"{embedded[0]!r} (a directory's name would become part of a command); "
            f"the run finds the package's path in ${PACKAGE_ENV}"
        )
    found = shutil.which(argv[0], path=activated_path(sys.executable))
    if PACKAGE_ARG not in argv and not found:
        raise UsageError(
            f"{where} {spec!r}: not one of auto, {', '.join(BUILTIN_RUNNERS)} and not a "
            "command containing {package}"
        )
    return Runner("command", tuple(argv))


def activated_path(python: str) -> str:
    """PATH as activating ``python``'s environment makes it: its scripts directory first."""
    rest = [p for p in os.environ.get("PATH", os.defpath).split(os.pathsep) if p]
    first = scripts_dir(python)
    return os.pathsep.join([first, *(p for p in rest if p != first)])


def check_runner(runner: Runner, python: str = sys.executable, needed_by: str = "") -> None:
    """Fail early, with what to install, when the runner cannot start at all."""
    if runner.module is None:
        found = shutil.which(runner.argv[0], path=activated_path(python))
        if found is None and not os.path.isfile(runner.argv[0]):
            raise UsageError(f"runner command not found: {runner.argv[0]}")
        return
    if not module_installed(python, runner.module):
        raise UsageError(
            f"{runner.name} is not installed for {python}{needed_by}; "
            f"install it: {python} -m pip install {runner.install}"
        )
    if runner.name == "nose" and python == sys.executable and sys.version_info >= (3, 10):
        from importlib import metadata

        with contextlib.suppress(metadata.PackageNotFoundError):
            if metadata.version("nose").startswith("1.3."):
                raise UsageError(
                    "the classic nose 1.3 does not run on Python 3.10+; replace it: "
                    f"{sys.executable} -m pip uninstall -y nose && "
                    f"{sys.executable} -m pip install pynose"
                )


def module_installed(python: str, module: str) -> bool:
    """Whether ``python`` can import ``module`` from what is installed (asked of the other
    interpreter itself, from a neutral directory, when it is not this one)."""
    if python == sys.executable:
        import importlib.util

        try:
            return importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            return False
    try:
        done = subprocess.run(
            [python, "-I", "-c", BOOTSTRAP, "autotest-probe"], capture_output=True,
            timeout=ASK_TIMEOUT, cwd=tempfile.gettempdir(),
            input=sent_call(exit_unless_importable, module),
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@dataclass(frozen=True)
class Choice:
    """How one package runs: the runner and the interpreter, each with the reason why."""

    runner: Runner
    reason: str
    python: str = sys.executable
    python_reason: str = ""


PYTEST_CONFIG = (
    ("pyproject.toml", "tool.pytest.ini_options"),
    ("pytest.ini", ""),
    (".pytest.ini", ""),
    ("setup.cfg", "tool:pytest"),
    ("tox.ini", "pytest"),
)


PYTEST_IMPORT = re.compile(rb"^\s*(?:import|from)\s+_?pytest\b", re.M)


FIXTURE_TEST = re.compile(rb"^\s*(?:async\s+)?def\s+test\w*\s*\(\s*(?!self\b|cls\b|\))\w", re.M)


def has_table(path: Path, table: str, tomls: TomlFiles | None = None) -> bool:
    """Whether the config file has the ``[table]``; TOML is parsed (or taken parsed from
    ``tomls``) where this Python can, and otherwise (or when it does not parse) searched for
    the header."""
    if path.suffix == ".toml":
        with contextlib.suppress(OSError, ValueError):
            found: Any = (tomls or TomlFiles()).tables(path)
            for key in table.split("."):
                found = found.get(key) if isinstance(found, dict) else None
            return isinstance(found, dict)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return re.search(rf"^\[{re.escape(table)}\][ \t]*$", text, re.M) is not None


def pytest_config(package: Package, root: Path, tomls: TomlFiles | None = None) -> str | None:
    """The nearest file from the package directory up to the root that configures pytest."""
    found = pytest_config_file(package, root, tomls)
    if found is None:
        return None
    path, table = found
    where = path.relative_to(root).as_posix()
    return f"{where} [{table}]" if table else where


def pytest_config_file(
    package: Package, root: Path, tomls: TomlFiles | None = None
) -> tuple[Path, str] | None:
    """That file, and the table in it that configures pytest (empty: the whole file);
    ``tomls``: the pyproject.toml files discovery read."""
    directory = package.path
    while True:
        for name, table in PYTEST_CONFIG:
            path = directory / name
            if path.is_file() and (not table or has_table(path, table, tomls)):
                return path, table
        if directory == root or root not in directory.parents:
            return None
        directory = directory.parent


def pytest_setting(
    config: tuple[Path, str] | None, key: str, tomls: TomlFiles | None = None
) -> tuple[str, ...]:
    """The words of a pytest setting in its config (none when it is not set); ``tomls``: the
    pyproject.toml files read already."""
    if config is None:
        return ()
    path, table = config
    if path.suffix == ".toml":
        data: Any = None
        with contextlib.suppress(OSError, ValueError):
            data = (tomls or TomlFiles()).tables(path)
        for name in table.split("."):
            data = data.get(name) if isinstance(data, dict) else None
        value = data.get(key) if isinstance(data, dict) else None
        if isinstance(value, str):
            return tuple(value.split())
        return tuple(str(v) for v in value) if isinstance(value, list) else ()
    parser = configparser.RawConfigParser(strict=False)
    with contextlib.suppress(OSError, configparser.Error, UnicodeDecodeError):
        parser.read_string(path.read_text(encoding="utf-8"))
    section = table or "pytest"
    return tuple(parser.get(section, key).split()) if parser.has_option(section, key) else ()


def sets_testpaths(config: tuple[Path, str] | None, tomls: TomlFiles | None = None) -> bool:
    """Whether pytest's config sets ``testpaths``: then pytest itself decides where to look."""
    return bool(pytest_setting(config, "testpaths", tomls))


def package_files(package: Package, keep: Callable[[str], bool]) -> Iterable[str]:
    """The package's own files whose names ``keep`` keeps: not those of packages or
    virtualenvs inside it."""
    for directory, dirnames, filenames in os.walk(package.path):
        dirnames[:] = sorted(
            d for d in dirnames
            if not holds_no_packages(d, os.path.join(directory, d))
            and not any(os.path.isfile(os.path.join(directory, d, m)) for m in PACKAGE_MARKERS)
        )  # fmt: skip
        yield from (os.path.join(directory, f) for f in sorted(filenames) if keep(f))


def package_test_files(package: Package) -> Iterable[str]:
    """The package's own conftest.py files and test modules."""
    return package_files(package, is_pytest_file)


def package_python_files(package: Package) -> Iterable[str]:
    """The package's own Python files."""
    return package_files(package, lambda name: name.endswith(".py"))


def is_pytest_file(name: str) -> bool:
    """A conftest.py, or a file pytest collects tests from by default."""
    return name == "conftest.py" or (
        name.endswith(".py") and (name.startswith("test") or name.endswith("_test.py"))
    )


def pytest_style(package: Package) -> str | None:
    """Why pytest would claim the package by its files: a conftest.py, a test module importing
    pytest, or a test taking arguments (pytest fixtures, which nose cannot give)."""
    for path in package_test_files(package):
        if os.path.basename(path) == "conftest.py":
            return f"{package_rel(path, package)} in the package"
        try:
            with open(path, "rb") as f:
                source = f.read()
        except OSError:
            continue
        if PYTEST_IMPORT.search(source):
            return f"{package_rel(path, package)} imports pytest"
        if FIXTURE_TEST.search(source):
            return f"{package_rel(path, package)} has tests taking pytest fixtures"
    return None


def package_rel(path: str, package: Package) -> str:
    return os.path.relpath(path, package.path).replace(os.sep, "/")


def runner_for(
    package: Package, root: Path, explicit: Runner | None, by_glob: Sequence[tuple[str, Runner]],
    tomls: TomlFiles | None = None,
) -> tuple[Runner, str]:  # fmt: skip
    """The runner for one package, and why: ``--runner``, then the first matching glob of the
    ``runners`` setting, then pytest where pytest would claim the package, else nose."""
    if explicit is not None:
        return explicit, "--runner"
    for glob, runner in by_glob:
        if glob_matches(package.rel, glob) or fnmatch.fnmatchcase(package.rel, glob):
            return runner, f"runners {glob!r}"
    claim = pytest_config(package, root, tomls) or pytest_style(package)
    if claim:
        return BUILTIN_RUNNERS["pytest"], claim
    return BUILTIN_RUNNERS["nose"], "no pytest configuration, conftest.py or pytest-style test"


def named_venv(package: Package, by_glob: Sequence[tuple[str, str]]) -> tuple[Path, str] | None:
    """The virtualenv the ``venvs`` setting names for ``package`` (the first matching glob),
    with the reason ``venvs 'GLOB'``; None when no glob matches it."""
    for glob, venv in by_glob:
        if glob_matches(package.rel, glob) or package.rel == glob:
            return package.path / venv, f"venvs {glob!r}"
    return None


def python_for(package: Package, by_glob: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """The interpreter for one package, and why: a virtualenv the ``venvs`` setting names for
    it, else its own ``.venv`` or ``venv``, else the one running autotest."""
    named = named_venv(package, by_glob)
    candidates = [named] if named is not None else []
    candidates += [(package.path / n, f"its own {n}") for n in (".venv", "venv")]
    for venv, reason in candidates:
        python = venv_python(venv)
        if python is not None:
            return str(python), reason
    return sys.executable, ""


def check_venvs(packages: Sequence[Package], by_glob: Sequence[tuple[str, str]]) -> None:
    """A virtualenv the ``venvs`` setting names that is not there, or is no virtualenv, is an
    error, not a silent run with autotest's own interpreter."""
    for package in packages:
        named = named_venv(package, by_glob)
        if named is None or venv_python(named[0]) is not None:
            continue
        venv, reason = named
        if not venv.is_dir():
            what = "does not exist"
        elif not (venv / "pyvenv.cfg").is_file():
            what = "is not a virtualenv (no pyvenv.cfg)"
        else:
            what = "holds no interpreter"
        raise UsageError(f"{reason}: {venv} (for {package.rel}) {what}")


def repository_interpreter(choice: Choice, root: Path, venvs_from: str) -> str:
    """Where in the repository the interpreter of ``choice`` comes from, when it does: the
    config whose ``venvs`` names its virtualenv, or git, which holds that virtualenv (a clone
    brings it).  Empty for autotest's own, and for a virtualenv the user named or made."""
    if choice.python == sys.executable:
        return ""
    if venvs_from and choice.python_reason.startswith("venvs "):
        return f"{venvs_from} {choice.python_reason}"
    venv = Path(choice.python).parent.parent
    held = [os.path.join(venv, name) for name in ("pyvenv.cfg", "bin", "Scripts")]
    return "a virtualenv committed to git" if git_tracks_any(root, held) else ""


def choose(
    packages: Sequence[Package], root: Path, spec: str,
    runners: Sequence[tuple[str, str]], venvs: Sequence[tuple[str, str]],
    tomls: TomlFiles | None = None,
) -> dict[Package, Choice]:  # fmt: skip
    """Each package's runner and interpreter, as the settings and its files decide
    (``tomls``: the pyproject.toml files discovery read)."""
    explicit = None if spec == "auto" else make_runner(spec)
    by_glob = [(glob, make_runner(name, f"runners {glob!r}:")) for glob, name in runners]
    chosen: dict[Package, Choice] = {}
    for package in packages:
        runner, reason = runner_for(package, root, explicit, by_glob, tomls)
        python, python_reason = python_for(package, venvs)
        chosen[package] = Choice(runner, reason, python, python_reason)
    return chosen


def stale_choices(
    packages: Sequence[Package], chosen: Mapping[Package, Choice], changed: Iterable[str]
) -> list[Package]:
    """The packages whose runner and interpreter must be chosen again after a change: those not
    chosen yet and those holding a changed path; every one when a path outside every package
    changed (a root config may set pytest up for all).  The others' files did not change, so
    they are not read again."""
    paths = list(changed)
    if any(owner_of(p, packages) is None for p in paths):
        return list(packages)
    owners = {owner_of(p, packages) for p in paths}
    return [p for p in packages if p not in chosen or p in owners]


def check_choices(
    choices: Mapping[Package, Choice], strict: bool = True
) -> dict[Package, InstallCommand | None]:
    """The runners missing for autotest's own interpreter (when ``strict``, at start): one
    line naming what is missing, for which packages, and how to install it.  A runner missing
    from a package's own virtualenv (or, later, from autotest's) stops nothing else: those
    packages are returned with how to install it, and each could not run."""
    users: dict[tuple[Runner, str], list[Package]] = {}
    for package, choice in sorted(choices.items(), key=lambda item: item[0].rel):
        users.setdefault((choice.runner, choice.python), []).append(package)
    unrunnable: dict[Package, InstallCommand | None] = {}
    for (runner, python), packages in users.items():
        rels = [p.rel for p in packages]
        named = ", ".join(rels[:5]) + (f" and {len(rels) - 5} more" if len(rels) > 5 else "")
        try:
            check_runner(runner, python, f" (needed by {named})" if len(users) > 1 else "")
        except UsageError:
            if strict and python == sys.executable:
                raise
            fix = install_into(python, [runner.install]) if runner.install else None
            unrunnable.update(dict.fromkeys(packages, fix))
    return unrunnable


TEST_EXTRAS = ("test", "tests", "testing", "dev")


TEST_REQUIREMENTS = (
    "test-requirements.txt", "requirements-test.txt", "requirements-tests.txt",
    "requirements_test.txt", "requirements/test.txt", "tests/requirements.txt",
    "requirements-dev.txt", "dev-requirements.txt",
)  # fmt: skip


@dataclass(frozen=True)
class InstallCommand:
    """A command that installs something into one interpreter: the installer that works for it
    (``installer``) and what to install (``args``).  Commands with the same installer combine
    into one, so many packages' hints read as one line to paste."""

    installer: tuple[str, ...]
    args: tuple[str, ...]

    @property
    def text(self) -> str:
        return shlex.join((*self.installer, *self.args))


def combined(commands: Iterable[InstallCommand]) -> list[InstallCommand]:
    """One command per installer, installing what each of ``commands`` does (each once), in
    the order they came."""
    by_installer: dict[tuple[str, ...], dict[tuple[str, ...], None]] = {}
    for command in commands:
        by_installer.setdefault(command.installer, {})[command.args] = None
    return [
        InstallCommand(into, tuple(arg for args in each for arg in args))
        for into, each in by_installer.items()
    ]


GROUPS_PIP = (25, 1)  # the first pip whose ``install --group`` exists


def pip_version(python: str) -> tuple[int, ...] | None:
    """The version of pip ``python`` has, or None when it has none (a venv made by uv, or with
    --without-pip), asked of the interpreter itself when it is not this one."""
    code = "import importlib.metadata as m; print(m.version('pip'))"
    try:
        done = subprocess.run(
            [python, "-I", "-c", code], capture_output=True, text=True, timeout=ASK_TIMEOUT,
            cwd=tempfile.gettempdir(),
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    numbers = re.findall(r"\d+", done.stdout.split(".dev")[0])[:3]
    return tuple(int(n) for n in numbers) if done.returncode == 0 and numbers else None


def installer(python: str, pip: tuple[int, ...] | None) -> tuple[str, ...]:
    """How to install into ``python``'s environment: its own pip where it has one, else uv's
    pip interface (what made a venv without pip, most likely)."""
    if pip is not None:
        return (python, "-m", "pip", "install")
    return ("uv", "pip", "install", "--python", python)


def install_into(python: str, args: Sequence[str]) -> InstallCommand:
    """``args`` installed into ``python``'s environment, by the installer that works for it."""
    return InstallCommand(installer(python, pip_version(python)), tuple(args))


def command_path(path: Path) -> str:
    """A path as a command to paste here shows it: relative to the working directory when
    inside it, else absolute."""
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel.replace(os.sep, "/")


def install_test_deps_command(package: Package, python: str) -> InstallCommand | None:
    """The package's own way to install its test dependencies, as a command to paste here: a
    test requirements file, a dependency group or a test extra; None when it declares none.
    A group is named with ``--group`` where the installer knows it (uv, pip 25.1+), else its
    requirements are listed."""
    where = command_path(package.path)
    pip = pip_version(python)
    into = installer(python, pip)
    for name in TEST_REQUIREMENTS:
        if (package.path / name).is_file():
            return InstallCommand(into, ("-r", f"{where}/{name}"))
    data: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        data = load_toml(package.path / "pyproject.toml") or {}
    groups = data.get("dependency-groups", {})
    extras = data.get("project", {}).get("optional-dependencies", {})
    for name in TEST_EXTRAS:
        if isinstance(groups, dict) and name in groups:
            if pip is None or pip >= GROUPS_PIP:
                return InstallCommand(into, ("--group", f"{where}/pyproject.toml:{name}"))
            return InstallCommand(into, group_requirements(groups, name))
        if isinstance(extras, dict) and name in extras:
            return InstallCommand(into, ("-e", f"{where}[{name}]"))
    return None


def group_requirements(
    groups: Mapping[str, Any], name: str, seen: frozenset[str] = frozenset()
) -> tuple[str, ...]:
    """The requirements of a dependency group (PEP 735), its ``include-group`` entries
    followed (once each), for a pip that cannot read groups itself."""
    found: list[str] = []
    for entry in groups.get(name, ()) if name not in seen else ():
        if isinstance(entry, str):
            found.append(entry)
        elif isinstance(entry, dict) and isinstance(entry.get("include-group"), str):
            found += group_requirements(groups, entry["include-group"], seen | {name})
    return tuple(dict.fromkeys(found))

"""Which tests a project runs: pytest's own ``testpaths``, else the selection of the package's
declared unit-test command (a hatch env script, a tox env's ``commands``), else its top-level
``tests/`` or ``test/`` directory.  Only the selection is taken (paths, ``-m``, ``-k``,
``--ignore``, ``-p no:...``), never the environment manager, the interpreter or other options.
All of it is read from files, never run; every decision is a pure function of their text.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .discovery import Package
from .runners import pytest_config_file, sets_testpaths
from .toml_files import TomlFiles


@dataclass(frozen=True)
class Selection:
    """The runner arguments that select a package's tests (none: the runner's default), where
    they came from, and, when a declared command gave none, why (for -v)."""

    args: tuple[str, ...] = ()
    source: str = ""
    why_none: str = ""


KEPT_WITH_VALUE = ("-m", "-k", "--ignore", "--ignore-glob", "--deselect")  # and -p no:NAME


DROPPED_WITH_VALUE = frozenset(
    {"-n", "--numprocesses", "--dist", "--cov", "--cov-report", "--cov-config", "-c",
     "--rootdir", "--basetemp", "-W", "-o", "--override-ini", "--durations", "--tb", "-r",
     "--maxfail", "--timeout", "--junitxml", "--junit-xml", "--log-level", "--reruns",
     "--confcutdir", "--import-mode", "--color", "--capture", "--cov-fail-under"}
)  # fmt: skip


class NotUnderstood(ValueError):
    """A declared command autotest does not read: it gives no selection rather than a guess."""


def pytest_arguments(argv: Sequence[str]) -> list[str] | None:
    """The arguments after pytest in a command line: ``pytest``, ``py.test``, ``python -m
    pytest``, ``coverage run -m pytest``; None when the command does not run pytest."""
    for index, arg in enumerate(argv):
        if os.path.basename(arg) in ("pytest", "py.test") and (
            index == 0 or argv[index - 1] in ("-m", "run", "exec")
        ):
            return list(argv[index + 1 :])
    return None


def selected(args: Sequence[str], cwd: Path, package_dir: Path) -> tuple[str, ...]:
    """The selecting arguments of pytest's ``args`` (run from ``cwd``), their paths relative to
    the package directory."""
    kept: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        name, eq, value = arg.partition("=")
        if arg in KEPT_WITH_VALUE or arg == "-p":
            if not rest:
                raise NotUnderstood(f"{arg} without a value")
            value = rest.pop(0)
            if arg == "-p" and not value.startswith("no:"):
                continue
            kept += [arg, relative(value, cwd, package_dir) if "ignore" in arg else value]
        elif eq and name in KEPT_WITH_VALUE:
            kept += [name, relative(value, cwd, package_dir) if "ignore" in name else value]
        elif arg.startswith("-p") and arg[2:].startswith("no:"):
            kept += ["-p", arg[2:]]
        elif arg.startswith(("-m", "-k")) and len(arg) > 2 and not arg.startswith("--"):
            kept += [arg[:2], arg[2:]]
        elif arg in DROPPED_WITH_VALUE:
            rest = rest[1:]
        elif not arg.startswith("-"):
            kept.append(relative(arg, cwd, package_dir))
    return tuple(kept)


def relative(path: str, cwd: Path, package_dir: Path) -> str:
    """A test path (``tests/unit``, ``tests/test_x.py::test_y``) relative to the package
    directory, where the runs start."""
    file, sep, node = path.partition("::")
    rel = os.path.relpath(os.path.normpath(cwd / file), package_dir).replace(os.sep, "/")
    return rel + sep + node


COMMAND_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def substituted(command: str, values: Mapping[str, str], defaults: Iterable[str]) -> str:
    """The command with its placeholders replaced: ``values`` by name; those named in
    ``defaults`` (``args``, ``posargs``) by their default (``{args:tests}`` is ``tests``), as
    no arguments are given.  Any other placeholder is not understood."""
    defaulted = tuple(defaults)

    def one(match: re.Match[str]) -> str:
        name, _, default = match[1].partition(":")
        if name in values and not default:
            return values[name]
        if name in defaulted:
            return default
        raise NotUnderstood(f"the placeholder {{{match[1]}}}")

    return COMMAND_PLACEHOLDER.sub(one, command)


def from_command(
    command: str, values: Mapping[str, str], defaults: Iterable[str], cwd: Path, package: Path
) -> tuple[str, ...]:
    """The selection of one declared command line."""
    try:
        argv = shlex.split(substituted(command, values, defaults))
    except ValueError as exc:
        raise NotUnderstood(str(exc)) from None
    args = pytest_arguments(argv)
    if args is None:
        raise NotUnderstood(f"{command!r} does not run pytest")
    return selected(args, cwd, package)


HATCH_TEST_ENVS = ("hatch-test", "test", "tests", "unit", "default")


HATCH_SCRIPTS = ("unit", "test", "tests", "run")


def hatch_envs(package: Path, tomls: TomlFiles | None = None) -> tuple[str, dict[str, Any]]:
    """The hatch environments the package declares, and where: pyproject.toml's
    ``[tool.hatch.envs]``, else hatch.toml's ``[envs]``."""
    for name, keys in (("hatch.toml", ("envs",)), ("pyproject.toml", ("tool", "hatch", "envs"))):
        data: Any = None
        with contextlib.suppress(OSError, ValueError):
            data = (tomls or TomlFiles()).tables(package / name)
        for key in keys:
            data = data.get(key) if isinstance(data, dict) else None
        if isinstance(data, dict) and data:
            return name, data
    return "", {}


def hatch_selection(package: Path, tomls: TomlFiles | None = None) -> Selection | None:
    """The selection of the first unit-test script of a test environment hatch declares."""
    where, envs = hatch_envs(package, tomls)
    names = [n for n in HATCH_TEST_ENVS if n in envs] + sorted(set(envs) - set(HATCH_TEST_ENVS))
    for env in names:
        scripts = envs[env].get("scripts", {}) if isinstance(envs[env], dict) else {}
        for script in HATCH_SCRIPTS:
            value = scripts.get(script) if isinstance(scripts, dict) else None
            commands = [value] if isinstance(value, str) else value
            if not isinstance(commands, list) or (script == "run" and env != "hatch-test"):
                continue
            source = f"{where} hatch env {env} script {script}"
            return declared(commands, {"root": str(package)}, ("args",), package, package, source)
    return None


def declared(
    commands: Sequence[Any], values: Mapping[str, str], defaults: Iterable[str], cwd: Path,
    package: Path, source: str,
) -> Selection:  # fmt: skip
    """The selection of the first of ``commands`` that runs pytest, or why there is none."""
    why = "no command runs pytest"
    for command in commands:
        try:
            return Selection(from_command(str(command), values, defaults, cwd, package), source)
        except NotUnderstood as exc:
            why = str(exc)
    return Selection((), source, why)


TOX_FACTORS = re.compile(r"^[\w{},.!-]+:\s+")  # "py3{8,9}-test-foo: pytest ..."


def tox_commands(tox_ini: Path) -> list[tuple[str, str]]:
    """Every ``commands`` line of every testenv of a tox.ini, with its section, factor
    conditions dropped and continuation lines joined."""
    parser = configparser.RawConfigParser(strict=False)
    try:
        parser.read_string(tox_ini.read_text(encoding="utf-8", errors="replace"))
    except (OSError, configparser.Error):
        return []
    found = []
    for section in parser.sections():
        if section.startswith("testenv") and parser.has_option(section, "commands"):
            text = parser.get(section, "commands").replace("\\\n", " ")
            for line in text.splitlines():
                line = TOX_FACTORS.sub("", line.strip())
                if line and not line.startswith("#"):
                    found.append((section, line))
    return found


def tox_selection(package: Path, root: Path) -> Selection | None:
    """The selection of the tox command that runs the package's tests: in the package's own
    tox.ini, the first that runs pytest; in one above it (up to the root), the first whose
    test paths lie in the package."""
    directory = package
    while True:
        tox_ini = directory / "tox.ini"
        if tox_ini.is_file():
            found = tox_in(tox_ini, package, root, own=directory == package)
            if found is not None:
                return found
        if directory == root or root not in directory.parents:
            return None
        directory = directory.parent


def tox_in(tox_ini: Path, package: Path, root: Path, own: bool) -> Selection | None:
    """The selection of a tox.ini for the package (``own``: the package's own tox.ini)."""
    values = {"toxinidir": str(tox_ini.parent), "tox_root": str(tox_ini.parent),
              "envpython": "python", "envbindir": "bin"}  # fmt: skip
    where = tox_ini.relative_to(root).as_posix()
    why = ""
    for section, command in tox_commands(tox_ini):
        try:
            args = from_command(command, values, ("posargs",), tox_ini.parent, package)
        except NotUnderstood as exc:
            why = why or f"{where} [{section}]: {exc}"
            continue
        paths = test_paths(args)
        if own or (paths and not any(p.startswith("..") for p in paths)):
            return Selection(args, f"{where} [{section}] commands")
    return Selection((), where, why) if own and why else None


def test_paths(args: Sequence[str]) -> list[str]:
    """The test paths of selecting arguments: not the options, nor their values."""
    options = (*KEPT_WITH_VALUE, "-p")
    return [
        arg for index, arg in enumerate(args)
        if not arg.startswith("-") and (index == 0 or args[index - 1] not in options)
    ]  # fmt: skip


def declared_selection(package: Package, root: Path, tomls: TomlFiles | None = None) -> Selection:
    """Which tests the package's project runs under pytest: nothing to add where pytest's
    ``testpaths`` decide; else its hatch or tox unit-test command's selection; else its
    top-level ``tests/`` or ``test/`` directory.  ``tomls``: the pyproject.toml files
    discovery read."""
    config = pytest_config_file(package, root, tomls)
    if config is not None and sets_testpaths(config, tomls):
        return Selection((), f"testpaths in {config[0].relative_to(root).as_posix()}")
    why = ""
    for found in (hatch_selection(package.path, tomls), tox_selection(package.path, root)):
        if found is not None and not found.why_none:
            return found
        if found is not None:
            why = why or f"{found.source}: {found.why_none}"
    for name in ("tests", "test"):
        if (package.path / name).is_dir():
            return Selection((name,), f"its {name}/ directory", why)
    return Selection((), "", why)

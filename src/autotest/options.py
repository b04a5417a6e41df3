"""One table of settings makes the command line, the config reading (``[tool.autotest]`` or
setup.cfg's ``[autotest]``) and the help, so that the three cannot disagree.
"""

from __future__ import annotations

import argparse
import configparser
import enum
import os
import re
import shlex
import stat
import sys
from collections.abc import Container, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NoReturn

from .basics import DEFAULT_DEBOUNCE, SPARE_MEMORY, VERSION, UsageError, run_git
from .report import shown
from .toml_files import load_toml


@dataclass(frozen=True)
class Options:
    """Every setting, with its default."""

    root: Path
    packages: tuple[str, ...] = ()
    once: bool = False
    changed: tuple[str, ...] = ()
    since: str | None = None
    runner: str = "auto"
    runners: tuple[tuple[str, str], ...] = ()
    venvs: tuple[tuple[str, str], ...] = ()
    runner_args: tuple[str, ...] = ()
    package_args: tuple[tuple[str, str], ...] = ()
    jobs: int = 1
    timeout: float | None = None
    restart: bool = False
    keep_going: bool = False
    full_output: bool = False
    debounce: float = DEFAULT_DEBOUNCE
    ignore: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    poll: bool = False
    cross_mounts: bool = False
    warm: bool = True
    stages: bool = True
    explain: bool = False
    clear: bool = False
    bell: bool = False
    notify: bool = False
    affected: bool = False
    shard: tuple[int, int] | None = None
    durations: str | None = None
    plan: bool = False
    junit_xml: str | None = None
    runner_from: str = ""  # the config file that set the runner, if one did
    runners_from: str = ""  # and the one that set per-package runners
    venvs_from: str = ""  # and the one that set per-package virtualenvs


def seconds(value: str) -> float:
    """A finite number of seconds; each setting of seconds says which it takes (one wording
    per bound, whichever way the bound is missed)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}")
    return number


def non_negative(value: str) -> float:
    number = seconds(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected zero or more seconds, got {value!r}")
    return number


def positive(value: str) -> float:
    number = seconds(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected more than zero seconds, got {value!r}")
    return number


def job_count(value: str) -> int:
    if str(value).strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number or 'auto', got {value!r}"
        ) from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value!r}")
    return number


def pair(value: str) -> tuple[str, str]:
    """``GLOB=VALUE``, as the command line and setup.cfg give a table's entries."""
    if not isinstance(value, str):
        raise argparse.ArgumentTypeError(f"expected a string, got {value!r}")
    glob, sep, rest = value.partition("=")
    if not sep or not glob.strip() or not rest.strip():
        raise argparse.ArgumentTypeError(f"expected GLOB=VALUE, got {value!r}")
    return unquoted(glob), unquoted(rest)


def unquoted(text: str) -> str:
    """A value without the quotes around it as a whole (quotes inside it are its own)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def shard_spec(value: str) -> tuple[int, int]:
    """``K/N``: the K-th of N slices, counted from 1."""
    found = re.fullmatch(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*", value)
    if found and 1 <= int(found[1]) <= int(found[2]):
        return int(found[1]), int(found[2])
    raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N, got {value!r}")


def config_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


class Given(enum.Enum):
    """How an option is given."""

    FLAG = "flag"  # true/false; a flag whose default is true is spelt --no-NAME
    VALUE = "value"  # one value, read by the setting's ``read``
    LIST = "list"  # repeatable on the command line; a list or a whitespace-separated string
    PATHS = "paths"  # any number of values after the option, which may be repeated
    TABLE = "table"  # GLOB=VALUE, repeatable; a TOML table, or such lines in setup.cfg
    POSITIONAL = "positional"  # the command line's own arguments; a list or a string
    ARGS = "args"  # after -- on the command line; a list or a shell-quoted string in config


@dataclass(frozen=True)
class Setting:
    """One option: its name, how it is given, and what it does."""

    name: str
    kind: Given
    help: str
    read: Callable[[str], Any] = str
    metavar: str | None = None
    short: str = ""
    in_config: bool = True
    takes: tuple[type, ...] = (int, float, str)  # a ``value``'s types in pyproject.toml
    words: tuple[str, ...] = ()  # the strings a setting of numbers also takes there

    @property
    def field(self) -> str:
        return self.name.replace("-", "_")

    @property
    def default(self) -> Any:
        return Options.__dataclass_fields__[self.field].default


SETTINGS = (
    Setting("packages", Given.POSITIONAL, "test only these packages: directories, globs or names "
            "(default: all)", metavar="PACKAGE"),
    Setting("root", Given.VALUE, "the repository (default: the git work tree holding this file, "
            "else the parent of its folder)", metavar="DIR", in_config=False),
    Setting("once", Given.FLAG, "run one cycle and exit: 0 all passed, 1 a package failed or "
            "could not run", in_config=False),
    Setting("changed", Given.PATHS, "order the first cycle as if these paths had just changed "
            "(repeatable, may be empty)", metavar="PATH", in_config=False),
    Setting("since", Given.VALUE, "order the first cycle by what git reports changed since REF "
            "(committed, staged, unstaged, untracked)", metavar="REF", in_config=False),
    Setting("runner", Given.VALUE, "for every package: auto (pytest where pytest is configured or "
            "its tests need it, else nose), nose, nose2, pytest, unittest, or a command with "
            "{package}", metavar="NAME|CMD", takes=(str,)),
    Setting("runners", Given.TABLE, "the runner for packages matching GLOB (repeatable); "
            "--runner wins", metavar="GLOB=NAME|CMD"),
    Setting("venvs", Given.TABLE, "the virtualenv (relative to the package) for packages matching "
            "GLOB (repeatable); by default a package's own .venv or venv", metavar="GLOB=DIR"),
    Setting("runner-args", Given.ARGS, "arguments for the runner (on the command line: after --)"),
    Setting("package-args", Given.TABLE, "the runner's selecting arguments for packages matching "
            "GLOB (repeatable), instead of those their project declares", metavar="GLOB=ARGS"),
    Setting("jobs", Given.VALUE, "packages run at once; auto: one per core", job_count, "N|auto",
            short="j", takes=(int,), words=("auto",)),
    Setting("timeout", Given.VALUE, "kill and fail a package run that takes longer", positive,
            "SECONDS", takes=(int, float)),
    Setting("restart", Given.FLAG, "a change during a run kills that run at once"),
    Setting("keep-going", Given.FLAG, "run every package even after a failure, and show each one"),
    Setting("full-output", Given.FLAG,
            "show the whole output of a failing run, not its head and tail"),
    Setting("debounce", Given.VALUE, "quiet time that closes a burst of changes", non_negative,
            "SECONDS", takes=(int, float)),
    Setting("ignore", Given.LIST, "never react to matching paths, nor find packages there "
            "(repeatable)", metavar="GLOB"),
    Setting("exclude", Given.LIST, "never test the packages matching (repeatable)", metavar="GLOB"),
    Setting("poll", Given.FLAG, "poll the tree instead of OS notifications"),
    Setting("cross-mounts", Given.FLAG, "find packages, read imports and watch in file systems "
            "mounted below the root too (by default a directory on another device is left out)"),
    Setting("warm", Given.FLAG, "start every run cold instead of forking it from a warm "
            "interpreter (one per runner and interpreter, with a spare ready while all spares "
            f"take at most {SPARE_MEMORY // 10**6} MB)"),
    Setting("stages", Given.FLAG,
            "run each package whole, instead of first the test modules a change concerns"),
    Setting("explain", Given.FLAG, "say why each package runs where it does, with which runner and "
            "interpreter, what warm interpreters import ahead, and whether they keep a spare",
            short="v"),
    Setting("clear", Given.FLAG, "clear the screen before each cycle"),
    Setting("bell", Given.FLAG, "ring the terminal bell when a package fails"),
    Setting("notify", Given.FLAG, "desktop notification when a cycle fails or recovers"),
    Setting("affected", Given.FLAG, "test only the changed packages and those that use them",
            in_config=False),
    Setting("shard", Given.VALUE, "test only the K-th of N disjoint slices of the cycle",
            shard_spec, "K/N", in_config=False),
    Setting("durations", Given.VALUE,
            "run times for --shard to balance by; each run that is not a shard writes them",
            metavar="FILE", in_config=False),
    Setting("plan", Given.FLAG, "print the cycle as JSON and run nothing", in_config=False),
    Setting("junit-xml", Given.VALUE, "write each cycle's JUnit XML report to FILE", metavar="FILE",
            in_config=False),
)  # fmt: skip


# The settings that say what changed: --affected needs one of them.
SAYS_WHAT_CHANGED = ("changed", "since")


# The settings that narrow a single cycle; watching runs whole cycles.
ONE_CYCLE_ONLY = ("affected", "shard")


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def add_setting(parser: argparse.ArgumentParser, setting: Setting) -> None:
    flags = [f"-{setting.short}"] if setting.short else []
    if setting.kind is Given.FLAG:
        negated = setting.default is True
        flags.append(f"--no-{setting.name}" if negated else f"--{setting.name}")
        action = "store_false" if negated else "store_true"
        parser.add_argument(
            *flags, dest=setting.field, action=action, default=None, help=setting.help
        )
        return
    if setting.kind is Given.POSITIONAL:
        parser.add_argument(setting.field, nargs="*", metavar=setting.metavar, help=setting.help)
        return
    flags.append(f"--{setting.name}")
    default = setting.default
    shown_default = isinstance(default, (int, float, str)) and not isinstance(default, bool)
    text = setting.help + (f" (default: {default})" if shown_default else "")
    if setting.kind in (Given.LIST, Given.TABLE):
        read: Callable[[str], Any] = pair if setting.kind is Given.TABLE else str
        parser.add_argument(*flags, dest=setting.field, action="append", type=read,
                            metavar=setting.metavar, help=text)  # fmt: skip
    elif setting.kind is Given.PATHS:
        parser.add_argument(*flags, dest=setting.field, nargs="*", action="extend",
                            metavar=setting.metavar, help=text)  # fmt: skip
    else:
        parser.add_argument(*flags, dest=setting.field, type=setting.read,
                            metavar=setting.metavar, help=text)  # fmt: skip


def argument_parser() -> ArgumentParser:
    summary = (__doc__ or "").partition("\n\n")[0].split(": ", 1)[-1]
    parser = ArgumentParser(
        prog="autotest.py",
        description=summary[:1].upper() + summary[1:],
        usage="%(prog)s [options] [PACKAGE ...] [-- runner arguments]",
        epilog=(
            "While watching on a terminal: Enter or a runs every package, f the failed ones, "
            "q quits. Every option but "
            + ", ".join(f"--{s.name}" for s in SETTINGS if not s.in_config)
            + " can also be set under the same name in [tool.autotest] of the root "
            "pyproject.toml or [autotest] of setup.cfg; the packages to test as packages = [...]."
        ),
        argument_default=None,
    )
    for setting in SETTINGS:
        if setting.kind is not Given.ARGS:
            add_setting(parser, setting)
    parser.add_argument(
        "--version", action="version", version=version_line(),
        help="print the versions of autotest, Python and watchdog, and exit",
    )  # fmt: skip
    return parser


def version_line() -> str:
    try:
        from importlib import metadata

        watchdog = f"watchdog {metadata.version('watchdog')}"
    except Exception:
        watchdog = "no watchdog"
    python = ".".join(map(str, sys.version_info[:3]))
    return f"autotest {VERSION} (Python {python}, {watchdog})"


TYPE_NAMES = {str: "a string", int: "a number", float: "a number"}


def expected(types: Sequence[type], words: Sequence[str] = ()) -> str:
    return " or ".join(dict.fromkeys([*(TYPE_NAMES[t] for t in types), *map(repr, words)]))


def is_word(value: Any, words: Sequence[str]) -> bool:
    return isinstance(value, str) and value.strip().lower() in words


def is_one_of(value: Any, types: Sequence[type]) -> bool:
    return isinstance(value, tuple(types)) and not isinstance(value, bool)


def strings(
    value: Any, split: Callable[[str], list[str]], items: Sequence[type] = (str,)
) -> tuple[str, ...]:
    """A config value that is a list of strings, or one string split into them."""
    if isinstance(value, str):
        return tuple(split(value))
    if isinstance(value, list) and all(is_one_of(v, items) for v in value):
        return tuple(map(str, value))
    what = "strings" if tuple(items) == (str,) else "strings or numbers"
    raise argparse.ArgumentTypeError(f"expected a list of {what}, got {shown_value(value)}")


def shown_value(value: Any) -> str:
    return "a table" if isinstance(value, dict) else shown(repr(value))


def setting_from_config(setting: Setting, value: Any, typed: bool = True) -> Any:
    """A config file's value, checked against what the setting takes.  pyproject.toml is
    ``typed``: a flag is a TOML boolean and a number a TOML number, never a string that reads
    as one (``timeout = "10"``, ``keep-going = "yes"``); setup.cfg's values are all text, read
    as configparser reads them (a flag may be yes/no, on/off, 1/0 there)."""
    if setting.kind is Given.FLAG:
        if isinstance(value, (dict, list)) or (typed and not isinstance(value, bool)):
            raise argparse.ArgumentTypeError(f"expected true or false, got {shown_value(value)}")
        return config_bool(value)
    if setting.kind in (Given.LIST, Given.POSITIONAL):
        return strings(value, str.split)
    if setting.kind is Given.TABLE:
        if isinstance(value, dict):
            value = [f"{k}={v}" for k, v in value.items()]
        return tuple(pair(p) for p in strings(value, str.splitlines) if p.strip())
    if setting.kind is Given.ARGS:
        return strings(value, shlex.split, (str, int, float))
    if typed and not (is_one_of(value, setting.takes) or is_word(value, setting.words)):
        raise argparse.ArgumentTypeError(
            f"expected {expected(setting.takes, setting.words)}, got {shown_value(value)}"
        )
    return setting.read(str(value))


def config_error(path: Path, exc: Exception) -> UsageError:
    """A config file that cannot be parsed, as one line: where, and the parser's first words."""
    errors = getattr(exc, "errors", None)  # configparser.ParsingError: (line, text) pairs
    line = errors[0][0] if errors else getattr(exc, "lineno", None)
    if errors:
        message = f"cannot parse {errors[0][1]}"
    else:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UsageError(f"{shown(str(path))}{f', line {line}' if line else ''}: {shown(message)}")


def tool_table(data: dict[str, Any], pyproject: Path) -> Any:
    """``[tool.autotest]``, checked to be a table where there is one."""
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise UsageError(
            f"{shown(str(pyproject))}: tool: expected a table, got {shown_value(tool)}"
        )
    section = tool.get("autotest")
    if section is not None and not isinstance(section, dict):
        raise UsageError(
            f"{shown(str(pyproject))}: tool.autotest: expected a table ([tool.autotest]), "
            f"got {shown_value(section)}"
        )
    return section


@dataclass(frozen=True)
class ConfigSection:
    """One config file's autotest section: where it is, its values, and whether they are
    ``typed`` (TOML's strings, numbers and booleans) or all text (setup.cfg)."""

    where: str
    values: Any
    typed: bool


def config_sections(root: Path) -> list[ConfigSection]:
    """``[autotest]`` of setup.cfg, then ``[tool.autotest]`` of pyproject.toml, as found."""
    found: list[ConfigSection] = []
    setup_cfg = root / "setup.cfg"
    if setup_cfg.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(setup_cfg, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError) as exc:
            raise config_error(setup_cfg, exc) from None
        if parser.has_section("autotest"):
            found.append(
                ConfigSection("setup.cfg [autotest]", dict(parser.items("autotest")), False)
            )
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = load_toml(pyproject)
        except (OSError, ValueError, UnicodeDecodeError, RecursionError, MemoryError) as exc:
            raise config_error(pyproject, exc) from None
        if (section := tool_table(data, pyproject)) is not None:
            found.append(ConfigSection("pyproject.toml [tool.autotest]", section, True))
    return found


def read_config(root: Path, origins: dict[str, str] | None = None) -> dict[str, Any]:
    """The settings the repository holds, by setting name; pyproject.toml wins.  ``origins``
    is told where each was found."""
    by_name = {s.name: s for s in SETTINGS if s.in_config}
    settings: dict[str, Any] = {}
    for section in config_sections(root):
        where = section.where
        for key, value in section.values.items():
            name = key.replace("_", "-")
            if name not in by_name:
                raise UsageError(
                    f"{where}: unknown setting {shown(repr(key))} (known: {', '.join(by_name)})"
                )
            try:
                settings[name] = setting_from_config(by_name[name], value, section.typed)
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise UsageError(f"{where}: {shown(key)}: {exc}") from None
            if origins is not None:
                origins[name] = where
    return settings


def default_root() -> Path:
    """The git work tree holding this file, wherever in it the file lies; outside git, the
    parent of its folder (``utilities/autotest.py`` at the top of the repository)."""
    here = Path(__file__).resolve().parent
    top = (run_git(str(here), "rev-parse", "--show-toplevel") or b"").strip()
    return Path(os.fsdecode(top)) if top else here.parent


def parse_options(argv: Sequence[str]) -> Options:
    """Command line over pyproject.toml over setup.cfg over defaults."""
    argv = list(argv)
    runner_args: tuple[str, ...] | None = None
    if "--" in argv:
        cut = argv.index("--")
        argv, runner_args = argv[:cut], tuple(argv[cut + 1 :])
    args = argument_parser().parse_args(argv)
    root = Path(args.root).expanduser() if args.root else default_root()
    try:
        if not stat.S_ISDIR(os.stat(root).st_mode):
            raise UsageError(f"root {shown(repr(str(root)))} is not a directory")
        root = root.resolve()
    except OSError as exc:
        raise UsageError(f"root {shown(repr(str(root)))}: {exc.strerror or exc}") from None
    if root.parent == root:
        raise UsageError(
            f"root {shown(repr(str(root)))} is the root of a file system, which holds every "
            "package on the machine; give the repository's directory"
        )
    given = {  # an empty --changed says "nothing changed"; no positional says nothing
        s.name: tuple(value) if isinstance(value, list) else value
        for s in SETTINGS
        if s.kind is not Given.ARGS
        and (value := getattr(args, s.field)) is not None
        and not (s.kind is Given.POSITIONAL and value == [])
    }
    origins: dict[str, str] = {}
    merged = {**read_config(root, origins), **given, "root": root}
    if "runner" in given and "runners" not in given:  # --runner is for every package
        merged.pop("runners", None)
    if runner_args is not None:
        merged["runner-args"] = runner_args
    for name in ("runner", "runners", "venvs"):
        if name not in given and name in origins:
            merged[f"{name}-from"] = origins[name]
    options = Options(**{name.replace("-", "_"): value for name, value in merged.items()})
    check_combination(options, set(given))
    return options


def check_combination(options: Options, given: Container[str]) -> None:
    """Settings that mean nothing without others.  An empty ``--changed`` says that nothing
    changed (a hook on a clean tree), which is something."""
    if options.affected and not any(name in given for name in SAYS_WHAT_CHANGED):
        raise UsageError("--affected needs to know what changed: give --changed or --since")
    for name in ONE_CYCLE_ONLY:
        if getattr(options, name) and not (options.once or options.plan):
            raise UsageError(f"--{name} narrows one cycle: give it with --once or --plan")

"""Reading TOML: the standard library's tomllib from Python 3.11, tomli (the same parser)
before.  Discovery, metadata, the runners and the options all parse pyproject.toml through
``parse_toml``, so a file too deep or too big for the parser fails the same way everywhere;
discovery reads each once per refresh and hands it on (``TomlFiles``)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .basics import UsageError

try:
    import tomllib
except ImportError:  # the standard library reads TOML from 3.11; before, tomli is its twin
    try:
        import tomli as tomllib  # type: ignore[no-redef,unused-ignore]
    except ImportError:
        tomllib = None  # type: ignore[assignment,unused-ignore]

TOML_READER_MISSING = (
    f"Python {sys.version_info.major}.{sys.version_info.minor} reads pyproject.toml with tomli: "
    f"{shlex.quote(sys.executable)} -m pip install 'tomli>=1.1'"
)


def toml_reader_missing() -> str | None:
    """What to install before autotest can read a pyproject.toml; None when nothing is."""
    return TOML_READER_MISSING if tomllib is None else None


def load_toml(path: Path) -> dict[str, Any]:
    """The parsed file.  Whatever it holds, reading fails only with OSError or ValueError: a
    nesting too deep for the parser or a file too big for memory is a file that cannot be read,
    not a crash."""
    if tomllib is None:
        raise UsageError(TOML_READER_MISSING)
    try:
        with open(path, "rb") as f:
            return parse_toml(f.read())
    except MemoryError as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from None


def parse_toml(raw: bytes) -> dict[str, Any]:
    """The tables of a file's bytes; failing only with ValueError (see ``load_toml``)."""
    if tomllib is None:
        raise UsageError(TOML_READER_MISSING)
    try:
        data: dict[str, Any] = tomllib.loads(raw.decode())
    except (RecursionError, MemoryError, UnicodeDecodeError) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
    return data


@dataclass(frozen=True)
class TomlFile:
    """A TOML file read once: its text, which discovery searches for table headers (a file
    that does not parse still says it declares a project), and its tables, or why it does not
    parse."""

    text: str  # with universal newlines, as read_text() gives it
    data: dict[str, Any] | None  # None when it does not parse
    error: str = ""

    def tables(self) -> dict[str, Any]:
        """The tables; ValueError, with why, when the file does not parse."""
        if self.data is None:
            raise ValueError(self.error)
        return self.data


def read_toml(path: Path) -> TomlFile:
    """The file, read and parsed once; OSError when it cannot be read."""
    try:
        raw = path.read_bytes()
    except MemoryError as exc:
        return TomlFile("", None, f"{type(exc).__name__}: {exc}")
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    try:
        return TomlFile(text, parse_toml(raw))
    except ValueError as exc:
        return TomlFile(text, None, str(exc) or type(exc).__name__)


@dataclass(frozen=True)
class TomlFiles:
    """The pyproject.toml files one discovery read, by path, handed on to what reads the
    packages (their metadata, their runner, their selection), so that a refresh reads and
    parses each file once.  A file not among them is read when asked for."""

    read: Mapping[Path, TomlFile] = field(default_factory=dict)

    def tables(self, path: Path) -> dict[str, Any]:
        """The file's tables; OSError or ValueError as ``load_toml``."""
        known = self.read.get(path)
        return load_toml(path) if known is None else known.tables()

"""Reading TOML: the standard library's tomllib from Python 3.11, tomli (the same parser)
before.  Discovery, metadata, the runners and the options all read pyproject.toml through
``load_toml``, so a file too deep or too big for the parser fails the same way everywhere."""

from __future__ import annotations

import shlex
import sys
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
            data: dict[str, Any] = tomllib.load(f)
    except (RecursionError, MemoryError, UnicodeDecodeError) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
    return data

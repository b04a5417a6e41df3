"""What is a package: a directory holding pyproject.toml, setup.py or setup.cfg that is a project
of its own, not test data of another package, a template or workspace configuration alone.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .ignore import holds_no_packages

PACKAGE_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg")


# A project below one of these directories of another package is its test data, not a package.
TEST_DIR_NAMES = frozenset({"tests", "test", "testing", "fixtures", "testdata"})


# A directory named like this is a template's placeholder: ``__package_name__``, ``{{x.y}}``.
PLACEHOLDER = re.compile(r"__\w+__|.*(\{\{|\{%|\}\}).*")


MAX_SCANNED_BYTES = 1_000_000  # a bigger Python file is generated, not written: never scanned


@dataclass(frozen=True)
class Package:
    """A directory of the repository that holds its own project metadata and tests."""

    path: Path
    rel: str

    @property
    def depth(self) -> int:
        return self.rel.count("/")


def is_searchable(path: str) -> bool:
    try:
        os.stat(path)
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Discovery:
    """The packages below a root, the projects found that are not packages (with why), and
    the directories that could not be read."""

    packages: tuple[Package, ...]
    left_out: tuple[tuple[str, str], ...] = ()
    unreadable: tuple[str, ...] = ()


def below(parent_why: str, entry: os.DirEntry[str], rel: str, package: str | None,
          importable: bool) -> str:  # fmt: skip
    """What a subdirectory inherits: why no project inside it can be a package."""
    if parent_why:
        return parent_why
    if importable:
        return f"inside the Python package {rel}"
    if package is not None and entry.name in TEST_DIR_NAMES:
        return f"in the {entry.name} of {package}"
    if PLACEHOLDER.fullmatch(entry.name):
        return f"a template: {entry.name} is a placeholder"
    return ""


def discover(root: Path, excluded: Callable[[str, str], bool] | None = None) -> Discovery:
    """Every package below ``root``, never following a link out of it.  A project inside
    another package's test directories, inside an importable Python package or a template is
    test data.  When no package lies below, a root holding project metadata is the one package."""
    found: list[Package] = []
    left_out: list[tuple[str, str]] = []
    unreadable: list[str] = []
    root_package = root.name if holds_package_metadata(root) else None  # its tests hold data
    stack: list[tuple[str, str, str | None]] = [(str(root), "", root_package)]
    while stack:
        directory, why, package = stack.pop()
        try:
            with os.scandir(directory) as scan:
                entries = list(scan)
        except OSError:
            unreadable.append(directory)
            continue
        markers = [e.path for e in entries if e.name in PACKAGE_MARKERS]
        if markers and not is_searchable(markers[0]):
            unreadable.append(directory)  # readable (listed) but not searchable
            continue
        names = {e.name for e in entries}
        rel = Path(directory).relative_to(root).as_posix() if directory != str(root) else ""
        if rel and names & set(PACKAGE_MARKERS):
            if why:
                left_out.append((rel, why))
            else:
                found.append(Package(Path(directory), rel))
                package = rel
        importable = bool(rel) and "__init__.py" in names
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and not (
                holds_no_packages(entry.name, entry.path)
                or (excluded is not None and excluded(entry.name, entry.path))
            ):
                stack.append((entry.path, below(why, entry, rel, package, importable), package))
    if not found and root_package is not None:
        found.append(Package(root, root.name or str(root)))
    return Discovery(
        tuple(sorted(found, key=lambda p: p.rel)),
        tuple(sorted(left_out)),
        tuple(sorted(unreadable)),
    )


def holds_package_metadata(directory: Path) -> bool:
    """A project of its own, not workspace or tool configuration alone."""
    if (directory / "setup.py").is_file():
        return True
    for name, pattern in (
        ("pyproject.toml", r"^\[(project|tool\.poetry)\]"),
        ("setup.cfg", r"^\[(metadata|options)\]"),
    ):
        with contextlib.suppress(OSError):
            if re.search(pattern, (directory / name).read_text(errors="replace"), re.M):
                return True
    return False


def owner_of(path: str, packages: Sequence[Package]) -> Package | None:
    """The innermost package holding ``path``, or None when it lies outside every package."""
    best: Package | None = None
    for package in packages:
        prefix = str(package.path)
        inside = path == prefix or path.startswith(prefix + os.sep)
        if inside and (best is None or len(prefix) > len(str(best.path))):
            best = package
    return best

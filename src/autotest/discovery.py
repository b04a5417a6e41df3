"""What is a package: a directory holding pyproject.toml, setup.py or setup.cfg that is a project
of its own, not test data of another package, a template or workspace configuration alone.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .ignore import holds_no_packages
from .toml_files import TomlFile, TomlFiles, read_toml

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
    """The packages below a root, the projects found that are not packages (with why), the
    directories that could not be read, and every pyproject.toml read on the way."""

    packages: tuple[Package, ...]
    left_out: tuple[tuple[str, str], ...] = ()
    unreadable: tuple[str, ...] = ()
    tomls: TomlFiles = field(default_factory=TomlFiles)


# A directory named like this holds example or sample projects (``examples/``), or is one
# (``python-monorepo-example``, ``uv-examples``), or a template (``_template``): not packages.
EXAMPLE_NAME = re.compile(r"(?:.*[-_.])?(?:examples?|samples?)(?:[-_.].*)?|_?templates?", re.I)


@dataclass(frozen=True)
class Workspace:
    """A workspace that declares its members (``[tool.uv.workspace]``): below its directory,
    its declaration decides what is a package."""

    directory: str
    rel: str  # the directory, from the root ("" for the root)
    members: tuple[str, ...]
    exclude: tuple[str, ...]

    def admits(self, directory: str) -> bool | None:
        """Whether ``directory`` is a member; None when the workspace has no say there (its own
        directory, or outside it)."""
        if not directory.startswith(self.directory + os.sep):
            return None
        rel = directory[len(self.directory) + 1 :].replace(os.sep, "/")
        member = any(path_glob_matches(rel, g) for g in self.members)
        return member and not any(path_glob_matches(rel, g) for g in self.exclude)


def path_glob_matches(rel: str, glob: str) -> bool:
    """A workspace glob, as uv reads it: ``*`` within one path segment, ``**`` across any."""
    parts, pattern = rel.split("/"), [p for p in glob.strip("/").split("/") if p not in ("", ".")]
    if not pattern:
        return False
    if pattern[0] == "**":
        rest = pattern[1:]
        return not rest or any(path_glob_matches("/".join(parts[i:]), "/".join(rest))
                               for i in range(len(parts)))  # fmt: skip
    if not parts or not fnmatch.fnmatchcase(parts[0], pattern[0]):
        return False
    return len(parts) == len(pattern) == 1 or (
        len(parts) > 1 and len(pattern) > 1
        and path_glob_matches("/".join(parts[1:]), "/".join(pattern[1:]))
    )  # fmt: skip


def read_pyproject(directory: Path) -> TomlFile | None:
    """The directory's pyproject.toml, read once; None when there is none it can read."""
    try:
        return read_toml(directory / "pyproject.toml")
    except OSError:
        return None


def declared_workspace(pyproject: TomlFile | None, directory: str, rel: str) -> Workspace | None:
    """The workspace a directory's pyproject.toml declares, if it declares one."""
    data = pyproject.data if pyproject is not None else None
    if data is None:
        return None
    tool = data.get("tool")
    uv = tool.get("uv") if isinstance(tool, dict) else None
    declared = uv.get("workspace") if isinstance(uv, dict) else None
    if not isinstance(declared, dict):
        return None
    listed = [declared.get(k) for k in ("members", "exclude")]
    members, exclude = (tuple(v for v in x if isinstance(v, str)) if isinstance(x, list) else ()
                        for x in listed)  # fmt: skip
    return Workspace(directory, rel, members, exclude)


@dataclass(frozen=True)
class Place:
    """One directory on the walk, with what it inherits from the directories above it."""

    path: str
    why: str  # why no project in it can be a package ("" when one can)
    package: str | None  # the package it lies in
    workspaces: tuple[Workspace, ...]
    example: str = ""  # the example (or sample, or template) directory it lies in


def below(place: Place, entry: os.DirEntry[str], rel: str, importable: bool) -> str:
    """What a subdirectory inherits: why no project inside it can be a package."""
    if place.why:
        return place.why
    if importable:
        return f"inside the Python package {rel}"
    if place.package is not None and entry.name in TEST_DIR_NAMES:
        return f"in the {entry.name} of {place.package}"
    if PLACEHOLDER.fullmatch(entry.name):
        return f"a template: {entry.name} is a placeholder"
    return ""


def project_verdict(
    place: Place, rel: str, names: set[str], pyproject: TomlFile | None
) -> str | None:
    """None when the directory is a package; else why the project in it is not one ("" when
    there is no project at all)."""
    if not names & set(PACKAGE_MARKERS):
        return ""
    workspace = next((w for w in reversed(place.workspaces) if w.admits(place.path) is not None),
                     None)  # fmt: skip
    if place.why:
        return place.why
    if workspace is not None and not workspace.admits(place.path):
        where = f"{workspace.rel}/pyproject.toml" if workspace.rel else "pyproject.toml"
        return f"not a member of the workspace declared in {where}"
    if workspace is None and place.example:
        return f"an example: in {place.example}"
    configuration_only = holds_configuration_only(Path(place.path), pyproject)
    return "workspace or tool configuration only, no project" if configuration_only else None


@dataclass
class Walk:
    found: list[Package]
    left_out: list[tuple[str, str]]
    unreadable: list[str]
    tomls: dict[Path, TomlFile]


def walk(
    root: Path, root_package: str | None, excluded: Callable[[str, str], bool] | None,
    root_pyproject: TomlFile | None,
) -> Walk:  # fmt: skip
    """Every project below ``root``, judged; never following a link out of it.
    ``root_pyproject``: the root's pyproject.toml, already read."""
    result = Walk([], [], [], {})
    stack = [Place(str(root), "", root_package, ())]
    while stack:
        place = stack.pop()
        try:
            with os.scandir(place.path) as scan:
                entries = list(scan)
        except OSError:
            result.unreadable.append(place.path)
            continue
        markers = [e.path for e in entries if e.name in PACKAGE_MARKERS]
        if markers and not is_searchable(markers[0]):
            result.unreadable.append(place.path)  # readable (listed) but not searchable
            continue
        names = {e.name for e in entries}
        rel = Path(place.path).relative_to(root).as_posix() if place.path != str(root) else ""
        package, workspaces = place.package, place.workspaces
        pyproject = (
            root_pyproject if not rel
            else read_pyproject(Path(place.path)) if "pyproject.toml" in names
            else None
        )  # fmt: skip
        if pyproject is not None:
            result.tomls[Path(place.path, "pyproject.toml")] = pyproject
            workspace = declared_workspace(pyproject, place.path, rel)
            workspaces += (workspace,) if workspace is not None else ()
        verdict = project_verdict(place, rel, names, pyproject) if rel else ""
        if verdict is None:
            result.found.append(Package(Path(place.path), rel))
            package = rel
        elif verdict:
            result.left_out.append((rel, verdict))
        importable = bool(rel) and "__init__.py" in names
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and not (
                holds_no_packages(entry.name, entry.path)
                or (excluded is not None and excluded(entry.name, entry.path))
            ):
                here = Place(place.path, place.why, package, workspaces)
                named = EXAMPLE_NAME.fullmatch(entry.name)
                example = place.example or (f"{rel}/{entry.name}".lstrip("/") if named else "")
                why = below(here, entry, rel, importable)
                stack.append(Place(entry.path, why, package, workspaces, example))
    return result


def discover(root: Path, excluded: Callable[[str, str], bool] | None = None) -> Discovery:
    """Every package below ``root``.  A project inside another package's test directories,
    inside an importable Python package, a template or an example is not one, nor is one a
    workspace leaves out of its members, nor a directory of tool configuration alone.  A root
    holding project metadata is the one package when no package lies below it; while one
    does, the root is no package and its tests directory holds packages too (a repository's
    shared test utilities)."""
    root_pyproject = read_pyproject(root)
    root_is_project = holds_package_metadata(root, root_pyproject)
    found = walk(root, root.name if root_is_project else None, excluded, root_pyproject)
    if found.found and root_is_project:
        found = walk(root, None, excluded, root_pyproject)
    elif root_is_project:
        found.found.append(Package(root, root.name or str(root)))
    return Discovery(
        tuple(sorted(found.found, key=lambda p: p.rel)),
        tuple(sorted(found.left_out)),
        tuple(sorted(found.unreadable)),
        TomlFiles(found.tomls),
    )


def holds_configuration_only(directory: Path, pyproject: TomlFile | None) -> bool:
    """Tables of tools or a workspace, and no project: a pyproject.toml or setup.cfg that
    configures something (``[tool.ruff]``, ``[flake8]``) but declares no project, and no
    setup.py.  A marker file with no tables at all still marks a project.  ``pyproject``: the
    directory's pyproject.toml, as read (None when it has none)."""
    if holds_package_metadata(directory, pyproject):
        return False
    texts = (pyproject.text if pyproject is not None else "", setup_cfg_text(directory))
    return any(re.search(r"^\s*\[", text, re.M) for text in texts)


def holds_package_metadata(directory: Path, pyproject: TomlFile | None) -> bool:
    """A project of its own, not workspace or tool configuration alone."""
    if (directory / "setup.py").is_file():
        return True
    if pyproject is not None and re.search(r"^\[(project|tool\.poetry)\]", pyproject.text, re.M):
        return True
    return re.search(r"^\[(metadata|options)\]", setup_cfg_text(directory), re.M) is not None


def setup_cfg_text(directory: Path) -> str:
    """The directory's setup.cfg ("" when there is none it can read)."""
    try:
        return (directory / "setup.cfg").read_text(errors="replace")
    except OSError:
        return ""


def owner_of(path: str, packages: Sequence[Package]) -> Package | None:
    """The innermost package holding ``path``, or None when it lies outside every package."""
    best: Package | None = None
    for package in packages:
        prefix = str(package.path)
        inside = path == prefix or path.startswith(prefix + os.sep)
        if inside and (best is None or len(prefix) > len(str(best.path))):
            best = package
    return best

"""What a package says of itself: its distribution name and what it declares it needs (in
pyproject.toml, setup.cfg, setup.py and requirement files), each requirement with its kind.
"""

from __future__ import annotations

import ast
import configparser
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .discovery import PACKAGE_MARKERS, Package
from .toml_files import TomlFiles


def normalize_name(name: str) -> str:
    """PEP 503: ``Foo_Bar`` and ``foo-bar`` name the same distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str | None:
    match = re.match(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)", requirement)
    return normalize_name(match.group(1)) if match else None


class UnreadableFile(Exception):
    """A metadata file that cannot be parsed: its edges are lost, and the user is told once."""


@dataclass(frozen=True)
class Declared:
    """One requirement a package declares: a distribution name or local paths (the first that
    is a package counts), with what kind of requirement it is ("" for one its code needs)."""

    name: str | None
    paths: tuple[Path, ...] = ()
    label: str = ""


def kind_label(kind: str, key: str) -> str:
    """``tests`` for anything named after tests, else the kind and its name."""
    return "tests" if "test" in key.lower() else f"{kind} {key}".strip()


def declared_names(listed: Any, label: str) -> list[Declared]:
    entries = listed if isinstance(listed, list) else []
    return [Declared(requirement_name(r), (), label) for r in entries if isinstance(r, str)]


def dependency_groups(groups: Any) -> list[Declared]:
    """PEP 735 groups.  Every group is read, so a group that another includes
    (``{include-group = "test"}``) gives its edges once, labelled by the group that names them."""
    if not isinstance(groups, dict):
        return []
    return [
        d for g, listed in groups.items() for d in declared_names(listed, kind_label("group", g))
    ]


def poetry_requirements(poetry: Any, directory: Path) -> list[Declared]:
    """``[tool.poetry.dependencies]`` and its groups: names, and ``{path = "../core"}``."""
    if not isinstance(poetry, dict):
        return []
    tables = [("", poetry.get("dependencies"))]
    groups = poetry.get("group")
    for group, table in groups.items() if isinstance(groups, dict) else ():
        if isinstance(table, dict):
            tables.append((kind_label("group", group), table.get("dependencies")))
    found: list[Declared] = []
    for label, table in tables:
        for name, spec in table.items() if isinstance(table, dict) else ():
            path = spec.get("path") if isinstance(spec, dict) else None
            paths = (directory / path,) if isinstance(path, str) else ()
            found.append(Declared(normalize_name(name), paths, label))
    return found


def hatch_requirements(envs: Any) -> list[Declared]:
    """What hatch environments install beside the package (``dependencies`` and
    ``extra-dependencies``): a test environment's are the tests' dependencies."""
    if not isinstance(envs, dict):
        return []
    return [
        declared
        for env, table in envs.items()
        if isinstance(table, dict)
        for key in ("dependencies", "extra-dependencies")
        for declared in declared_names(table.get(key), kind_label("hatch env", env))
    ]


def readable_toml(path: Path, tomls: TomlFiles | None = None) -> dict[str, Any]:
    """The file's tables, as ``tomls`` holds them or read now."""
    try:
        return (tomls or TomlFiles()).tables(path)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError, MemoryError) as exc:
        raise UnreadableFile(str(exc) or type(exc).__name__) from None


def hatch_toml_requirements(path: Path) -> tuple[str | None, list[Declared]]:
    """hatch.toml: hatch's configuration outside pyproject.toml, its tables at the top."""
    return None, hatch_requirements(readable_toml(path).get("envs"))


def pyproject_requirements(
    path: Path, tomls: TomlFiles | None = None
) -> tuple[str | None, list[Declared]]:
    data = readable_toml(path, tomls)
    project: dict[str, Any] = data["project"] if isinstance(data.get("project"), dict) else {}
    found = declared_names(project.get("dependencies"), "")
    extras = project.get("optional-dependencies")
    for extra, listed in extras.items() if isinstance(extras, dict) else ():
        found.extend(declared_names(listed, kind_label("extra", extra)))
    found.extend(dependency_groups(data.get("dependency-groups")))
    poetry = data.get("tool", {}).get("poetry") if isinstance(data.get("tool"), dict) else None
    found.extend(poetry_requirements(poetry, path.parent))
    hatch = data.get("tool", {}).get("hatch") if isinstance(data.get("tool"), dict) else None
    found.extend(hatch_requirements(hatch.get("envs") if isinstance(hatch, dict) else None))
    name = project.get("name") or (poetry.get("name") if isinstance(poetry, dict) else None)
    return (name if isinstance(name, str) else None), found


def setup_cfg_requirements(path: Path) -> tuple[str | None, list[Declared]]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise UnreadableFile(str(exc).splitlines()[0]) from None

    def lines(section: str, key: str) -> list[str]:
        return [r for r in parser.get(section, key, fallback="").splitlines() if r.strip()]

    found = declared_names(lines("options", "install_requires"), "")
    found.extend(declared_names(lines("options", "tests_require"), "tests"))
    if parser.has_section("options.extras_require"):
        for extra in parser.options("options.extras_require"):
            listed = lines("options.extras_require", extra)
            found.extend(declared_names(listed, kind_label("extra", extra)))
    return parser.get("metadata", "name", fallback=None), found


def setup_py_requirements(path: Path) -> tuple[str | None, list[Declared]]:
    """The literal keywords of the ``setup()`` call, read as a syntax tree, never run."""
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise UnreadableFile(str(exc) or type(exc).__name__) from None
    name: str | None = None
    found: list[Declared] = []
    for node in ast.walk(tree):
        for keyword in node.keywords if isinstance(node, ast.Call) else ():
            try:
                value = ast.literal_eval(keyword.value)
            except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
                continue
            if keyword.arg == "name" and isinstance(value, str):
                name = value
            elif keyword.arg in ("install_requires", "tests_require"):
                listed = [value] if isinstance(value, str) else list(value or ())
                found.extend(declared_names(listed, "tests" if "tests" in keyword.arg else ""))
            elif keyword.arg == "extras_require" and isinstance(value, dict):
                for extra, listed in value.items():
                    listed = [listed] if isinstance(listed, str) else list(listed)
                    found.extend(declared_names(listed, kind_label("extra", str(extra))))
    return name, found


def is_metadata_file(path: str) -> bool:
    """A file whose change may change the graph's declared edges."""
    name = os.path.basename(path)
    return (
        name in PACKAGE_MARKERS
        or name == "hatch.toml"
        or (
            name.endswith(".txt")
            and (
                "requirements" in name or os.path.basename(os.path.dirname(path)) == "requirements"
            )
        )
    )


def requirement_files(package: Package) -> list[Path]:
    """``*requirements*.txt`` beside the metadata and ``requirements/*.txt``."""
    found = sorted(package.path.glob("*requirements*.txt"))
    return found + sorted((package.path / "requirements").glob("*.txt"))


def requirement_line(line: str, here: Path, root: Path, label: str) -> Declared | None:
    """A name, or a path (``-e ../core``, ``./libs/testing[test]``) tried against the file's
    directory, then the root."""
    editable = re.match(r"(?:-e|--editable)(?:\s+|=)(.*)", line)
    target = editable.group(1).strip() if editable else line
    if not editable and target.startswith("-"):
        return None
    egg = re.search(r"#egg=([\w.-]+)", target)
    if "://" in target and not target.startswith("file:"):
        return Declared(normalize_name(egg.group(1)), (), label) if egg else None
    if editable or target.startswith((".", "/", "file:")) or re.match(r"[\w.-]+/", target):
        local = re.sub(
            r"\[[^\]]*\]$", "", target.split("#")[0].replace("file://", "").replace("file:", "")
        )
        return Declared(None, (here / local, root / local), label)
    return Declared(requirement_name(target), (), label)


def read_requirement_file(path: Path, root: Path, seen: set[Path]) -> list[Declared]:
    """Every requirement the file lists, following ``-r other.txt`` within the root."""
    seen.add(path)
    label_name = f"requirements/{path.name}" if path.parent.name == "requirements" else path.name
    label = "tests" if "test" in path.name.lower() else label_name
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    found: list[Declared] = []
    for raw in text.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s)#.*", "", raw).strip()
        included = re.match(r"(?:-r|--requirement)(?:\s+|=)(\S+)", line)
        if included:
            target = (path.parent / included.group(1)).resolve()
            if target not in seen and target.is_file() and target.is_relative_to(root):
                found.extend(read_requirement_file(target, root, seen))
        elif line:
            declared = requirement_line(line, path.parent, root, label)
            found.extend([declared] if declared else [])
    return found


@dataclass(frozen=True)
class Metadata:
    """What a package says of itself: its distribution name, what it declares, and the files
    that could not be read (with why)."""

    name: str
    declared: tuple[Declared, ...] = ()
    unreadable: tuple[tuple[str, str], ...] = ()


def read_metadata(
    package: Package, root: Path | None = None, tomls: TomlFiles | None = None
) -> Metadata:
    """What the package declares; ``tomls``: the pyproject.toml files discovery read, so
    that they are not read again."""
    name: str | None = None
    declared: list[Declared] = []
    unreadable: list[tuple[str, str]] = []
    readers: tuple[tuple[str, Callable[[Path], tuple[str | None, list[Declared]]]], ...] = (
        ("pyproject.toml", lambda path: pyproject_requirements(path, tomls)),
        ("setup.cfg", setup_cfg_requirements),
        ("setup.py", setup_py_requirements),
        ("hatch.toml", hatch_toml_requirements),
    )
    for filename, reader in readers:
        path = package.path / filename
        if path.is_file():
            try:
                found_name, found = reader(path)
            except UnreadableFile as exc:
                unreadable.append((str(path), str(exc)))
                continue
            name = name or found_name
            declared.extend(found)
    seen: set[Path] = set()
    for path in requirement_files(package):
        if path.resolve() not in seen:
            declared.extend(read_requirement_file(path.resolve(), root or package.path, seen))
    return Metadata(normalize_name(name or package.path.name), tuple(declared), tuple(unreadable))

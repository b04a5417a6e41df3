"""Which package uses which, each edge labelled with why, and the one walk of that graph: who
uses a package, however indirectly.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .discovery import TEST_DIR_NAMES, Package
from .imports import ImportScan, provided_modules
from .metadata import read_metadata
from .toml_files import TomlFiles


@dataclass(frozen=True)
class DependencyGraph:
    """For each package, the sibling packages it uses directly, and for each such edge why:
    ``labels[(user, used)]`` is "" for a declared dependency of its code, else what declared
    or imported it (``tests``, ``imports``, ``extra docs``, ``requirements.txt``)."""

    uses: dict[Package, set[Package]]
    labels: dict[tuple[Package, Package], str] = field(default_factory=dict)
    names: dict[Package, str] = field(default_factory=dict)
    unreadable: tuple[tuple[str, str], ...] = ()
    weak: frozenset[tuple[Package, Package]] = frozenset()  # test, dev or docs edges alone


RUNTIME_LABELS = frozenset({"", "imports"})  # declared for the code, or imported by it
LABEL_ORDER = ("imports", "tests")  # shown first; a declared dependency of the code wins alone


def edge_label(labels: set[str]) -> str:
    if "" in labels:
        return ""
    first = [label for label in LABEL_ORDER if label in labels]
    return ", ".join(first + sorted(labels - set(LABEL_ORDER)))


def imported_packages(
    package: Package, names: Iterable[str], providers: Mapping[str, set[Package]]
) -> set[Package]:
    """The packages whose modules ``names`` are (``a.b.c`` tries a, a.b, a.b.c).  A module the
    package provides itself, or that several packages provide (a ``shared.py`` in each), is
    no edge."""
    found: set[Package] = set()
    for name in names:
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            owners = providers.get(".".join(parts[:end]), set())
            if len(owners) == 1 and package not in owners:
                found |= owners
    return found


def test_module_names(packages: Sequence[Package]) -> frozenset[str]:
    """What tests import of their own: their directory (``tests.helpers``), and the modules in
    it that pytest's default import mode puts on sys.path (``helpers``).  The scan keeps them
    for the stages; the graph finds no package that provides them."""
    names = set(TEST_DIR_NAMES)
    for package in packages:
        for folder in TEST_DIR_NAMES:
            with contextlib.suppress(OSError), os.scandir(package.path / folder) as scan:
                names.update(e.name[: -len(".py")] for e in scan if e.name.endswith(".py"))
    return frozenset(names)


def dependency_graph(
    packages: Sequence[Package], root: Path | None = None, scan: ImportScan | None = None,
    tomls: TomlFiles | None = None,
) -> DependencyGraph:  # fmt: skip
    """Edges from everything the packages declare, and from what their code and tests import
    of the modules the others provide.  ``tomls``: the pyproject.toml files discovery read."""
    scan = scan or ImportScan()
    metadata = {p: read_metadata(p, root, tomls) for p in packages}
    by_name = {m.name: p for p, m in metadata.items()}
    by_path = {p.path: p for p in packages}
    providers: dict[str, set[Package]] = {}
    for package in packages:
        for module in provided_modules(package):
            providers.setdefault(module, set()).add(package)
    scan.want(frozenset(m.partition(".")[0] for m in providers) | test_module_names(packages))
    edges: dict[Package, dict[Package, set[str]]] = {p: {} for p in packages}

    def link(user: Package, used: Package | None, label: str) -> None:
        if used is not None and used != user:
            edges[user].setdefault(used, set()).add(label)

    nested = nested_packages(packages)
    for package in packages:
        for declared in metadata[package].declared:
            paths = [by_path.get(Path(os.path.normpath(p))) for p in declared.paths]
            link(
                package,
                by_name.get(declared.name or "") or next(filter(None, paths), None),
                declared.label,
            )
        for kind, names in scan.package_imports(package, nested[package]).items():
            for used in imported_packages(package, names, providers):
                link(package, used, "imports" if kind == "code" else "tests")
    return DependencyGraph(
        {p: set(used) for p, used in edges.items()},
        {(p, u): edge_label(labels) for p, used in edges.items() for u, labels in used.items()},
        {p: m.name for p, m in metadata.items()},
        tuple(u for m in metadata.values() for u in m.unreadable),
        frozenset((p, u) for p, used in edges.items() for u, labels in used.items()
                  if not labels & RUNTIME_LABELS),
    )  # fmt: skip


def nested_packages(packages: Sequence[Package]) -> dict[Package, list[str]]:
    """For each package, the directories of the packages inside it.  Ordered by their paths'
    parts, the packages inside one follow it, so one pass finds them all."""
    ordered = sorted(packages, key=lambda p: p.path.parts)
    nested: dict[Package, list[str]] = {p: [] for p in packages}
    for index, package in enumerate(ordered):
        parts = package.path.parts
        for other in ordered[index + 1 :]:
            if other.path.parts[: len(parts)] != parts:
                break
            nested[package].append(str(other.path))
    return nested


def users_of(uses: Mapping[Package, set[Package]]) -> dict[Package, list[Package]]:
    """The reverse graph: for each package, the packages that use it, by path."""
    users: dict[Package, list[Package]] = {}
    for user in sorted(uses, key=lambda p: p.rel):
        for used in uses[user]:
            users.setdefault(used, []).append(user)
    return users


def users_reached(
    starts: Sequence[Package], users: Mapping[Package, list[Package]]
) -> dict[Package, tuple[int, Package]]:
    """Who uses the ``starts``, however indirectly: each such package with how far it is and
    through which package, in the order reached (nearest first, earlier starts first).  The one
    walk of the graph: the cycle's order, ``--affected`` and ``--plan`` all ask it, so a package
    left out of a run (``--exclude``, a subset watch) still carries its users' edges."""
    distance: dict[Package, tuple[int, Package]] = {}
    frontier = list(starts)
    reached, depth = set(frontier), 0
    while frontier:
        depth += 1
        following: list[Package] = []
        for package in frontier:
            for user in users.get(package, []):
                if user not in reached:
                    reached.add(user)
                    distance[user] = (depth, package)
                    following.append(user)
        frontier = following
    return distance

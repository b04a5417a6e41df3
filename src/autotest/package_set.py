"""The package set, kept in step with the tree: the packages found, those chosen to test (less
those excluded, narrowed by the key p), the graph of which uses which, and the import scan it is
read from.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from .basics import UsageError
from .ci import affected
from .discovery import PACKAGE_MARKERS, Package, discover, owner_of
from .graph import DependencyGraph, dependency_graph
from .ignore import IgnoreRules, glob_matches
from .imports import KEEP_SCAN_FROM, ImportScan, scan_cache_file
from .metadata import is_metadata_file, normalize_name
from .report import Reporter, shown
from .toml_files import TomlFiles


class PackageSet:
    """The packages as the tree has them now, those chosen to run, and their graph, kept in
    step with changes."""

    def __init__(
        self,
        root: Path,
        reporter: Reporter,
        rules: IgnoreRules | None = None,
        chosen: Sequence[str] = (),
        exclude: Sequence[str] = (),
    ) -> None:
        self.root = root
        self.reporter = reporter
        self.rules = rules or IgnoreRules(root)
        self.chosen = tuple(chosen)
        self.exclude = tuple(exclude)
        self.narrowing = ""  # the package filter (the key p)
        self.cwd = Path.cwd()
        self.all: list[Package] = []
        self.packages: list[Package] = []
        self.left_out: tuple[tuple[str, str], ...] = ()
        self.dropped: set[str] = set()  # directories skipped as unreadable
        self.tomls = TomlFiles()  # the pyproject.toml files the last discovery read
        self.graph = DependencyGraph({})
        self.scan = ImportScan(self.rules.device)
        self.scan.load(scan_cache_file(root))
        self.refresh()
        unmatched = [c for c in self.chosen if not self.matching(c)]
        if unmatched and self.all:
            raise UsageError(self.names_no_package(unmatched[0]))

    def refresh(self, metadata_changed: bool = True) -> None:
        """Rediscover the packages; read the graph again when they or their metadata changed."""
        self.rules.refresh_git_dirs()
        found = discover(self.root, self.rules.excludes_dir)
        for path in found.unreadable:
            self.reporter.unreadable(path)
        self.dropped = set(found.unreadable)
        packages = list(found.packages)
        self.left_out = found.left_out
        self.tomls = found.tomls
        if packages == self.all and not metadata_changed:
            return
        if self.all and packages != self.all:
            self.reporter.packages_changed(
                (p.rel for p in set(packages) - set(self.all)),
                (p.rel for p in set(self.all) - set(packages)),
            )
        self.all = packages
        self.read_graph()

    def save(self) -> None:
        """Keep the import scan for the next start, in a tree big enough for it to matter."""
        if len(self.scan.files) >= KEEP_SCAN_FROM:
            self.scan.save(scan_cache_file(self.root))

    def read_graph(self) -> None:
        """Read the graph; a package that can no longer be read is dropped, with a notice (it
        comes back when a change below it finds it readable again)."""
        while True:
            try:
                self.graph = dependency_graph(self.all, self.root, self.scan, self.tomls)
                break
            except OSError as exc:
                owner = owner_of(os.fsdecode(exc.filename or ""), self.all)
                if owner is None:
                    raise
                self.reporter.unreadable(str(owner.path))
                self.dropped.add(str(owner.path))
                self.all = [p for p in self.all if p != owner]
        for path, why in self.graph.unreadable:
            self.reporter.cannot_parse(path, why)
        self.select()

    def select(self) -> None:
        """The packages to test: those chosen, less those excluded, narrowed by the package
        filter (the key p) when one is set."""
        chosen = {p for c in self.chosen for p in self.matching(c)} if self.chosen else set()
        narrowed = set(self.filter_matches(self.narrowing)) if self.narrowing else set()
        self.packages = [
            p
            for p in self.all
            if (not self.chosen or p in chosen)
            and not any(glob_matches(p.rel, g) for g in self.exclude)
            and (not self.narrowing or p in narrowed)
        ]
        self.reporter.width = max((len(shown(p.rel)) for p in self.packages), default=0)

    def narrow(self, pattern: str) -> bool:
        """Test only the packages matching ``pattern`` from now on ("" for all chosen); False,
        and nothing changed, when it leaves none."""
        previous, self.narrowing = self.narrowing, pattern
        self.select()
        if not self.packages:
            self.narrowing = previous
            self.select()
            return False
        return True

    def filter_matches(self, pattern: str) -> list[Package]:
        """The packages a filter names: a glob over paths and distribution names, or, without
        glob characters, a part of one."""
        glob = any(c in pattern for c in "*?[")

        def hit(text: str) -> bool:
            return fnmatch.fnmatchcase(text, pattern) if glob else pattern in text

        return [p for p in self.all if hit(p.rel) or hit(self.graph.names.get(p, ""))]

    def follow(self, paths: Iterable[str]) -> None:
        """Rediscover packages when directories or metadata came or went; read the graph
        again when code changed (only the changed files are read again)."""
        paths = list(paths)
        self.scan.forget(paths)
        metadata = any(is_metadata_file(p) for p in paths)
        code = any(p.endswith(".py") and owner_of(p, self.all) for p in paths)
        dropped = any(p.startswith(d + os.sep) for p in paths for d in self.dropped)
        if metadata or dropped or any(not os.path.isfile(p) for p in paths):
            self.refresh(metadata or code or dropped)
        elif code:
            self.read_graph()

    def matching(self, chosen: str) -> list[Package]:
        """The packages an argument names: a directory (the packages in it, or the one holding
        it) or a file (the package holding it), from the current directory or the root, else a
        glob over their paths from the root or their distribution names."""
        for base in (self.cwd, self.root):
            path = os.path.realpath(base / chosen)
            if os.path.exists(path):
                inside = [p for p in self.all if owner_of(str(p.path), [Package(Path(path), "")])]
                holder = owner_of(path, self.all)
                return inside or ([holder] if holder else [])
        pattern = chosen.strip("/")
        return [
            p
            for p in self.all
            if fnmatch.fnmatchcase(p.rel, pattern)
            or fnmatch.fnmatchcase(self.graph.names.get(p, ""), normalize_name(pattern))
        ]

    def names_no_package(self, chosen: str) -> str:
        close = difflib.get_close_matches(chosen.strip("/"), [p.rel for p in self.all], 3, 0.75)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        return f"{chosen!r} names no package under {self.root}{hint}"

    def owner_dir(self, path: str) -> str | None:
        owner = owner_of(path, self.packages)
        return None if owner is None else str(owner.path)

    def owners(self, changed: Mapping[str, float]) -> dict[Package, float]:
        """The packages holding the changed paths, each with its latest change (chosen or not:
        their dependents are)."""
        owners: dict[Package, float] = {}
        for path, at in changed.items():
            owner = owner_of(path, self.all)
            if owner is not None:
                owners[owner] = max(at, owners.get(owner, at))
        return owners

    def watched_users(self, changed: Mapping[str, float]) -> set[Package] | None:
        """When only some packages are watched and the change lies outside them all: the
        watched packages that use what changed (maybe none).  None otherwise: a whole cycle."""
        owners = self.owners(changed)
        if not owners or set(owners) & set(self.packages):
            return None
        return affected(self.packages, owners, self.graph.uses)


def no_packages(root: Path) -> UsageError:
    return UsageError(
        f"no packages under {shown(str(root))} (a package is a directory holding "
        f"{', '.join(PACKAGE_MARKERS[:-1])} or {PACKAGE_MARKERS[-1]}); pass --root DIR"
    )

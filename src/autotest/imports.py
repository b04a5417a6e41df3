"""The import scan: which modules each package provides, and which it imports, read from its
sources with a regular expression (fast, and a file being edited still says what it imports),
kept in a cache per repository for the next start.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import zlib
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .discovery import EXAMPLE_NAME, MAX_SCANNED_BYTES, TEST_DIR_NAMES, Package
from .ignore import holds_no_packages, other_device
from .state import state_path

NAMESPACE_DEPTH = 6  # namespace packages nest this deep at most (``a.b.c.d.e.f``)


def provided_modules(package: Package) -> set[str]:
    """Importable names a package provides: its top-level modules and packages, and through
    namespace packages (directories without ``__init__.py``, at any depth) the regular
    packages and modules inside them: ``vendor.components.generators.foo``."""
    base = package.path / "src" if (package.path / "src").is_dir() else package.path
    provided: set[str] = set()
    pending = [(str(base), "")]
    while pending:
        directory, prefix = pending.pop()
        with contextlib.suppress(OSError), os.scandir(directory) as scan:
            for entry in scan:
                if entry.is_file() and entry.name.endswith(".py"):
                    stem = entry.name[:-3]
                    if stem not in ("setup", "conftest", "__init__") and not stem.startswith(
                        "test"
                    ):
                        provided.add(prefix + stem)
                elif entry.is_dir() and is_code_directory(entry):
                    if os.path.isfile(os.path.join(entry.path, "__init__.py")):
                        provided.add(prefix + entry.name)
                    elif prefix.count(".") < NAMESPACE_DEPTH:
                        pending.append((entry.path, f"{prefix}{entry.name}."))
    return provided


def provider_of(module: str, providers: Mapping[str, Package]) -> Package | None:
    """The package of the repository whose provided name ``module`` is, lies in, or holds
    (``providers`` maps provided names to their packages)."""
    for name, package in providers.items():
        if module == name or module.startswith(name + ".") or name.startswith(module + "."):
            return package
    return None


def module_in_sources(package: Package, module: str) -> bool:
    """Whether the package's sources hold ``module`` (a module file or a package directory):
    a name a change removed or renamed is not there any more."""
    base = package.path / "src" if (package.path / "src").is_dir() else package.path
    path = base.joinpath(*module.split("."))
    return path.with_name(path.name + ".py").is_file() or path.is_dir()


def is_code_directory(entry: os.DirEntry[str]) -> bool:
    """A directory that may hold importable code: not a tool's, tests, docs or examples."""
    return not (
        holds_no_packages(entry.name, entry.path)
        or entry.name in TEST_DIR_NAMES
        or entry.name == "docs"
        or EXAMPLE_NAME.fullmatch(entry.name) is not None
        or not entry.name.isidentifier()
    )


# ``import a.b as c, d`` and ``from a.b import (c, d)`` at the start of a line.  A regular
# expression, not a syntax tree: twenty times faster on a big tree, and a file that does not
# parse (being edited, generated, nested too deep) still says what it imports.
IMPORT_STATEMENT = re.compile(
    rb"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]*)|import[ \t]+([^\n#;]+))",
    re.M,
)


# ``importlib.import_module(name)`` or ``__import__(name)`` whose name is not one literal: what
# it imports cannot be read from the source, so a file holding one may import anything.
DYNAMIC_IMPORT = re.compile(rb"\b(?:import_module|__import__)\(\s*(?!['\"][\w.]+['\"]\s*[,)])")


LITERAL_IMPORT = re.compile(rb"\bimport_module\(\s*['\"]([\w.]+)['\"]\s*\)")


def joined(base: str, name: str) -> str:
    return base + name if base.endswith(".") else f"{base}.{name}"


def imports_in(source: bytes, wanted: Container[str] | None = None) -> frozenset[str]:
    """Every dotted name a source imports (``from a import b`` gives a and a.b) whose
    top-level name is ``wanted`` (all when None): most imports are of the standard library or
    third parties, and dropping them early halves the scan.  Relative imports come as they are
    written (``from .m import f`` gives .m and .m.f): what they name depends on the module."""
    imported: set[str] = set()
    for module, names, plain in IMPORT_STATEMENT.findall(source):
        if module:
            base = module.decode("ascii", "replace")
            relative = base.startswith(".")
            if not relative and wanted is not None and base.partition(".")[0] not in wanted:
                continue
            imported.add(base)
            for item in names.strip(b"()\\ \t").split(b","):
                word = item.split()[:1]
                if word and word[0] != b"*":
                    imported.add(joined(base, word[0].decode("ascii", "replace")))
        for item in plain.split(b","):
            word = item.split()[:1]
            name = word[0].decode("ascii", "replace") if word else ""
            if name and (wanted is None or name.partition(".")[0] in wanted):
                imported.add(name)
    for literal in LITERAL_IMPORT.findall(source):
        name = literal.decode("ascii", "replace")
        if wanted is None or name.partition(".")[0] in wanted:
            imported.add(name)
    return frozenset(imported)


def imports_dynamically(source: bytes) -> bool:
    """Whether a source imports a module whose name it computes: it may import any module."""
    return DYNAMIC_IMPORT.search(source) is not None


def absolute_imports(names: Iterable[str], module: str, is_package: bool) -> set[str]:
    """The imported names of module ``module`` (an ``__init__.py`` when ``is_package``), with
    its relative imports resolved: ``.m`` in ``big.sub.x`` is ``big.sub.m``."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for name in names:
        if not name.startswith("."):
            found.add(name)
            continue
        rest = name.lstrip(".")
        up = len(name) - len(rest) - 1
        if up > len(here) or (up == len(here) and not rest):
            continue
        parts = here[: len(here) - up] + ([rest] if rest else [])
        found.add(".".join(p for p in parts if p))
    return found


def is_test_module(name: str) -> bool:
    return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"


SCAN_CACHE_VERSION = 3  # 2: each distinct set of names once; 3: and computed imports


KEEP_SCAN_FROM = 1000  # Python files; a smaller tree is read again faster than a cache is


def scan_cache_file(root: Path) -> str | None:
    """Where the import scan of ``root`` is kept between runs: in the private state directory,
    outside the tree (None when there is none: nothing is kept)."""
    name = f"{zlib.crc32(os.fsencode(root)):08x}-{root.name[:40]}.json"
    path = state_path("scan", name)
    return None if path is None else str(path)


# A file's mtime (ns), its size, what it imports, whether it imports by computed names.
Scanned = tuple[int, int, frozenset[str], bool]


@dataclass(frozen=True)
class ScannedFile:
    """One Python file as the scan read it: what it imports, and whether it imports a module
    whose name it computes."""

    names: frozenset[str]
    dynamic: bool


def absolute_only(names: Iterable[str]) -> set[str]:
    """A package's imports of other packages are absolute; its relative ones stay inside."""
    return {name for name in names if not name.startswith(".")}


class ImportScan:
    """What each Python file imports of the ``wanted`` top-level modules (the packages'),
    kept by (mtime, size), and what each package imports, kept until a path inside it
    changes.  A change costs reading the changed files and walking the packages that hold
    them; kept in a file between runs, a start costs one ``stat`` per file.  The files of one
    package mostly import the same names: each distinct set is held once, however many files
    import it."""

    def __init__(self, device: int | None = None) -> None:
        self.device = device  # the root's file system: the scan stays on it (None: crosses)
        self.wanted: frozenset[str] | None = None  # None: every module
        self.files: dict[str, Scanned] = {}  # the files looked up: only these are kept
        self.kept: dict[str, Scanned] = {}  # read back from the last run, not looked up yet
        self.sets: dict[frozenset[str], frozenset[str]] = {}  # each distinct set, once
        self.packages: dict[Path, dict[str, set[str]]] = {}
        self.changed = False

    def want(self, wanted: frozenset[str] | None) -> None:
        """Look for these modules from now on; a different set means reading every file."""
        if wanted != self.wanted:
            self.wanted = wanted
            self.files.clear()
            self.kept.clear()
            self.sets.clear()
            self.packages.clear()

    def shared(self, names: frozenset[str]) -> frozenset[str]:
        return self.sets.setdefault(names, names)

    def load(self, path: str | None) -> None:
        """Start from what an earlier run read, if anything; a cache that cannot be read is
        no cache."""
        if path is None:
            return
        with contextlib.suppress(
            OSError, ValueError, TypeError, KeyError, IndexError, AttributeError
        ):
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            if data["version"] == SCAN_CACHE_VERSION:
                wanted = data["wanted"]
                sets = [self.shared(frozenset(names)) for names in data["sets"]]
                kept = {p: (m, s, sets[i], bool(d)) for p, (m, s, i, d) in data["files"].items()}
                self.wanted = None if wanted is None else frozenset(wanted)
                self.kept = kept

    def save(self, path: str | None) -> None:
        """Keep what was looked up for the next run, in one atomic write (0600), if anything
        changed."""
        if not self.changed or path is None:
            return
        distinct = dict.fromkeys(names for _, _, names, _ in self.files.values())
        index = {names: i for i, names in enumerate(distinct)}
        data = {
            "version": SCAN_CACHE_VERSION,
            "wanted": None if self.wanted is None else sorted(self.wanted),
            "sets": [sorted(names) for names in index],
            "files": {p: (m, s, index[n], d) for p, (m, s, n, d) in self.files.items()},
        }
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "w", dir=os.path.dirname(path), suffix=".tmp", delete=False, encoding="utf-8"
            ) as f:
                json.dump(data, f, separators=(",", ":"))
            os.replace(f.name, path)
            self.changed = False

    def forget(self, paths: Iterable[str]) -> None:
        """Walk again the packages holding any of ``paths`` (a file, or a directory that came
        or went)."""
        for path in paths:
            for directory in [d for d in self.packages if path.startswith(str(d) + os.sep)]:
                del self.packages[directory]

    def imports(self, path: str, entry: os.DirEntry[str] | None = None) -> frozenset[str]:
        """What the file imports: from the cache while its mtime and size are unchanged
        (``entry``: its directory entry, when a walk found it)."""
        return self.scanned(path, entry).names

    def scanned(self, path: str, entry: os.DirEntry[str] | None = None) -> ScannedFile:
        """The file as last read (an unreadable one imports nothing)."""
        known = self.files.get(path) or self.kept.pop(path, None)
        try:
            if known is not None:
                stat = entry.stat() if entry is not None else os.stat(path)
                if known[:2] == (stat.st_mtime_ns, stat.st_size):
                    self.files[path] = known
                    return ScannedFile(known[2], known[3])
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))  # half open()'s cost
            try:
                stat = os.fstat(fd)
                big = stat.st_size > MAX_SCANNED_BYTES
                source = b"" if big else os.read(fd, stat.st_size + 1)
            finally:
                os.close(fd)
        except OSError:
            return ScannedFile(frozenset(), False)
        imported = self.shared(imports_in(source, self.wanted) if source else frozenset())
        dynamic = imports_dynamically(source)
        self.files[path] = (stat.st_mtime_ns, stat.st_size, imported, dynamic)
        self.changed = True
        return ScannedFile(imported, dynamic)

    def package_imports(self, package: Package, others: Iterable[str]) -> dict[str, set[str]]:
        """The names the package's code imports (``code``) and its tests import (``tests``),
        leaving out ``others``: the directories of packages nested inside it.  Walked as
        os.walk would (no link to a directory followed), with each file's directory entry
        handed on: no path is joined twice."""
        if package.path in self.packages:
            return self.packages[package.path]
        found: dict[str, set[str]] = {"code": set(), "tests": set()}
        skip = set(others)
        pending = [(str(package.path), False)]  # a directory, and whether it lies in tests
        while pending:
            directory, in_tests = pending.pop()
            try:
                with os.scandir(directory) as scan:
                    entries = list(scan)
            except OSError:
                continue
            for entry in entries:
                if is_directory(entry):
                    if not entry.is_symlink() and self.walks_into(entry, skip):
                        pending.append((entry.path, in_tests or entry.name in TEST_DIR_NAMES))
                elif entry.name.endswith(".py"):
                    kind = "tests" if in_tests or is_test_module(entry.name) else "code"
                    found[kind] |= absolute_only(self.imports(entry.path, entry))
        self.packages[package.path] = found
        return found

    def walks_into(self, entry: os.DirEntry[str], skip: Container[str]) -> bool:
        """Whether the scan goes down into a directory: not a tool's, not a nested package's,
        not another file system's."""
        return not (
            holds_no_packages(entry.name, entry.path)
            or entry.path in skip
            or other_device(entry.path, self.device)
        )


def is_directory(entry: os.DirEntry[str]) -> bool:
    """A directory, or a link to one; as os.walk has it, an entry that cannot tell is none."""
    try:
        return entry.is_dir()
    except OSError:
        return False

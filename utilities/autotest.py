#!/usr/bin/env python3
# /// script
# requires-python = ">=3.9"
# dependencies = ["watchdog>=6", "pynose>=1.5.5"]
# ///
"""autotest: continuous tests for a repository that keeps several Python packages side by side.

A change in one package can silently break another.  autotest watches the whole tree and, on
every change, tests the package that changed first (it is the most likely to be broken), then
the packages that failed last time, then those that depend on it, then all the others.  It stops
at the first failing package and shows the output of that run alone; when everything passes it
prints one short line per package.

Copy this one file into ``utilities/`` of such a repository and run::

    python utilities/autotest.py              # watch; Ctrl+C or q to stop
    python utilities/autotest.py --once       # one cycle; exit 0 all passed, 1 a package failed

A package is any directory below the root holding pyproject.toml, setup.py or setup.cfg.  Each
package runs in its own subprocess, with the package directory as working directory and the
interpreter that runs this script.  Arguments after ``--`` go to the test runner.

Options (the same names work as ``[tool.autotest]`` in the root pyproject.toml and as
``[autotest]`` in setup.cfg; the command line wins):

    --root DIR          the repository (default: the parent of this file's folder)
    --once              run one cycle, then exit with its status
    --changed PATH...   order the first cycle as if these paths had just changed
    --runner NAME|CMD   nose (default), nose2, pytest, unittest, or a command with {package}
    -j, --jobs N|auto   packages run at once (default 1; auto = one per core)
    --timeout SECONDS   kill a package run that takes longer, and report it as failed
    --restart           a change during a run kills that run instead of letting it finish
    --debounce SECONDS  quiet time that closes a burst of changes (default 0.05)
    --ignore GLOB       never react to matching paths (repeatable; .gitignore is read too)
    --poll              poll the tree instead of using the OS's change notifications
    --no-warm           start each run cold instead of forking it from a warm interpreter
    -v, --explain       before each cycle, say why each package runs where it does
    --clear             clear the screen before each cycle
    --bell              ring the terminal bell when a package fails
    --notify            send a desktop notification when a cycle fails or recovers
"""

from __future__ import annotations

import argparse
import ast
import configparser
import contextlib
import errno
import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, NoReturn

try:
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer
    from watchdog.observers.polling import PollingObserver

    WATCHDOG_ERROR = ""
except ImportError as _exc:  # --help and --once work without it; watching says what to install
    FileSystemEventHandler = object  # type: ignore[misc,assignment]
    WATCHDOG_ERROR = str(_exc)

POSIX = os.name == "posix"


class UsageError(Exception):
    """Bad input: reported as one line and exit status 2."""


# ---------------------------------------------------------------------------------------------
# Discover packages
# ---------------------------------------------------------------------------------------------

PACKAGE_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg")
NEVER_PACKAGE_DIRS = frozenset({"node_modules", "build", "dist", "__pycache__", "site-packages"})


@dataclass(frozen=True)
class Package:
    """A directory of the repository that holds its own project metadata and tests."""

    path: Path
    rel: str

    @property
    def depth(self) -> int:
        return self.rel.count("/")


def is_virtualenv(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "pyvenv.cfg"))


def is_tool_dir(name: str, path: str) -> bool:
    """Directories that never hold the user's packages: hidden ones, virtualenvs, build output."""
    return (
        name.startswith(".")
        or name in NEVER_PACKAGE_DIRS
        or name.endswith(".egg-info")
        or is_virtualenv(path)
    )


def discover_packages(root: Path) -> tuple[list[Package], list[str]]:
    """Every package below ``root`` (never the root itself), and the directories unreadable."""
    packages: list[Package] = []
    unreadable: list[str] = []
    stack = [str(root)]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as scan:
                entries = list(scan)
        except OSError:
            unreadable.append(directory)
            continue
        if directory != str(root) and any(e.name in PACKAGE_MARKERS for e in entries):
            path = Path(directory)
            packages.append(Package(path, path.relative_to(root).as_posix()))
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and not is_tool_dir(entry.name, entry.path):
                stack.append(entry.path)
    return sorted(packages, key=lambda p: p.rel), sorted(unreadable)


def owner_of(path: str, packages: Sequence[Package]) -> Package | None:
    """The innermost package holding ``path``, or None when it lies outside every package."""
    best: Package | None = None
    for package in packages:
        prefix = str(package.path)
        inside = path == prefix or path.startswith(prefix + os.sep)
        if inside and (best is None or package.depth > best.depth):
            best = package
    return best


# Which package uses which, read from declared metadata without running any package code.


def normalize_name(name: str) -> str:
    """PEP 503: ``Foo_Bar`` and ``foo-bar`` name the same distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str | None:
    match = re.match(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)", requirement)
    return normalize_name(match.group(1)) if match else None


def load_toml(path: Path) -> dict[str, Any] | None:
    """The parsed file, or None when this Python has no TOML parser (3.9/3.10 without tomli)."""
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:
            return None
    with open(path, "rb") as f:
        data: dict[str, Any] = tomllib.load(f)
    return data


def pyproject_requirements_without_toml(text: str) -> tuple[str | None, list[str]]:
    """Name and requirements of ``[project]`` read with regular expressions, where this Python
    has no TOML parser: enough for string lists, which is all that metadata holds."""

    def section(name: str) -> str:
        found = re.search(rf"^\[{re.escape(name)}\][ \t]*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
        return found.group(1) if found else ""

    string_list = r"""\[((?:"[^"]*"|'[^']*'|[^\]"'])*)\]"""
    project = section("project")
    name = re.search(r"""^name\s*=\s*["']([^"']+)["']""", project, re.M)
    lists = re.findall(r"^dependencies\s*=\s*" + string_list, project, re.M)
    lists += re.findall(
        r"^[\w.-]+\s*=\s*" + string_list, section("project.optional-dependencies"), re.M
    )
    listed = [r for group in lists for r in re.findall(r"""["']([^"']+)["']""", group)]
    return (name.group(1) if name else None), listed


def pyproject_requirements(path: Path) -> tuple[str | None, list[str]]:
    try:
        data = load_toml(path)
        if data is None:
            return pyproject_requirements_without_toml(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None, []
    project = data.get("project", {})
    listed = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        listed.extend(extra)
    return project.get("name"), [r for r in listed if isinstance(r, str)]


def setup_cfg_requirements(path: Path) -> tuple[str | None, list[str]]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return None, []
    listed = parser.get("options", "install_requires", fallback="").splitlines()
    if parser.has_section("options.extras_require"):
        for _, value in parser.items("options.extras_require"):
            listed.extend(value.splitlines())
    return parser.get("metadata", "name", fallback=None), [r for r in listed if r.strip()]


def setup_py_requirements(path: Path) -> tuple[str | None, list[str]]:
    """``name=`` and ``install_requires=`` of the ``setup()`` call, when they are literals."""
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return None, []
    name: str | None = None
    listed: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            with contextlib.suppress(ValueError):
                value = ast.literal_eval(keyword.value)
                if keyword.arg == "name" and isinstance(value, str):
                    name = value
                elif keyword.arg == "install_requires" and isinstance(value, (list, tuple)):
                    listed.extend(v for v in value if isinstance(v, str))
                elif keyword.arg == "extras_require" and isinstance(value, dict):
                    for extra in value.values():
                        extra = [extra] if isinstance(extra, str) else extra
                        listed.extend(v for v in extra if isinstance(v, str))
    return name, listed


@dataclass(frozen=True)
class Metadata:
    """What a package says of itself: its distribution name and what it requires."""

    name: str
    requires: frozenset[str]


def read_metadata(package: Package) -> Metadata:
    name: str | None = None
    requires: set[str] = set()
    readers = (
        ("pyproject.toml", pyproject_requirements),
        ("setup.cfg", setup_cfg_requirements),
        ("setup.py", setup_py_requirements),
    )
    for filename, reader in readers:
        path = package.path / filename
        if path.is_file():
            found_name, listed = reader(path)
            name = name or found_name
            requires.update(n for n in map(requirement_name, listed) if n)
    return Metadata(normalize_name(name or package.path.name), frozenset(requires))


def provided_modules(package: Package) -> set[str]:
    """Importable names a package provides: its top-level modules, and ``ns.sub`` for namespaces."""
    base = package.path / "src" if (package.path / "src").is_dir() else package.path
    provided: set[str] = set()
    with contextlib.suppress(OSError), os.scandir(base) as scan:
        for entry in scan:
            if entry.is_file() and entry.name.endswith(".py"):
                stem = entry.name[:-3]
                if stem not in ("setup", "conftest") and not stem.startswith("test"):
                    provided.add(stem)
            elif entry.is_dir() and not is_tool_dir(entry.name, entry.path):
                if entry.name in ("tests", "test", "docs"):
                    continue
                if os.path.isfile(os.path.join(entry.path, "__init__.py")):
                    provided.add(entry.name)
                else:
                    with contextlib.suppress(OSError), os.scandir(entry.path) as sub_scan:
                        provided.update(
                            f"{entry.name}.{sub.name}"
                            for sub in sub_scan
                            if sub.is_dir()
                            and os.path.isfile(os.path.join(sub.path, "__init__.py"))
                        )
    return provided


def imported_modules(package: Package) -> set[str]:
    """Every dotted name the package's Python files import (``from a import b`` gives a and a.b)."""
    imported: set[str] = set()
    for directory, dirnames, filenames in os.walk(package.path):
        dirnames[:] = [d for d in dirnames if not is_tool_dir(d, os.path.join(directory, d))]
        for filename in filenames:
            if not filename.endswith(".py"):
                continue
            try:
                with open(os.path.join(directory, filename), "rb") as f:
                    tree = ast.parse(f.read())
            except (OSError, SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    imported.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    imported.add(node.module)
                    imported.update(f"{node.module}.{alias.name}" for alias in node.names)
    return imported


@dataclass(frozen=True)
class DependencyGraph:
    """For each package, the sibling packages it uses directly; ``scanned`` are the packages
    that declare nothing, whose imports were read instead (so their code changes can change it)."""

    uses: dict[Package, set[Package]]
    scanned: frozenset[Package]


def dependency_graph(packages: Sequence[Package]) -> DependencyGraph:
    """Declared requirements decide; a package that declares no requirement at all is scanned
    for imports of the other packages' modules instead."""
    metadata = {p: read_metadata(p) for p in packages}
    by_name = {m.name: p for p, m in metadata.items()}
    uses: dict[Package, set[Package]] = {}
    provided: dict[Package, set[str]] | None = None
    for package in packages:
        declared = metadata[package].requires
        if declared:
            uses[package] = {by_name[n] for n in declared if n in by_name} - {package}
            continue
        if provided is None:
            provided = {p: provided_modules(p) for p in packages}
        imported = imported_modules(package)
        uses[package] = {
            other
            for other in packages
            if other != package
            and any(i == m or i.startswith(m + ".") for m in provided[other] for i in imported)
        }
    return DependencyGraph(uses, frozenset(p for p in packages if not metadata[p].requires))


# ---------------------------------------------------------------------------------------------
# Filter events
# ---------------------------------------------------------------------------------------------

# Directories whose contents are written by tools, test runs and editors, never by the user.
IGNORED_DIR_NAMES = frozenset(
    {
        ".git", ".hg", ".svn", "__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache",
        ".ruff_cache", ".tox", ".nox", ".venv", "venv", "node_modules", "build", "dist", ".eggs",
        "site-packages", ".idea", ".vscode", ".cache", "htmlcov", ".ipynb_checkpoints",
    }
)  # fmt: skip
IGNORED_DIR_GLOBS = ("*.egg-info", "pytest-cache-files-*")  # pytest renames the latter into place

# Files written beside the real ones: by test runs and coverage, and by editors while saving.
IGNORED_FILE_GLOBS = (
    "*.py[cod]", ".coverage", ".coverage.*", "coverage.xml", "nosetests.xml", ".noseids",
    ".*.sw[a-p]", "*.swp", "*.swx", "*~",            # vim swap and backup, emacs backup
    "#*#", ".#*",                                     # emacs autosave and lock
    "*___jb_tmp___", "*___jb_old___",                 # JetBrains safe write
    ".goutputstream-*", "*.kate-swp", ".~lock.*#",    # GTK atomic save, kate, LibreOffice
    "*.crswap", ".DS_Store", "*.tmp",
)  # fmt: skip


def is_vim_probe(name: str) -> bool:
    """vim checks it may write a directory by creating 4913 (then 5036, 5159, ... if taken)."""
    return name.isdigit() and int(name) >= 4913 and (int(name) - 4913) % 123 == 0


def glob_matches(rel: str, glob: str) -> bool:
    """A glob with a slash matches the path from the root; one without matches any component."""
    if "/" in glob.strip("/"):
        pattern = glob.strip("/")
        return fnmatch.fnmatchcase(rel, pattern) or fnmatch.fnmatchcase(rel, pattern + "/*")
    return any(fnmatch.fnmatchcase(part, glob.rstrip("/")) for part in rel.split("/"))


class IgnoreRules:
    """Decides which paths never trigger a run: built-in rules, ``--ignore`` globs, .gitignore.

    The built-in and user rules are cheap and run in watchdog's thread on every event; asking
    git costs a subprocess, so the main loop asks it once per burst.
    """

    def __init__(self, root: Path, user_globs: Sequence[str] = ()) -> None:
        self.root = str(root)
        self.user_globs = tuple(user_globs)
        self.use_git = is_git_work_tree(root)
        self._venv_dirs: set[str] = set()

    def relative(self, path: str) -> str | None:
        if path == self.root:
            return ""
        if not path.startswith(self.root + os.sep):
            return None
        return path[len(self.root) + 1 :].replace(os.sep, "/")

    def is_ignored_dir_name(self, name: str, path: str) -> bool:
        if name in IGNORED_DIR_NAMES or any(
            fnmatch.fnmatchcase(name, g) for g in IGNORED_DIR_GLOBS
        ):
            return True
        if path in self._venv_dirs:
            return True
        if is_virtualenv(path):  # only a yes is kept: pyvenv.cfg comes after its directory
            self._venv_dirs.add(path)
            return True
        return False

    def is_ignored(self, path: str, is_dir: bool = False) -> bool:
        """Built-in and ``--ignore`` rules: cheap enough for every event."""
        rel = self.relative(path)
        if rel is None:
            return True
        if rel == "":
            return False
        parts = rel.split("/")
        directory = self.root
        for part in parts[:-1] if not is_dir else parts:
            directory = os.path.join(directory, part)
            if self.is_ignored_dir_name(part, directory):
                return True
        name = parts[-1]
        if not is_dir and (
            is_vim_probe(name) or any(fnmatch.fnmatchcase(name, g) for g in IGNORED_FILE_GLOBS)
        ):
            return True
        return any(glob_matches(rel, g) for g in self.user_globs)

    def git_ignored(self, paths: Iterable[str]) -> set[str]:
        """Which of ``paths`` the repository's .gitignore files exclude: one call to git."""
        paths = list(paths)
        if not self.use_git or not paths:
            return set()
        listed = run_git(
            self.root, "check-ignore", "-z", "--stdin", stdin=b"\0".join(map(os.fsencode, paths))
        )  # exit 1 means none is ignored, and lists nothing
        return {os.fsdecode(p) for p in (listed or b"").split(b"\0") if p}

    def git_ignored_dirs(self) -> set[str]:
        """Directories .gitignore excludes as a whole, so no watch is spent below them."""
        if not self.use_git:
            return set()
        args = ("ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory")
        listed = run_git(self.root, *args) or b""
        names = (os.fsdecode(p) for p in listed.split(b"\0") if p.endswith(b"/"))
        return {os.path.normpath(os.path.join(self.root, n)) for n in names}


def run_git(root: str, *args: str, stdin: bytes = b"") -> bytes | None:
    """What git printed, run in ``root``; None when git is missing, fails or hangs."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, input=stdin, capture_output=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode in (0, 1) else None


def is_git_work_tree(root: Path) -> bool:
    return (run_git(str(root), "rev-parse", "--is-inside-work-tree") or b"").strip() == b"true"


# ---------------------------------------------------------------------------------------------
# Collect changes
# ---------------------------------------------------------------------------------------------


class ChangeSet:
    """The one hand-off between watchdog's threads (and the key reader) and the main loop.

    Holds each changed path with the time it last changed, and the keys pressed since the main
    loop last looked.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._paths: dict[str, float] = {}
        self._created: set[str] = set()
        self._keys: list[str] = []
        self._last = 0.0

    def add(self, paths: Iterable[str], created: bool = False) -> None:
        now = time.monotonic()
        with self._cond:
            for path in paths:
                if created and path not in self._paths:
                    self._created.add(path)
                self._paths[path] = now
            self._last = now
            self._cond.notify_all()

    def remove(self, path: str) -> None:
        """A path gone again: when it was created since the main loop last looked (an editor's
        temporary file, renamed or deleted), it was never a change; otherwise its loss is one."""
        now = time.monotonic()
        with self._cond:
            if path in self._created:
                inside = [p for p in self._paths if p.startswith(path + os.sep)]
                for gone in [path, *inside]:
                    self._created.discard(gone)
                    self._paths.pop(gone, None)
            else:
                self._paths[path] = now
            self._last = now
            self._cond.notify_all()

    def press(self, key: str) -> None:
        with self._cond:
            self._keys.append(key)
            self._cond.notify_all()

    def pending(self) -> bool:
        with self._cond:
            return bool(self._paths or self._keys)

    def peek(self) -> tuple[dict[str, float], list[str]]:
        with self._cond:
            return dict(self._paths), list(self._keys)

    def take(self) -> tuple[dict[str, float], list[str]]:
        with self._cond:
            paths, keys = self._paths, self._keys
            self._paths, self._keys, self._created = {}, [], set()
            return paths, keys

    def wait_settled(self, debounce: float, timeout: float | None = None) -> None:
        """Block until a key is pressed, or paths changed and then stayed quiet for ``debounce``,
        or ``timeout`` passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                if self._keys or (deadline is not None and now >= deadline):
                    return
                # A bounded wait keeps Ctrl+C prompt where lock waits cannot be interrupted.
                wait = 1.0 if deadline is None else deadline - now
                if self._paths:
                    quiet_for = now - self._last
                    if quiet_for >= debounce:
                        return
                    wait = min(wait, debounce - quiet_for)
                self._cond.wait(wait)


class ChangeHandler(FileSystemEventHandler):
    """Turns watchdog events into changed paths.  It runs in watchdog's thread, so it only
    filters (cheaply) and hands off; tests never run here."""

    def __init__(
        self,
        rules: IgnoreRules,
        changes: ChangeSet,
        on_directory: Callable[[str, str], None] = lambda kind, path: None,
    ) -> None:
        super().__init__()
        self.rules = rules
        self.changes = changes
        self.on_directory = on_directory

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return
        if event.is_directory and kind not in ("created", "deleted", "moved"):
            return  # a directory's own modified/attrib events repeat its children's
        paths = [os.fsdecode(event.src_path)]
        if kind == "moved" and event.dest_path:
            paths.append(os.fsdecode(event.dest_path))
        if event.is_directory:
            if kind == "moved":
                self.on_directory("deleted", paths[0])
                self.on_directory("created", paths[1])
            else:
                self.on_directory(kind, paths[0])
        relevant = [p for p in paths if not self.rules.is_ignored(p, event.is_directory)]
        if kind in ("deleted", "moved") and paths[0] in relevant:
            self.changes.remove(paths[0])
            relevant = relevant[1:]
        if relevant:
            self.changes.add(relevant, created=kind in ("created", "moved"))


@dataclass(frozen=True)
class WatchPlan:
    """Directories to watch: recursively where no heavy ignored tree lies below, else one level."""

    recursive: tuple[str, ...]
    flat: tuple[str, ...]
    watches: int
    unreadable: tuple[str, ...]


def plan_watches(root: str, ignored_dir: Callable[[str, str], bool]) -> WatchPlan:
    """Spend no watches in ignored trees: a recursive watch cannot exclude a subtree, so a
    directory above an ignored tree (a .venv, node_modules, .git, even while still empty) gets a
    one-level watch and each of its other subdirectories is planned the same way.  A flat
    __pycache__ or egg-info is cheaper to watch than to split around."""

    @dataclass
    class Node:
        path: str
        children: list[Node] = field(default_factory=list)
        clean: int = 1  # directories outside ignored trees, this one included
        leaves: int = 0  # ignored directories with no subdirectory (cheap to watch)
        heavy: bool = False  # an ignored directory with subdirectories lies below

    unreadable: list[str] = []

    def subdirectories(path: str) -> list[os.DirEntry[str]] | None:
        try:
            with os.scandir(path) as scan:
                return [e for e in scan if e.is_dir(follow_symlinks=False)]
        except OSError:
            return None

    def scan(path: str) -> Node | None:
        entries = subdirectories(path)
        if entries is None:
            unreadable.append(path)
            return None
        node = Node(path)
        for entry in entries:
            if ignored_dir(entry.name, entry.path):
                cheap = entry.name == "__pycache__" or entry.name.endswith(".egg-info")
                if cheap and not subdirectories(entry.path):
                    node.leaves += 1
                else:
                    node.heavy = True
                continue
            child = scan(entry.path)
            if child is not None:
                node.children.append(child)
                node.clean += child.clean
                node.leaves += child.leaves
                node.heavy = node.heavy or child.heavy
        return node

    recursive: list[str] = []
    flat: list[str] = []
    watches = 0

    def place(node: Node) -> None:
        nonlocal watches
        if not node.heavy and node.leaves <= node.clean:
            recursive.append(node.path)
            watches += node.clean + node.leaves
            return
        flat.append(node.path)
        watches += 1
        for child in node.children:
            place(child)

    top = scan(root)
    if top is not None:
        place(top)
    return WatchPlan(tuple(recursive), tuple(flat), watches, tuple(unreadable))


def inotify_watch_limit() -> int | None:
    """The per-user inotify watch limit, where this is Linux (AUTOTEST_INOTIFY_LIMIT stands in
    for it in tests, which cannot lower the real one)."""
    override = os.environ.get("AUTOTEST_INOTIFY_LIMIT")
    if override and override.isdigit():
        return int(override)
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


class Watcher:
    """Owns the watchdog observer: which directories get watches, and the polling fallback."""

    def __init__(
        self,
        root: Path,
        rules: IgnoreRules,
        changes: ChangeSet,
        poll: bool,
        warn: Callable[[str], None],
        unreadable: Callable[[str], None],
    ) -> None:
        self.root = str(root)
        self.unreadable = unreadable
        self.rules = rules
        self.changes = changes
        self.poll = poll
        self.warn = warn
        self.handler = ChangeHandler(rules, changes, self.directory_event)
        self.git_dirs: set[str] = set()
        self.flat: set[str] = set()
        self.scheduled: dict[str, Any] = {}
        self.observer: Any = None
        self._lock = threading.Lock()

    def ignored_dir(self, name: str, path: str) -> bool:
        rel = self.rules.relative(path) or ""
        return (
            self.rules.is_ignored_dir_name(name, path)
            or path in self.git_dirs
            or any(glob_matches(rel, g) for g in self.rules.user_globs)
        )

    def start(self) -> str:
        """Start watching; says how (``inotify, 42 watches`` or ``polling``)."""
        self.git_dirs = self.rules.git_ignored_dirs()
        plan = plan_watches(self.root, self.ignored_dir)
        for path in plan.unreadable:
            self.unreadable(path)
        limit = inotify_watch_limit() if sys.platform.startswith("linux") else None
        if not self.poll and limit is not None and plan.watches > limit:
            self.warn(
                f"this tree needs {plan.watches} inotify watches but the limit is {limit}; "
                "polling instead. To watch natively, raise it: "
                "sudo sysctl fs.inotify.max_user_watches=524288"
            )
            self.poll = True
        try:
            self._start_observer(plan)
        except OSError as exc:
            if self.poll or exc.errno not in (errno.ENOSPC, errno.EMFILE):
                raise
            self.stop()
            self.warn(
                f"the OS refused more watches ({exc.strerror}); polling instead. "
                "Raise the limit: sudo sysctl fs.inotify.max_user_watches=524288 "
                "fs.inotify.max_user_instances=1024"
            )
            self.poll = True
            self._start_observer(plan)
        if self.poll:
            return "polling every second"
        kind = type(self.observer).__name__.replace("Observer", "").lower() or "native"
        return f"{kind}, {plan.watches} watches"

    def _start_observer(self, plan: WatchPlan) -> None:
        self.observer = PollingObserver(timeout=1.0) if self.poll else Observer(timeout=1.0)
        self.scheduled = {}
        self.flat = set(plan.flat)
        for path in plan.recursive:
            self._schedule(path, recursive=True)
        for path in plan.flat:
            self._schedule(path, recursive=False)
        self.observer.daemon = True
        self.observer.start()

    def _schedule(self, path: str, recursive: bool) -> None:
        self.scheduled[path] = self.observer.schedule(self.handler, path, recursive=recursive)

    def directory_event(self, kind: str, path: str) -> None:
        """Keep watches in step with the tree: a directory created below a one-level watch gets
        its own, and an ignored one (a new .venv) created inside a recursive watch splits it, so
        watchdog does not spend watches below it."""
        with self._lock:
            if kind == "deleted":
                for watched in [
                    p for p in self.scheduled if p == path or p.startswith(path + os.sep)
                ]:
                    self._unschedule(watched)
            elif kind == "created" and os.path.isdir(path):
                name, parent = os.path.basename(path), os.path.dirname(path)
                if not self.ignored_dir(name, path):
                    if parent in self.flat:
                        self._schedule_plan(path)
                    return
                for watched in list(self.scheduled):
                    if watched not in self.flat and path.startswith(watched + os.sep):
                        self._unschedule(watched)
                        self._schedule_plan(watched)

    def _schedule_plan(self, path: str) -> None:
        plan = plan_watches(path, self.ignored_dir)
        try:
            for p in plan.recursive:
                self._schedule(p, recursive=True)
            for p in plan.flat:
                self._schedule(p, recursive=False)
        except OSError as exc:
            self.warn(f"cannot watch {path}: {exc.strerror}")
        self.flat.update(plan.flat)

    def _unschedule(self, path: str) -> None:
        with contextlib.suppress(Exception):
            self.observer.unschedule(self.scheduled.pop(path))
        self.flat.discard(path)

    def stop(self) -> None:
        if self.observer is not None:
            with contextlib.suppress(Exception):
                self.observer.stop()
                self.observer.join(timeout=1.0)


# ---------------------------------------------------------------------------------------------
# Order the run
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One package in a cycle's order, with the reason it stands there."""

    package: Package
    reason: str


def cycle_order(
    packages: Sequence[Package],
    changed: Mapping[Package, float],
    failed: Iterable[Package],
    uses: Mapping[Package, set[Package]],
) -> list[Step]:
    """Changed packages first (most recent first), then those that failed last time, then the
    dependents of the changed ones (nearest first), then all the rest in a stable order."""
    order: list[Step] = []
    seen: set[Package] = set()

    def add(package: Package, reason: str) -> None:
        if package not in seen and package in known:
            seen.add(package)
            order.append(Step(package, reason))

    known = set(packages)
    for package in sorted(changed, key=lambda p: (-changed[p], p.rel)):
        add(package, "changed")
    for package in sorted(failed, key=lambda p: p.rel):
        add(package, "failed last time")
    users: dict[Package, list[Package]] = {p: [] for p in packages}
    for package in packages:
        for used in sorted(uses.get(package, ()), key=lambda p: p.rel):
            users.setdefault(used, []).append(package)
    frontier = sorted(changed, key=lambda p: (-changed[p], p.rel))
    reached = set(frontier)
    while frontier:
        following: list[Package] = []
        for package in frontier:
            for user in users.get(package, []):
                if user not in reached:
                    reached.add(user)
                    add(user, f"uses {package.rel}")
                    following.append(user)
        frontier = following
    for package in packages:
        add(package, "")
    return order


# ---------------------------------------------------------------------------------------------
# Run one package
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Runner:
    """How to run one package's tests, and how to read the exit status."""

    name: str
    argv: tuple[str, ...]
    module: str | None = None  # must be importable by this interpreter
    install: str = ""  # what to pip install when it is not
    no_tests_exit: frozenset[int] = frozenset()

    def command(self, package: Package, extra: Sequence[str]) -> list[str]:
        return [arg.replace("{package}", str(package.path)) for arg in self.argv] + list(extra)

    def verdict(self, code: int, output: str) -> str:
        if code in self.no_tests_exit:
            return NO_TESTS
        if code == 0:
            ran_none = self.module is not None and re.search(r"^Ran 0 tests? in", output, re.M)
            return NO_TESTS if ran_none else OK
        return FAILED


OK, FAILED, NO_TESTS = "ok", "FAILED", "no tests"

BUILTIN_RUNNERS = {
    "nose": Runner("nose", (sys.executable, "-m", "nose"), "nose", "pynose"),
    "nose2": Runner("nose2", (sys.executable, "-m", "nose2"), "nose2", "nose2", frozenset({5})),
    "pytest": Runner(
        "pytest", (sys.executable, "-m", "pytest"), "pytest", "pytest", frozenset({5})
    ),
    "unittest": Runner(
        "unittest",
        (sys.executable, "-m", "unittest", "discover", "-t", "."),
        "unittest",
        "",
        frozenset({5}),
    ),
}


def make_runner(spec: str) -> Runner:
    """A built-in runner by name, or a command line with ``{package}`` split like a shell would
    (but never run by one)."""
    if spec in BUILTIN_RUNNERS:
        return BUILTIN_RUNNERS[spec]
    try:
        argv = shlex.split(spec)
    except ValueError as exc:
        raise UsageError(f"--runner {spec!r}: {exc}") from None
    if not argv:
        raise UsageError("--runner: empty command")
    if not any("{package}" in arg for arg in argv) and not shutil.which(argv[0]):
        raise UsageError(
            f"--runner {spec!r}: not one of {', '.join(BUILTIN_RUNNERS)} and not a command "
            "containing {package}"
        )
    return Runner("command", tuple(argv))


def check_runner(runner: Runner) -> None:
    """Fail early, with what to install, when the runner cannot start at all."""
    if runner.module is None:
        if shutil.which(runner.argv[0]) is None and not os.path.isfile(runner.argv[0]):
            raise UsageError(f"runner command not found: {runner.argv[0]}")
        return
    import importlib.util

    if importlib.util.find_spec(runner.module) is None:
        raise UsageError(
            f"{runner.name} is not installed for {sys.executable}; "
            f"install it: {sys.executable} -m pip install {runner.install}"
        )
    if runner.name == "nose" and sys.version_info >= (3, 10):
        from importlib import metadata

        with contextlib.suppress(metadata.PackageNotFoundError):
            if metadata.version("nose").startswith("1.3."):
                raise UsageError(
                    "the classic nose 1.3 does not run on Python 3.10+; replace it: "
                    f"{sys.executable} -m pip uninstall -y nose && "
                    f"{sys.executable} -m pip install pynose"
                )


@dataclass(frozen=True)
class RunResult:
    package: Package
    verdict: str
    seconds: float
    output: str
    note: str = ""
    warm: bool = False  # forked from the warm interpreter

    @property
    def passed(self) -> bool:
        return self.verdict != FAILED


def run_environment(runner: Runner, pycache: str) -> dict[str, str]:
    """The test process's environment: nose captures prints like classic nose did, and bytecode
    goes to a cache outside the tree (so runs write nothing that could look like a change)."""
    env = dict(os.environ)
    if runner.name == "nose":
        env.setdefault("NOSE_CAPTURE", "1")
    if not env.get("PYTHONDONTWRITEBYTECODE"):
        env.setdefault("PYTHONPYCACHEPREFIX", pycache)
    return env


def pycache_dir() -> str:
    """One bytecode cache for every repository (the prefix mirrors absolute paths), per user."""
    user = f"-{os.getuid()}" if hasattr(os, "getuid") else ""
    return os.path.join(tempfile.gettempdir(), f"autotest-pycache{user}")


def forget_bytecode(paths: Iterable[str], prefix: str | None) -> None:
    """Delete the cached bytecode of changed sources.  Python trusts a cache whose recorded
    mtime (whole seconds) and size match, so a second save of the same size within a second
    would otherwise run the old code."""
    tag = sys.implementation.cache_tag
    for path in paths:
        if not path.endswith(".py") or tag is None:
            continue
        folder, name = os.path.split(path)
        stem = name[:-3]
        places = [os.path.join(folder, "__pycache__")]
        if prefix:
            places.append(os.path.join(prefix, os.path.splitdrive(folder)[1].lstrip(os.sep)))
        for place in places:
            for suffix in (".pyc", ".opt-1.pyc", ".opt-2.pyc"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(place, f"{stem}.{tag}{suffix}"))


def own_process_group() -> dict[str, Any]:
    """Popen arguments that give the run its own process group, so its whole tree can be killed
    and a Ctrl+C in the terminal reaches autotest alone."""
    if POSIX:
        return {"start_new_session": True}
    return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}


def kill_tree(pid: int) -> None:
    """Kill a run's process and everything it started."""
    if POSIX:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        return
    try:
        done = subprocess.run(
            ["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True, timeout=5
        )
        if done.returncode == 0:
            return
    except (OSError, subprocess.SubprocessError):
        pass
    with contextlib.suppress(OSError):  # no taskkill: the process itself, at least
        os.kill(pid, signal.SIGTERM)


class Run:
    """One package's test process.  Output goes to an anonymous file, not a pipe, so a run that
    prints megabytes can never block, and stdout and stderr stay interleaved in order."""

    def __init__(
        self, package: Package, command: Sequence[str], env: Mapping[str, str], runner: Runner,
        timeout: float | None, launcher: WarmLauncher | None = None,
    ) -> None:  # fmt: skip
        self.package = package
        self.runner = runner
        self.timeout = timeout
        self.out: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed by _result)
        self.started = time.monotonic()
        self.proc: subprocess.Popen[bytes] | WarmProcess | None = None
        self.error = ""
        try:
            if launcher is not None:
                self.proc = launcher.launch(package, command, env, self.out)
            if self.proc is None:
                self.proc = subprocess.Popen(
                    list(command), cwd=package.path, env=dict(env), stdin=subprocess.DEVNULL,
                    stdout=self.out, stderr=subprocess.STDOUT, **own_process_group(),
                )  # fmt: skip
        except OSError as exc:
            self.error = f"autotest: cannot start {command[0]}: {exc.strerror or exc}\n"

    def poll(self) -> RunResult | None:
        """The result once the process has ended (or was killed for its timeout), else None."""
        if self.proc is None:
            return self._result(FAILED, self.error)
        code = self.proc.poll()
        if code is None:
            if self.timeout is not None and time.monotonic() - self.started > self.timeout:
                self.kill()
                killed = f"\nautotest: timed out after {self.timeout:g}s; killed\n"
                return self._result(FAILED, self._output() + killed, "timed out")
            return None
        if POSIX:  # what the tests started and left behind goes with them (its group outlives it)
            kill_tree(self.proc.pid)
        output = self._output()
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            return self._result(FAILED, output + f"\nautotest: killed by {name}\n", name)
        verdict = self.runner.verdict(code, output)
        note = "" if code in (0, 1) or verdict != FAILED else f"exit {code}"
        return self._result(verdict, output, note)

    def _output(self) -> str:
        self.out.seek(0)
        return self.out.read().decode("utf-8", "replace")

    def _result(self, verdict: str, text: str, note: str = "") -> RunResult:
        self.out.close()
        seconds = time.monotonic() - self.started
        warm = isinstance(self.proc, WarmProcess)
        return RunResult(self.package, verdict, seconds, text, note, warm)

    def kill(self) -> None:
        if self.proc is not None:
            kill_tree(self.proc.pid)
            with contextlib.suppress(Exception):
                self.proc.wait()


# The warm runner: a pre-started interpreter that has imported the runner (and nothing from the
# repository) forks a fresh child for each run, saving the interpreter and import start-up.

WARM_SERVER = r"""
import os, socket, sys, json, signal, runpy
import importlib
module = sys.argv[1]
importlib.import_module(module)
PRELOAD = {
    "nose": ("nose.core", "nose.loader", "nose.plugins.manager", "nose.plugins.builtin"),
    "pytest": ("_pytest.config", "_pytest.main", "_pytest.python", "_pytest.runner",
               "_pytest.terminal", "_pytest.assertion", "_pytest.fixtures"),
    "nose2": ("nose2.main", "nose2.plugins.loader.discovery", "nose2.plugins.result"),
}
for name in PRELOAD.get(module, ()):
    try: importlib.import_module(name)
    except Exception: pass
sock = socket.socket(fileno=int(sys.argv[2]))
sock.sendall(b"ready\n")
def reap(*_):
    while True:
        try: pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError: return
        if pid == 0: return
        code = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else (
            -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
        try: sock.sendall(("exit %d %d\n" % (pid, code)).encode())
        except OSError: os._exit(0)
signal.signal(signal.SIGCHLD, reap)
buf, fds = b"", []
while True:
    try: msg, more_fds, _, _ = socket.recv_fds(sock, 1 << 20, 1)
    except InterruptedError: continue
    if not msg: os._exit(0)
    buf += msg
    fds += more_fds
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        req = json.loads(line)
        out = fds.pop(0)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.setsid()
            sock.close()
            os.dup2(out, 1); os.dup2(out, 2); os.close(out)
            null = os.open(os.devnull, os.O_RDONLY); os.dup2(null, 0); os.close(null)
            os.chdir(req["cwd"])
            os.environ.clear(); os.environ.update(req["env"])
            sys.argv = [module] + req["args"]
            sys.path[0] = req["cwd"]
            code = 0
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:
                import traceback; traceback.print_exc(); code = 1
            try: sys.stdout.flush(); sys.stderr.flush()
            except Exception: pass
            os._exit(code)
        os.close(out)
        sock.sendall(("pid %d\n" % pid).encode())
"""


def installed_stamp() -> tuple[int, ...]:
    """When what is installed for this interpreter last changed: ``pip install`` adds or
    removes entries in site-packages, which changes the directory's mtime."""
    import site

    places = [*getattr(site, "getsitepackages", list)(), site.getusersitepackages()]
    return tuple(os.stat(p).st_mtime_ns if os.path.isdir(p) else 0 for p in places)


class WarmProcess:
    """A forked run seen through the warm server: enough of Popen's face for ``Run``."""

    def __init__(self, launcher: WarmLauncher, pid: int) -> None:
        self.launcher = launcher
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.launcher.exit_code(self.pid, block=False)
        return self.returncode

    def wait(self) -> int:
        while self.returncode is None:
            self.returncode = self.launcher.exit_code(self.pid, block=True)
        return self.returncode


class WarmLauncher:
    """Starts runs by forking them from a warm interpreter.  Until that interpreter is ready,
    where there is no fork, or when the runner is not a Python module, ``launch`` returns None
    and the run starts cold."""

    def __init__(self, runner: Runner, env: Mapping[str, str]) -> None:
        self.runner = runner
        self.env = dict(env)
        self.exits: dict[int, int] = {}
        self.running: set[int] = set()
        self.buffer = b""
        self.ready = False
        self.sock: socket.socket | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.installed = installed_stamp()
        if POSIX and hasattr(os, "fork") and hasattr(socket, "send_fds") and runner.module:
            self._start_server(runner.module)

    def _start_server(self, module: str) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.server = subprocess.Popen(
                [sys.executable, "-c", WARM_SERVER, module, str(theirs.fileno())],
                pass_fds=[theirs.fileno()], env=self.env, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        except OSError:
            ours.close()
            return
        finally:
            theirs.close()
        self.sock = ours

    def _restart_if_installs_changed(self) -> None:
        """The warm interpreter read the installed .pth files when it started: after a
        ``pip install``, start a new one (once no forked run is in flight)."""
        if self.sock is None or self.running or installed_stamp() == self.installed:
            return
        self.close()
        self.installed = installed_stamp()
        self.buffer, self.ready = b"", False
        assert self.runner.module is not None
        self._start_server(self.runner.module)

    def _read_line(self) -> str:
        assert self.sock is not None
        while b"\n" not in self.buffer:
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError("warm runner ended")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def _handle(self, line: str) -> int | None:
        kind, *numbers = line.split()
        if kind == "ready":
            self.ready = True
        elif kind == "exit":
            self.exits[int(numbers[0])] = int(numbers[1])
            self.running.discard(int(numbers[0]))
        elif kind == "pid":
            pid = int(numbers[0])
            if pid not in self.exits:  # a quick run may have ended before its pid was read
                self.running.add(pid)
            return pid
        return None

    def _is_ready(self) -> bool:
        if not self.ready and self.sock is not None:
            try:
                self.sock.settimeout(0)
                while not self.ready:
                    self._handle(self._read_line())
            except (BlockingIOError, socket.timeout):
                pass
            except OSError:
                self.close()
        return self.ready and self.sock is not None

    def launch(
        self, package: Package, command: Sequence[str], env: Mapping[str, str], out: IO[bytes]
    ) -> WarmProcess | None:
        self._restart_if_installs_changed()
        if list(command[:3]) != list(self.runner.argv[:3]) or not self._is_ready():
            return None
        request = json.dumps(
            {"cwd": str(package.path), "env": dict(env), "args": list(command[3:])}
        )
        assert self.sock is not None
        try:
            socket.send_fds(self.sock, [request.encode() + b"\n"], [out.fileno()])
            self.sock.settimeout(10)
            while True:
                pid = self._handle(self._read_line())
                if pid is not None:
                    return WarmProcess(self, pid)
        except OSError:
            self.close()
            return None

    def exit_code(self, pid: int, block: bool) -> int | None:
        if pid in self.exits:
            return self.exits.pop(pid)
        if self.sock is None:
            return -signal.SIGKILL
        try:
            self.sock.settimeout(0.05 if block else 0)
            while True:
                self._handle(self._read_line())
                if pid in self.exits:
                    return self.exits.pop(pid)
        except (BlockingIOError, socket.timeout):
            return None
        except OSError:
            self.close()
            return -signal.SIGKILL

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.server is not None:
            kill_tree(self.server.pid)
            with contextlib.suppress(Exception):
                self.server.wait(timeout=2)
            self.server = None


# A cycle: packages in order, up to --jobs at once, until the first failure.

POLL_INTERVAL = 0.01  # how often running packages are checked; well below what a person notices


@dataclass
class CycleOutcome:
    """What one cycle did: the verdicts it reported, in order, and why it ended."""

    steps: list[Step]
    results: list[RunResult] = field(default_factory=list)
    failure: RunResult | None = None
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.failure is None and not self.interrupted

    @property
    def not_run(self) -> int:
        return len(self.steps) - len(self.results) - (self.failure is not None)


def run_cycle(
    steps: Sequence[Step],
    start: Callable[[Package], Run],
    jobs: int,
    changed_meanwhile: Callable[[], bool],
    restart: bool,
    on_result: Callable[[RunResult], None],
) -> CycleOutcome:
    """Run packages in order, up to ``jobs`` at once, reporting verdicts in order.

    The first failure cancels every other running package.  A change arriving meanwhile stops
    the cycle once the running packages finish (with ``restart``, at once) so that a new cycle
    can start with it.
    """
    outcome = CycleOutcome(list(steps))
    started = time.monotonic()
    queue = list(enumerate(steps))
    running: dict[int, Run] = {}
    done: dict[int, RunResult] = {}
    next_report = 0
    try:
        while queue or running:
            if changed_meanwhile():
                outcome.interrupted = True
                queue.clear()
                if restart:
                    break
            while queue and len(running) < jobs:
                index, step = queue.pop(0)
                running[index] = start(step.package)
            finished = {i: r for i, r in ((i, run.poll()) for i, run in running.items()) if r}
            for index, result in finished.items():
                del running[index]
                done[index] = result
            failed = [i for i in sorted(finished) if not finished[i].passed]
            if failed:
                for run in running.values():
                    run.kill()
                running.clear()
                first = failed[0]
                for index in sorted(i for i in done if next_report <= i < first):
                    outcome.results.append(done[index])
                    on_result(done[index])
                outcome.failure = done[first]
                on_result(done[first])
                break
            while next_report in done:
                outcome.results.append(done[next_report])
                on_result(done[next_report])
                next_report += 1
            if not finished and running:
                time.sleep(POLL_INTERVAL)
    finally:
        for run in running.values():
            run.kill()
    outcome.seconds = time.monotonic() - started
    return outcome


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def use_color(stream: IO[str]) -> bool:
    """NO_COLOR turns colours off, FORCE_COLOR on; otherwise only on a terminal."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return False
    return POSIX or "WT_SESSION" in os.environ or "TERM" in os.environ


STYLES = {"ok": "32", "fail": "1;31", "dim": "2", "bold": "1", "warn": "33"}


class Reporter:
    """Everything the user reads.  One line per package, the failing run's output, one summary."""

    def __init__(self, stream: IO[str], color: bool, width: int = 0) -> None:
        self.stream = stream
        self.color = color
        self.width = width

    def paint(self, text: str, style: str) -> str:
        return f"\033[{STYLES[style]}m{text}\033[0m" if self.color else text

    def say(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def warn(self, text: str) -> None:
        self.say(self.paint(f"autotest: {text}", "warn"))

    def trigger(self, text: str) -> None:
        self.say(self.paint(text, "bold"))

    def explain(self, steps: Sequence[Step]) -> None:
        for number, step in enumerate(steps, 1):
            reason = f"  ({step.reason})" if step.reason else ""
            self.say(self.paint(f"  {number:>2}. {step.package.rel}{reason}", "dim"))

    def verdict(self, result: RunResult) -> None:
        style = {OK: "ok", FAILED: "fail", NO_TESTS: "dim"}[result.verdict]
        verdict = result.verdict + (f" ({result.note})" if result.note else "")
        self.say(
            f"{result.package.rel:<{self.width}}  {self.paint(f'{verdict:<8}', style)}  "
            + self.paint(f"{result.seconds:.2f}s", "dim")
        )
        if result.verdict == FAILED:
            output = result.output if result.output.endswith("\n") else result.output + "\n"
            self.stream.write(output)
            self.stream.flush()

    def summary(self, outcome: CycleOutcome) -> None:
        took = self.paint(f"in {outcome.seconds:.2f}s", "dim")
        passed = len(outcome.results)
        if outcome.failure is not None:
            rest = f"{passed} passed, {outcome.not_run} not run"
            self.say(
                f"{self.paint(f'{outcome.failure.package.rel} FAILED', 'fail')}; {rest} {took}"
            )
        elif outcome.interrupted:
            self.say(self.paint(f"changed during the run: starting over ({passed} done)", "warn"))
        else:
            everything = f"all {counted(passed, 'package')} passed"
            self.say(f"{self.paint(everything, 'ok')} {took}")

    def menu(self) -> None:
        self.say(self.paint("[Enter/a] run all  [f] run failed  [q] quit", "dim"))

    def clear(self) -> None:
        if self.stream.isatty() or self.color:
            self.stream.write("\033[2J\033[3J\033[H")
        self.stream.flush()

    def bell(self) -> None:
        self.stream.write("\a")
        self.stream.flush()


def notify(title: str, message: str) -> None:
    """A desktop notification where the system has a way to send one; silently nothing else."""
    if shutil.which("notify-send"):
        command = ["notify-send", title, message]
    elif sys.platform == "darwin" and shutil.which("osascript"):
        script = f"display notification {json.dumps(message)} with title {json.dumps(title)}"
        command = ["osascript", "-e", script]
    else:
        return
    with contextlib.suppress(OSError):
        subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )


def counted(number: int, noun: str) -> str:
    """``1 package``, ``3 packages``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def shown(path: str) -> str:
    """A path as one printable line: newlines, other control characters and bytes that are
    not UTF-8 (surrogate escapes) are escaped."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in path)


def describe_changes(paths: Iterable[str], root: Path, packages: Sequence[Package]) -> str:
    """One short line: the file that changed, or how many changed in how many packages."""
    paths = sorted(paths)
    if len(paths) == 1:
        path = paths[0]
        gone = "" if os.path.lexists(path) else " (removed)"
        return f"changed: {shown(os.path.relpath(path, root))}{gone}"
    owners = {owner_of(p, packages) for p in paths}
    inside = len(owners - {None})
    if not inside:
        return f"changed: {len(paths)} files outside every package"
    text = f"changed: {len(paths)} files in {counted(inside, 'package')}"
    return text + (" and outside them" if None in owners else "")


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    root: Path
    once: bool = False
    changed: tuple[str, ...] = ()
    runner: str = "nose"
    runner_args: tuple[str, ...] = ()
    jobs: int = 1
    timeout: float | None = None
    restart: bool = False
    debounce: float = 0.05
    ignore: tuple[str, ...] = ()
    poll: bool = False
    warm: bool = True
    explain: bool = False
    clear: bool = False
    bell: bool = False
    notify: bool = False


def non_negative(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not number >= 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"expected zero or more seconds, got {value!r}")
    return number


def positive(value: str) -> float:
    number = non_negative(value)
    if number == 0:
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


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def argument_parser() -> ArgumentParser:
    summary = (__doc__ or "").partition("\n\n")[0].split(": ", 1)[-1]
    parser = ArgumentParser(
        prog="autotest.py",
        description=summary[:1].upper() + summary[1:],
        usage="%(prog)s [options] [-- runner arguments]",
        epilog=(
            "While watching on a terminal: Enter or a runs every package, f the failed ones, "
            "q quits. Every option but --root, --once and --changed can also be set under the "
            "same name in [tool.autotest] of the root pyproject.toml or [autotest] of setup.cfg."
        ),
        argument_default=None,
    )
    add = parser.add_argument
    add("--root", metavar="DIR", help="the repository (default: the parent of this file's folder)")
    add(
        "--once",
        action="store_true",
        help="run one cycle and exit: 0 all passed, 1 a package failed",
    )
    add(
        "--changed",
        nargs="+",
        metavar="PATH",
        help="order the first cycle as if these paths had just changed",
    )
    add(
        "--runner",
        metavar="NAME|CMD",
        help="nose (default), nose2, pytest, unittest, or a command with {package}",
    )
    add("-j", "--jobs", type=job_count, metavar="N|auto", help="packages run at once (default 1)")
    add(
        "--timeout",
        type=positive,
        metavar="SECONDS",
        help="kill and fail a package run that takes longer",
    )
    add(
        "--restart",
        action="store_true",
        default=None,
        help="a change during a run kills that run at once",
    )
    add(
        "--debounce",
        type=non_negative,
        metavar="SECONDS",
        help="quiet time that closes a burst of changes (0.05)",
    )
    add(
        "--ignore",
        action="append",
        metavar="GLOB",
        help="never react to matching paths (repeatable)",
    )
    add(
        "--poll",
        action="store_true",
        default=None,
        help="poll the tree instead of OS notifications",
    )
    add("--no-warm", dest="warm", action="store_false", default=None, help="start every run cold")
    add(
        "-v",
        "--explain",
        action="store_true",
        default=None,
        help="say why each package runs where it does",
    )
    add("--clear", action="store_true", default=None, help="clear the screen before each cycle")
    add(
        "--bell",
        action="store_true",
        default=None,
        help="ring the terminal bell when a package fails",
    )
    add(
        "--notify",
        action="store_true",
        default=None,
        help="desktop notification when a cycle fails or recovers",
    )
    return parser


# Settings read from the repository: the same names as the long options.
CONFIG_TYPES: dict[str, Callable[[Any], Any]] = {
    "runner": str,
    "runner-args": lambda v: tuple(shlex.split(v) if isinstance(v, str) else map(str, v)),
    "jobs": lambda v: job_count(str(v)),
    "timeout": lambda v: positive(str(v)),
    "restart": lambda v: config_bool(v),
    "debounce": lambda v: non_negative(str(v)),
    "ignore": lambda v: tuple(v.split() if isinstance(v, str) else map(str, v)),
    "poll": lambda v: config_bool(v),
    "warm": lambda v: config_bool(v),
    "explain": lambda v: config_bool(v),
    "clear": lambda v: config_bool(v),
    "bell": lambda v: config_bool(v),
    "notify": lambda v: config_bool(v),
}


def config_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def read_config(root: Path, warn: Callable[[str], None]) -> dict[str, Any]:
    """``[autotest]`` in setup.cfg, overridden by ``[tool.autotest]`` in pyproject.toml."""
    raw: list[tuple[str, dict[str, Any]]] = []
    setup_cfg = root / "setup.cfg"
    if setup_cfg.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(setup_cfg, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError) as exc:
            raise UsageError(f"{setup_cfg}: {exc}") from None
        if parser.has_section("autotest"):
            raw.append(("setup.cfg [autotest]", dict(parser.items("autotest"))))
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = load_toml(pyproject)
        except (OSError, ValueError) as exc:
            raise UsageError(f"{pyproject}: {exc}") from None
        if data is None:
            if "[tool.autotest]" in pyproject.read_text(encoding="utf-8", errors="replace"):
                warn(
                    "skipped [tool.autotest] in pyproject.toml: "
                    "this Python needs tomli to read it (pip install tomli)"
                )
        elif "autotest" in data.get("tool", {}):
            raw.append(("pyproject.toml [tool.autotest]", data["tool"]["autotest"]))
    settings: dict[str, Any] = {}
    for where, section in raw:
        for key, value in section.items():
            name = key.replace("_", "-")
            if name not in CONFIG_TYPES:
                raise UsageError(
                    f"{where}: unknown setting {key!r} (known: {', '.join(CONFIG_TYPES)})"
                )
            try:
                settings[name] = CONFIG_TYPES[name](value)
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise UsageError(f"{where}: {key}: {exc}") from None
    return settings


def default_root() -> Path:
    return Path(__file__).resolve().parent.parent


def parse_options(argv: Sequence[str], warn: Callable[[str], None]) -> Options:
    """Command line over pyproject.toml over setup.cfg over defaults."""
    argv = list(argv)
    runner_args: tuple[str, ...] | None = None
    if "--" in argv:
        cut = argv.index("--")
        argv, runner_args = argv[:cut], tuple(argv[cut + 1 :])
    args = argument_parser().parse_args(argv)
    root = Path(args.root).expanduser() if args.root else default_root()
    if not root.is_dir():
        raise UsageError(f"root {str(root)!r} is not a directory")
    root = root.resolve()
    given = {k.replace("_", "-"): v for k, v in vars(args).items() if v is not None}
    merged = {**read_config(root, warn), **given}
    if runner_args is not None:
        merged["runner-args"] = runner_args
    return Options(
        root=root,
        once=bool(args.once),
        changed=tuple(args.changed or ()),
        runner=merged.get("runner", "nose"),
        runner_args=tuple(merged.get("runner-args", ())),
        jobs=merged.get("jobs", 1),
        timeout=merged.get("timeout"),
        restart=merged.get("restart", False),
        debounce=merged.get("debounce", 0.05),
        ignore=tuple(merged.get("ignore", ())),
        poll=merged.get("poll", False),
        warm=merged.get("warm", True),
        explain=merged.get("explain", False),
        clear=merged.get("clear", False),
        bell=merged.get("bell", False),
        notify=merged.get("notify", False),
    )


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl+C does."""


def raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


class KeyReader:
    """Single key presses from the terminal, handed to the main loop through the ChangeSet.

    The terminal goes into cbreak mode (keys arrive at once, Ctrl+C still interrupts) and is
    always put back as it was, however autotest ends.
    """

    def __init__(self, changes: ChangeSet) -> None:
        self.changes = changes
        self.saved: Any = None
        self.fd = -1

    def __enter__(self) -> KeyReader:
        if POSIX:
            try:
                import termios
                import tty

                self.fd = sys.stdin.fileno()
                self.saved = termios.tcgetattr(self.fd)
                tty.setcbreak(self.fd)
            except (ImportError, OSError, ValueError):
                self.saved = None
                return self
        elif not self._has_msvcrt():
            return self
        threading.Thread(target=self._read, name="autotest-keys", daemon=True).start()
        return self

    @staticmethod
    def _has_msvcrt() -> bool:
        try:
            import msvcrt  # noqa: F401
        except ImportError:
            return False
        return True

    def _read(self) -> None:
        while True:
            if POSIX:
                try:
                    data = os.read(self.fd, 1)
                except OSError:
                    return
                if not data:
                    return
                key = data.decode("latin-1")
            else:
                import msvcrt

                key = msvcrt.getwch()  # type: ignore[attr-defined,unused-ignore]
            self.changes.press(key)

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import termios

            with contextlib.suppress(OSError):
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


ECHO_GRACE = 0.5  # a run's own writes may still be reported this long after it ends
RUN_KEYS = {"\n": "all", "\r": "all", "a": "all", "A": "all", "f": "failed", "F": "failed"}
QUIT_KEYS = ("q", "Q")


class Session:
    """The main loop, and the only place tests run: fed by the ChangeSet, it orders each cycle,
    runs it and reports it."""

    def __init__(self, options: Options, reporter: Reporter) -> None:
        self.options = options
        self.root = options.root
        self.reporter = reporter
        self.changes = ChangeSet()
        self.runner = make_runner(options.runner)
        check_runner(self.runner)
        self.rules = IgnoreRules(self.root, options.ignore)
        self.packages: list[Package] = []
        self.unreadable: set[str] = set()
        self.graph = DependencyGraph({}, frozenset())
        self.refresh_packages()
        if not self.packages:
            raise UsageError(
                f"no packages under {self.root} (a package is a directory holding "
                f"{', '.join(PACKAGE_MARKERS[:-1])} or {PACKAGE_MARKERS[-1]}); pass --root DIR"
            )
        self.env = run_environment(self.runner, pycache_dir())
        self.launcher: WarmLauncher | None = None
        self.run_times: dict[bool, dict[Package, float]] = {True: {}, False: {}}
        self.warm_judged = False
        self.failed: set[Package] = set()
        self.pending: dict[str, float] = {}
        self.git_verdicts: dict[str, bool] = {}  # path -> ignored by git, during one cycle
        self.keys: list[str] = []
        self.cycle_started: float | None = None
        self.window = (-1.0, -1.0)  # when the last cycle ran
        self.echo_streak = 0
        self.echo_paths: set[str] = set()
        self.run_written: set[str] = set()
        self.last_passed = True

    # Packages and their graph follow the tree.

    def refresh_packages(self, metadata_changed: bool = True) -> None:
        """Rediscover the packages; read the graph again when they or their metadata changed."""
        packages, unreadable = discover_packages(self.root)
        for path in unreadable:
            self.warn_unreadable(path)
        if packages == self.packages and not metadata_changed:
            return
        if self.packages and packages != self.packages:
            added = sorted(p.rel for p in set(packages) - set(self.packages))
            removed = sorted(p.rel for p in set(self.packages) - set(packages))
            words = [f"+{r}" for r in added] + [f"-{r}" for r in removed]
            self.reporter.say(self.reporter.paint(f"packages: {' '.join(words)}", "dim"))
        self.packages = packages
        self.graph = dependency_graph(packages)
        self.reporter.width = max((len(p.rel) for p in packages), default=0)

    def warn_unreadable(self, path: str) -> None:
        if path not in self.unreadable:
            self.unreadable.add(path)
            self.reporter.warn(f"cannot read {path}; skipped, and changes below it are not seen")

    def follow_tree(self, paths: Iterable[str]) -> None:
        """Rediscover packages when directories or metadata came or went; re-read the graph
        when code changed in a package whose imports make its edges."""
        paths = list(paths)
        metadata = any(os.path.basename(p) in PACKAGE_MARKERS for p in paths)
        imports = any(
            p.endswith(".py") and owner_of(p, self.packages) in self.graph.scanned for p in paths
        )
        if metadata or any(not os.path.isfile(p) for p in paths):
            self.refresh_packages(metadata or imports)
            self.failed &= set(self.packages)
        elif imports:
            self.graph = dependency_graph(self.packages)

    # Changes: gathered from the ChangeSet, filtered by git, guarded against loops.

    def collect(self) -> None:
        """Move what the ChangeSet holds into ``pending``, less what git ignores."""
        paths, keys = self.changes.take()
        self.keys.extend(keys)
        fresh = {p: t for p, t in paths.items() if not self.written_by_run(p, t)}
        echoes = sorted(shown(os.path.relpath(p, self.root)) for p in paths if p not in fresh)
        if echoes:
            self.reporter.say(
                self.reporter.paint(
                    f"autotest: not rerun for {', '.join(echoes)}, changed during the run as the "
                    "runs change it (save it again to rerun)",
                    "dim",
                )
            )
        ignored = self.rules.git_ignored(fresh)
        self.pending.update((p, t) for p, t in fresh.items() if p not in ignored)

    def changed_meanwhile(self) -> bool:
        """Whether a change that counts (or q) arrived during this cycle.  It only looks: the
        burst stays in the ChangeSet until it settles, so an editor's save stays one change."""
        paths, keys = self.changes.peek()
        if any(k in QUIT_KEYS for k in keys):
            return True
        unknown = [p for p in paths if p not in self.git_verdicts]
        if unknown:
            ignored = self.rules.git_ignored(unknown)
            self.git_verdicts.update((p, p in ignored) for p in unknown)
        return any(
            not self.git_verdicts[p] and not self.written_by_run(p, t) for p, t in paths.items()
        )

    def written_by_run(self, path: str, at: float) -> bool:
        """A change the loop guard attributes to the test runs: a path it named, changed while
        a cycle ran.  The same path changed while idle was a person's doing, so it counts again."""
        if path not in self.run_written:
            return False
        running = self.cycle_started is not None and at >= self.cycle_started
        if running or self.window[0] <= at <= self.window[1] + ECHO_GRACE:
            return True
        self.run_written.discard(path)
        return False

    def guard_against_loops(self, batch: Mapping[str, float]) -> None:
        """The loop guard: when two cycles in a row were set off by nothing but the same files
        changing during the cycle before, the runs write them.  Say which, and from then on let
        their changes during runs pass, so that this cycle is the last they set off."""
        start, end = self.window
        # Sources and metadata are what people edit, during runs too: never take them for echoes.
        edited = any(p.endswith(".py") or os.path.basename(p) in PACKAGE_MARKERS for p in batch)
        if edited or not all(start <= t <= end + ECHO_GRACE for t in batch.values()):
            self.echo_streak = 0
            return
        repeated = self.echo_streak and set(batch) == self.echo_paths
        self.echo_streak = self.echo_streak + 1 if repeated else 1
        self.echo_paths = set(batch)
        if self.echo_streak < 2:
            return
        self.echo_streak = 0
        self.run_written |= set(batch)
        rels = sorted(shown(os.path.relpath(p, self.root)) for p in batch)
        globs = " ".join(
            f"--ignore {shlex.quote(g)}" for g in sorted({os.path.basename(r) for r in rels})
        )
        self.reporter.warn(
            f"each test run changes {', '.join(rels)}, which sets off the next run; "
            f"not reacting to that during runs any more. To ignore it for good: {globs}"
        )

    # Cycles.

    def start_run(self, package: Package) -> Run:
        command = self.runner.command(package, self.options.runner_args)
        launcher = self.launcher if self.window[0] >= 0 else None  # the first cycle runs cold
        return Run(package, command, self.env, self.runner, self.options.timeout, launcher)

    def record(self, result: RunResult) -> None:
        self.reporter.verdict(result)
        times = self.run_times[result.warm]
        times[result.package] = min(result.seconds, times.get(result.package, result.seconds))

    def judge_warm_runner(self) -> None:
        """Keep the warm runner only if it is faster: once three packages (or all) have run both
        ways, compare their best warm runs with their best cold ones, and decide for good."""
        if self.launcher is None or self.warm_judged:
            return
        both = [p for p in self.run_times[True] if p in self.run_times[False]]
        if len(both) < min(3, len(self.packages)):
            return
        self.warm_judged = True
        warm = sum(self.run_times[True][p] for p in both)
        cold = sum(self.run_times[False][p] for p in both)
        if warm >= cold:
            self.launcher.close()
            self.launcher = None
            self.reporter.say(
                self.reporter.paint(
                    f"autotest: forked runs were no faster than cold ones ({warm:.2f}s against "
                    f"{cold:.2f}s); starting every run cold from now on",
                    "dim",
                )
            )

    def cycle(
        self, changed: Mapping[str, float], header: str, only: set[Package] | None = None
    ) -> CycleOutcome:
        owners: dict[Package, float] = {}
        for path, at in changed.items():
            owner = owner_of(path, self.packages)
            if owner is not None:
                owners[owner] = max(at, owners.get(owner, at))
        steps = cycle_order(self.packages, owners, self.failed, self.graph.uses)
        if only is not None:
            steps = [s for s in steps if s.package in only]
        if self.options.clear:
            self.reporter.clear()
        self.reporter.trigger(header)
        if self.options.explain:
            self.reporter.explain(steps)
        self.cycle_started = time.monotonic()
        self.git_verdicts = {}
        watching = not self.options.once
        try:
            outcome = run_cycle(
                steps,
                self.start_run,
                self.options.jobs,
                self.changed_meanwhile if watching else lambda: False,
                self.options.restart,
                self.record,
            )
        finally:
            self.window = (self.cycle_started, time.monotonic())
            self.cycle_started = None
        for result in outcome.results:
            self.failed.discard(result.package)
        if outcome.failure is not None:
            self.failed.add(outcome.failure.package)
        self.reporter.summary(outcome)
        if not outcome.interrupted:
            self.after_cycle(outcome)
        self.judge_warm_runner()
        return outcome

    def after_cycle(self, outcome: CycleOutcome) -> None:
        if outcome.failure is not None:
            if self.options.bell:
                self.reporter.bell()
            if self.options.notify:
                notify("autotest", f"{outcome.failure.package.rel} FAILED")
        elif self.options.notify and not self.last_passed:
            notify("autotest", "all packages pass again")
        self.last_passed = outcome.passed

    def changed_from_arguments(self) -> dict[str, float]:
        """``--changed`` paths (relative to the current directory or the root), first one first."""
        changed: dict[str, float] = {}
        now = time.monotonic()
        for index, arg in enumerate(self.options.changed):
            candidates = [Path(arg)] if os.path.isabs(arg) else [Path.cwd() / arg, self.root / arg]
            for candidate in candidates:
                path = os.path.abspath(candidate)
                if owner_of(path, self.packages) is None:
                    path = os.path.realpath(candidate)
                if owner_of(path, self.packages) is not None:
                    changed[path] = now - index * 1e-6
                    break
            else:
                self.reporter.warn(f"{arg} is in no package; ignored")
        return changed

    def first_cycle(self) -> CycleOutcome:
        changed = self.changed_from_arguments()
        if changed:
            return self.cycle(changed, describe_changes(changed, self.root, self.packages))
        return self.cycle({}, f"testing all {counted(len(self.packages), 'package')}")

    def once(self) -> int:
        return 0 if self.first_cycle().passed else 1

    # Watching.

    def watch(self, interactive: bool) -> int:
        if WATCHDOG_ERROR:
            raise UsageError(
                f"watchdog is not installed ({WATCHDOG_ERROR}); "
                f"install it: {sys.executable} -m pip install watchdog"
            )
        watcher = Watcher(
            self.root, self.rules, self.changes, self.options.poll, self.reporter.warn,
            self.warn_unreadable,
        )  # fmt: skip
        try:
            how = watcher.start()
        except OSError as exc:
            raise UsageError(f"cannot watch {self.root}: {exc.strerror or exc}") from None
        self.reporter.say(
            self.reporter.paint(
                f"autotest: watching {counted(len(self.packages), 'package')} in {self.root} "
                f"({how}); Ctrl+C to stop",
                "dim",
            )
        )
        if self.options.warm and self.runner.module:
            self.launcher = WarmLauncher(self.runner, self.env)
        try:
            with KeyReader(self.changes) if interactive else contextlib.nullcontext():
                outcome = self.first_cycle()
                while True:
                    if interactive and not outcome.interrupted:
                        self.reporter.menu()
                    request = self.wait_for_change()
                    if request == "quit":
                        return 0 if self.last_passed else 1
                    outcome = self.respond(request)
        finally:
            watcher.stop()

    def wait_for_change(self) -> str:
        """Block until a settled burst of relevant changes or a key; say which."""
        while True:
            while self.keys:
                key = self.keys.pop(0)
                if key in QUIT_KEYS:
                    return "quit"
                if key in RUN_KEYS:
                    return RUN_KEYS[key]
            if self.pending:
                quiet_for = time.monotonic() - max(self.pending.values())
                if quiet_for >= self.options.debounce and not self.changes.pending():
                    return "changes"
                self.changes.wait_settled(
                    self.options.debounce, max(0.0, self.options.debounce - quiet_for)
                )
            else:
                self.changes.wait_settled(self.options.debounce)
            self.collect()

    def respond(self, request: str) -> CycleOutcome:
        if request == "all":
            return self.cycle({}, f"testing all {counted(len(self.packages), 'package')}")
        if request == "failed":
            if not self.failed:
                self.reporter.say("no failed packages")
                return CycleOutcome([])
            return self.cycle({}, f"testing {len(self.failed)} failed", only=set(self.failed))
        batch, self.pending = self.pending, {}
        self.guard_against_loops(batch)
        before = self.packages
        self.follow_tree(batch)
        forget_bytecode(batch, self.env.get("PYTHONPYCACHEPREFIX"))
        # Named against the packages before and after, so a removed one still counts as one.
        known = list({*before, *self.packages})
        return self.cycle(batch, describe_changes(batch, self.root, known))

    def close(self) -> None:
        if self.launcher is not None:
            self.launcher.close()


def main(argv: Sequence[str] | None = None) -> int:
    with contextlib.suppress(AttributeError, ValueError):  # a name that is not UTF-8 is no crash
        sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    reporter = Reporter(sys.stdout, use_color(sys.stdout))
    session: Session | None = None
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        signal.signal(signal.SIGTERM, raise_terminated)
    try:
        options = parse_options(sys.argv[1:] if argv is None else argv, reporter.warn)
        session = Session(options, reporter)
        if options.once:
            return session.once()
        return session.watch(interactive=sys.stdin is not None and sys.stdin.isatty())
    except UsageError as exc:
        sys.stderr.write(f"autotest: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except Terminated:
        return 143
    except BrokenPipeError:
        return 1
    finally:
        if session is not None:
            session.close()


if __name__ == "__main__":
    sys.exit(main())

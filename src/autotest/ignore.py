"""The one authority on what never counts as a change: tool directories, the files tools and
editors write beside the real ones, ``--ignore`` globs and .gitignore.  Discovery, the watch
plan, watchdog's thread and the intake all ask it.
"""

from __future__ import annotations

import copy
import fnmatch
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from .basics import GIT_ARGS_AT_ONCE, is_git_work_tree, run_git

# Directories whose contents are written by tools, test runs and editors, never by the user.
# Discovery never looks for packages in them, the watch plan spends no watches below them, and
# no event from inside them is a change.
TOOL_DIR_NAMES = frozenset(
    {
        ".git", ".hg", ".svn", "__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache",
        ".ruff_cache", ".tox", ".nox", ".venv", "venv", "node_modules", "build", "dist", ".eggs",
        "site-packages", ".idea", ".vscode", ".cache", "htmlcov", ".ipynb_checkpoints",
        ".benchmarks", ".pytype", ".pyre", ".pdm-build", "__pypackages__", ".direnv",
    }
)  # fmt: skip


TOOL_DIR_GLOBS = ("*.egg-info", "pytest-cache-files-*")  # pytest renames the latter into place


# Tool directories that never grow subdirectories: cheaper to watch than to split a watch around.
LEAF_TOOL_DIR_GLOBS = ("__pycache__", "*.egg-info")


# Files written beside the real ones: by test runs and coverage, and by editors while saving.
IGNORED_FILE_GLOBS = (
    "*.py[cod]", ".coverage", ".coverage.*", "coverage.xml", "nosetests.xml", ".noseids",
    ".*.sw[a-p]", "*.swp", "*.swx", "*~",            # vim swap and backup, emacs backup
    "#*#", ".#*",                                     # emacs autosave and lock
    "*___jb_tmp___", "*___jb_old___",                 # JetBrains safe write
    ".goutputstream-*", "*.kate-swp", ".~lock.*#",    # GTK atomic save, kate, LibreOffice
    "*.crswap", ".DS_Store", "*.tmp",
)  # fmt: skip


def is_virtualenv(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "pyvenv.cfg"))


def is_tool_dir(name: str, path: str) -> bool:
    """A directory tools write (by name, or a virtualenv by its pyvenv.cfg)."""
    return (
        name in TOOL_DIR_NAMES
        or any(fnmatch.fnmatchcase(name, g) for g in TOOL_DIR_GLOBS)
        or is_virtualenv(path)
    )


def holds_no_packages(name: str, path: str) -> bool:
    """Where discovery never looks: tool directories, and hidden ones."""
    return name.startswith(".") or is_tool_dir(name, path)


def device_of(path: str | Path) -> int | None:
    """The file system ``path`` lies on; None when it cannot be told."""
    try:
        return os.lstat(path).st_dev
    except OSError:
        return None


def other_device(path: str, device: int | None) -> bool:
    """Whether the directory ``path`` is on a file system other than ``device`` (a mount:
    /proc, a network share, a disk); never when ``device`` is None (mounts are crossed)."""
    if device is None:
        return False
    found = device_of(path)
    return found is not None and found != device


def is_leaf_tool_dir(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, g) for g in LEAF_TOOL_DIR_GLOBS)


def is_vim_probe(name: str) -> bool:
    """vim checks it may write a directory by creating 4913 (then 5036, 5159, ... if taken)."""
    return name.isdigit() and int(name) >= 4913 and (int(name) - 4913) % 123 == 0


def glob_matches(rel: str, glob: str, is_dir: bool = False) -> bool:
    """A glob with a slash matches the path from the root; one without matches any component.
    A directory matches a glob that would match everything in it (``docs`` and ``docs/*``)."""
    if "/" in glob.strip("/"):
        pattern = glob.strip("/")
        return (
            fnmatch.fnmatchcase(rel, pattern)
            or fnmatch.fnmatchcase(rel, pattern + "/*")
            or (is_dir and fnmatch.fnmatchcase(rel + "/", pattern))
        )
    return any(fnmatch.fnmatchcase(part, glob.rstrip("/")) for part in rel.split("/"))


class IgnoreRules:
    """Decides which paths never trigger a run: built-in rules, ``--ignore`` globs, .gitignore.

    The built-in and user rules are cheap and run in watchdog's thread on every event; asking
    git costs a subprocess, so the main loop asks it once per burst.
    """

    def __init__(
        self, root: Path, user_globs: Sequence[str] = (), cross_mounts: bool = False
    ) -> None:
        self.root = str(root)
        self.user_globs = tuple(user_globs)
        self.device = None if cross_mounts else device_of(root)  # None: mounts are crossed
        self.use_git = is_git_work_tree(root)
        self.git_dirs: frozenset[str] = frozenset()
        self._tool_dirs: set[str] = set()
        self._git_ignored_dirs: set[str] = set()  # as git answered for bursts

    def relative(self, path: str) -> str | None:
        if path == self.root:
            return ""
        if not path.startswith(self.root + os.sep):
            return None
        return path[len(self.root) + 1 :].replace(os.sep, "/")

    def for_another_thread(self) -> IgnoreRules:
        """The same rules with a memo of their own: watchdog's thread asks its copy, the main
        thread its own, so that no state is shared between them."""
        twin = copy.copy(self)
        twin._tool_dirs = set(self._tool_dirs)
        twin._git_ignored_dirs = set(self._git_ignored_dirs)
        return twin

    def is_tool_dir(self, name: str, path: str) -> bool:
        """``is_tool_dir``, remembered where it says yes: only a yes is final (a virtualenv's
        pyvenv.cfg comes after the directory itself, and goes first when it is removed)."""
        if path in self._tool_dirs:
            return True
        if is_tool_dir(name, path):
            self._tool_dirs.add(path)
            return True
        return False

    def excludes_dir(self, name: str, path: str) -> bool:
        """Whether discovery and the watch plan leave this directory out: a tool directory,
        one the user's globs name, one .gitignore excludes whole (as of the last
        ``refresh_git_dirs``), or one on another file system (unless mounts are crossed)."""
        rel = self.relative(path) or ""
        return (
            self.is_tool_dir(name, path)
            or path in self.git_dirs
            or any(glob_matches(rel, g, is_dir=True) for g in self.user_globs)
            or other_device(path, self.device)
        )

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
            if self.is_tool_dir(part, directory):
                return True
        name = parts[-1]
        if not is_dir and (
            is_vim_probe(name) or any(fnmatch.fnmatchcase(name, g) for g in IGNORED_FILE_GLOBS)
        ):
            return True
        return any(glob_matches(rel, g, is_dir) for g in self.user_globs)

    def unapplied_gitignore(self, directories: Iterable[str]) -> str | None:
        """A .gitignore in one of ``directories`` that nothing applies: outside a git work tree
        there is no git to ask (and no second implementation of its rules here)."""
        if self.use_git:
            return None
        for directory in directories:
            path = os.path.join(directory, ".gitignore")
            if os.path.isfile(path):
                return path
        return None

    def git_ignored(self, paths: Iterable[str]) -> set[str] | None:
        """Which of ``paths`` the repository's .gitignore files exclude; None when git cannot
        say (missing, failing or hanging), which is never "none of them".  git is asked first
        about the directories holding them, then about the paths in directories it does not
        ignore: a burst of any size written into a few ignored directories is judged in one
        short call, not one line per file."""
        paths = list(paths)
        if not self.use_git or not paths:
            return set()
        parents = {d for d in map(os.path.dirname, paths) if self.relative(d)}
        ignored_dirs = self._check_ignore(sorted(d + os.sep for d in parents))
        if ignored_dirs is None:
            return None
        inside = {d.rstrip(os.sep) for d in ignored_dirs}
        self._git_ignored_dirs.update(inside)
        below = {p for p in paths if os.path.dirname(p) in inside}
        ignored = self._check_ignore([p for p in paths if p not in below])
        return None if ignored is None else below | ignored

    def known_ignored(self, paths: Iterable[str]) -> set[str]:
        """Which of ``paths`` lie in directories git has said it ignores (as a whole, or when
        asked about a burst): the answer when git cannot be asked."""
        known = self.git_dirs | self._git_ignored_dirs
        return {p for p in paths if not known.isdisjoint(self.directories_holding(p))}

    def directories_holding(self, path: str) -> list[str]:
        """``path`` and the directories above it, up to the root's."""
        held = [path]
        while self.relative(held[-1]):
            held.append(os.path.dirname(held[-1]))
        return held

    def _check_ignore(self, paths: Sequence[str]) -> set[str] | None:
        """One call to ``git check-ignore``: the paths it names (as given), or None when it
        gives no answer."""
        if not paths:
            return set()
        listed = run_git(
            self.root, "check-ignore", "-z", "--stdin", stdin=b"\0".join(map(os.fsencode, paths))
        )  # exit 1 means none is ignored, and lists nothing
        if listed is None:
            return None
        return {os.fsdecode(p) for p in listed.split(b"\0") if p}

    def git_tracked(self, paths: Iterable[str]) -> set[str]:
        """Which of ``paths`` git tracks (a removed one too, until the removal is staged): a
        call to git per ``GIT_ARGS_AT_ONCE`` paths; none when git cannot say."""
        rels = {r: p for p in paths if (r := self.relative(p))}
        if not self.use_git or not rels:
            return set()
        names = list(rels)
        tracked: set[str] = set()
        for i in range(0, len(names), GIT_ARGS_AT_ONCE):
            chunk = [f":(literal){n}" for n in names[i : i + GIT_ARGS_AT_ONCE]]
            listed = run_git(self.root, "ls-files", "-z", "--cached", "--", *chunk) or b""
            tracked.update(os.fsdecode(n) for n in listed.split(b"\0") if n)
        return {rels[n] for n in tracked if n in rels}

    def refresh_git_dirs(self) -> None:
        """Ask git which directories .gitignore excludes as a whole, so no watch is spent
        below them."""
        if not self.use_git:
            return
        args = ("ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory")
        listed = run_git(self.root, *args) or b""
        names = (os.fsdecode(p) for p in listed.split(b"\0") if p.endswith(b"/"))
        self.git_dirs = frozenset(os.path.normpath(os.path.join(self.root, n)) for n in names)

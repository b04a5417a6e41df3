"""Where bytecode is kept: the runs', and this file's own, which it is run from.

CPython never keeps the bytecode of the script it is asked to run, and it keeps the script's
whole syntax tree in memory until the script returns: for autotest, the whole session, some
20 MB for this one big file.  So a script run of the built file, as soon as it knows the
private state directory (the one module above this one), replaces itself (``exec``: the same
process, its signals, its terminal) with an interpreter that loads the file as an import would,
from bytecode kept in that directory (compiled and written there the first time, and again
whenever the file changes), and runs it as ``__main__``.  That run finds ``__cached__`` set and
goes on in place.  The modules below this one are not even imported before the exec.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .state import POSIX, private_dir_problem, state_path, usual_state_dir

BYTECODE_DIR = "pycache"  # in the state directory; the prefix mirrors absolute paths


def pycache_dir() -> str | None:
    """One bytecode cache for every repository (the prefix mirrors absolute paths), in the
    private state directory: bytecode another user could write would run as this one."""
    path = state_path(BYTECODE_DIR)
    return None if path is None else str(path)


# What the new interpreter runs (``python -c LOADER PREFIX PATH0 FILE ARGS...``): the file's
# code, from bytecode under PREFIX (read, or compiled and written there), as ``__main__`` with
# ``__cached__`` set, sys.argv and sys.path[0] as a script run has them.
LOADER = """\
import sys
def run(prefix, path0, path):
    from importlib.machinery import SourceFileLoader
    from importlib.util import cache_from_source
    sys.argv[:4] = [path]
    if sys.path and sys.path[0] == "":
        sys.path[0] = path0
    loader = SourceFileLoader("__main__", path)
    kept, sys.pycache_prefix = sys.pycache_prefix, prefix
    try:
        code, cached = loader.get_code("__main__"), cache_from_source(path)
    finally:
        sys.pycache_prefix = kept
    main = sys.modules["__main__"].__dict__
    del main["run"]
    main.update(__file__=path, __loader__=loader, __cached__=cached)
    exec(code, main)
run(*sys.argv[1:4])
"""


def interpreter_options(orig_argv: Sequence[str] | None, argv: Sequence[str]) -> list[str] | None:
    """The options the interpreter was started with (``-X dev``, ``-W error``, ``-u``): what
    comes between it and the script in ``sys.orig_argv``; None when that is not known (before
    Python 3.10) or does not end with ``argv``."""
    if orig_argv is None or not argv or len(orig_argv) <= len(argv):
        return None
    if list(orig_argv[len(orig_argv) - len(argv) :]) != list(argv):
        return None
    options = list(orig_argv[1 : len(orig_argv) - len(argv)])
    if any(option in ("-c", "-m") for option in options):
        return None  # run by a command or module of its own (runpy): that is not the script
    return options


def bytecode_argv(script: str, path0: str, prefix: str) -> list[str] | None:
    """The command line that runs ``script`` from bytecode under ``prefix``, with this
    interpreter and its options and the script's arguments; None when it cannot be told."""
    options = interpreter_options(getattr(sys, "orig_argv", None), sys.argv)
    if options is None or not sys.executable:
        return None
    return [sys.executable, *options, "-c", LOADER, prefix, path0, script, *sys.argv[1:]]


def bytecode_prefix() -> str | None:
    """Where this file's bytecode is kept: the usual state directory, when it is this user's
    private one (a fallback directory, made afresh by each process, would keep nothing)."""
    usual = usual_state_dir()
    return None if private_dir_problem(usual) else str(usual / BYTECODE_DIR)


def run_from_bytecode(script: str, path0: str) -> None:
    """Replace this process with one running ``script`` from its kept bytecode.  Returns only
    where it does not: without a process-keeping ``exec`` (Windows), before Python 3.10 (the
    interpreter's options are not known), with bytecode not to be written, or with no private
    state directory; then the script goes on as it was started."""
    if not POSIX or sys.dont_write_bytecode or not os.path.isfile(script):
        return
    prefix = bytecode_prefix()
    argv = bytecode_argv(script, path0, prefix) if prefix is not None else None
    if argv is None:
        return
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    try:
        os.execv(argv[0], argv)
    except OSError:
        return  # it could not be replaced (no memory, argument list too long): go on in place


if __name__ == "__main__" and globals().get("__cached__") is None:
    run_from_bytecode(__file__, sys.path[0] if sys.path else "")

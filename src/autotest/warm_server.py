"""What runs inside another interpreter: the warm server that forks each run, and the two
questions put to a package's own interpreter (its facts; whether it can import a module).

These functions are sent as source to interpreters that may be any Python from 3.9 and may
have nothing installed, so they use the standard library alone and name nothing from the other
modules (tests/test_build.py holds them to it).  A warm interpreter has imported the runner (and
nothing from the repository); it forks a fresh child for each run, which saves the interpreter's
and the runner's start-up.  It also imports ahead what the runs taught it (see warm_client),
each import checked first in a throwaway forked probe, so that a module that starts a thread or
changes what a forked run would see is never imported ahead.

The protocol, over a socket pair, one line per message:
  server -> autotest   ``drop NAME WHY``      a learned module is not imported ahead, and why
  server -> autotest   ``ready BYTES``        the runner and the learned modules are imported;
                                              requests may come; BYTES is the interpreter's
                                              resident memory (0: unknown)
  autotest -> server   a JSON object {"cwd", "env", "args", "report"}, with the run's output
                       file passed alongside as a descriptor (SCM_RIGHTS), and, when "report"
                       is true, a second file for the modules the run imported
  server -> autotest   ``pid PID``            the run was forked, as process PID
  server -> autotest   ``exit PID CODE``      it ended; CODE as Popen.returncode reads
An ``exit`` may arrive before its ``pid`` is read.  ``pid`` is sent once the run is a session
(and process group) of its own, so that its group can be killed.  When autotest goes away (the
socket closes, SIGTERM, or on Linux its death however it died) the server kills every run it
forked with all they started, pid read or not, and ends without a word.
"""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Collection, Sequence
from typing import Any, Callable, NoReturn


def set_parent_death_signal(signum: int) -> bool:  # pragma: no cover (runs in the warm server)
    """Ask Linux to send ``signum`` when the parent process dies, however it dies (kill -9
    too); False where there is no prctl."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, signum, 0, 0, 0) == 0  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def become_child_subreaper() -> bool:  # pragma: no cover (runs in the warm server too)
    """Ask Linux to make this process the parent of every orphan among its descendants (a
    test's daemon: fork, setsid, fork), instead of init, so that what a run leaves behind can
    be found and ended; False where there is no prctl."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(36, 1, 0, 0, 0)) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def child_pids() -> list[int]:  # pragma: no cover (runs in the warm server too)
    """This process's children, from /proc (Linux); none where there is no such /proc."""
    import os

    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError), open(f"/proc/self/task/{task}/children") as f:
                found.extend(int(pid) for pid in f.read().split())
    return found


def kill_with_group(pid: int) -> None:  # pragma: no cover (runs in the warm server too)
    """SIGKILL to ``pid`` and to its process group, unless that group is this process's."""
    import os
    import signal

    with contextlib.suppress(OSError):
        group = os.getpgid(pid)
        if group != os.getpgrp():
            os.killpg(group, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def end_leftovers(run: int, others: Collection[int]) -> None:  # pragma: no cover
    """In the warm server, once forked run ``run`` ended: its process group goes with it, and,
    when no ``others`` run could own them, every child of the server, with its group: what
    runs left behind that escaped their group (a daemon: fork, setsid, fork), orphaned to
    this subreaper."""
    import os
    import signal

    with contextlib.suppress(OSError):
        os.killpg(run, signal.SIGKILL)
    for pid in () if others else child_pids():
        kill_with_group(pid)


def plugin_modules(group: str) -> frozenset[str]:
    """The top-level modules of every installed distribution with an entry point in ``group``
    (all of them: pytest marks a plugin's whole distribution for assertion rewriting)."""
    if not group:
        return frozenset()
    from importlib import metadata

    names: set[str] = set()
    for dist in metadata.distributions():
        points = [p for p in dist.entry_points if p.group == group]
        names.update(p.value.split(":")[0].split(".")[0].strip() for p in points)
        for file in (dist.files or ()) if points else ():
            top = file.parts[0] if file.parts else ""
            if top.endswith(".py") or (len(file.parts) > 1 and file.name.endswith(".py")):
                names.add(top[:-3] if top.endswith(".py") else top)
    return frozenset(n for n in names if n.isidentifier())


def run_forked(
    module: str, request: dict[str, Any], out: int, started: int, report: int | None
) -> NoReturn:  # pragma: no cover
    """In the forked child: become the run autotest asked for, as a cold start would be (a
    session of its own); closing ``started`` tells the server that it is one.  At its end it
    writes the modules it imported to ``report``, when there is one."""
    import faulthandler
    import os
    import runpy
    import signal
    import sys

    for signum in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    os.setsid()
    os.close(started)
    set_parent_death_signal(signal.SIGKILL)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [module, *request["args"]]
    sys.path[0] = request["cwd"]
    forget_import_caches()
    hide_modules(request.get("hide", ()), request.get("runner_modules", frozenset()))
    before = set(sys.modules)
    faulthandler.enable()  # as -X faulthandler does cold: SIGABRT prints where it hangs
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            with contextlib.suppress(Exception):  # as the interpreter says it, on stderr
                sys.stderr.write(f"{exc.code}\n")
                sys.stderr.flush()
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    if report is not None:
        with contextlib.suppress(Exception):
            report_imports(report, before)
    os._exit(code)


def forget_import_caches() -> None:  # pragma: no cover (runs in a forked run)
    """What the warm interpreter learned of directories may be stale, where a cold start
    would look again: a directory on sys.path that was missing (a package deleted, then
    restored) is cached as holding nothing, and a listing as it was."""
    import importlib
    import sys

    for path in [p for p, finder in sys.path_importer_cache.items() if finder is None]:
        del sys.path_importer_cache[path]
    importlib.invalidate_caches()


def hide_modules(  # pragma: no cover (runs in a forked run)
    names: Sequence[str], runner_modules: Collection[str]
) -> None:
    """In the forked child: forget the modules imported ahead for other packages, with their
    submodules, and unbind each from its parent package, so that this run sees what a cold
    one would (``import logging`` alone gives no ``logging.handlers``).  What it imports
    again is imported afresh, and reported as its own.  Never what the runner itself had
    imported (``runner_modules``): a cold run has those too, and the runner holds on to them
    (nose's loader keeps unittest's TestCase: a second unittest would make it find no test)."""
    import sys

    hidden = tuple(names)
    doomed = [
        m for m in sys.modules
        if m not in runner_modules and any(m == h or m.startswith(h + ".") for h in hidden)
    ]  # fmt: skip
    for name in sorted(doomed, key=lambda n: -n.count(".")):
        module = sys.modules.pop(name, None)
        parent, _, child = name.rpartition(".")
        holder = sys.modules.get(parent) if parent else None
        if module is not None and holder is not None and getattr(holder, child, None) is module:
            with contextlib.suppress(AttributeError, TypeError):
                delattr(holder, child)


def report_imports(fd: int, before: set[str]) -> None:  # pragma: no cover
    """In the forked child, at its end: each module the run imported with its file, a line
    each, for autotest to learn from."""
    import os
    import sys

    lines = []
    for name, module in list(sys.modules.items()):
        if name not in before:
            file = getattr(module, "__dict__", {}).get("__file__")
            if isinstance(file, str) and "\t" not in name + file and "\n" not in name + file:
                lines.append(f"{name}\t{file}\n")
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.writelines(lines)


def is_installed_code(file: str, root: str, site_dirs: Sequence[str]) -> bool:
    """Whether a module's file is code that does not change between saves: outside the
    repository ``root``, or in one of the interpreter's site directories (a .venv kept in the
    repository).  Paths are compared real, as given in ``root`` and ``site_dirs``."""
    import os

    real = os.path.realpath(file)

    def under(folder: str) -> bool:
        return real == folder or real.startswith(folder.rstrip(os.sep) + os.sep)

    return not under(root) or any(under(d) for d in site_dirs)


def interpreter_state() -> dict[str, Any]:  # pragma: no cover (runs in the warm interpreter)
    """What importing a module ahead could change so that a forked run sees otherwise than a
    cold one: the threads (a fork keeps only the forking one), and what each forked run resets
    or sets anew (the environment, sys.path, the working directory, signal handlers, the
    standard streams, the warning filters)."""
    import os
    import signal
    import sys
    import threading
    import warnings

    handlers = {}
    for number in signal.valid_signals():
        with contextlib.suppress(ValueError, OSError):
            handlers[int(number)] = signal.getsignal(number)
    return {
        "threads": threading.active_count(),
        "environment": dict(os.environ),
        "sys.path": list(sys.path),
        "working directory": os.getcwd(),
        "signal handlers": handlers,
        "standard streams": [id(sys.stdin), id(sys.stdout), id(sys.stderr)],
        "warning filters": list(warnings.filters),
        "modules": set(sys.modules),
    }


def state_change(
    before: dict[str, Any], after: dict[str, Any], is_ours: Callable[[str], bool]
) -> str:
    """Why a module whose import turned the interpreter's state ``before`` into ``after`` must
    not be imported ahead, or ''.  ``is_ours`` says whether a module name is the repository's."""
    if after["threads"] > before["threads"]:
        return "starts a thread"
    keys = ("environment", "sys.path", "working directory", "signal handlers", "warning filters")
    for key in keys:
        if after[key] != before[key]:
            return f"changes the {key}"
    if after["standard streams"] != before["standard streams"]:
        return "replaces a standard stream"
    ours = sorted(n for n in after["modules"] - before["modules"] if is_ours(n))
    return f"imports {ours[0]} from the repository" if ours else ""


def checked_import(  # pragma: no cover (runs in the warm interpreter)
    name: str, root: str, site_dirs: Sequence[str]
) -> tuple[str, bool]:
    """Import ``name`` and say why it must not be imported ahead ('' when it may), and whether
    that import left the interpreter changed.  A warning it issued counts as a change: a cold
    run would have met it under the run's own filters (pytest's ``filterwarnings = error``
    fails on it; its summary lists it), a forked one would never see it."""
    import importlib
    import sys
    import warnings

    def is_ours(module: str) -> bool:
        file = getattr(sys.modules.get(module), "__dict__", {}).get("__file__")
        return isinstance(file, str) and not is_installed_code(file, root, site_dirs)

    failed = ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = interpreter_state()
        try:
            importlib.import_module(name)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: a module is odd
            failed = f"its import failed ({type(exc).__name__})"
        changed = state_change(before, interpreter_state(), is_ours)
    if caught and not changed:
        changed = f"issues a {caught[0].category.__name__} when imported"
    return changed or failed, bool(changed)


def probe_learned(  # pragma: no cover (runs in the warm interpreter)
    names: Sequence[str], root: str, site_dirs: Sequence[str]
) -> dict[str, str]:
    """The learned modules unfit to import ahead, and why, found by importing them all in a
    forked probe (whatever they change dies with it); all of them when the probe crashed."""
    import json
    import os
    import signal
    import sys

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:  # whatever happens, the probe never goes on as a second server
            os.close(read)
            set_parent_death_signal(signal.SIGKILL)
            unfit = {}
            for name in names:
                if name not in sys.modules:
                    why, _ = checked_import(name, root, site_dirs)
                    if why:
                        unfit[name] = why
            with os.fdopen(write, "w") as f:
                json.dump(unfit, f)
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        text = f.read()
    os.waitpid(pid, 0)
    try:
        return dict(json.loads(text))
    except ValueError:
        return {name: "checking its import crashed" for name in names}


def import_learned(  # pragma: no cover (runs in the warm interpreter)
    names: Sequence[str], proven: Collection[str], root: str, site_dirs: Sequence[str],
    send: Callable[[str], None],
) -> None:  # fmt: skip
    """Import the learned modules, each checked again; those not ``proven`` in an earlier warm
    interpreter are first probed, so that one restart drops all the unfit at once (a module may
    still be fit only beside one found unfit).  A module that changed this interpreter ends it,
    as nothing can undo an import, after saying which and why."""
    import os
    import sys

    unproven = [name for name in names if name not in proven]
    unfit = probe_learned(unproven, root, site_dirs) if unproven else {}
    for name, why in unfit.items():
        send(f"drop {name} {why}")
    for name in names:
        if name in sys.modules or any(name == u or name.startswith(u + ".") for u in unfit):
            continue
        why, changed = checked_import(name, root, site_dirs)
        if why:
            send(f"drop {name} {why}")
        if changed:
            os._exit(0)


def warm_up(  # pragma: no cover (runs in the warm server)
    module: str, preload: Sequence[str], learned: Sequence[str], proven: Collection[str],
    root: str, site_dirs: Sequence[str], send: Callable[[str], None],
) -> frozenset[str]:  # fmt: skip
    """Import the runner and the learned modules, and do once what every run would do again:
    list the site directories, and freeze what is imported so that no forked run's garbage
    collection walks it.  What the runner imported, before the learned modules: a forked
    run never hides those."""
    import gc
    import importlib
    import importlib.metadata
    import sys

    importlib.import_module(module)
    for name in preload:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    runner_modules = frozenset(sys.modules)
    import_learned(learned, proven, root, site_dirs, send)
    with contextlib.suppress(Exception):  # (importlib.metadata caches it per directory mtime)
        for _ in importlib.metadata.distributions():
            pass
    gc.freeze()
    return runner_modules


def resident_memory() -> int:  # pragma: no cover (runs in the warm server)
    """This process's resident memory in bytes, 0 where it cannot tell: what one more warm
    interpreter like it costs, once it has imported everything ahead.  Read from /proc on
    Linux (where the peak that getrusage counts includes the parent's memory at the fork that
    started this process), else that peak."""
    import sys

    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    try:
        import resource
    except ImportError:
        return 0
    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak if sys.platform == "darwin" else peak * 1024  # bytes there, KiB elsewhere


def serve_warm(  # pragma: no cover
    module: str, fd: int, preload: Sequence[str], parent: int, learned: Sequence[str] = (),
    proven: Collection[str] = (), root: str = "", site_dirs: Sequence[str] = (),
) -> None:  # fmt: skip
    """The warm interpreter's program: import the runner and the learned modules, then fork a
    run per request.  When autotest goes away it kills every run it forked and ends at once,
    without a word."""
    import json
    import os
    import signal
    import socket

    children: set[int] = set()

    def shutdown(*_: object) -> NoReturn:
        for pid in {*children, *child_pids()}:  # the runs, and what they left orphaned here
            kill_with_group(pid)
        os._exit(0)

    signal.signal(signal.SIGTERM, shutdown)
    set_parent_death_signal(signal.SIGTERM)
    become_child_subreaper()
    if os.getppid() != parent:  # autotest died before it could be told
        shutdown()
    sock = socket.socket(fileno=fd)

    def send(line: str) -> None:
        try:
            sock.sendall(line.encode() + b"\n")
        except OSError:
            shutdown()

    def reap(*_: object) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid not in children:  # left behind by a run, orphaned to this server: reaped
                continue
            children.discard(pid)
            end_leftovers(pid, children)  # what the run started goes with it
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            send(f"exit {pid} {code}")

    runner_modules = warm_up(module, preload, learned, proven, root, site_dirs, send)
    send(f"ready {resident_memory()}")
    signal.signal(signal.SIGCHLD, reap)
    buffer, fds = b"", []
    while True:
        try:
            message, more_fds, _, _ = socket.recv_fds(sock, 1 << 20, 2)
        except InterruptedError:
            continue
        except OSError:
            shutdown()
        if not message:
            shutdown()
        buffer += message
        fds += more_fds
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            request = {**json.loads(line), "runner_modules": runner_modules}
            out = fds.pop(0)
            report = fds.pop(0) if request.get("report") else None
            send(f"pid {fork_run(module, request, out, report, sock, children)}")


def fork_run(  # pragma: no cover (runs in the warm server)
    module: str, request: dict[str, Any], out: int, report: int | None, sock: socket.socket,
    children: set[int],
) -> int:  # fmt: skip
    """Fork the run and record it before SIGCHLD or SIGTERM is handled; return once it is a
    session of its own, so that autotest can kill its group as soon as it reads the pid."""
    import os
    import signal

    held = {signal.SIGCHLD, signal.SIGTERM}
    started, child_started = os.pipe()
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    pid = os.fork()
    if pid == 0:
        sock.close()
        os.close(started)
        run_forked(module, request, out, child_started, report)
    children.add(pid)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
    os.close(child_started)
    os.close(out)
    if report is not None:
        os.close(report)
    with contextlib.suppress(OSError):
        os.read(started, 1)  # end of file: the child's setsid is done (or it is gone)
    os.close(started)
    return pid


def site_directories() -> tuple[str, ...]:
    """This interpreter's site directories, as real paths."""
    import os
    import site

    places = [*getattr(site, "getsitepackages", list)(), site.getusersitepackages()]
    return tuple(os.path.realpath(p) for p in places)


def print_interpreter_facts(plugin_group: str) -> None:  # pragma: no cover (runs elsewhere)
    """What ``interpreter_facts`` asks of another interpreter, printed as JSON: nothing where
    it cannot serve forked runs (no fork, or no ``socket.send_fds``: older than 3.9)."""
    import json
    import os
    import socket

    if hasattr(os, "fork") and hasattr(socket, "send_fds"):
        print(json.dumps([site_directories(), sorted(plugin_modules(plugin_group))]))


def exit_unless_importable(module: str) -> NoReturn:  # pragma: no cover (runs elsewhere)
    """Exit 0 when this interpreter can import ``module``, 1 when it cannot."""
    import importlib.util
    import sys

    sys.exit(importlib.util.find_spec(module) is None)


# What runs in another interpreter is this module's own code: its functions' source, sent on
# stdin with the name of the one to call and that call's arguments as JSON, read by one fixed
# line.  So it is linted and type-checked with the rest, nothing is generated, and ``ps`` shows
# a short line.  The functions use only the standard library and one another.
SENT_FUNCTIONS = (
    set_parent_death_signal, become_child_subreaper, child_pids, kill_with_group, end_leftovers,
    plugin_modules, run_forked, forget_import_caches, hide_modules, report_imports,
    is_installed_code, interpreter_state, state_change, checked_import, probe_learned,
    import_learned, warm_up, resident_memory, serve_warm, fork_run, site_directories,
    print_interpreter_facts, exit_unless_importable,
)  # fmt: skip

BOOTSTRAP = (
    "import __future__, contextlib, json, sys; sent = json.load(sys.stdin); "
    "exec(compile(sent['source'], 'autotest', 'exec', __future__.annotations.compiler_flag)); "
    "globals()[sent['call']](*sent['args'])"
)


def sent_call(function: Callable[..., object], *args: object) -> bytes:
    """What BOOTSTRAP reads on stdin to call ``function(*args)`` in another interpreter."""
    import json

    assert function in SENT_FUNCTIONS, function
    return json.dumps({"source": sent_source(), "call": function.__name__, "args": args}).encode()


@functools.lru_cache(maxsize=1)
def sent_source() -> str:
    """The source of the functions sent, taken once per process: inspect tokenizes each one's
    lines, and a warm interpreter starts every cycle."""
    import inspect

    return "".join(inspect.getsource(f) + "\n" for f in SENT_FUNCTIONS)

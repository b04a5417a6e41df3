"""Clean ends at any moment: autotest is started, then signalled at a random moment, many times.

Every process of one start carries a marker in its environment (autotest hands its own
environment on to the runs, their children and the warm interpreter), so whatever is left
behind is found in /proc, whoever its parent is.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import AUTOTEST, Repo, Watch, clean_env, default_signals, wait_until

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc to find what is left behind"
)

ITERATIONS = 20
MARK = "AUTOTEST_SIGNAL_TEST_MARK"
SLOW_TEST = """\
import os
import subprocess
import sys
import time


def test_spawns_and_waits():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    open(os.environ["SIGNAL_TEST_STARTED"], "a").close()
    time.sleep(0.3)
"""
HANGING_TEST = """\
import os
import subprocess
import sys
import time


def test_hangs_when_told():
    if os.path.exists({hang!r}):
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({hang!r} + ".started", "w").close()
        time.sleep(60)
"""
MOMENTS = ("starting", "warm interpreter starting", "idle", "mid-run", "forking")


def marked(mark: str) -> list[int]:
    """Live processes (not zombies) whose environment holds ``mark``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if f"{MARK}={mark}".encode() not in f.read():
                    continue
            with open(f"/proc/{name}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] == "Z":
                    continue
        except OSError:
            continue
        found.append(int(name))
    return found


def catches(pid: int, signum: int) -> bool:
    """Whether autotest's own handler for ``signum`` is installed (SigCgt in /proc)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            caught = next(line for line in f if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(int(caught.split()[1], 16) & (1 << (signum - 1)))


def all_output(w: Watch) -> str:
    """Everything autotest wrote, once it has ended (its stdout reached end of file)."""
    with w._cond:
        w._cond.wait_for(lambda: w._eof, timeout=5)
    return w.output


def kill_marked(mark: str) -> None:
    for pid in marked(mark):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def await_moment(w: Watch, repo: Repo, moment: str, started: Path, rng: random.Random) -> None:
    """Wait for the moment, then a random little while longer."""
    if moment == "starting":
        assert wait_until(lambda: catches(w.proc.pid, signal.SIGTERM), interval=0.002)
        time.sleep(rng.uniform(0, 0.3))
    elif moment == "warm interpreter starting":
        w.wait_for(r"^autotest: watching")
        time.sleep(rng.uniform(0, 0.15))
    elif moment == "idle":
        w.wait_cycles(1)
        time.sleep(rng.uniform(0, 0.1))
    elif moment == "mid-run":
        assert wait_until(started.exists, timeout=20, interval=0.005)  # its child is started
        time.sleep(rng.uniform(0, 0.1))
    else:
        w.wait_cycles(1)
        test = repo.path / "libs" / "core" / "tests" / "test_core.py"
        test.write_text(test.read_text() + "\n# edited\n")
        time.sleep(rng.uniform(0, 0.4))


@pytest.mark.parametrize(
    ("sig", "status"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
    ids=["SIGINT", "SIGTERM", "SIGHUP"],
)
def test_a_signal_at_any_moment_ends_autotest_cleanly_and_leaves_nothing_behind(
    repo: Repo, tmp_path: Path, sig: int, status: int
) -> None:
    repo.write("pyproject.toml", "[tool.autotest]\ndebounce = 0.02\n")
    repo.package("libs/core", tests=SLOW_TEST)
    rng = random.Random(f"{sig}")
    failures = []
    for iteration in range(ITERATIONS):
        moment = MOMENTS[iteration % len(MOMENTS)]
        mark = uuid.uuid4().hex
        started = tmp_path / f"started-{mark}"
        env = clean_env(
            PYTHONDONTWRITEBYTECODE="1", SIGNAL_TEST_STARTED=str(started), **{MARK: mark}
        )
        w = Watch(repo.path, env=env)
        try:
            await_moment(w, repo, moment, started, rng)
            w.proc.send_signal(sig)
            code = w.proc.wait(timeout=10)
            output = all_output(w)
            left = wait_until(lambda: not marked(mark), timeout=3)  # noqa: B023
            if code != status or "Traceback" in output or not left:
                failures.append((moment, code, marked(mark), output[-2000:]))
        finally:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()
            kill_marked(mark)
    assert not failures, failures


def test_killing_autotest_outright_still_ends_a_forked_run_and_its_children(
    repo: Repo, tmp_path: Path
) -> None:
    """kill -9 leaves autotest no chance to clean up: the warm interpreter sees its socket close
    (and on Linux its parent die) and kills what it forked, with all that started."""
    hang = tmp_path / "hang"
    repo.package("libs/core", tests=HANGING_TEST.format(hang=str(hang)))
    mark = uuid.uuid4().hex
    w = Watch(repo.path, env=clean_env(PYTHONDONTWRITEBYTECODE="1", **{MARK: mark}))
    try:
        w.wait_cycles(1)  # cold, and quick: the test hangs only once the flag is there
        hang.write_text("")
        test = repo.path / "libs" / "core" / "tests" / "test_core.py"
        test.write_text(test.read_text() + "\n# edited\n")
        assert wait_until(lambda: (tmp_path / "hang.started").exists(), timeout=20)
        w.proc.kill()
        w.proc.wait()
        assert wait_until(lambda: not marked(mark), timeout=5), marked(mark)
    finally:
        kill_marked(mark)


def test_a_closed_stdout_ends_autotest_quietly(repo: Repo) -> None:
    repo.package("libs/core")
    repo.package("libs/extra")
    proc = subprocess.Popen(
        [sys.executable, str(AUTOTEST), "--root", str(repo.path), "--once"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=clean_env(),
        preexec_fn=default_signals,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"autotest: 2 packages in ")
    proc.stdout.close()  # as `| head -1` does
    assert proc.wait(timeout=30) == 1
    assert proc.stderr.read() == b""


def test_the_warm_interpreter_never_outlives_autotest_killed_outright(repo: Repo) -> None:
    repo.package("libs/core")
    mark = uuid.uuid4().hex
    w = Watch(repo.path, env=clean_env(PYTHONDONTWRITEBYTECODE="1", **{MARK: mark}))
    try:
        w.wait_cycles(1)
        assert wait_until(lambda: len(marked(mark)) >= 2)  # autotest and its warm interpreter
        w.proc.kill()
        w.proc.wait()
        assert wait_until(lambda: not marked(mark), timeout=5), marked(mark)
    finally:
        kill_marked(mark)


def closing(fd: int) -> Callable[[], None]:
    """A preexec_fn that starts autotest with descriptor ``fd`` closed, as ``>&-`` does."""

    def close() -> None:
        default_signals()
        os.close(fd)

    return close


def test_once_with_stdout_closed_from_the_start_ends_quietly_with_status_1(repo: Repo) -> None:
    repo.package("libs/core")
    done = subprocess.run(
        [sys.executable, str(AUTOTEST), "--root", str(repo.path), "--once"],
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=clean_env(),
        preexec_fn=closing(1),
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr == b""


def test_bad_input_with_stderr_closed_still_exits_2(repo: Repo) -> None:
    repo.package("libs/core")
    done = subprocess.run(
        [sys.executable, str(AUTOTEST), "--root", str(repo.path), "--bogus"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=clean_env(),
        preexec_fn=closing(2),
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == b""


LEAVES_BEHIND = """\
import os
import time

GO, PIDFILE = {go!r}, {pidfile!r}


def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def is_zombie(pid):
    with open(f"/proc/{{pid}}/stat") as f:
        return f.read().rpartition(")")[2].split()[0] == "Z"


def test_leaves_a_process_behind():
    if not os.path.exists(GO):
        return
    write(PIDFILE + ".run-parent", str(os.getppid()))
    mode = open(GO).read()
    child = os.fork()
    if child == 0:
        if mode != "orphan":
            os.setsid()
        if os.fork() == 0:
            write(PIDFILE, str(os.getpid()))
            if mode != "orphan":
                time.sleep(120)
        os._exit(0)
    os.waitpid(child, 0)
    while not os.path.exists(PIDFILE):
        time.sleep(0.01)
    pid = int(open(PIDFILE).read())
    while mode == "orphan" and os.path.exists(f"/proc/{{pid}}") and not is_zombie(pid):
        time.sleep(0.01)
    if mode == "hold":
        time.sleep(120)
"""


def lives(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def zombie(pid: int) -> bool:
    """Whether ``pid`` ended and was never reaped (a pid used again since is no zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return False


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[1])
    except OSError:
        return None


class LeftBehind:
    """autotest watching a package whose test, from the second cycle on (cold, or forked from
    the warm interpreter: the first cycle always runs cold), leaves a process behind: with
    ``mode`` "daemon" a daemon (fork, setsid, fork) that sleeps, "hold" the same while the
    test then waits (the run still going), "orphan" a grandchild that ends on its own."""

    def __init__(self, repo: Repo, tmp_path: Path, warm: bool, mode: str) -> None:
        self.pidfile = tmp_path / "left.pid"
        go = tmp_path / "go"
        tests = LEAVES_BEHIND.format(go=str(go), pidfile=str(self.pidfile))
        repo.package("libs/core", tests=tests)
        args = () if warm else ("--no-warm",)
        self.watch = Watch(repo.path, *args, env=clean_env(PYTHONDONTWRITEBYTECODE="1"))
        self.watch.wait_cycles(1)
        go.write_text(mode)
        repo.write("libs/core/core/__init__.py", "VALUE = 2\n")
        assert wait_until(self.pidfile.exists, timeout=30), self.watch.output
        self.pid = int(self.pidfile.read_text())
        run_parent = int(Path(f"{self.pidfile}.run-parent").read_text())
        assert (run_parent != self.watch.proc.pid) == warm, "forked, or cold, as asked"

    def close(self) -> None:
        self.watch.stop(signal.SIGKILL)
        if lives(self.pid):
            os.kill(self.pid, signal.SIGKILL)


WARM_OR_COLD = pytest.mark.parametrize("warm", [True, False], ids=["forked", "cold"])


@WARM_OR_COLD
def test_a_daemon_a_run_leaves_behind_ends_with_the_run(
    repo: Repo, tmp_path: Path, warm: bool
) -> None:
    left = LeftBehind(repo, tmp_path, warm, "daemon")
    try:
        left.watch.wait_cycles(2)
        assert wait_until(lambda: not lives(left.pid), timeout=10), "the daemon outlived its run"
        assert wait_until(lambda: not zombie(left.pid), timeout=10), (
            f"a zombie of {parent_of(left.pid)}"
        )
        assert left.watch.proc.poll() is None, "autotest still watches"
    finally:
        left.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
@WARM_OR_COLD
def test_a_daemon_of_a_run_still_going_ends_with_autotest_however_it_is_stopped(
    repo: Repo, tmp_path: Path, warm: bool, signum: int
) -> None:
    left = LeftBehind(repo, tmp_path, warm, "hold")
    try:
        assert left.watch.stop(signum, timeout=20) == 128 + signum
        assert wait_until(lambda: not lives(left.pid), timeout=10), "the daemon outlived autotest"
    finally:
        left.close()


@WARM_OR_COLD
def test_an_orphan_that_ends_on_its_own_leaves_no_zombie_while_autotest_watches(
    repo: Repo, tmp_path: Path, warm: bool
) -> None:
    left = LeftBehind(repo, tmp_path, warm, "orphan")
    try:
        left.watch.wait_cycles(2)
        assert wait_until(lambda: not zombie(left.pid), timeout=10), (
            f"a zombie of {parent_of(left.pid)}"
        )
        assert left.watch.proc.poll() is None, "autotest still watches"
    finally:
        left.close()

"""What every other module may need: the errors that end autotest, the verdicts, every timing
constant (in one table, so that no wait is a literal elsewhere), and the git helpers.
"""

from __future__ import annotations

import enum
import os
import signal
import subprocess
from pathlib import Path

if __name__ == "__main__":  # until main() takes over nothing runs yet: a signal just ends it
    for _name in ("SIGINT", "SIGTERM", "SIGHUP"):
        _signum = getattr(signal, _name, None)
        if _signum is not None and signal.getsignal(_signum) is not signal.SIG_IGN:
            signal.signal(_signum, lambda signum, frame: os._exit(128 + signum))


VERSION = "1.1"


class UsageError(Exception):
    """Bad input: reported as one line and exit status 2."""


class Terminated(BaseException):
    """SIGINT, SIGTERM or SIGHUP, raised in the main thread so that every run is killed on the
    way out; autotest then exits with 128 + the signal's number, as a shell reports it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class QuitRequested(BaseException):
    """``q`` pressed: raised in the middle of a cycle, so that the running tests are killed at
    once rather than awaited."""


class Verdict(enum.Enum):
    """What one package's run amounts to; the value is the word the report prints."""

    OK = "ok"
    FAILED = "FAILED"
    NO_TESTS = "no tests"
    NO_MATCH = "no tests matched"  # the test filter (the key t) matched none of its tests
    COULD_NOT_RUN = "could not run"  # a module it needs is missing here: not the code's fault


DEFAULT_DEBOUNCE = 0.05  # quiet time that closes a burst: an editor's save is one burst


ECHO_GRACE = 0.5  # a run's own writes may still be reported this long after it ends


POLL_INTERVAL = 0.01  # how often a run that cannot be waited on is checked (no pidfd here)


CYCLE_WAKE = 0.05  # a running cycle looks for changes and keys at least this often


KEY_POLL = 0.1  # how often the key reader looks whether it may read (the debugger has the keys)
WAKE_INTERVAL = 1.0  # the longest lock wait, so that Ctrl+C is never held up by one


ROOT_CHECK_EVERY = 1.0  # while idle, how often the root is checked to be the directory watched


OBSERVER_TIMEOUT = 1.0  # watchdog's event batching; the polling observer's scan interval


WARM_START_TIMEOUT = 10.0  # the first forked run waits this long for the warm interpreter


WARM_REPLY_TIMEOUT = 10.0  # how long a fork request may take to answer with its pid


SERVER_EXIT_WAIT = 2.0  # how long a killed warm interpreter is given to be reaped


DUMP_WAIT = 1.0  # how long a timed-out run is given to print where it hung before it is killed


STILL_RUNNING_AFTER = 30.0  # not on a terminal: a run this long is named once...


STILL_RUNNING_EVERY = 60.0  # ...and again after each further minute


TASKKILL_TIMEOUT = 5.0  # how long Windows' taskkill may take to end a run's tree
LEFTOVER_WAIT = 2.0  # how long ending what a run left behind (and reaping it) may take


GIT_TIMEOUT = 30.0  # a git call that hangs longer counts as no answer
GIT_ARGS_AT_ONCE = 200  # paths named on one git command line (well inside Windows' limit)
ASK_TIMEOUT = 60.0  # a question put to another interpreter (is X installed, its facts)
RUN_WINDOW_KEPT = 600.0  # how long the loop guard remembers a run that ended


JUDGE_AFTER = 3  # packages run both warm and cold before forking is judged


PRELOAD_RESTARTS = 5  # warm restarts that drop a learned module, before learning is given up


WARM_VIRTUALENVS = 3  # package virtualenvs kept warm at once: those of the packages changed last


SPARE_MEMORY = 500 * 10**6  # bytes: what the spare warm interpreters may take, all together


HEAD_LINES = 100  # a failing run shows this many lines from its start (what failed) ...


TAIL_LINES = 100  # ... and this many from its end (the runner's summary)


LINE_LIMIT = 8192  # longer lines are read (and kept) in pieces of this many bytes


OUTPUT_ROOM = 64 * 1024  # a failed run that left less free room for its output ran out of it


CREATED_SETTLE = 0.3  # a file new in a burst settles once this old (or gone): a temporary file


MOVE_PAIR_WAIT = 0.8  # watchdog reports a move's source 0.5 s late when another watch saw it go


MOVED_IN_AGE = 0.5  # a "created" entry last written this long before was renamed into place


FILE_TICK_WAIT = 0.02  # the longest wait for the coarse file clock to tick on (a tick is 1-10 ms)


STAMP_SLACK = 0.02  # file timestamps lag the clock by up to a jiffy; compare with this margin


RESCAN_FALLBACK = 1.0  # how far back a rescan looks where a directory's birth time is unknown


LOOP_STREAK = 4  # cycles in a row set off by sources changed during runs before those are named


GRANT_STALL = (
    1.0  # a count of watches held that stops growing this long below the need is a refusal
)
GRANT_PATIENCE = 10.0  # ...and so is one still short after this long, growing or not


GRANT_RECHECK = 0.1  # the pause between those counts: watchdog adds watches in its own thread


def run_git(root: str, *args: str, stdin: bytes = b"") -> bytes | None:
    """What git printed, run in ``root``; None when git is missing, fails or hangs."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, input=stdin, capture_output=True, timeout=GIT_TIMEOUT
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode in (0, 1) else None


def git_tracks_any(root: Path, paths: list[str]) -> bool:
    """Whether git holds any of ``paths`` in the work tree at ``root`` (none outside it)."""
    return bool(run_git(str(root), "ls-files", "-z", "--", *paths))


def is_git_work_tree(root: Path) -> bool:
    return (run_git(str(root), "rev-parse", "--is-inside-work-tree") or b"").strip() == b"true"


def changed_since_ref(root: Path, ref: str) -> list[str]:
    """Absolute paths git reports as changed since ``ref``: committed, staged, unstaged and
    untracked.  git names them from the top of the work tree, whatever the current directory."""
    top = (run_git(str(root), "rev-parse", "--show-toplevel") or b"").strip()
    if not top:
        raise UsageError(f"--since {ref}: {root} is not in a git work tree (or git is missing)")
    commit = run_git(str(root), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if ref.startswith("-") or not (commit or b"").strip():
        raise UsageError(f"--since {ref}: git knows no such commit in {os.fsdecode(top)}")
    listed = [
        run_git(str(root), "diff", "--name-only", "-z", "--no-renames", ref, "--"),
        run_git(str(root), "ls-files", "-z", "--others", "--exclude-standard", "--full-name"),
    ]
    if None in listed:
        raise UsageError(f"--since {ref}: git could not list the changes")
    names = {os.fsdecode(n) for out in listed for n in (out or b"").split(b"\0") if n}
    return [os.path.join(os.fsdecode(top), n) for n in sorted(names)]

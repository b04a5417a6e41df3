"""The way in and every way out: a signal exits 128 + its number, a closed stdout quietly, and
whatever was started is killed first.
"""

from __future__ import annotations

import contextlib
import errno
import sys
from collections.abc import Sequence

from .basics import Terminated
from .platform import (
    SIGHUP_NUMBER,
    Signals,
    closed_at_start,
    flush_or_quiet,
    quiet_closed_stderr,
    silence_watchdog,
)
from .report import Reporter, use_color
from .session import Session, run_session
from .warm_server import become_child_subreaper


def main(argv: Sequence[str] | None = None) -> int:
    """Every way out ends here: a signal exits 128 + its number, a closed stdout quietly, and
    whatever was started is killed first.  A stdout closed from the start (``>&-``) is as
    one closed at the first line: nothing could be read, so nothing runs, status 1."""
    quiet_closed_stderr()
    if closed_at_start("stdout"):
        return 1
    become_child_subreaper()  # Linux: a run's daemon, orphaned, stays within reach
    with contextlib.suppress(AttributeError, ValueError):  # a name that is not UTF-8 is no crash
        sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    reporter = Reporter(sys.stdout, use_color(sys.stdout))
    signals = Signals()
    signals.install()
    silence_watchdog()
    sessions: list[Session] = []
    try:
        try:
            return run_session(sys.argv[1:] if argv is None else argv, reporter, signals, sessions)
        except OSError as exc:  # stdout closed (| head), or its terminal hung up
            if not isinstance(exc, BrokenPipeError) and exc.errno != errno.EIO:
                raise
            return 1 if isinstance(exc, BrokenPipeError) else 128 + SIGHUP_NUMBER
        finally:
            for session in sessions:
                session.close()
    except Terminated as exc:
        for session in sessions:  # again: the signal may have cut the first close short
            session.close()
        return 128 + exc.signum
    except KeyboardInterrupt:
        return 130
    finally:
        signals.settle()
        flush_or_quiet()


if __name__ == "__main__":
    sys.exit(main())

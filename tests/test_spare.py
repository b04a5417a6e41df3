"""Rapid saves stay warm: beside the warm interpreter a spare is kept ready, so that a save right
after a verdict forks at once, from an interpreter whose hash seed that package's last run did
not have; the warm interpreters stay few, fit a memory budget, and all end with autotest."""

from __future__ import annotations

import os

from conftest import clean_env, load_autotest

at = load_autotest()
NOSE = at.BUILTIN_RUNNERS["nose"]


def test_a_warm_interpreter_says_the_memory_it_takes_once_ready() -> None:
    server = at.WarmServer(NOSE.module, NOSE.preload, clean_env())
    try:
        assert server.is_ready(at.WARM_START_TIMEOUT)
        assert 5 * 10**6 < server.resident < 500 * 10**6, server.resident
        status = f"/proc/{server.proc.pid}/status"
        if os.path.exists(status):  # what the kernel counts for it, seen from outside
            with open(status) as f:
                kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            assert abs(kib * 1024 - server.resident) < 10 * 10**6, (kib, server.resident)
    finally:
        server.close()

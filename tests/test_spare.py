"""Rapid saves stay warm: beside the warm interpreter a spare is kept ready, so that a save right
after a verdict forks at once, from an interpreter whose hash seed that package's last run did
not have; the warm interpreters stay few, fit a memory budget, and all end with autotest."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conftest import Repo, Watch, clean_env, load_autotest

at = load_autotest()
NOSE = at.BUILTIN_RUNNERS["nose"]

SEED_TEST = """\
import os


def test_records_its_hash_seed():
    with open(os.environ["SEEDS_LOG"], "a") as f:
        f.write("%d %d\\n" % (os.getppid(), hash("autotest")))
"""


def seeds_env(log: Path, **extra: str) -> dict[str, str]:
    """A user's environment where each interpreter draws its own hash seed."""
    env = {k: v for k, v in clean_env(PYTHONDONTWRITEBYTECODE="1").items() if k != "PYTHONHASHSEED"}
    return {**env, "SEEDS_LOG": str(log), **extra}


class Launches:
    """A real WarmLauncher for one package, and every warm interpreter it started, seen as the
    processes they are."""

    def __init__(self, repo: Repo, env: dict[str, str], **options: Any) -> None:
        self.package = at.Package(repo.package("alpha", tests=SEED_TEST), "alpha")
        self.env = env
        facts = at.interpreter_facts(sys.executable, NOSE.plugins)
        self.launcher = at.WarmLauncher(NOSE, env, facts, **options)
        self.processes: set[subprocess.Popen[bytes]] = set()
        self.most_kept = 0
        self.look()

    def look(self) -> None:
        """Note the interpreters the launcher keeps now."""
        kept = self.launcher.warm.kept
        self.processes.update(s.proc for s in kept if s.proc is not None)
        self.most_kept = max(self.most_kept, len(kept))

    def ready_pids(self) -> set[int]:
        return {s.proc.pid for s in self.launcher.warm.kept if s.ready and s.proc is not None}

    def wait_ready(self) -> None:
        self.launcher.wait_ready(package=self.package)
        self.look()

    def run(self) -> bool:
        """Fork one run of the package, at once (launch never waits for an interpreter) and to
        its end; False when it could not be forked at once."""
        start = at.RunStart(self.package, NOSE, sys.executable, (), self.env)
        with tempfile.TemporaryFile() as out:
            process = self.launcher.launch(start, out)
            self.look()
            if process is None:
                return False
            assert process.wait() == 0, out.seek(0) or out.read().decode()
        self.launcher.renew()  # the cycle's end
        self.look()
        return True

    def close(self) -> None:
        self.launcher.close()


@pytest.fixture
def launches(repo: Repo) -> Iterator[Callable[..., Launches]]:
    made: list[Launches] = []

    def make(env: dict[str, str], **options: Any) -> Launches:
        made.append(Launches(repo, env, **options))
        return made[-1]

    yield make
    for each in made:
        each.close()


def seeds(log: Path) -> list[tuple[str, str]]:
    """Each run's warm interpreter and hash, in the order they ran."""
    return [tuple(line.split()) for line in log.read_text().splitlines()]  # type: ignore[misc]


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


def test_a_run_right_after_the_last_forks_at_once_from_the_spare_with_another_hash_seed(
    launches: Callable[..., Launches], tmp_path: Path
) -> None:
    log = tmp_path / "seeds"
    each = launches(seeds_env(log))
    each.wait_ready()
    assert each.run(), "forked from the first interpreter"
    each.wait_ready()  # its seed is this package's last: the spare is the one to fork from now
    assert len(each.ready_pids()) == 2, "the spare is ready too"
    for _ in range(6):
        ready = each.ready_pids()
        assert each.run(), "forked at once: no wait for an interpreter to start"
        assert seeds(log)[-1][0] in map(str, ready), "from one ready before the run"
    runs = seeds(log)
    assert len(runs) == 7
    for last, this in zip(runs, runs[1:]):
        assert this[0] != last[0] and this[1] != last[1], "never the last run's seed"
    assert each.launcher.spare() is at.SpareKept.KEPT
    assert each.most_kept <= 3, "two ready and one starting, at most"
    each.close()
    assert all(p.poll() is not None for p in each.processes), "every interpreter ended"
    assert len(each.processes) >= 3, "used ones were replaced"


def test_with_pythonhashseed_set_one_interpreter_serves_every_run_and_none_is_spare(
    launches: Callable[..., Launches], tmp_path: Path
) -> None:
    log = tmp_path / "seeds"
    each = launches(seeds_env(log, PYTHONHASHSEED="0"))
    each.wait_ready()
    for _ in range(4):
        assert each.run()
    assert len(set(seeds(log))) == 1, "the same interpreter, the seed that was set"
    assert each.most_kept == 1 and len(each.processes) == 1
    assert each.launcher.spare() is at.SpareKept.UNSAID


def test_over_the_memory_budget_no_spare_is_kept_and_the_next_run_waits_for_the_successor(
    launches: Callable[..., Launches], tmp_path: Path
) -> None:
    log = tmp_path / "seeds"
    each = launches(seeds_env(log), spare_budget=1)
    each.wait_ready()
    assert each.launcher.spare() is at.SpareKept.OVER_BUDGET
    assert len(each.launcher.warm.kept) == 1, "no spare started"
    for _ in range(3):
        assert each.run()
        assert len(each.launcher.warm.kept) == 2, "its successor started at the run"
        assert len(each.ready_pids()) == 1, "after the cycle, the used one ends once it is ready"
        each.wait_ready()
    runs = seeds(log)
    assert len({parent for parent, _ in runs}) == 3, "a fresh interpreter for each run"
    assert each.most_kept <= 2, "one ready and its successor, at most"


def stand_in(*served: str, ready: bool = True) -> Any:
    """The two facts the decisions read of a warm interpreter (real ones in the tests above)."""
    return SimpleNamespace(served=set(served), ready=ready)


def test_a_run_forks_from_the_first_started_interpreter_whose_seed_its_package_never_had() -> None:
    a, b, c = stand_in("alpha", "beta"), stand_in("beta"), stand_in()
    assert at.fork_choice("alpha", [a, b, c], a) is b, "b: alpha never had its seed"
    assert at.fork_choice("beta", [a, b, c], b) is c
    assert at.fork_choice("beta", [a, b], b) is a, "a seed two runs old, rather than a wait"
    assert at.fork_choice("beta", [b], b) is None, "only its last run's: it waits"
    assert at.fork_choice("gamma", [a, b, c], None) is a, "the younger stay fresh"


def test_interpreters_whose_seed_was_seen_end_first_and_one_starts_at_a_time() -> None:
    a, b, c = stand_in("alpha"), stand_in(), stand_in("beta")
    assert at.surplus([a, b, c], 2) == [a]
    assert at.surplus([a, b, c], 1) == [a, c]
    assert at.surplus([b], 1) == []
    assert at.wants_another([a, b], 2, True), "one of two is fresh: a second one starts"
    assert not at.wants_another([a, b, stand_in(ready=False)], 2, True), "one at a time"
    assert not at.wants_another([b, stand_in()], 2, True)
    assert at.wants_another([a], 1, True), "its seed was seen: its successor starts"
    assert not at.wants_another([a], 1, False), "PYTHONHASHSEED set: one serves every run"
    assert at.wants_another([], 1, False)


def test_a_spare_is_kept_only_where_seeds_change_and_one_interpreter_fits_the_budget() -> None:
    assert at.spare_kept(True, 30_000_000, 500_000_000) is at.SpareKept.KEPT
    assert at.spare_kept(True, 600_000_000, 500_000_000) is at.SpareKept.OVER_BUDGET
    assert at.spare_kept(True, 0, 500_000_000) is at.SpareKept.UNSAID, "not known yet"
    assert at.spare_kept(False, 30_000_000, 500_000_000) is at.SpareKept.UNSAID


def test_the_spares_of_every_runner_and_interpreter_share_one_memory_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = at.WarmPool(seeds_env(tmp_path / "seeds"), tmp_path)
    package = at.Package(tmp_path, ".")
    pytest_runner = at.BUILTIN_RUNNERS["pytest"]
    try:
        for runner in (NOSE, pytest_runner):
            pool.wait_ready(runner, sys.executable, package)
        nose, pytest_ = (pool.launchers[r.name, sys.executable] for r in (NOSE, pytest_runner))
        assert nose.resident > 0 and pytest_.resident > 0, "each interpreter said its size"
        # (half an interpreter's margin: each interpreter's size differs by a few pages)
        monkeypatch.setattr(at, "SPARE_MEMORY", nose.resident + pytest_.resident // 2)
        pool.renew()
        assert nose.spare() is at.SpareKept.KEPT, "the one started first keeps its spare"
        assert len(nose.warm.kept) == 2, "its spare started"
        assert pytest_.spare() is at.SpareKept.OVER_BUDGET, "what is left is too little"
        assert len(pytest_.warm.kept) == 1
        said = {p.runner: p for p in pool.preloads()}
        assert said["nose"].spare is at.SpareKept.KEPT, "as -v says it"
        assert said["pytest"].resident == pytest_.resident
        monkeypatch.setattr(at, "SPARE_MEMORY", nose.resident // 2)
        pool.renew()
        assert nose.spare() is at.SpareKept.OVER_BUDGET
        assert len([s for s in nose.warm.kept if s.ready]) <= 1, "its spare ended"
    finally:
        pool.close()


def test_explain_says_whether_a_spare_is_kept_and_what_one_interpreter_takes() -> None:
    stream = io.StringIO()
    reporter = at.Reporter(stream, color=False)
    reporter.preloads(
        [
            at.Preloads("nose", sys.executable, (), {}, False, at.SpareKept.KEPT, 28_400_000),
            at.Preloads("pytest", sys.executable, (), {}, False, at.SpareKept.OVER_BUDGET, 7e8),
            at.Preloads("nose2", sys.executable, (), {}, False, at.SpareKept.UNSAID, 28_000_000),
        ]
    )
    assert stream.getvalue().splitlines() == [
        "      warm nose imports ahead: nothing yet",
        "      warm nose keeps a spare interpreter ready: 28 MB each (all spares: at most 500 MB)",
        "      warm pytest imports ahead: nothing yet",
        "      warm pytest keeps no spare interpreter: one takes 700 MB (all spares: at most "
        "500 MB)",
        "      warm nose2 imports ahead: nothing yet",
    ]


CENSUS_TEST = """\
import os


def warm_interpreters(autotest):
    children = []
    for task in os.listdir(f"/proc/{autotest}/task"):
        with open(f"/proc/{autotest}/task/{task}/children") as f:
            children += f.read().split()
    found = []
    for pid in children:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"autotest-warm" in f.read():
                    found.append(pid)
        except OSError:
            pass  # it ended meanwhile
    return found


def test_records_its_seed_and_the_warm_interpreters_alive():
    server = os.getppid()
    with open(f"/proc/{server}/stat") as f:
        autotest = f.read().rsplit(")", 1)[1].split()[1]
    alive = warm_interpreters(autotest)
    with open(os.environ["SEEDS_LOG"], "a") as f:
        f.write("%d %d %s\\n" % (server, hash("autotest"), ",".join(alive) or "-"))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="the census reads /proc")
def test_rapid_saves_change_the_seed_keep_few_interpreters_and_leave_none_behind(
    repo: Repo, watch: Callable[..., Watch], tmp_path: Path
) -> None:
    log = tmp_path / "seeds"
    repo.package("alpha", tests=CENSUS_TEST)
    w = watch(repo.path, "-v", env=seeds_env(log))
    end = w.wait_cycles(1)
    for cycle in range(2, 10):  # each save right after the verdict before it
        repo.write("alpha/alpha/__init__.py", f"VALUE = 1  # save {cycle}\n")
        end = w.wait_cycles(cycle)
    assert w.lines[end - 1].startswith("the 1 package passed"), w.output
    runs = [line.split() for line in log.read_text().splitlines()]
    assert len(runs) == 9, w.output
    assert all(server != str(w.proc.pid) for server, _, _ in runs[1:]), "forked, not cold"
    for last, this in zip(runs, runs[1:]):
        assert this[1] != last[1], "never the seed of the package's last run"
    censuses = [alive.split(",") for _, _, alive in runs[1:]]
    assert max(map(len, censuses)) <= 4, "two kept ready, one starting, the one this run forked"
    assert any("keeps a spare interpreter ready" in line for line in w.lines), w.output
    assert w.stop() == 130
    seen = {pid for census in censuses for pid in census}
    assert not [pid for pid in seen if os.path.exists(f"/proc/{pid}")], "every one ended"

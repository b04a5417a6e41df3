"""Speed at monorepo scale: the warm interpreter imports ahead what the runs taught it (and
nothing of the repository, nothing that would make a forked run differ from a cold one), and a
cycle waits on its runs instead of polling them."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import Repo, Watch, clean_env, load_autotest

at = load_autotest()

# ---------------------------------------------------------------------------------------------
# Which modules may be imported ahead
# ---------------------------------------------------------------------------------------------


def test_only_modules_from_outside_the_repository_are_candidates(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    site = root / ".venv" / "lib" / "python3" / "site-packages"
    reported = [
        ("pydantic", "/usr/lib/python3/site-packages/pydantic/__init__.py"),
        ("core", str(root / "libs" / "core" / "core" / "__init__.py")),
        ("tests.test_core", str(root / "libs" / "core" / "tests" / "test_core.py")),
        ("httpx", str(site / "httpx" / "__init__.py")),  # a .venv kept in the repository
        ("__main__", "/usr/lib/python3/site-packages/nose/__main__.py"),
        ("", "/elsewhere/x.py"),
        ("frozen", ""),
    ]
    assert at.preload_candidates(reported, str(root), [str(site)]) == ["pydantic", "httpx"]


def test_a_module_reached_through_a_link_into_the_repository_is_the_repositorys(
    tmp_path: Path,
) -> None:
    root = tmp_path / "repo"
    (root / "libs").mkdir(parents=True)
    (root / "libs" / "shared.py").write_text("")
    (tmp_path / "linked").symlink_to(root / "libs")
    file = str(tmp_path / "linked" / "shared.py")
    assert not at.is_installed_code(file, str(root.resolve()), [])
    assert at.is_installed_code(str(tmp_path / "repository-next-door" / "x.py"), str(root), [])


def state(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "threads": 1,
        "environment": {"PATH": "/bin"},
        "sys.path": ["", "/lib"],
        "working directory": "/",
        "signal handlers": {2: "default"},
        "standard streams": [1, 2, 3],
        "warning filters": [("default", None, DeprecationWarning, "__main__", 0)],
        "modules": {"os", "sys"},
    }
    base.update(changes)
    return base


@pytest.mark.parametrize(
    ("after", "why"),
    [
        (state(), ""),
        (state(threads=2), "starts a thread"),
        (state(environment={"PATH": "/bin", "X": "1"}), "changes the environment"),
        (state(**{"sys.path": ["/mine", "", "/lib"]}), "changes the sys.path"),
        (state(**{"working directory": "/tmp"}), "changes the working directory"),
        (state(**{"signal handlers": {2: "its own"}}), "changes the signal handlers"),
        (state(**{"standard streams": [1, 9, 3]}), "replaces a standard stream"),
        (state(**{"warning filters": []}), "changes the warning filters"),
        (state(modules={"os", "sys", "core", "lib"}), "imports core from the repository"),
        (state(modules={"os", "sys", "lib"}), ""),
    ],
)
def test_a_module_is_dropped_for_what_its_import_changed(after: dict[str, Any], why: str) -> None:
    assert at.state_change(state(), after, lambda name: name == "core") == why


def test_fewer_threads_after_an_import_are_no_reason_to_drop_it() -> None:
    assert at.state_change(state(threads=3), state(threads=2), lambda name: False) == ""


def test_the_interpreter_state_sees_a_thread_and_an_environment_change() -> None:
    before = at.interpreter_state()
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert at.state_change(before, at.interpreter_state(), lambda n: False) == (
            "starts a thread"
        )
    finally:
        stop.set()
        thread.join()
    os.environ["AUTOTEST_PROBE"] = "1"
    try:
        changed = at.state_change(before, at.interpreter_state(), lambda n: False)
    finally:
        del os.environ["AUTOTEST_PROBE"]
    assert changed == "changes the environment"


def test_the_standard_library_is_told_from_what_a_user_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for looks_up in ("sys.stdlib_module_names", "where the module lives"):  # 3.10+, 3.9
        if looks_up == "where the module lives":
            monkeypatch.delattr(sys, "stdlib_module_names", raising=False)
        is_standard_library = at.is_standard_library.__wrapped__
        assert is_standard_library("json") and is_standard_library("sys"), looks_up
        assert not is_standard_library("pytest") and not is_standard_library("watchdog")
        assert not is_standard_library("no_such_module_anywhere")


def test_explain_names_what_was_installed_and_counts_the_standard_library() -> None:
    stream = io.StringIO()
    reporter = at.Reporter(stream, color=False)
    names = ("pydantic", "pydantic.main", "json", "json.decoder", "zoneinfo", "annotated_types")
    venv = str(Path.cwd() / "services" / "api" / ".venv" / "bin" / "python")
    generated = next(n for n in sys.modules if n.startswith("_sysconfigdata"))
    reporter.preloads(
        [
            at.Preloads("pytest", sys.executable, names, {"grpc": "starts a thread"}, False),
            at.Preloads("nose", venv, ("json", generated), {}, False),
            at.Preloads("nose", sys.executable, (), {}, False),
            at.Preloads("nose2", sys.executable, (), {}, True),
            at.Preloads("unittest", sys.executable, (), {"grpc": "starts a thread"}, True),
        ]
    )
    assert stream.getvalue().splitlines() == [
        "      warm pytest imports ahead: annotated_types, pydantic, with 2 standard-library "
        "packages (6 modules)",
        "      warm pytest does not import grpc: starts a thread",
        "      warm nose (services/api/.venv/bin/python) imports ahead: 2 standard-library "
        "packages (2 modules)",
        "      warm nose imports ahead: nothing yet",
        "      warm nose2 imports ahead: nothing; its runs import nothing else from outside the "
        "repository",
        "      warm unittest imports ahead: nothing",
        "      warm unittest does not import grpc: starts a thread",
    ]


def test_a_dropped_module_is_never_learned_again_and_takes_its_submodules(tmp_path: Path) -> None:
    learned = at.LearnedPreloads(tmp_path / "repo")
    outside = str(tmp_path / "site")
    learned.learn([(n, f"{outside}/{n.replace('.', '/')}.py") for n in ("a", "a.b", "c", "a")])
    assert learned.for_runner(()) == ("a", "a.b", "c")
    learned.drop("a", "starts a thread")
    learned.learn([("a", f"{outside}/a.py"), ("d", f"{outside}/d.py")])
    assert learned.for_runner(()) == ("c", "d")
    assert learned.dropped == {"a": "starts a thread"}
    assert learned.for_runner({"c"}) == ("d",), "a runner's plugins are never imported ahead"


def test_pytest_plugins_distributions_are_never_imported_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "fakeplug-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pytest11]\nfake = fakeplug.plugin\n")
    (info / "RECORD").write_text(
        "fakeplug/__init__.py,,\nfakeplug/plugin.py,,\nfakehelper.py,,\n"
        "fakeplug-1.0.dist-info/RECORD,,\n"
    )
    for installed in ("fakeplug/__init__.py", "fakeplug/plugin.py", "fakehelper.py"):
        (tmp_path / installed).parent.mkdir(exist_ok=True)
        (tmp_path / installed).write_text("")  # Python 3.13 lists only files that exist
    monkeypatch.syspath_prepend(str(tmp_path))
    names = at.plugin_modules("pytest11")
    assert {"fakeplug", "fakehelper"} <= names
    assert at.plugin_modules("") == frozenset()
    assert at.BUILTIN_RUNNERS["pytest"].plugins == "pytest11"


def test_choices_are_read_again_only_where_a_change_can_alter_them(tmp_path: Path) -> None:
    a, b = at.Package(tmp_path / "a", "a"), at.Package(tmp_path / "b", "b")
    chosen = {a: at.Choice(at.BUILTIN_RUNNERS["nose"], "")}
    inside_a = str(tmp_path / "a" / "tests" / "test_a.py")
    assert at.stale_choices([a, b], chosen, [inside_a]) == [a, b], "b was never chosen"
    chosen[b] = chosen[a]
    assert at.stale_choices([a, b], chosen, [inside_a]) == [a]
    assert at.stale_choices([a, b], chosen, []) == []
    assert at.stale_choices([a, b], chosen, [str(tmp_path / "pytest.ini")]) == [a, b]


# ---------------------------------------------------------------------------------------------
# A cycle waits on its runs
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="no pidfd on this platform")
def test_a_cycle_wakes_when_a_cold_run_ends_not_at_its_timeout(repo: Repo) -> None:
    package = at.Package(repo.package("alpha"), "alpha")
    runner = at.make_runner(f"{sys.executable} -c 'import time; time.sleep(0.3)'")
    run = at.Run(at.RunStart(package, runner, sys.executable, (), dict(os.environ)), None)
    assert run.wait_handle() is not None, "a pidfd to wait on"
    started = time.monotonic()
    at.wait_for_runs([run], 30.0)
    waited = time.monotonic() - started
    assert 0.2 < waited < 10, waited
    result = run.poll()
    assert result is not None and result.verdict is at.Verdict.OK
    assert run.handle is None, "the pidfd is closed with the run"


def test_without_pidfds_a_run_is_polled(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    package = at.Package(repo.package("alpha"), "alpha")
    runner = at.make_runner(f"{sys.executable} -c 'import time; time.sleep(30)'")
    run = at.Run(at.RunStart(package, runner, sys.executable, (), dict(os.environ)), None)
    try:
        assert run.wait_handle() is None
        started = time.monotonic()
        at.wait_for_runs([run], 30.0)
        assert time.monotonic() - started < 5, "polled, not blocked for the whole wait"
    finally:
        run.kill()


def test_the_cycle_wakes_at_least_every_wake_interval_to_look_for_changes() -> None:
    waits: list[float] = []

    class Endless:
        def poll(self) -> None:
            return None

        def kill(self) -> None:
            pass

        def wait_handle(self) -> int | None:
            return None

    checks = iter([False, False, False, True])
    steps = [at.Step(at.Package(Path("/r/a"), "a"), "")]
    outcome = at.run_cycle(
        steps, lambda p: Endless(), 1, lambda: next(checks), True, lambda r: None,
        wait=lambda runs, seconds: waits.append(seconds), wake_every=0.25,
    )  # fmt: skip
    assert outcome.interrupted and waits == [0.25, 0.25, 0.25]


# ---------------------------------------------------------------------------------------------
# The warm interpreter imports ahead what the runs taught it
# ---------------------------------------------------------------------------------------------

SEEING_TEST = """\
import os
import sys

SEEN = {{name: name in sys.modules for name in ("extlib", "threadlib", "inrepo")}}
with open(os.environ["SEEN_LOG"], "a") as f:
    f.write(f"{{sorted(SEEN.items())!r}} {{os.environ.get('EXT_SEES')!r}} {{os.getpid()}}\\n")

import extlib
import inrepo
{more}

def test_uses_them():
    assert extlib.X == inrepo.Z == 1
"""

EXTLIB = """\
import os
import time

with open(os.environ["IMPORTS_LOG"], "a") as f:
    f.write(f"{os.getpid()}\\n")
time.sleep(0.3)  # a slow import, as pydantic's or numpy's
X = 1
"""

THREADLIB = """\
import threading

threading.Thread(target=threading.Event().wait, daemon=True).start()
Y = 1
"""


def preload_repo(repo: Repo, tmp_path: Path, more: str = "") -> tuple[dict[str, str], Path]:
    """A package whose tests import a slow module installed outside the repository and a module
    of the repository that is importable the same way (both on PYTHONPATH)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "extlib.py").write_text(EXTLIB)
    (site / "threadlib.py").write_text(THREADLIB)
    repo.write("shared/inrepo.py", "Z = 1\n")
    repo.package("alpha", tests=SEEING_TEST.format(more=more))
    seen = tmp_path / "seen.log"
    env = clean_env(
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONPATH=os.pathsep.join([str(site), str(repo.path / "shared")]),
        IMPORTS_LOG=str(tmp_path / "imports.log"),
        SEEN_LOG=str(seen),
    )
    return env, seen


def save_cycles(w: Watch, repo: Repo, count: int) -> list[str]:
    """``count`` more cycles, each set off by a save; the lines of the last."""
    start = w.wait_cycles(1)
    end = start
    for number in range(2, count + 2):
        repo.write("alpha/alpha/__init__.py", f"VALUE = 1  # save {number}\n")
        start, end = end, w.wait_cycles(number)
    return w.lines[start:end]


def test_a_module_from_outside_the_repository_is_imported_ahead_and_the_repositorys_never(
    repo: Repo, watch: Callable[..., Watch], tmp_path: Path
) -> None:
    env, seen = preload_repo(repo, tmp_path)
    w = watch(repo.path, "--explain", env=env)
    lines = save_cycles(w, repo, 3)  # cold, forked (it learns), forked with extlib ahead
    rows = seen.read_text().splitlines()
    assert len(rows) == 4, w.output
    cold, learning, preloaded, again = rows
    assert "('extlib', False)" in cold and "('extlib', False)" in learning
    assert "('extlib', True)" in preloaded and "('extlib', True)" in again, w.output
    assert all("('inrepo', False)" in row for row in rows), "never the repository's module"
    assert any("warm nose imports ahead:" in line and "extlib" in line for line in lines)
    assert not any("inrepo" in line for line in w.lines)
    assert w.lines[-1].startswith("the 1 package passed"), w.output
    importers = (tmp_path / "imports.log").read_text().split()
    runs = [row.split()[-1] for row in rows]
    assert [r for r in runs if r in importers] == runs[:2], "only the cold and learning runs"
    # each later import is a warm interpreter's probe or its own, one of each per interpreter
    # (replaced once runs have seen its hash seed), never a run's
    assert len(importers) >= 4, importers


@pytest.mark.parametrize("proven", [False, True], ids=["new", "proven"])
def test_a_module_proven_in_an_earlier_warm_interpreter_is_imported_without_a_probe(
    tmp_path: Path, proven: bool
) -> None:
    """A fresh warm interpreter starts whenever runs have seen an earlier one's hash seed:
    probing again what an earlier one imported and kept would double its start-up for
    nothing."""
    from conftest import AUTOTEST

    site = tmp_path / "site"
    site.mkdir()
    (site / "extlib.py").write_text(EXTLIB)
    log = tmp_path / "imports.log"
    code = (
        f"import sys; sys.path[:0] = [{str(site)!r}, {str(AUTOTEST.parent)!r}]\n"
        "import autotest\n"
        f"autotest.import_learned(['extlib'], {['extlib'] if proven else []!r}, "
        f"{str(tmp_path / 'repo')!r}, (), print)\n"
        "print('imported' if 'extlib' in sys.modules else 'not imported')\n"
    )
    env = clean_env(IMPORTS_LOG=str(log))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout == "imported\n", done.stderr
    importers = log.read_text().split()
    assert len(importers) == (1 if proven else 2), "the probe's import, then its own"


def test_a_virtualenvs_interpreter_is_asked_for_its_facts_and_one_that_cannot_tell_is_not_warmed(
    tmp_path: Path,
) -> None:
    from test_verdicts import make_venv

    python = make_venv(tmp_path / "venv")
    facts = at.interpreter_facts(str(python), "pytest11")
    assert facts is not None
    assert any(d.startswith(str((tmp_path / "venv").resolve())) for d in facts.site_dirs)
    assert facts.plugins == at.plugin_modules("pytest11"), "it sees this one's site-packages"
    mute = tmp_path / "python"
    mute.write_text("#!/bin/sh\necho 'Python 2.7'\n")
    mute.chmod(0o755)
    assert at.interpreter_facts(str(mute), "pytest11") is None
    nose = at.BUILTIN_RUNNERS["nose"]
    unknown = at.interpreter_facts(str(mute), nose.plugins)
    launcher = at.WarmLauncher(nose, clean_env(), unknown, python=str(mute))
    assert launcher.warm.kept == [], "its runs start cold"


def test_only_the_virtualenvs_of_the_packages_changed_last_are_kept_warm(tmp_path: Path) -> None:
    """Each warm interpreter holds in memory what it imported ahead: a repository of thirty
    packages, each with its own .venv, must not keep thirty of them."""
    pool = at.WarmPool(clean_env(), tmp_path)
    nose = at.BUILTIN_RUNNERS["nose"]
    venvs = [str(tmp_path / f"v{i}" / "bin" / "python") for i in range(5)]
    uses = [(nose, python) for python in [sys.executable, *venvs]]

    def warm() -> set[str]:
        return {python for _, python in pool.launchers}

    try:
        pool.prepare(uses)
        assert warm() == {sys.executable}, "autotest's own, always; no virtualenv yet"
        pool.prepare(uses, changed=[venvs[0]])
        assert warm() == {sys.executable, venvs[0]}
        pool.prepare(uses, changed=venvs[1:4])
        assert warm() == {sys.executable, *venvs[1:4]}, "the one changed longest ago ends"
        pool.prepare(uses, changed=[venvs[0], venvs[0]])
        assert warm() == {sys.executable, venvs[0], venvs[2], venvs[3]}
        assert pool.launcher(at.BUILTIN_RUNNERS["nose"], venvs[4]) is None, "its runs start cold"
        assert pool.launcher(at.BUILTIN_RUNNERS["nose"], venvs[0]) is not None
    finally:
        pool.close()


VENV_SEEING_TEST = """\
import os
import sys

with open(os.environ["SEEN_LOG"], "a") as f:
    seen = "only_in_its_venv" in sys.modules
    f.write(f"{sys.prefix} {os.getppid()} {seen}\\n")

import only_in_its_venv


def test_runs_in_its_venv():
    assert only_in_its_venv.HERE
"""


def test_a_package_with_its_own_venv_is_forked_from_a_warm_interpreter_of_that_venv(
    repo: Repo, watch: Callable[..., Watch], tmp_path: Path
) -> None:
    """With its own learned set: a module installed in the package's .venv (inside the
    repository, yet installed code) is imported ahead there."""
    from test_verdicts import make_venv

    repo.package("services/api", tests=VENV_SEEING_TEST)
    venv = repo.path / "services" / "api" / ".venv"
    make_venv(venv)
    seen = tmp_path / "seen.log"
    env = clean_env(PYTHONDONTWRITEBYTECODE="1", SEEN_LOG=str(seen))
    w = watch(repo.path, "-v", env=env)
    start = w.wait_cycles(1)
    end = start
    for number in range(2, 5):  # cold, forked (it learns), forked with the module ahead, again
        repo.write("services/api/api/__init__.py", f"VALUE = 1  # save {number}\n")
        start, end = end, w.wait_cycles(number)
    rows = [line.split() for line in seen.read_text().splitlines()]
    assert len(rows) == 4, w.output
    assert {prefix for prefix, _, _ in rows} == {str(venv)}
    assert rows[0][1] == str(w.proc.pid), "the first cycle runs cold"
    assert all(parent != str(w.proc.pid) for _, parent, _ in rows[1:]), "then forked"
    assert [ahead for _, _, ahead in rows] == ["False", "False", "True", "True"], w.output
    shown = "      warm nose (services/api/.venv/bin/python) imports ahead: only_in_its_venv"
    assert any(line.startswith(shown) for line in w.lines[start:end]), w.output


CLI_TEST = """\
import os
import sys


def test_starting_up_imports_nothing_heavy():
    with open(os.environ["SEEN_LOG"], "a") as f:
        f.write(f"{os.getppid()} {'extlib' in sys.modules}\\n")
    assert "extlib" not in sys.modules


def test_the_heavy_part_works():
    import extlib

    assert extlib.X
"""


def test_a_forked_failure_is_confirmed_cold_and_a_package_that_passes_cold_then_runs_cold(
    repo: Repo, watch: Callable[..., Watch], tmp_path: Path
) -> None:
    """Both packages' tests teach the warm interpreter to import extlib ahead; apps/cli's also
    check that starting up does not import it.  Forked, that check fails (extlib is its own,
    so it is not hidden from it); cold it passes, and the cold verdict is the one shown."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "extlib.py").write_text("X = 1\n")
    repo.package("libs/models", tests="import extlib\n\n\ndef test_m():\n    assert extlib.X\n")
    repo.package("apps/cli", tests=CLI_TEST)
    seen = tmp_path / "seen.log"
    env = clean_env(PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(site), SEEN_LOG=str(seen))
    w = watch(repo.path, env=env)
    w.wait_cycles(1)
    for number in (2, 3, 4):  # cold, forked (it learns), forked with extlib ahead, then
        repo.write("libs/models/models/__init__.py", f"VALUE = {number}\n")
        w.wait_cycles(number)
    assert sum(line.startswith("all 2 packages passed") for line in w.lines) == 4, w.output
    differed = (
        "autotest: apps/cli failed when forked from the warm interpreter, and passed when run "
        "again cold; its runs start cold from now on"
    )
    assert w.lines.count(differed) == 1, w.output
    autotest = str(w.proc.pid)
    rows = [line.split() for line in seen.read_text().splitlines()]
    assert rows[0] == [autotest, "False"] and rows[1][0] != autotest, "cold, then forked"
    assert rows[2][0] != autotest and rows[2][1] == "True", "forked with extlib ahead: failed"
    assert rows[3:] == [[autotest, "False"], [autotest, "False"]], "confirmed cold; then cold"


@pytest.mark.parametrize("ahead", [True, False], ids=["modules imported ahead", "none"])
def test_a_package_that_starts_failing_forked_is_confirmed_cold_once(
    repo: Repo, watch: Callable[..., Watch], tmp_path: Path, ahead: bool
) -> None:
    """The cold run costs a cold start, so only a new failure pays for it, and only when its
    warm interpreter had imported modules ahead (without any, a forked run sees what a cold
    one sees): saves while the package keeps failing are forked only."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "extlib.py").write_text("X = 1\n")
    seen = tmp_path / "seen.log"
    test = (
        f"import os\n{'import extlib' if ahead else ''}\n\nfrom alpha import VALUE\n\n\n"
        "def test_value():\n"
        "    with open(os.environ['SEEN_LOG'], 'a') as f:\n"
        "        f.write(f'{os.getppid()} {VALUE}\\n')\n"
        "    assert VALUE == 1\n"
    )
    repo.package("alpha", tests=test)
    env = clean_env(PYTHONDONTWRITEBYTECODE="1", SEEN_LOG=str(seen), PYTHONPATH=str(site))
    w = watch(repo.path, env=env)
    w.wait_cycles(1)
    for number, value in ((2, 1), (3, 2), (4, 3)):  # forked and passing, then failing twice
        repo.write("alpha/alpha/__init__.py", f"VALUE = {value}\n")
        w.wait_cycles(number)
    autotest = str(w.proc.pid)
    rows = [line.split() for line in seen.read_text().splitlines()]
    forked = [(parent != autotest, value) for parent, value in rows]
    confirmed = [(True, "2"), (False, "2")] if ahead else [(True, "2")]
    assert forked == [(False, "1"), (True, "1"), *confirmed, (True, "3")], w.output
    assert w.lines[-1].startswith("alpha FAILED"), w.output
    assert "failed when forked" not in w.output


DEPLIB = """\
import warnings

warnings.warn("deplib.old_api is deprecated", DeprecationWarning)
X = 1
"""


def test_a_module_that_warns_when_imported_is_not_imported_ahead_so_pytest_still_sees_it(
    repo: Repo, watch: Callable[..., Watch], tmp_path: Path
) -> None:
    """Imported ahead, its warning would be issued in the warm interpreter, under no run's
    filters: a run with pytest's ``filterwarnings = error`` would pass where a cold one fails."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "deplib.py").write_text(DEPLIB)
    (site / "extlib.py").write_text("X = 1\n")
    repo.write("pyproject.toml", "[tool.pytest.ini_options]\n")
    repo.package("libs/alpha", tests="import deplib\nimport extlib\n\n\ndef test_x():\n"
                 "    assert deplib.X == extlib.X\n")  # fmt: skip
    env = clean_env(PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(site))
    w = watch(repo.path, "-v", env=env)
    start = w.wait_cycles(1)
    for number in (2, 3, 4):  # cold, forked (it learns), forked with what was imported ahead
        repo.write("libs/alpha/alpha/__init__.py", f"VALUE = {number}\n")
        start = w.wait_cycles(number)
    dropped = "      warm pytest does not import deplib: issues a DeprecationWarning when imported"
    assert dropped in w.lines, w.output
    assert any("imports ahead:" in line and "extlib" in line for line in w.lines), w.output
    repo.write("pyproject.toml", '[tool.pytest.ini_options]\nfilterwarnings = ["error"]\n')
    w.wait_cycles(5)
    assert any(line.startswith("libs/alpha  FAILED") for line in w.lines[start:]), w.output
    assert "DeprecationWarning: deplib.old_api is deprecated" in w.output


def test_a_module_whose_import_starts_a_thread_is_dropped_and_runs_stay_right(
    repo: Repo, watch: Callable[..., Watch], tmp_path: Path
) -> None:
    env, seen = preload_repo(repo, tmp_path, more="import threadlib\n")
    w = watch(repo.path, "-v", env=env)
    save_cycles(w, repo, 3)
    rows = seen.read_text().splitlines()
    assert "('extlib', True)" in rows[-1], w.output
    assert all("('threadlib', False)" in row for row in rows), "the thread would be lost"
    assert "      warm nose does not import threadlib: starts a thread" in w.lines, w.output
    assert all(line.startswith("the 1 package passed") for line in w.lines if "passed" in line)


def test_a_preloaded_forked_run_sees_what_a_cold_run_sees(
    repo: Repo, watch: Callable[..., Watch], tmp_path: Path
) -> None:
    """The parity probe of test_cli, taken from a run forked by a warm interpreter that has
    imported ahead a module from outside the repository."""
    from test_cli import PROBE_TEST, same_report

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "outside.py").write_text("X = 1\n")
    repo.package("alpha", tests="import outside\n" + PROBE_TEST)
    seen: dict[str, dict[str, Any]] = {}
    for mode, args, cycles in (("cold", ["--no-warm"], 1), ("warm", ["-v"], 3)):
        out = tmp_path / f"{mode}.json"
        env = clean_env(
            PYTHONDONTWRITEBYTECODE="1", PROBE_OUT=str(out), PYTHONPATH=str(tmp_path / "site")
        )
        w = watch(repo.path, *args, env=env)
        save_cycles(w, repo, cycles)
        seen[mode] = json.loads(out.read_text())
        assert w.stop() == 130
        if mode == "warm":
            assert "      warm nose imports ahead: outside (1 module)" in w.lines, w.output
    cold, warm = seen["cold"], seen["warm"]
    assert cold.pop("parent_is_autotest") and not warm.pop("parent_is_autotest")
    for info in (cold, warm):
        info["env"].pop("PROBE_OUT")
        info["env"].pop("AUTOTEST_RUN")  # each run's own mark
        info["argv"] = same_report(info["argv"])
    for key in cold:
        assert warm[key] == cold[key], key


LATE_THREAD = """\
import os
import threading

COUNT = os.environ["IMPORT_COUNT"]
with open(COUNT, "a") as f:
    f.write("x")
with open(COUNT) as f:
    imports = len(f.read())
if imports == 4:  # cold run, learning run, the probe: the warm interpreter's own import
    threading.Thread(target=threading.Event().wait, daemon=True).start()
Y = 1
"""


def test_a_module_that_starts_a_thread_only_in_the_warm_interpreter_ends_it_and_is_dropped(
    repo: Repo, watch: Callable[..., Watch], tmp_path: Path
) -> None:
    """The probe found it fit, the real import did not: that warm interpreter ends, and the
    next one starts without the module, before the run is forked."""
    env, seen = preload_repo(repo, tmp_path, more="import threadlib\n")
    (tmp_path / "site" / "threadlib.py").write_text(LATE_THREAD)
    env["IMPORT_COUNT"] = str(tmp_path / "count")
    w = watch(repo.path, "-v", env=env)
    save_cycles(w, repo, 3)
    rows = seen.read_text().splitlines()
    assert "('extlib', True)" in rows[2] and "('extlib', True)" in rows[3], w.output
    assert all("('threadlib', False)" in row for row in rows)
    assert "      warm nose does not import threadlib: starts a thread" in w.lines, w.output
    assert sum(line.startswith("the 1 package passed") for line in w.lines) == 4, w.output
    assert (tmp_path / "count").read_text() == "x" * 6, "cold, learning, probe, warm, 2 runs"


USES_HANDLERS = """\
import logging.handlers


def test_rotates():
    assert logging.handlers.RotatingFileHandler
"""

FORGETS_HANDLERS = """\
import logging


def test_rotates_without_importing_the_submodule():
    assert logging.handlers.RotatingFileHandler
"""


def test_a_module_imported_ahead_for_another_package_is_hidden_from_a_forked_run(
    repo: Repo, watch: Callable[..., Watch]
) -> None:
    """beta uses logging.handlers having imported logging alone: cold, AttributeError.  Once
    alpha's runs taught the warm interpreter to import logging.handlers ahead, a forked run of
    beta must not see it either, or it passes where a cold run fails."""
    repo.package("alpha", tests=USES_HANDLERS)
    repo.package("beta", tests=FORGETS_HANDLERS)
    w = watch(repo.path, "-v", env=clean_env(PYTHONDONTWRITEBYTECODE="1"))
    end = w.wait_cycles(1)
    for number in (2, 3, 4):  # cold; forked, alpha teaches; forked with it ahead, twice
        repo.write("alpha/alpha/__init__.py", f"VALUE = 1  # save {number}\n")
        start, end = end, w.wait_cycles(number)
        cycle = w.lines[start:end]
        assert any(line.split()[:2] == ["beta", "FAILED"] for line in cycle), w.output
        assert any("AttributeError" in line and "handlers" in line for line in cycle), w.output
    assert any("imports ahead:" in line and "standard-library" in line for line in w.lines), (
        w.output
    )


UNITTEST_STYLE = """\
import unittest


class DoubleTests(unittest.TestCase):
    def test_double(self):
        self.assertEqual(2 * 2, 4)
"""


def test_what_the_runner_imported_itself_is_never_hidden_from_a_forked_run(
    repo: Repo, watch: Callable[..., Watch]
) -> None:
    """alpha runs under pytest, which imports unittest only when it meets a TestCase: its
    runs teach unittest.  nose imports unittest itself; hiding it from beta's forked run
    would give beta a second unittest whose TestCase nose's loader does not know: no tests."""
    repo.write("pyproject.toml", '[tool.autotest.runners]\n"alpha" = "pytest"\n')
    repo.package("alpha", tests=UNITTEST_STYLE)
    repo.package("beta", tests=UNITTEST_STYLE)
    w = watch(repo.path, "-v", env=clean_env(PYTHONDONTWRITEBYTECODE="1"))
    end = w.wait_cycles(1)
    for number in (2, 3, 4, 5):
        repo.write("alpha/alpha/__init__.py", f"VALUE = 1  # save {number}\n")
        start, end = end, w.wait_cycles(number)
        cycle = w.lines[start:end]
        assert any(line.split()[:2] == ["beta", "ok"] for line in cycle), w.output
    assert any("imports ahead:" in line and "standard-library" in line for line in w.lines), (
        w.output
    )

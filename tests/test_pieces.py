"""The pieces between watchdog and a verdict, each on its own: the event handler, the loop guard,
the intake, and the cycle with stand-in runs."""

from __future__ import annotations
import __future__

import ast
import builtins
import json
import os
import subprocess
import symtable
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from watchdog.events import (
    DirCreatedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)

from conftest import load_autotest, wait_until

at = load_autotest()


# ---------------------------------------------------------------------------------------------
# ChangeHandler: watchdog's events become changed paths
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def handler(tmp_path: Path) -> Any:
    return at.ChangeHandler(at.IgnoreRules(tmp_path), at.ChangeSet())


def test_a_modified_file_is_a_change_and_an_opened_one_is_not(handler: Any, tmp_path: Path) -> None:
    handler.on_any_event(FileOpenedEvent(str(tmp_path / "a.py")))
    assert not handler.changes.pending()
    handler.on_any_event(FileModifiedEvent(str(tmp_path / "a.py")))
    assert list(handler.changes.take_paths()) == [str(tmp_path / "a.py")]


def test_editor_side_files_and_tool_directories_never_reach_the_changeset(
    handler: Any, tmp_path: Path
) -> None:
    for rel in (".a.py.swp", "a.py~", "pkg/__pycache__/a.cpython-311.pyc", ".git/index"):
        handler.on_any_event(FileModifiedEvent(str(tmp_path / rel)))
    assert not handler.changes.pending()


def test_a_temporary_file_renamed_into_place_is_one_change_of_the_target(
    handler: Any, tmp_path: Path
) -> None:
    temp, target = str(tmp_path / "a.py.tmp1234"), str(tmp_path / "a.py")
    handler.on_any_event(FileCreatedEvent(temp))
    handler.on_any_event(FileModifiedEvent(temp))
    handler.on_any_event(FileMovedEvent(temp, target))
    assert list(handler.changes.take_paths()) == [target]


def test_a_deleted_file_is_a_change(handler: Any, tmp_path: Path) -> None:
    handler.on_any_event(FileDeletedEvent(str(tmp_path / "gone.py")))
    assert list(handler.changes.take_paths()) == [str(tmp_path / "gone.py")]


def test_directory_events_are_passed_on_for_the_watch_plan(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    handler = at.ChangeHandler(
        at.IgnoreRules(tmp_path), at.ChangeSet(), lambda kind, path: seen.append((kind, path))
    )
    handler.on_any_event(DirCreatedEvent(str(tmp_path / "new")))
    assert seen == [("created", str(tmp_path / "new"))]
    assert list(handler.changes.take_paths()) == [str(tmp_path / "new")]


# ---------------------------------------------------------------------------------------------
# LoopGuard: the runs' own writes, told from a person's edits
# ---------------------------------------------------------------------------------------------


def package_guard(pkg: Path) -> Any:
    """A guard for a tree where everything lies in the one package ``pkg``."""
    return at.LoopGuard(lambda path: str(pkg) if path.startswith(str(pkg)) else None)


def ran(guard: Any, package: Path, started: float, ended: float) -> None:
    """A run of ``package`` between two wall-clock times (the monotonic ones far in the past)."""
    guard.windows.append(at.RunWindow(str(package), started, -100.0, ended, -99.0))


def written(path: Path, text: str = "x") -> tuple[str, float]:
    """``path`` written; its name and when (its ctime), as a run or a person would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path), path.stat().st_ctime


def test_a_file_written_during_its_own_packages_run_is_the_runs_doing(tmp_path: Path) -> None:
    guard = package_guard(tmp_path / "pkg")
    out, stamp = written(tmp_path / "pkg" / "runs" / "1f0c" / "log.txt")
    ran(guard, tmp_path / "pkg", stamp - 1, stamp + 1)
    assert guard.is_runs_doing(out, 0.0)


def test_a_save_after_the_run_ended_is_a_persons_however_late_its_event(tmp_path: Path) -> None:
    guard = package_guard(tmp_path / "pkg")
    out, stamp = written(tmp_path / "pkg" / "template.html")
    ran(guard, tmp_path / "pkg", stamp - 2, stamp - 1)
    assert not guard.is_runs_doing(out, -99.0 + at.ECHO_GRACE / 2)


def test_a_removal_is_judged_by_when_it_stamped_its_directory(tmp_path: Path) -> None:
    guard = package_guard(tmp_path / "pkg")
    gone, _ = written(tmp_path / "pkg" / "data" / "old.txt")
    os.remove(gone)
    stamp = (tmp_path / "pkg" / "data").stat().st_ctime
    ran(guard, tmp_path / "pkg", stamp - 1, stamp + 1)
    assert guard.is_runs_doing(gone, 0.0), "removed during the run"
    guard.windows.clear()
    ran(guard, tmp_path / "pkg", stamp - 2, stamp - 1)
    assert not guard.is_runs_doing(gone, -99.0), "removed after it, however soon its event"


def test_a_file_written_during_another_packages_run_is_a_change(tmp_path: Path) -> None:
    guard = package_guard(tmp_path / "pkg")
    out, stamp = written(tmp_path / "other" / "data.json")
    ran(guard, tmp_path / "pkg", stamp - 1, stamp + 1)
    assert not guard.is_runs_doing(out, 0.0)


def test_a_source_rewritten_alike_during_its_run_is_the_runs_doing(tmp_path: Path) -> None:
    guard = package_guard(tmp_path / "pkg")
    gen, stamp = written(tmp_path / "pkg" / "generated.py", "X = 1\n")
    ran(guard, tmp_path / "pkg", stamp - 1, stamp + 1)
    assert not guard.is_runs_doing(gen, 0.0), "first seen: it may be a person's save"
    assert guard.is_runs_doing(gen, 0.0), "written again alike"
    written(tmp_path / "pkg" / "generated.py", "X = 2\n")
    assert not guard.is_runs_doing(gen, 0.0), "new content is a person's, or worth a test"


def test_sources_changed_during_runs_cycle_after_cycle_are_named_at_last(tmp_path: Path) -> None:
    guard = package_guard(tmp_path / "pkg")
    for n in range(1, at.LOOP_STREAK + 1):
        gen, stamp = written(tmp_path / "pkg" / "gen" / f"m{n}.py", f"N = {n}\n")
        ran(guard, tmp_path / "pkg", stamp - 1, stamp + 1)
        named = guard.observe({gen: 0.0})
        assert named == ([] if n < at.LOOP_STREAK else [gen])
    later, stamp = written(tmp_path / "pkg" / "gen" / "m99.py")
    ran(guard, tmp_path / "pkg", stamp - 1, stamp + 1)
    assert guard.is_runs_doing(later, 0.0), "a new name in the same directory is theirs too"


def test_a_person_saving_during_a_few_runs_in_a_row_is_not_blamed(tmp_path: Path) -> None:
    guard = package_guard(tmp_path / "pkg")
    for n in range(at.LOOP_STREAK - 1):
        test, stamp = written(tmp_path / "pkg" / "tests" / "test_pkg.py", f"# v{n}\n")
        ran(guard, tmp_path / "pkg", stamp - 1, stamp + 1)
        assert not guard.is_runs_doing(test, 0.0)
        assert guard.observe({test: 0.0}) == []


def test_a_named_file_saved_while_idle_counts_again(tmp_path: Path) -> None:
    guard = package_guard(tmp_path / "pkg")
    out, stamp = written(tmp_path / "pkg" / "out.py")
    guard.run_written.add(out)
    ran(guard, tmp_path / "pkg", stamp - 3, stamp - 2)
    assert not guard.is_runs_doing(out, 0.0)


def test_a_change_made_while_idle_breaks_the_streak(tmp_path: Path) -> None:
    guard = package_guard(tmp_path / "pkg")
    gen, stamp = written(tmp_path / "pkg" / "gen.py")
    ran(guard, tmp_path / "pkg", stamp - 1, stamp + 1)
    guard.observe({gen: 0.0})
    idle, _ = written(tmp_path / "pkg" / "gen.py", "changed while idle")
    guard.windows.clear()
    ran(guard, tmp_path / "pkg", stamp - 3, stamp - 2)
    assert guard.observe({idle: 0.0}) == [] and guard.streak == 0


def test_a_content_seen_before_a_change_made_while_idle_is_not_taken_for_alike(
    tmp_path: Path,
) -> None:
    guard = package_guard(tmp_path / "pkg")
    source, stamp = written(tmp_path / "pkg" / "mod.py", "X = 2\n")
    ran(guard, tmp_path / "pkg", stamp - 1, stamp + 1)
    assert not guard.is_runs_doing(source, 0.0), "saved during a run"
    guard.windows.clear()
    source, stamp = written(tmp_path / "pkg" / "mod.py", "X = 1\n")
    ran(guard, tmp_path / "pkg", stamp - 3, stamp - 2)
    assert not guard.is_runs_doing(source, 0.0), "saved while idle"
    source, stamp = written(tmp_path / "pkg" / "mod.py", "X = 2\n")
    ran(guard, tmp_path / "pkg", stamp - 1, stamp + 1)
    assert not guard.is_runs_doing(source, 0.0), "what it held before the idle save: new again"


def born_then_run_started(path: Path) -> float:
    """``path`` is born; once the file clock is well past its birth, a run starts: when."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("before the run")
    born = at.birth_time(str(path))
    if born is None:
        pytest.skip("the filesystem does not record birth times")
    started = born + 3 * at.STAMP_SLACK
    assert wait_until(lambda: at.file_clock() > started, 5)
    return started


def test_a_file_beside_a_named_one_is_muted_only_when_a_run_created_it(tmp_path: Path) -> None:
    guard = package_guard(tmp_path / "pkg")
    started = born_then_run_started(tmp_path / "pkg" / "gen" / "__init__.py")
    guard.run_written_dirs.add(str(tmp_path / "pkg" / "gen"))
    new, stamp = written(tmp_path / "pkg" / "gen" / "m2.py", "N = 2\n")
    mine, _ = written(tmp_path / "pkg" / "gen" / "__init__.py", "# saved during the run\n")
    ran(guard, tmp_path / "pkg", started, stamp + 1)
    assert not guard.is_runs_doing(mine, 0.0), "existed before the run"
    assert guard.is_runs_doing(new, 0.0), "born during the run, beside a named file"


def test_a_non_source_is_the_runs_when_it_made_it_and_a_persons_when_it_existed(
    tmp_path: Path,
) -> None:
    guard = package_guard(tmp_path / "pkg")
    started = born_then_run_started(tmp_path / "pkg" / "template.html")
    out, stamp = written(tmp_path / "pkg" / "out.txt")
    template, _ = written(tmp_path / "pkg" / "template.html", "<p>1</p>")
    ran(guard, tmp_path / "pkg", started, stamp + 1)
    assert not guard.is_runs_doing(template, 0.0), "a person's save of a file older than the run"
    assert guard.is_runs_doing(out, 0.0), "made by the run"
    guard.windows.clear()
    out, stamp = written(tmp_path / "pkg" / "out.txt", "xx")
    ran(guard, tmp_path / "pkg", stamp - 1, stamp + 1)
    assert guard.is_runs_doing(out, 0.0), "a later run's write to it stays the runs'"
    assert not guard.is_runs_doing(out, 0.0, tracked=True), "unless git tracks it"


def test_git_tracked_names_the_tracked_paths_literally_removed_ones_too(tmp_path: Path) -> None:
    root = tmp_path / "repo" / "sub"
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    names = ["kept.txt", "gone.txt", "odd[1]*.txt", "untracked.txt"]
    for name in names:
        (root / name).write_text("x")
    subprocess.run(["git", "-C", str(root), "add", *names[:3]], check=True)
    (root / "gone.txt").unlink()
    (root / "odd1x.txt").write_text("x")  # what the odd name would match as a glob
    rules = at.IgnoreRules(root)
    asked = [str(root / n) for n in [*names, "odd1x.txt"]]
    assert rules.git_tracked(asked) == {str(root / n) for n in names[:3]}


# ---------------------------------------------------------------------------------------------
# Intake: one debounce, the git filter, keys
# ---------------------------------------------------------------------------------------------


def make_intake(root: Path, debounce: float = 0.01) -> tuple[Any, list[list[str]]]:
    echoes: list[list[str]] = []
    intake = at.Intake(
        at.ChangeSet(), at.IgnoreRules(root), at.LoopGuard(), debounce, echoes.append
    )
    return intake, echoes


def test_verbose_names_what_changed_during_runs_and_how_the_guard_took_it(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    guard = package_guard(pkg)
    judged: list[tuple[list[str], list[str]]] = []
    intake = at.Intake(
        at.ChangeSet(), at.IgnoreRules(tmp_path), guard, 0.01, lambda paths: None,
        lambda admitted, discarded: judged.append((admitted, discarded)),
    )  # fmt: skip
    log, stamp = written(pkg / "runs" / "log.txt")
    source, _ = written(pkg / "pkg" / "__init__.py", "VALUE = 2\n")
    ran(guard, pkg, stamp - 1, stamp + 1)
    intake.changes.add([log, source])
    request = intake.next_request()
    assert list(request.paths) == [source]
    assert judged == [([source], [log])]


def test_keys_become_requests_in_the_order_pressed(tmp_path: Path) -> None:
    intake, _ = make_intake(tmp_path)
    for key in "xfaq":
        intake.changes.press(key)
    assert [intake.next_request().kind for _ in range(3)] == [
        at.Ask.FAILED,
        at.Ask.ALL,
        at.Ask.QUIT,
    ]


def test_a_settled_burst_is_one_request_with_every_path(tmp_path: Path) -> None:
    intake, _ = make_intake(tmp_path)
    intake.changes.add([str(tmp_path / "a.py")])
    intake.changes.add([str(tmp_path / "b.py")])
    request = intake.next_request()
    assert request.kind is at.Ask.CHANGES
    assert sorted(request.paths) == [str(tmp_path / "a.py"), str(tmp_path / "b.py")]
    assert not intake.changes.pending()


def test_gitignored_paths_are_dropped_and_git_is_asked_once_per_path(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("*.log\n")
    intake, _ = make_intake(tmp_path)
    asked: list[list[str]] = []
    real = intake.rules.git_ignored

    def counting(paths: Any) -> set[str]:
        asked.append(sorted(paths))
        return set(real(paths))

    intake.rules.git_ignored = counting
    intake.changes.add([str(tmp_path / "run.log")])
    intake.changes.wait_settled(intake.debounce)
    assert not intake.changed_meanwhile(), "only an ignored file changed"
    intake.changes.add([str(tmp_path / "a.py")])
    assert not intake.changed_meanwhile(), "not settled yet"
    intake.changes.wait_settled(intake.debounce)
    assert intake.changed_meanwhile()
    assert list(intake.next_request().paths) == [str(tmp_path / "a.py")]
    assert asked == [[str(tmp_path / "run.log")], [str(tmp_path / "a.py")]]


def test_the_runs_own_writes_are_reported_not_requested(tmp_path: Path) -> None:
    intake, echoes = make_intake(tmp_path)
    intake.guard = package_guard(tmp_path)
    out, stamp = written(tmp_path / "out.json")
    ran(intake.guard, tmp_path, stamp - 1, float("inf"))  # its run is still running
    intake.changes.add([out])
    intake.changes.wait_settled(intake.debounce)
    assert not intake.changed_meanwhile()
    intake.changes.add([str(tmp_path / "a.py")])
    assert list(intake.next_request().paths) == [str(tmp_path / "a.py")]
    assert echoes == [[out]]


def test_a_scratch_file_gone_again_is_nothing_but_the_cut_short_cycle_resumes(
    tmp_path: Path,
) -> None:
    intake, _ = make_intake(tmp_path)
    scratch = str(tmp_path / "scratch")
    intake.changes.add([scratch], created=True, fresh=True)
    assert not intake.changed_meanwhile(), "a new file settles only once it has lived a while"
    intake.changes.remove(scratch)
    assert not intake.changes.pending()
    assert intake.next_request(resume=True).kind is at.Ask.RESUME


def test_a_new_file_settles_once_it_lived_a_while_or_went(tmp_path: Path) -> None:
    now = [0.0]
    changes = at.ChangeSet(clock=lambda: now[0])
    changes.add(["/r/a.tmp"], created=True, fresh=True)
    now[0] = 0.1
    assert not changes.settled(0.05)
    now[0] = at.CREATED_SETTLE + 0.01
    assert changes.settled(0.05)
    changes.add(["/r/b"], created=True)  # renamed into place: no wait beyond the debounce
    changes.take_paths()
    changes.add(["/r/b"], created=True)
    now[0] += 0.06
    assert changes.settled(0.05)


def test_a_key_pressed_while_a_burst_settles_comes_first(tmp_path: Path) -> None:
    intake, _ = make_intake(tmp_path, debounce=5.0)
    intake.changes.add([str(tmp_path / "a.py")])
    threading.Timer(0.05, intake.changes.press, ("a",)).start()
    assert intake.next_request().kind is at.Ask.ALL
    assert intake.changes.pending(), "the burst is still there for the next request"


# ---------------------------------------------------------------------------------------------
# run_cycle with stand-in runs
# ---------------------------------------------------------------------------------------------


class StandInRun:
    """A run that ends with ``verdict`` after ``polls`` polls."""

    def __init__(self, package: Any, verdict: Any, polls: int, log: list[str]) -> None:
        self.package, self.verdict, self.polls, self.log = package, verdict, polls, log
        log.append(f"start {package.rel}")

    def poll(self) -> Any:
        self.polls -= 1
        if self.polls > 0:
            return None
        return at.RunResult(self.package, self.verdict, 0.0, f"{self.package.rel} output")

    def kill(self) -> None:
        self.log.append(f"kill {self.package.rel}")


def steps(*names: str) -> list[Any]:
    return [at.Step(at.Package(Path("/r") / n, n), "") for n in names]


def run(
    plan: dict[str, tuple[Any, int]],
    jobs: int = 1,
    changed_after: int | None = None,
    restart: bool = False,
    keep_going: bool = False,
) -> tuple[Any, list[str]]:
    log: list[str] = []
    checks = [0]

    def changed() -> bool:
        checks[0] += 1
        return changed_after is not None and checks[0] > changed_after

    def start(package: Any) -> StandInRun:
        verdict, polls = plan[package.rel]
        return StandInRun(package, verdict, polls, log)

    def report(result: Any) -> None:
        log.append(f"report {result.package.rel}")

    outcome = at.run_cycle(
        steps(*plan), start, jobs, changed, restart, report, wait=lambda runs, seconds: None,
        keep_going=keep_going,
    )  # fmt: skip
    return outcome, log


OK, FAILED = at.Verdict.OK, at.Verdict.FAILED


def test_packages_run_in_order_and_all_pass() -> None:
    outcome, log = run({"a": (OK, 1), "b": (OK, 3), "c": (OK, 1)})
    assert outcome.passed and [r.package.rel for r in outcome.results] == ["a", "b", "c"]
    assert log == ["start a", "report a", "start b", "report b", "start c", "report c"]


def test_the_first_failure_stops_the_cycle() -> None:
    outcome, log = run({"a": (OK, 1), "b": (FAILED, 1), "c": (OK, 1)})
    assert outcome.failure.package.rel == "b"
    assert outcome.not_run == 1
    assert "start c" not in log


def test_with_jobs_verdicts_come_in_order_and_a_failure_kills_the_rest() -> None:
    outcome, log = run({"a": (OK, 2), "b": (OK, 1), "c": (FAILED, 3), "d": (OK, 9)}, jobs=4)
    assert log.index("report a") < log.index("report b") < log.index("report c")
    assert outcome.failure.package.rel == "c"
    assert "kill d" in log


def test_with_jobs_a_later_failure_lets_earlier_runs_finish_and_the_earliest_is_reported() -> None:
    outcome, log = run({"a": (FAILED, 5), "b": (FAILED, 1), "c": (OK, 9)}, jobs=3)
    assert "kill c" in log and "kill a" not in log
    assert outcome.failure.package.rel == "a"
    assert [r.package.rel for r in outcome.results] == ["a"]
    assert "report b" not in log and outcome.not_run == 2


def test_with_jobs_a_later_failure_is_reported_once_the_earlier_runs_pass() -> None:
    outcome, log = run({"a": (OK, 5), "b": (FAILED, 1), "c": (OK, 9), "d": (OK, 1)}, jobs=3)
    assert log.index("kill c") < log.index("report a") < log.index("report b")
    assert "start d" not in log
    assert outcome.failure.package.rel == "b" and outcome.not_run == 2


def test_keep_going_runs_everything_and_reports_every_failure_in_order() -> None:
    plan = {"a": (FAILED, 3), "b": (OK, 1), "c": (FAILED, 1), "d": (OK, 2)}
    outcome, log = run(plan, jobs=2, keep_going=True)
    assert [r.package.rel for r in outcome.failures] == ["a", "c"]
    assert [r.package.rel for r in outcome.results] == ["a", "b", "c", "d"]
    assert not any(line.startswith("kill") for line in log)
    assert outcome.passed_count == 2 and outcome.not_run == 0


def test_a_change_meanwhile_lets_the_running_package_finish() -> None:
    outcome, log = run({"a": (OK, 3), "b": (OK, 1)}, changed_after=1)
    assert outcome.interrupted and [r.package.rel for r in outcome.results] == ["a"]
    assert "start b" not in log and "kill a" not in log


def test_with_restart_a_change_meanwhile_kills_the_running_package() -> None:
    outcome, log = run({"a": (OK, 3), "b": (OK, 1)}, changed_after=1, restart=True)
    assert outcome.interrupted and outcome.results == []
    assert "kill a" in log


def test_the_cycle_is_timed_with_the_clock_it_is_given() -> None:
    ticks = iter([10.0, 12.5])
    outcome = at.run_cycle(
        [], lambda p: None, 1, lambda: False, False, lambda r: None, clock=lambda: next(ticks)
    )
    assert outcome.seconds == 2.5


def test_the_warm_server_is_real_code_sent_to_a_plain_interpreter() -> None:
    sent = json.loads(at.warm_server_call("nose", 3, ("nose.core",)))
    compile(sent["source"], "<warm>", "exec", __future__.annotations.compiler_flag)
    assert sent["call"] == "serve_warm"
    assert sent["args"][:4] == ["nose", 3, ["nose.core"], os.getpid()]


def test_the_functions_sent_name_only_one_another_and_what_the_bootstrap_imports() -> None:
    """Another interpreter has none of autotest's module globals: a name a sent function
    takes from them would fail there, and only there."""
    source = json.loads(at.sent_call(at.exit_unless_importable, "json"))["source"]
    defined = {node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)}
    bootstrapped = {"__future__", "contextlib", "json", "sys", "sent"}
    loose = []

    def visit(table: symtable.SymbolTable) -> None:
        for child in table.get_children():
            for symbol in child.get_symbols():
                name = symbol.get_name()
                known = name in defined or name in bootstrapped or hasattr(builtins, name)
                if symbol.is_global() and symbol.is_referenced() and not known:
                    loose.append((child.get_name(), name))
            visit(child)

    visit(symtable.symtable(source, "<sent>", "exec"))
    assert loose == [("serve_warm", "NoReturn")], "an annotation alone, never evaluated"


@pytest.mark.parametrize(("module", "code"), [("json", 0), ("no_such_module_here", 1)])
def test_a_plain_interpreter_runs_the_function_it_is_sent(module: str, code: int) -> None:
    done = subprocess.run(
        [sys.executable, "-I", "-c", at.BOOTSTRAP],
        input=at.sent_call(at.exit_unless_importable, module),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == code, done.stderr

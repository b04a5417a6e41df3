"""The wiring: the package set kept in step with the tree, each package's runner choice, one
cycle's runs, and the Session, whose main loop is the only place tests run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import sys
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .basics import ROOT_CHECK_EVERY, QuitRequested, UsageError, changed_since_ref, is_git_work_tree
from .bytecode import pycache_dir
from .ci import CiJob, Command, affected, own_outputs, plan_json
from .cycle import CycleOutcome, Startable, run_cycle, wait_for_runs
from .discovery import Package, owner_of
from .handoff import ChangeSet
from .ignore import IgnoreRules, glob_matches
from .imports import (
    module_in_sources,
    provided_modules,
    provider_of,
)
from .intake import Intake
from .junit import runner_report
from .loop_guard import LoopGuard
from .metadata import read_metadata
from .options import Options, parse_options
from .order import Step, cycle_order
from .package_set import PackageSet, no_packages
from .platform import Signals, can_notify, end_every_leftover, scripts_dir
from .report import Progress, Reporter, describe_changes, shown
from .run import (
    Missing,
    Needs,
    Run,
    RunResult,
    Unrunnable,
    forget_bytecode,
    output_dir,
    run_environment,
)
from .runners import (
    BUILTIN_RUNNERS,
    PACKAGE_ENV,
    Choice,
    InstallCommand,
    Runner,
    RunStart,
    check_choices,
    check_venvs,
    choose,
    command_path,
    install_into,
    install_test_deps_command,
    module_installed,
    name_filter_args,
    repository_interpreter,
    stale_choices,
)
from .selection import Selection, declared_selection
from .stages import OneStage, StagedRun, Stages, Staging, change_of
from .state import state_dir
from .toml_files import toml_reader_missing
from .warm_policy import WarmPolicy, WarmPool
from .watch_mode import WatchMode
from .watching import WATCHDOG_ERROR, Watcher, directory_identity


def path_named(arg: str, root: Path, packages: Sequence[Package]) -> str | None:
    """A path given on the command line, in some package: relative to the current directory
    or to the root (as git names them), an existing file winning over a path that is not there."""
    candidates = [Path(arg)] if os.path.isabs(arg) else [Path.cwd() / arg, root / arg]
    owned = [
        path
        for candidate in candidates
        for path in dict.fromkeys((os.path.abspath(candidate), os.path.realpath(candidate)))
        if owner_of(path, packages) is not None
    ]
    existing = [p for p in owned if os.path.lexists(p)]
    return (existing or owned)[0] if owned else None


def root_gone(root: Path) -> UsageError:
    return UsageError(f"the root {shown(str(root))} is gone; stopping")


def root_is_back(root: Path) -> bool:
    """Whether a directory is at ``root``, waiting up to ``ROOT_CHECK_EVERY`` for one (between
    ``mv R R.old`` and ``mv R.new R`` there is none)."""
    deadline = time.monotonic() + ROOT_CHECK_EVERY
    while not root.is_dir():
        if time.monotonic() >= deadline:
            return False
        time.sleep(ROOT_CHECK_EVERY / 20)
    return True


def announce_settings(options: Options, reporter: Reporter) -> None:
    """Before anything runs: a runner from the repository's config is named, and a
    notification that cannot be sent is said once."""
    if options.runner_from:
        reporter.runner_from_config(options.runner, options.runner_from)
    if options.runners_from:
        for glob, spec in options.runners:
            if spec not in BUILTIN_RUNNERS:
                reporter.runner_from_config(f"{glob} = {spec}", options.runners_from)
    if options.notify and not can_notify():
        reporter.cannot_notify()
    state = state_dir()
    if state.refused:
        reporter.state_elsewhere(state)


def changes_given(options: Options, tree: PackageSet, reporter: Reporter) -> dict[str, float]:
    """What the command line says changed: ``--changed`` paths first, the first one first,
    then what changed ``--since`` a commit, the most recently modified first.  A path in no
    package is named, except under ``--affected``, where it is simply no change."""
    changed: dict[str, float] = {}
    now = time.monotonic()
    for index, arg in enumerate(options.changed):
        path = path_named(arg, options.root, tree.all)
        if path is None:
            if not options.affected:
                reporter.not_in_package(arg)
        else:
            changed.setdefault(path, now - index * 1e-6)
    if options.since is not None:
        since = [p for p in changed_since_ref(options.root, options.since) if p not in changed]
        since = [p for p in since if owner_of(p, tree.all)]
        since.sort(key=lambda p: -os.stat(p).st_mtime if os.path.exists(p) else 0.0)
        for index, path in enumerate(since):
            changed[path] = now - 1.0 - index * 1e-6
    return changed


def package_args(table: Sequence[tuple[str, str]]) -> list[tuple[str, tuple[str, ...]]]:
    """The ``package-args`` setting's globs with their arguments, split as a shell would; a
    value that does not split is bad input."""
    split = []
    for glob, args in table:
        try:
            split.append((glob, tuple(shlex.split(args))))
        except ValueError as exc:
            raise UsageError(f"package-args {glob!r}: {args!r}: {exc}") from None
    return split


class RunnerChoices:
    """Which runner and interpreter each package gets, and what follows for its runs: the
    command, the packages that cannot run here, the modules the repository provides."""

    def __init__(
        self, options: Options, tree: PackageSet,
        tell: Callable[[str, str], None] = lambda where, python: None,
    ) -> None:  # fmt: skip
        self.options = options
        self.tree = tree
        self.tell = tell  # an interpreter the repository brings, named before it first runs
        self.told: set[tuple[str, str]] = set()
        self.by_package: dict[Package, Choice] = {}
        self.selections: dict[Package, Selection] = {}
        self.unrunnable: dict[Package, InstallCommand | None] = {}
        self.provided: dict[str, Package] | None = None  # importable names to their packages
        self.package_args = package_args(options.package_args)
        self.name_filter = ""  # the test-name filter (the key t)
        self.choose(None, strict=True)
        self.just_made = True  # every choice, from the files as they are at start

    def choose_for_cycle(self, changed: Sequence[str]) -> None:
        """Before a cycle: the choices ``changed`` paths may have changed made again, or every
        one for a cycle of all (a runner installed since is seen).  The first cycle makes none:
        every choice was made a moment ago, at start, and a package's own interpreter is asked
        once."""
        just_made, self.just_made = self.just_made, False
        if not just_made:
            self.choose(changed or None)

    def __getitem__(self, package: Package) -> Choice:
        return self.by_package[package]

    def __contains__(self, package: Package) -> bool:
        return package in self.by_package

    def choose(self, changed: Iterable[str] | None, strict: bool = False) -> None:
        """Every package's choice, read again only where ``changed`` paths may have changed
        it (all of them when ``changed`` is None); then which of those cannot run here (at
        start, ``strict``: a runner missing for autotest's own interpreter is an error), which
        asks a package's own interpreter in a subprocess.  A plan runs nothing, so its machine
        needs no runner."""
        options, packages = self.options, self.tree.packages
        if strict:
            check_venvs(packages, options.venvs)
        stale = packages if changed is None else stale_choices(packages, self.by_package, changed)
        fresh = choose(
            stale, options.root, options.runner, options.runners, options.venvs, self.tree.tomls
        )
        self.tell_interpreters(fresh.values())
        kept = {p: c for p, c in self.by_package.items() if p not in fresh}
        self.by_package = {p: fresh.get(p) or kept[p] for p in packages}
        self.selections = {
            p: self.selections[p] if p in kept else self.selection(p, self.by_package[p])
            for p in packages
        }
        if not options.plan:  # only the choices made again are checked again
            still = {p: fix for p, fix in self.unrunnable.items() if p in kept}
            self.unrunnable = {**still, **check_choices(fresh, strict)}
        self.provided = None

    def tell_interpreters(self, choices: Iterable[Choice]) -> None:
        """Name each interpreter the repository brings (its config, or a virtualenv committed
        to git), once, before anything runs it: a clone never runs a program unseen."""
        for choice in choices:
            where = repository_interpreter(choice, self.options.root, self.options.venvs_from)
            if where and (where, choice.python) not in self.told:
                self.told.add((where, choice.python))
                self.tell(where, choice.python)

    def selection(self, package: Package, choice: Choice) -> Selection:
        """Which of its tests a package runs: the ``package-args`` its glob gives it, else
        (under pytest) the selection its project declares."""
        for glob, args in self.package_args:
            if glob_matches(package.rel, glob) or package.rel == glob:
                return Selection(args, f"package-args {glob!r}")
        if choice.runner.name != "pytest":
            return Selection()
        return declared_selection(package, self.options.root, self.tree.tomls)

    def run_start(
        self, package: Package, extra: Sequence[str] = (), selected: Sequence[str] | None = None
    ) -> RunStart:
        """The one answer to how a package's tests run: what --plan shows, and what runs
        (the selection, or a stage's ``selected`` arguments in its place, then the runner
        arguments, then ``extra`` arguments: JUnit's)."""
        choice = self.by_package[package]
        named = name_filter_args(choice.runner, self.name_filter) if self.name_filter else None
        selection = self.selections[package].args if selected is None else selected
        args = (*selection, *self.options.runner_args, *(named or ()), *extra)
        env = {
            **run_environment(choice.runner, pycache_dir(), choice.python),
            PACKAGE_ENV: str(package.path),
        }
        filtered = self.name_filter if named else ""
        return RunStart(package, choice.runner, choice.python, args, env, filtered)

    def filter_tests(self, pattern: str) -> list[tuple[Package, str]]:
        """Run only the tests whose names match ``pattern`` from now on ("" for all); the
        packages whose runner cannot, with its name."""
        self.name_filter = pattern
        return [
            (p, c.runner.name)
            for p, c in self.by_package.items()
            if pattern and name_filter_args(c.runner, pattern) is None
        ]

    def command_for(self, package: Package) -> Command:
        """What --plan shows of a package's run."""
        start = self.run_start(package)
        interpreter = start.python if start.runner.module else None
        source = self.selections[package].source
        return Command(start.runner.name, interpreter, tuple(start.argv), source)

    def unavailable(self, modules: Sequence[str], python: str) -> Missing | None:
        """The first module a run missed that cannot be had here: one a package of the
        repository provides but that is not installed for the run's interpreter (with that
        package), or one neither installed nor provided by any package.  None when it is the
        repository's own and importable, or no longer in its sources (removed or renamed by a
        change): a plain failure."""
        if self.provided is None:
            self.provided = {
                name: p
                for p in self.tree.packages
                for name in (
                    *provided_modules(p),
                    read_metadata(p, tomls=self.tree.tomls).name.replace("-", "_"),
                )
            }
        for module in modules:
            provider = provider_of(module, self.provided)
            if provider is None:
                continue
            if not module_in_sources(provider, module) or module_installed(python, module):
                return None
            return Missing(module, provider.rel, self.environment_of(python))
        missing = next((m for m in modules if not module_installed(python, m)), None)
        return Missing(missing) if missing else None

    def environment_of(self, python: str) -> str:
        """The environment of an interpreter, relative to the root when inside it."""
        prefix = sys.prefix if python == sys.executable else os.path.dirname(scripts_dir(python))
        rel = os.path.relpath(prefix, self.options.root)
        return prefix if rel.startswith("..") else rel.replace(os.sep, "/")


@dataclass(frozen=True)
class RunLimits:
    """What the options say of every run in a cycle."""

    jobs: int
    restart: bool
    keep_going: bool
    timeout: float | None


class CycleRuns:
    """The runs of one cycle: started (cold, forked or not at all), waited on with the status
    line, recorded, and killed if the cycle ends first.  The session decides what a cycle
    holds and hands over, per cycle, what changes between cycles (the warm policy is replaced
    when watching starts; the failed packages change with every cycle)."""

    def __init__(
        self, choices: RunnerChoices, guard: LoopGuard, ci: CiJob, reporter: Reporter,
        signals: Signals, limits: RunLimits, saved_dir: Path | None, staging: Staging,
    ) -> None:  # fmt: skip
        self.choices = choices
        self.staging = staging
        self.guard = guard
        self.ci = ci
        self.reporter = reporter
        self.signals = signals
        self.limits = limits
        self.saved_dir = saved_dir
        self.progress = Progress()
        self.live: list[Run] = []  # this cycle's runs: none may outlive autotest
        self.warm_policy = WarmPolicy()
        self.failed: Collection[Package] = ()

    def run(
        self, steps: Sequence[Step], warm: WarmPolicy, failed: Collection[Package],
        changed_meanwhile: Callable[[], bool], packages: Sequence[Package],
    ) -> CycleOutcome:  # fmt: skip
        """Run ``steps``, forked as ``warm`` decides; a new failure of a package not in
        ``failed`` is confirmed cold.  ``changed_meanwhile`` may cut the cycle short."""
        self.warm_policy, self.failed = warm, failed
        self.ci.cycle_started()
        self.progress.cycle(steps)
        self.guard.cycle_started(time.monotonic())
        limits = self.limits
        try:
            outcome = run_cycle(
                steps, self.start_run, limits.jobs, changed_meanwhile, limits.restart,
                self.record, keep_going=limits.keep_going, wait=self.pause,
            )  # fmt: skip
        finally:
            self.end_runs()
            self.guard.cycle_ended(time.monotonic())
        self.ci.cycle_ended(outcome, (p.rel for p in packages))
        return outcome

    def start_run(self, package: Package) -> Run | Unrunnable | StagedRun:
        """Start a package's run: in two stages when the change allows (see ``stages``)."""
        self.guard.run_started(str(package.path))
        choices = self.choices
        choice = choices[package]
        if package in choices.unrunnable:
            return Unrunnable(package, choice.runner, choices.unrunnable[package])
        plan = self.stage_plan(package, choice)
        if choices.options.explain:
            self.reporter.stages(package.rel, plan)
        self.progress.started(package)
        if isinstance(plan, OneStage):
            return self.start_stage(package, None)
        stages = iter((plan.summary, "second stage"))
        began = time.monotonic()

        def start(args: tuple[str, ...]) -> Run:
            spent = time.monotonic() - began  # --timeout is for the two stages together
            run = self.start_stage(package, args, spent)
            self.progress.staged(package, next(stages, ""))
            return run

        return StagedRun(plan, start)

    def stage_plan(self, package: Package, choice: Choice) -> Stages | OneStage:
        """Whether the run goes in two stages: not while the test-name filter and the first
        stage's selection would both select by name (unittest's -k)."""
        if self.choices.name_filter and choice.runner.name == "unittest":
            return OneStage("the test-name filter selects by name too")
        if any(not arg.startswith("-") for arg in self.choices.options.runner_args):
            return OneStage("the runner arguments name tests")
        return self.staging.plan(package, choice.runner, self.choices.selections[package])

    def start_stage(
        self, package: Package, selected: tuple[str, ...] | None, spent: float = 0.0
    ) -> Run:
        """Start one run of the package (the whole of it, or the stage ``selected`` after
        ``spent`` seconds of its first stage).  Between a cold process's start and its record,
        a signal waits: no run can be left behind (a forked one the warm interpreter kills
        itself)."""
        choices = self.choices
        choice = choices[package]
        report = runner_report(choice.runner.name)
        start = choices.run_start(package, report.args if report else (), selected)
        saved = self.saved_dir and self.saved_dir / (package.rel.replace("/", "__") + ".log")
        needs = Needs(
            lambda modules: choices.unavailable(modules, choice.python),
            lambda: install_test_deps_command(package, choice.python),
            lambda missing: install_into(
                choice.python, ["-e", command_path(self.choices.options.root / missing.provider)]
            ),
        )
        launcher = self.warm_policy.forking_launcher(package)
        if launcher is not None:
            launcher.wait_ready(choice.runner, choice.python, package)
        confirm = package not in self.failed  # a new failure, if forked, is confirmed cold
        with self.signals.deferred():
            run = Run(start, self.limits.timeout, launcher, saved, needs, confirm, report, spent)
            self.live.append(run)
        return run

    def record(self, result: RunResult) -> None:
        self.guard.run_ended(str(result.package.path))
        self.progress.ended(result.package)
        self.staging.record(result)
        self.reporter.verdict(result)
        if result.failed_only_forked:
            self.reporter.forked_run_differed(result.package.rel)
        self.warm_policy.record(result)
        self.ci.recorded(result)

    def pause(self, runs: Iterable[Startable], seconds: float) -> None:
        """While packages run: the status line, then a wait on the runs (run_cycle wakes at
        least every CYCLE_WAKE, well within the status line's second)."""
        self.reporter.running(self.progress.running())
        wait_for_runs(runs, seconds)

    def end_runs(self) -> None:
        """Kill what is still running of this cycle's runs (those run_cycle has not seen)."""
        for run in self.live:
            if run.proc is not None and run.proc.poll() is None:
                run.kill()
        self.live.clear()
        with contextlib.suppress(OSError, ValueError):  # the terminal may have hung up
            self.reporter.erase_status()


def started_watcher(
    rules: IgnoreRules, changes: ChangeSet, poll: bool, reporter: Reporter
) -> tuple[Watcher, str]:
    """A watcher at work, and how it watches; watchdog's thread asks its own copy of the
    rules."""
    if WATCHDOG_ERROR:
        raise UsageError(
            f"watchdog is not installed ({WATCHDOG_ERROR}); "
            f"install it: {sys.executable} -m pip install watchdog"
        )
    watcher = Watcher(rules.for_another_thread(), changes, poll, reporter)
    try:
        return watcher, watcher.start()
    except OSError as exc:
        raise UsageError(f"cannot watch {rules.root}: {exc.strerror or exc}") from None


class WatchedRoot:
    """The root and its watcher, and which directory the root was when watching started: one
    replaced under autotest is another, and the old one's watches see nothing of it."""

    def __init__(
        self, rules: IgnoreRules, changes: ChangeSet, poll: bool, reporter: Reporter
    ) -> None:
        self.rules = rules
        self.changes = changes
        self.poll = poll
        self.reporter = reporter
        self.identity = directory_identity(rules.root)
        self.watcher: Watcher | None = None

    def start(self) -> str:
        """Watch the root as it is now (what git ignores as of the rules' last refresh: the
        package set's, a moment before); how it is watched."""
        self.identity = directory_identity(self.rules.root)
        self.watcher, how = started_watcher(self.rules, self.changes, self.poll, self.reporter)
        return how

    def replaced(self) -> bool:
        """Whether the root is no longer the directory watched (gone, or another one)."""
        return directory_identity(self.rules.root) != self.identity

    def restart(self) -> str:
        """Watch the directory at the root now (removed and copied back, or another renamed
        into its place); a root gone for good ends autotest."""
        self.stop()
        root = Path(self.rules.root)
        if not root_is_back(root):
            raise root_gone(root)
        self.reporter.root_replaced()
        self.rules.use_git = is_git_work_tree(root)
        self.rules.refresh_git_dirs()
        return self.start()

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None


class Session:
    """The main loop, and the only place tests run: fed by the Intake, it orders each cycle,
    runs it and reports it."""

    def __init__(
        self, options: Options, reporter: Reporter, signals: Signals | None = None
    ) -> None:
        self.options = options
        self.root = options.root
        self.reporter = reporter
        self.signals = signals or Signals()
        announce_settings(options, reporter)
        written = own_outputs(self.root, (options.junit_xml, options.durations))
        self.rules = IgnoreRules(self.root, (*options.ignore, *written), options.cross_mounts)
        self.tree = PackageSet(self.root, reporter, self.rules, options.packages, options.exclude)
        if not self.tree.all:
            raise no_packages(self.root)
        if not self.tree.packages:
            raise UsageError(f"--exclude leaves no package of {len(self.tree.all)} to test")
        self.choices = RunnerChoices(options, self.tree, reporter.interpreter_from)
        self.first_changes = changes_given(options, self.tree, reporter)
        self.env = run_environment(Runner("none", ()), pycache_dir())
        self.changes = ChangeSet()
        self.guard = LoopGuard(self.tree.owner_dir)
        judged = reporter.judged_during_runs if options.explain else None
        self.watched = WatchedRoot(self.rules, self.changes, options.poll, reporter)
        self.intake = Intake(self.changes, self.rules, self.guard, options.debounce,
                             reporter.echoes, judged, reporter.git_unanswered,
                             self.watched.replaced)  # fmt: skip
        self.warm_policy = WarmPolicy()
        self.pool: WarmPool | None = None
        self.failed: set[Package] = set()
        self.unfinished: set[Package] = set()  # not run yet by a cycle cut short for changes
        self.last_passed = True
        self.last_status = 0
        report = None if options.plan else options.junit_xml
        self.ci = CiJob(self.root, options.affected, options.shard, options.durations, report,
                        reporter.cannot_write)  # fmt: skip
        limits = RunLimits(options.jobs, options.restart, options.keep_going, options.timeout)
        staging = Staging(self.root, self.tree.scan, options.stages)
        self.runs = CycleRuns(self.choices, self.guard, self.ci, reporter, self.signals, limits,
                              output_dir(self.root), staging)  # fmt: skip

    @property
    def packages(self) -> list[Package]:
        return self.tree.packages

    def cycle(self, changed: Mapping[str, float], only: set[Package] | None = None) -> CycleOutcome:
        graph = self.tree.graph
        owners = self.tree.owners(changed)
        steps = cycle_order(
            self.packages, owners, self.failed, graph.uses, graph.labels, graph.weak
        )
        if only is not None:
            steps = [s for s in steps if s.package in only]
        self.choices.choose_for_cycle(list(changed))
        reached = affected(self.tree.all, owners, graph.uses)
        self.runs.staging.cycle(change_of(changed, self.root), reached, graph.uses)
        if self.options.explain:
            self.reporter.explain(steps)
            self.reporter.explain_choices({s.package: self.choices[s.package] for s in steps})
            selections = self.choices.selections
            self.reporter.explain_selections({s.package: selections[s.package] for s in steps})
        if self.pool is not None and self.warm_policy.launcher is not None:  # warms up meanwhile
            chosen = [self.choices[s.package] for s in steps]
            changed_first = [self.choices[p].python for p in owners if p in self.choices]
            self.pool.prepare([(c.runner, c.python) for c in chosen], changed_first)
            if self.options.explain:
                self.reporter.preloads(self.pool.preloads())
        meanwhile = (lambda: False) if self.options.once else self.intake.changed_meanwhile
        outcome = self.runs.run(steps, self.warm_policy, self.failed, meanwhile, self.packages)
        self.failed.difference_update(r.package for r in outcome.results)
        self.failed.update(r.package for r in outcome.failures)
        self.unfinished = (
            (self.unfinished | {s.package for s in steps}) - {r.package for r in outcome.results}
            if outcome.interrupted
            else set()
        )
        self.reporter.summary(outcome)
        if not outcome.interrupted:
            self.after_cycle(outcome)
        self.warm_policy.cycle_done()
        judged = self.warm_policy.judge(len(self.packages))
        if judged is not None:
            self.reporter.warm_judged(*judged)
        return outcome

    def begin(self) -> None:
        if self.options.clear:
            self.reporter.clear()

    def after_cycle(self, outcome: CycleOutcome) -> None:
        options = self.options
        self.reporter.alert(outcome, options.bell, options.notify, not self.last_passed)
        self.last_passed = outcome.passed
        self.last_status = 0 if outcome.all_ran else 1  # what --once would have exited

    def run_all(self) -> CycleOutcome:
        self.begin()
        self.reporter.testing_all(len(self.packages))
        return self.cycle({})

    def run_failed(self) -> CycleOutcome:
        if not self.failed:
            self.reporter.no_failed()
            return CycleOutcome([])
        self.begin()
        self.reporter.testing_failed(len(self.failed))
        return self.cycle({}, only=set(self.failed))

    def run_unfinished(self) -> CycleOutcome:
        """What a cycle cut short for a change that came to nothing (a scratch file) left."""
        only = self.unfinished & set(self.packages)
        if not only:
            self.unfinished = set()
            return CycleOutcome([])
        self.begin()
        self.reporter.resuming(len(only))
        return self.cycle({}, only=only)

    def run_changes(self, changed: Mapping[str, float], known: Sequence[Package]) -> CycleOutcome:
        """A cycle for changed paths, named against ``known`` packages (those before and after
        the change, so a removed package still counts as one)."""
        described = describe_changes(changed, self.root, known)
        only = self.tree.watched_users(changed)
        if only is not None and not only:
            self.reporter.nothing_watched_uses(described)
            return CycleOutcome([])
        self.begin()
        self.reporter.header(described)
        return self.cycle(changed, only)

    def first_cycle(self) -> CycleOutcome:
        """The first cycle, then the import scan kept for the next start (not before: the
        first test should start as early as it can)."""
        changed = self.first_changes
        outcome = self.run_changes(changed, self.tree.all) if changed else self.run_all()
        self.tree.save()
        return outcome

    def tell_packages(self) -> None:
        if self.options.explain:
            self.reporter.not_packages(self.tree.left_out)

    def once(self) -> int:
        self.reporter.testing_packages(len(self.packages), len(self.tree.all))
        self.tell_packages()
        return 0 if self.first_cycle().all_ran else 1

    def watch(self, interactive: bool) -> int:
        how = self.watched.start()
        self.reporter.watching(len(self.packages), how)
        self.tell_packages()
        folders = [str(self.root), *(str(p.path) for p in self.packages)]
        unapplied = self.rules.unapplied_gitignore(folders)
        if unapplied is not None:
            self.reporter.gitignore_not_applied(unapplied)
        if self.options.warm:
            with self.signals.deferred():
                self.pool = WarmPool(self.env, self.root)
                self.warm_policy = WarmPolicy(self.pool)
        try:
            WatchMode(self, self.intake, self.reporter, self.tree, self.choices).loop(interactive)
        except QuitRequested:
            pass  # q during a run: run_cycle has killed the runs on the way out
        finally:
            self.watched.stop()
        return self.last_status

    def replant(self) -> CycleOutcome:
        """The root is another directory now: watch it, find its packages, test them all."""
        self.watched.restart()
        self.tree.refresh()  # the cycle chooses every package's runner again
        self.failed &= set(self.packages)
        return self.run_all()

    def run_changed(self, changed: Mapping[str, float]) -> CycleOutcome:
        """A cycle for a settled burst of changes that count."""
        if not self.root.is_dir():
            raise root_gone(self.root)
        looping = self.guard.observe(changed)
        if looping:
            self.reporter.loop_found(looping)
        before = self.packages
        self.tree.follow(changed)
        self.failed &= set(self.packages)
        self.warm_policy.code_changed(self.tree.owners(changed))
        forget_bytecode(changed, self.env.get("PYTHONPYCACHEPREFIX"))
        return self.run_changes(changed, list({*before, *self.packages}))

    def close(self) -> None:
        """Kill whatever still runs; safe to call again (a signal may cut a first call short)."""
        self.runs.end_runs()
        self.warm_policy.close()
        end_every_leftover()
        self.tree.save()


class CiSession(Session):
    """One CI job: a single cycle narrowed by --affected and --shard, or only its plan."""

    def first_cycle(self) -> CycleOutcome:
        changed = self.first_changes
        steps, pool = self.narrowed_steps(changed)
        self.begin()
        said = len(self.options.changed) + (self.options.since is not None)
        self.reporter.narrowed(len(steps), pool, len(self.packages), self.ci, said)
        return self.cycle(changed, only={s.package for s in steps}) if steps else CycleOutcome([])

    def once(self) -> int:
        """One CI job; its first line names the root (see ``Reporter.narrowed``)."""
        self.tell_packages()
        return 0 if self.first_cycle().all_ran else 1

    def narrowed_steps(self, changed: Mapping[str, float]) -> tuple[list[Step], int]:
        return self.ci.steps(self.packages, self.tree.owners(changed), self.failed, self.tree.graph)

    def plan(self) -> int:
        """Print the cycle as JSON and run nothing."""
        changed = self.first_changes
        steps, _ = self.narrowed_steps(changed)
        owners = self.tree.owners(changed)
        graph = self.tree.graph
        reached = affected(self.tree.all, owners, graph.uses)
        self.runs.staging.cycle(change_of(changed, self.root), reached, graph.uses)
        self.reporter.plan(
            plan_json(self.root, steps, self.planned, graph.uses, graph.names.__getitem__)
        )
        return 0

    def planned(self, package: Package) -> Command:
        """A package's command, and the first stage a watcher would run after its first run."""
        choice = self.choices[package]
        selection = self.choices.selections[package]
        staged = self.runs.staging.plan(package, choice.runner, selection, assume_ran=True)
        first = tuple(str(t) for t in staged.tests) if isinstance(staged, Stages) else ()
        return dataclasses.replace(self.choices.command_for(package), first_stage=first)


def run_session(
    argv: Sequence[str], reporter: Reporter, signals: Signals, sessions: list[Session]
) -> int:
    try:
        missing = toml_reader_missing()
        if missing is not None:
            raise UsageError(missing)
        options = parse_options(argv)
        reporter.configure(options.root, options.full_output, notices_to_stderr=options.plan)
        reporter.verbose = options.explain
        ci = options.plan or options.affected or options.shard
        session = (CiSession if ci else Session)(options, reporter, signals)
        sessions.append(session)
        if options.plan:
            return session.plan()  # type: ignore[attr-defined]
        if options.once:
            return session.once()
        return session.watch(interactive=sys.stdin is not None and sys.stdin.isatty())
    except UsageError as exc:
        with contextlib.suppress(OSError, ValueError):
            reporter.erase_status()
            sys.stderr.write(f"autotest: error: {shown(str(exc))}\n")
        return 2

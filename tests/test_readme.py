"""Every command line in README.md works as written (issue 24).

The commands come from README.md itself: every line of every ```sh block and every ``run:`` step
of every ```yaml workflow, in order.  Each runs where the README says it runs:

- under "Two commands": on a fresh clone of this repository (the files git would commit from the
  working tree, uncommitted work included and nothing it ignores), in a new user's shell with no
  virtualenv active;
- under "Use it in your repository": on a reader's repository shaped as that section says: a git
  repository with ``utilities/autotest.py`` copied in and packages that import each other (this
  repository's three samples, without its root pytest configuration);
- each workflow: job by job, step by step, on a fresh clone pushed to a bare ``origin`` whose
  ``main`` a branch changes (``package2``), with local stand-ins for what GitHub provides
  (ACTIONS).

A command line is split at ``&&``, and every part must match one of PARTS, which says how it is
run and checked.  A part that matches none fails the test that reaches it, and
``test_every_command_in_the_readme_is_one_this_test_knows_how_to_run`` names it: a command added
to the README is run by these same tests, or fails them until PARTS knows it.

The README's second command (autotest's own test command) is recognised and not run: it is the
command CI runs (.ci/run), and running it here would run this file inside itself.

These tests install real packages into fresh virtualenvs (pip's cache helps), so they run on
the Python that runs the suite only: tests/matrix ignores this file.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_ci import ran

from conftest import ROOT, SUMMARY, Watch, clean_env, default_signals, git, wait_until

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="runs the README's shell lines with bash and Linux's /proc"
)

README = ROOT / "README.md"
SAMPLES = ["package1", "package2", "package3"]  # this repository's sample packages
BRANCH = "feature"  # the pull request's branch in the workflows' origin
CHANGED = "package2/package2/__init__.py"  # what the branch changes...
AFFECTED = ["package2", "package3"]  # ...and so what the workflows must test: package3 uses it
INSTALLS = 900.0  # seconds a command that installs packages may take, on a loaded machine

# ---------------------------------------------------------------------------------------------
# What the README holds
# ---------------------------------------------------------------------------------------------

SHELL = {"sh", "bash", "shell", "console"}  # blocks whose lines are commands
NOT_COMMANDS = {"", "text", "toml", "ini", "json"}  # blocks of output and configuration

# Where the command lines of each section run.
PLACES = {
    "Two commands": "a fresh clone of this repository, in a new user's shell",
    "Use it in your repository": "a reader's repository shaped as the section says: a block "
    "that runs autotest with `uv run` gets nothing installed but uv; any other runs in an "
    "activated virtualenv holding the packages ('next to your packages')",
}


@dataclass(frozen=True)
class Block:
    section: str  # the "## " heading it is under
    lang: str
    text: str
    line: int  # where its fence opens

    def __str__(self) -> str:
        return f"README.md:{self.line} (```{self.lang} under '## {self.section}')"


def readme_blocks() -> list[Block]:
    """Every fenced block of README.md, in order."""
    blocks: list[Block] = []
    body: list[str] = []
    section, opened, lang = "", 0, ""
    for number, line in enumerate(README.read_text().splitlines(), 1):
        if not opened:
            if line.startswith("## "):
                section = line[3:].strip()
            elif line.startswith("```"):
                opened, lang, body = number, line[3:].strip().split(" ")[0], []
        elif line.startswith("```"):
            blocks.append(Block(section, lang, "\n".join(body) + "\n", opened))
            opened = 0
        else:
            body.append(line)
    assert not opened, f"README.md:{opened}: a fence that is never closed"
    return blocks


def command_lines(script: str) -> list[str]:
    """A shell script's commands: continued lines joined, blank lines and comments left out."""
    lines = (line.strip() for line in re.sub(r"\\\n", " ", script).splitlines())
    return [line for line in lines if line and not line.startswith("#")]


BLOCKS = readme_blocks()


def shell_blocks(section: str) -> list[Block]:
    return [b for b in BLOCKS if b.lang in SHELL and b.section == section]


def workflows() -> list[Block]:
    return [b for b in BLOCKS if b.lang == "yaml"]


# ---------------------------------------------------------------------------------------------
# How each command is run
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    kind: str
    pattern: re.Pattern[str]
    how: str  # how the test runs it and what it checks


# Every part of a command line (split at &&) matches one of these, the first that does.
PARTS = (
    Part(
        "suite",
        re.compile(r"\.venv/bin/python -m pytest"),
        "not run: autotest's own test command is the one .ci/run runs (checked), and running it "
        "here would run this test inside itself",
    ),
    Part("venv", re.compile(r"python3 -m venv \.venv"), "run; exit status 0"),
    Part("install", re.compile(r"(?:\.venv/bin/)?pip install \S.*"), "run; exit status 0"),
    Part(
        "autotest",
        re.compile(
            r"(?P<launcher>\.venv/bin/python|python3?|uv run(?: --with-editable \./\S+)*)"
            r" utilities/autotest\.py(?P<args>(?: .*)?)"
        ),
        "watching: until its first cycle ends with every package passed, then Ctrl+C (SIGINT to "
        "the process group) and exit status 130 with nothing of it left running; --once: exit "
        "status 0, and its --junit-xml report holds a suite per package it named; --plan: its "
        "stdout is a plan (JSON, version 1)",
    ),
    Part(
        "output",
        re.compile(r'echo "(?P<name>\w+)=\$\(jq [^"]*\)" >> "\$GITHUB_OUTPUT"'),
        "run with jq (GitHub's runners have it); the step's output is JSON",
    ),
)


def parts_of(line: str) -> list[tuple[Part, re.Match[str]]]:
    found: list[tuple[Part, re.Match[str]]] = []
    for text in re.split(r"\s+&&\s+", line.strip()):
        for part in PARTS:
            match = part.pattern.fullmatch(text)
            if match:
                found.append((part, match))
                break
        else:
            raise AssertionError(
                f"README.md holds a command this test does not know how to run: {text!r} "
                f"(in {line!r}); teach PARTS in tests/test_readme.py how to run and check it"
            )
    return found


@dataclass(frozen=True)
class Launch:
    """autotest as a command line starts it."""

    args: list[str]
    stdout_to: str | None
    uv: bool

    @property
    def mode(self) -> str:
        return "plan" if "--plan" in self.args else "once" if "--once" in self.args else "watch"

    @property
    def junit(self) -> str | None:
        return self.args[self.args.index("--junit-xml") + 1] if "--junit-xml" in self.args else None


def launch_of(parts: list[tuple[Part, re.Match[str]]]) -> Launch | None:
    for part, match in parts:
        if part.kind == "autotest":
            args = shlex.split(match["args"])
            stdout_to = None
            if ">" in args:
                stdout_to = args[args.index(">") + 1]
                args = args[: args.index(">")]
            return Launch(args, stdout_to, match["launcher"].startswith("uv "))
    return None


def assert_is_the_command_ci_runs(line: str) -> None:
    """.ci/run runs the README's test command as written, only with pip quieted."""
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    runs = [c for c in ci if "-m pytest" in c and not c.lstrip().startswith("#")]
    assert any([w for w in shlex.split(c) if w != "-q"] == shlex.split(line) for c in runs), (
        f"README's test command {line!r} is not what .ci/run runs: {runs}"
    )


# ---------------------------------------------------------------------------------------------
# Shells and places
# ---------------------------------------------------------------------------------------------


class Shell(Watch):
    """A command run in a session of its own, as a terminal runs a command line, its output
    read line by line as it comes (Watch's reader).  bash, as a user's shell: dash would die of
    Ctrl+C's SIGINT itself instead of waiting for autotest's status."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.command = argv[-1]
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
            preexec_fn=default_signals,
        )
        self.lines: list[str] = []
        self._eof = False
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def finish(self, timeout: float = INSTALLS) -> int:
        """Its exit status, once it has ended and all its output is read."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.command!r} did not end in {timeout:.0f} s:\n{self.output}"
            ) from None
        with self._cond:
            self._cond.wait_for(lambda: self._eof, timeout=60)
        return code

    def interrupt(self) -> int:
        """Ctrl+C: SIGINT to every process of the command's group; its exit status."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.finish(timeout=60)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


Start = Callable[[list[str], Path, dict[str, str]], Shell]


@pytest.fixture
def start() -> Iterator[Start]:
    """Start a shell; every one started is killed, with its whole group, at the end."""
    started: list[Shell] = []

    def begin(argv: list[str], cwd: Path, env: dict[str, str]) -> Shell:
        started.append(Shell(argv, cwd, env))
        return started[-1]

    yield begin
    for shell in started:
        shell.kill()


def group_members(pgid: int) -> list[int]:
    """The processes of a process group still running (zombies aside)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            state, _, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
            if int(group) == pgid and state != "Z":
                members.append(int(stat.parent.name))
    return members


def user_env(tmp: Path) -> dict[str, str]:
    """A new user's shell: no virtualenv active (the suite's own is taken off PATH), nothing
    forced on Python, and a temporary directory of its own (autotest keeps run times there)."""
    env = clean_env()
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONUNBUFFERED"):
        env.pop(name, None)
    path = env.get("PATH", os.defpath).split(os.pathsep)
    env["PATH"] = os.pathsep.join(d for d in path if d and not Path(d, "..", "pyvenv.cfg").exists())
    (tmp / "tmp").mkdir(parents=True, exist_ok=True)
    env["TMPDIR"] = str(tmp / "tmp")
    return env


def activated(env: dict[str, str], venv: Path) -> dict[str, str]:
    return {**env, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}"}


@dataclass
class Place:
    """Where a block's commands run."""

    root: Path
    env: dict[str, str]
    packages: list[str]  # what autotest tests there


def fresh_clone(dest: Path) -> Path:
    """This repository as a new user gets it: the files git would commit from the working tree
    (uncommitted work included, nothing it ignores such as .venv), committed on main."""
    dest.mkdir(parents=True)
    listed = git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for rel in filter(None, listed.split("\0")):
        if os.path.lexists(ROOT / rel):  # else deleted, and the deletion not committed yet
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel, follow_symlinks=False)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "a fresh clone")
    return dest


def readers_repository(clone: Path, dest: Path) -> Path:
    """A reader's repository as "Use it in your repository" has it: a git repository of
    packages that import each other, and utilities/autotest.py copied in."""
    for name in SAMPLES:
        shutil.copytree(clone / name, dest / name)
    (dest / "utilities").mkdir()
    shutil.copy2(clone / "utilities" / "autotest.py", dest / "utilities" / "autotest.py")
    (dest / ".gitignore").write_text(".venv/\n*.egg-info/\n__pycache__/\n")
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "my packages")
    return dest


def uv_path() -> str | None:
    """uv, from the suite's virtualenv (requirements-dev.txt installs it) or PATH."""
    return shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")


# ---------------------------------------------------------------------------------------------
# Running a command line and checking what it did
# ---------------------------------------------------------------------------------------------


def check_autotest(launch: Launch, output: str, cwd: Path) -> list[str]:
    """What a finished autotest wrote is what it said; the packages it tested."""
    if launch.mode == "plan":
        assert launch.stdout_to, f"--plan without its output kept: {launch.args}"
        data = json.loads((cwd / launch.stdout_to).read_text())
        assert data["version"] == 1 and isinstance(data["packages"], list), data
        return []
    tested = ran(output)
    if launch.junit:
        report = ET.parse(cwd / launch.junit).getroot()
        assert [s.get("name") for s in report] == tested, (output, ET.tostring(report))
        assert all(len(suite) > 0 for suite in report), ET.tostring(report)
    return tested


def watch_until_all_pass_then_interrupt(shell: Shell, place: Place) -> list[str]:
    """autotest watching: its first cycle passes every package, and Ctrl+C ends it with 130,
    leaving nothing of the command running."""
    end = shell.wait_for(SUMMARY.pattern, timeout=INSTALLS)
    lines = shell.output.split("\n")[:end]
    assert lines[-1].startswith(f"all {len(place.packages)} packages passed"), shell.output
    tested = ran("\n".join(lines))
    assert sorted(tested) == place.packages, shell.output
    pgid = shell.proc.pid
    assert shell.interrupt() == 130, shell.output
    assert wait_until(lambda: not group_members(pgid), timeout=30), (
        f"left running after Ctrl+C: {group_members(pgid)}\n{shell.output}"
    )
    return tested


def run_command(line: str, place: Place, start: Start) -> list[str]:
    """Run one command line of the README at ``place``, as a user types it, and check it; the
    packages it tested."""
    parts = parts_of(line)
    if any(part.kind == "suite" for part, _ in parts):
        assert_is_the_command_ci_runs(line)
        return []
    launch = launch_of(parts)
    if launch and launch.uv and not shutil.which("uv", path=place.env["PATH"]):
        pytest.skip(f"uv is not installed (requirements-dev.txt installs it): {line!r} not run")
    shell = start(["bash", "-c", line], place.root, place.env)
    if launch and launch.mode == "watch":
        return watch_until_all_pass_then_interrupt(shell, place)
    assert shell.finish() == 0, f"{line!r} failed:\n{shell.output}"
    return check_autotest(launch, shell.output, place.root) if launch else []


# ---------------------------------------------------------------------------------------------
# Workflows: what GitHub provides, stood in for
# ---------------------------------------------------------------------------------------------

# The actions the workflows use, the inputs the stand-ins know, and what stands in for them.
ACTIONS = {
    "actions/checkout": (
        {"fetch-depth"},
        "a clone of origin on the pull request's branch, shallow unless fetch-depth is 0",
    ),
    "actions/setup-python": (
        {"python-version"},
        "a fresh virtualenv of that Python (when installed, else the suite's), its bin first on "
        "PATH, so `python` and `pip` are that virtualenv's",
    ),
    "actions/upload-artifact": (
        {"name", "path"},
        "the file is there to upload, under a name no other job of the run used",
    ),
}
WORKFLOW_KEYS = {"name", "on", True, "jobs"}  # PyYAML reads the key `on` as True
JOB_KEYS = {"runs-on", "needs", "if", "outputs", "strategy", "steps"}
STEP_KEYS = {"name", "id", "if", "uses", "with", "run"}
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    """The few GitHub expressions the workflows use; any other fails the test, naming it."""
    expression = expression.strip()
    inner = EXPRESSION.fullmatch(expression)
    if inner:
        return evaluate(inner[1], context)
    if expression == "always()":
        return True
    call = re.fullmatch(r"fromJSON\((.+)\)", expression)
    if call:
        return json.loads(evaluate(call[1], context))
    compare = re.fullmatch(r"(.+?)\s*(==|!=)\s*'([^']*)'", expression)
    if compare:
        return (str(evaluate(compare[1], context)) == compare[3]) == (compare[2] == "==")
    if re.fullmatch(r"[A-Za-z_][\w-]*(\.[\w-]+)+", expression):
        value: Any = context
        for key in expression.split("."):
            assert isinstance(value, dict) and key in value, f"{expression!r}: no {key!r} here"
            value = value[key]
        return value
    raise AssertionError(f"the test cannot evaluate the workflow expression {expression!r}")


def substitute(value: Any, context: dict[str, Any]) -> Any:
    """``${{ ... }}`` filled in, as GitHub does before a step runs; a value that is one
    expression keeps its type (a matrix from fromJSON is a list)."""
    if not isinstance(value, str):
        return value
    whole = EXPRESSION.fullmatch(value.strip())
    if whole:
        return evaluate(whole[1], context)
    return EXPRESSION.sub(lambda m: str(evaluate(m[1], context)), value)


def workflow_problems(block: Block) -> list[str]:
    """What in a workflow block the test could not stand in for or run."""
    doc = yaml.safe_load(block.text)
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), dict):
        return [f"{block}: not a GitHub Actions workflow, and the test knows no other YAML"]
    problems = [f"{block}: workflow key {k!r}" for k in doc if k not in WORKFLOW_KEYS]
    if doc.get("on", doc.get(True)) != "pull_request":
        problems.append(f"{block}: the test stands in for `on: pull_request` only")
    for name, job in doc["jobs"].items():
        where = f"{block}, job {name}"
        problems += [f"{where}: job key {k!r}" for k in job if k not in JOB_KEYS]
        if not str(job.get("runs-on", "")).startswith("ubuntu"):
            problems.append(f"{where}: runs-on {job.get('runs-on')!r}: only Linux stands in")
        strategy = job.get("strategy", {})
        problems += [
            f"{where}: strategy {k!r}" for k in strategy if k not in ("fail-fast", "matrix")
        ]
        matrix = strategy.get("matrix", {})
        if isinstance(matrix, dict):
            problems += [f"{where}: matrix {k!r}" for k in ("include", "exclude") if k in matrix]
        for step in job.get("steps", []):
            problems += [f"{where}: step key {k!r}" for k in step if k not in STEP_KEYS]
            if "uses" in step:
                action = step["uses"].split("@")[0]
                if action not in ACTIONS:
                    problems.append(f"{where}: no stand-in for the action {step['uses']!r}")
                else:
                    inputs = set(step.get("with", {})) - ACTIONS[action][0]
                    problems += [f"{where}: {action} with {k!r}" for k in sorted(inputs)]
            elif "run" in step:
                for line in command_lines(step["run"]):
                    try:
                        launch = launch_of(parts_of(line))
                    except AssertionError as unknown:
                        problems.append(f"{where}: {unknown}")
                        continue
                    if launch and launch.mode == "watch":
                        problems.append(f"{where}: {line!r} watches and never ends")
            else:
                problems.append(f"{where}: a step with neither uses nor run: {step}")
    return problems


@dataclass
class Run:
    """One run of a workflow on this machine: the pull request, and what its jobs left."""

    origin: Path
    tmp: Path
    env: dict[str, str]
    needs: dict[str, Any] = field(default_factory=dict)
    artifacts: set[str] = field(default_factory=set)
    tested: list[str] = field(default_factory=list)


@dataclass
class Machine:
    """One job's machine: its checkout, and beside it its Python and the steps' files."""

    home: Path
    env: dict[str, str]

    @property
    def workspace(self) -> Path:
        return self.home / "workspace"


def python_for(version: str) -> str:
    """The Python actions/setup-python would give: that version when pyenv holds it, else the
    one running the suite (the workflows do not depend on the minor version)."""
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = [*sorted(versions.glob(f"{version}.*/bin/python")), versions / version / "bin/python"]
    return next((str(p) for p in found if p.exists()), sys.executable)


def stand_in(action: str, inputs: dict[str, Any], machine: Machine, run: Run) -> None:
    if action == "actions/checkout":
        depth = int(inputs.get("fetch-depth", 1))
        shallow = ["--depth", str(depth)] if depth else []
        uri = run.origin.as_uri()
        git(machine.home, "clone", "-q", "--branch", BRANCH, *shallow, uri, str(machine.workspace))
    elif action == "actions/setup-python":
        venv = machine.home / "python"
        python = python_for(str(inputs["python-version"]))
        subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
        machine.env["PATH"] = f"{venv / 'bin'}{os.pathsep}{machine.env['PATH']}"
    elif action == "actions/upload-artifact":
        assert (machine.workspace / inputs["path"]).is_file(), f"nothing to upload: {inputs}"
        assert inputs["name"] not in run.artifacts, f"artifact names must differ: {inputs}"
        run.artifacts.add(inputs["name"])
    else:
        raise AssertionError(f"no stand-in for the action {action!r}")


def run_step(step: dict[str, Any], context: dict[str, Any], machine: Machine, run: Run) -> None:
    if "if" in step and not evaluate(str(step["if"]), context):
        return
    if "uses" in step:
        inputs = {k: substitute(v, context) for k, v in step.get("with", {}).items()}
        stand_in(step["uses"].split("@")[0], inputs, machine, run)
        return
    script = substitute(step["run"], context)
    lines = [(line, parts_of(line)) for line in command_lines(script)]
    if not shutil.which("jq", path=machine.env["PATH"]):
        for line, parts in lines:
            if any(part.kind == "output" for part, _ in parts):
                pytest.skip(f"jq is not installed here (GitHub's runners have it): {line!r} and "
                            "the rest of the workflow not run")  # fmt: skip
    number = len(list(machine.home.glob("step-*.sh"))) + 1
    path, outputs = machine.home / f"step-{number}.sh", machine.home / f"output-{number}"
    path.write_text(script)
    outputs.touch()
    env = {**machine.env, "GITHUB_OUTPUT": str(outputs)}
    argv = ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)]  # as GitHub runs it
    shell = Shell(argv, machine.workspace, env)
    try:
        code = shell.finish()
    finally:
        shell.kill()
    assert code == 0, f"the step {step['run']!r} exited {code}:\n{shell.output}"
    written = {}
    for entry in outputs.read_text().splitlines():
        name, sep, value = entry.partition("=")
        assert sep, f"$GITHUB_OUTPUT: the test reads name=value lines only, not {entry!r}"
        written[name] = value
    for line, parts in lines:
        for part, match in parts:
            if part.kind == "output":
                assert match["name"] in written, (line, written, shell.output)
                json.loads(written[match["name"]])
        launch = launch_of(parts)
        if launch:
            run.tested += check_autotest(launch, shell.output, machine.workspace)
    if "id" in step:
        context["steps"][step["id"]] = {"outputs": written}


def run_job(name: str, job: dict[str, Any], run: Run) -> None:
    """A job, on a machine of its own.  Its matrix entries share it: the steps before the first
    that uses the matrix (the checkout and set-up, the same on every entry's machine) run once,
    and between entries `git clean` takes away what the last one left (set-up, which git
    ignores, stays)."""
    for need in [job["needs"]] if isinstance(job.get("needs"), str) else job.get("needs", []):
        assert need in run.needs, f"job {name} needs {need}, which has not run"
    context: dict[str, Any] = {"needs": run.needs, "steps": {}, "matrix": {}}
    if "if" in job and not evaluate(str(job["if"]), context):
        return
    axes = substitute(job.get("strategy", {}).get("matrix", {}), context)
    axes = {key: substitute(values, context) for key, values in axes.items()}
    assert all(isinstance(v, list) and v for v in axes.values()), f"job {name}: matrix {axes}"
    entries = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    steps = job["steps"]
    shared = next((i for i, s in enumerate(steps) if "matrix." in json.dumps(s)), len(steps))
    machine = Machine(run.tmp / "jobs" / name, dict(run.env))
    machine.home.mkdir(parents=True)
    machine.env.update(CI="true", GITHUB_ACTIONS="true", GITHUB_WORKSPACE=str(machine.workspace))
    for index, matrix in enumerate(entries):
        context["matrix"] = matrix
        if index:
            git(machine.workspace, "clean", "-fdq")
        for step in steps if index == 0 else steps[shared:]:
            run_step(step, context, machine, run)
    outputs = job.get("outputs", {})
    run.needs[name] = {"outputs": {k: substitute(v, context) for k, v in outputs.items()}}


def pull_request(clone: Path, tmp: Path) -> Path:
    """origin: a bare repository whose main is the fresh clone, and a branch that changes
    package2, as a pull request's."""
    origin = tmp / "origin.git"
    git(tmp, "clone", "-q", "--bare", str(clone), str(origin))
    git(clone, "checkout", "-q", "-b", BRANCH)
    source = clone / CHANGED
    source.write_text(source.read_text() + "\n# changed on the pull request's branch\n")
    git(clone, "commit", "-q", "-am", "change package2")
    git(clone, "push", "-q", str(origin), BRANCH)
    return origin


# ---------------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------------


def test_every_command_in_the_readme_is_one_this_test_knows_how_to_run() -> None:
    fences = sum(1 for line in README.read_text().splitlines() if line.startswith("```"))
    assert 2 * len(BLOCKS) == fences, "the extractor missed a fenced block"
    problems = []
    for block in BLOCKS:
        if block.lang in SHELL:
            if block.section not in PLACES:
                problems.append(f"{block}: no place to run it; add its section to PLACES")
            for line in command_lines(block.text):
                try:
                    parts_of(line)
                except AssertionError as unknown:
                    problems.append(f"{block}: {unknown}")
        elif block.lang == "yaml":
            problems += workflow_problems(block)
        elif block.lang not in NOT_COMMANDS:
            problems.append(f"{block}: does it hold commands? Say so in SHELL or NOT_COMMANDS")
    problems += [f"no shell block under '## {s}': drop it from PLACES" for s in PLACES
                 if not shell_blocks(s)]  # fmt: skip
    assert workflows(), "the README's workflows are gone"
    assert not problems, "\n".join(problems)


def test_the_first_setup_command_watches_until_every_sample_package_passes(
    tmp_path: Path, start: Start
) -> None:
    """Every command under "Two commands", in order, on one fresh clone: the set-up command
    installs, then watches until all 3 sample packages pass, and Ctrl+C ends it with 130.  The
    test command is recognised and not run (see the module's docstring)."""
    place = Place(fresh_clone(tmp_path / "clone"), user_env(tmp_path), SAMPLES)
    tested = []
    for block in shell_blocks("Two commands"):
        for line in command_lines(block.text):
            tested += run_command(line, place, start)
    assert sorted(tested) == SAMPLES


@pytest.mark.parametrize(
    "block",
    shell_blocks("Use it in your repository"),
    ids=lambda b: f"{b.text.split()[0]}-line{b.line}",
)
def test_each_block_for_your_repository_runs_on_a_repository_shaped_as_the_readme_says(
    block: Block, tmp_path: Path, start: Start
) -> None:
    """A reader's repository (SAMPLES under a git root, utilities/autotest.py copied in, no
    pytest configured).  A `uv run` block gets uv and nothing else; any other runs with the
    packages installed in an activated virtualenv, which the block then installs into."""
    clone = fresh_clone(tmp_path / "clone")
    repo = readers_repository(clone, tmp_path / "yours")
    env = user_env(tmp_path)
    lines = command_lines(block.text)
    launches = [launch_of(parts_of(line)) for line in lines]
    if any(launch and launch.uv for launch in launches):
        uv = uv_path()
        if uv is None:
            pytest.skip("uv is not installed (requirements-dev.txt installs it)")
        (tmp_path / "bin").mkdir()
        (tmp_path / "bin" / "uv").symlink_to(uv)
        env["PATH"] = f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}"
    else:
        venv = repo / ".venv"
        subprocess.run(["python3", "-m", "venv", str(venv)], env=env, check=True, timeout=300)
        editables = [arg for name in SAMPLES for arg in ("-e", f"./{name}")]
        install = start([str(venv / "bin" / "pip"), "install", *editables], repo, env)
        assert install.finish() == 0, install.output
        env = activated(env, venv)
    place = Place(repo, env, SAMPLES)
    tested = []
    for line in lines:
        tested += run_command(line, place, start)
    assert sorted(tested) == SAMPLES


def workflow_id(block: Block) -> str:
    named = re.search(r"\.github/workflows/(\S+)", block.text)
    return named[1] if named else f"line{block.line}"


@pytest.mark.parametrize("block", workflows(), ids=workflow_id)
def test_each_workflow_runs_step_by_step_and_its_jobs_test_what_the_branch_affects(
    block: Block, tmp_path: Path
) -> None:
    """Every job of the workflow, in order, every step as GitHub runs it (bash -eo pipefail),
    on a pull request that changes package2: together the jobs test package2 and package3,
    each once, and every report and plan they write holds what they ran."""
    problems = workflow_problems(block)
    assert not problems, "\n".join(problems)
    clone = fresh_clone(tmp_path / "clone")
    run = Run(pull_request(clone, tmp_path), tmp_path, user_env(tmp_path))
    for name, job in yaml.safe_load(block.text)["jobs"].items():
        run_job(name, job, run)
    assert sorted(run.tested) == AFFECTED, run.tested

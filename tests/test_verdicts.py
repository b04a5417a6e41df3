"""Verdicts on repositories shaped like real monorepos: the runner and interpreter each package
gets, "could not run", --keep-going, and -j reporting the earliest failure."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import Repo, Watch, clean_env, load_autotest, run_autotest

at = load_autotest()
FAST_ENV = clean_env(PYTHONDONTWRITEBYTECODE="1")
VERDICT = re.compile(
    r"^(?P<rel>\S.*?)\s{2,}(?P<verdict>ok|no tests|could not run|FAILED(?: \([^)]*\))?)"
    r"\s+\d+\.\d\ds(?:  (?P<note>.+))?$"
)


def once(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_autotest(root, "--once", *args, env=FAST_ENV)


def verdicts(output: str) -> list[tuple[str, str]]:
    found = [VERDICT.match(line) for line in output.splitlines()]
    return [(m["rel"], m["verdict"] + (f": {m['note']}" if m["note"] else "")) for m in found if m]


def workspace(repo: Repo) -> None:
    """A uv-workspace-like root that configures pytest for every package."""
    repo.write(
        "pyproject.toml",
        """\
        [tool.uv.workspace]
        members = ["libs/*"]

        [tool.pytest.ini_options]
        addopts = "-p no:cacheprovider"
        """,
    )


FIXTURE_TESTS = """\
import pytest


@pytest.fixture
def numbers():
    return [1, 2]


def test_sum(numbers, tmp_path):
    assert sum(numbers) == {expected}
"""


def test_pytest_configured_at_the_root_runs_every_package_under_pytest(repo: Repo) -> None:
    """nose would skip these fixture tests and say ok: under pytest the broken one fails."""
    workspace(repo)
    repo.package("libs/core", tests=FIXTURE_TESTS.format(expected=3))
    repo.package("libs/broken", tests=FIXTURE_TESTS.format(expected=4))
    repo.write("libs/core/tests/conftest.py", "import pytest\n")
    done = once(repo.path, "--explain", "--keep-going")
    assert verdicts(done.stdout) == [("libs/broken", "FAILED"), ("libs/core", "ok")], done.stdout
    assert "assert 3 == 4" in done.stdout
    assert "pytest (pyproject.toml [tool.pytest.ini_options]): libs/broken, libs/core" in (
        done.stdout
    )
    assert done.returncode == 1


def test_without_pytest_configuration_the_files_decide(repo: Repo) -> None:
    repo.package("libs/fixtures", tests="def test_tmp(tmp_path):\n    assert tmp_path\n")
    repo.package("libs/conf")
    repo.write("libs/conf/conftest.py", "")
    repo.package("libs/plain")
    repo.package(
        "libs/suite",
        tests="import unittest\n\n\nclass T(unittest.TestCase):\n    def test_a(self):\n"
        "        pass\n",
    )
    done = once(repo.path, "-v")
    assert done.returncode == 0, done.stdout
    assert "pytest (tests/test_fixtures.py has tests taking pytest fixtures): libs/fixtures" in (
        done.stdout
    )
    assert "pytest (conftest.py in the package): libs/conf" in done.stdout
    assert "nose (no pytest configuration, conftest.py or pytest-style test): libs/plain, " in (
        done.stdout
    )


def test_nose_never_says_ok_for_tests_it_skipped_as_pytest_style(repo: Repo) -> None:
    repo.package("alpha", tests="def test_tmp(tmp_path):\n    assert False\n")
    done = once(repo.path, "--runner", "nose")
    assert done.returncode == 1
    assert verdicts(done.stdout) == [("alpha", "FAILED: pytest-style tests")], done.stdout
    assert "nose skipped tests of alpha that take pytest fixtures" in done.stdout
    verbose = once(repo.path, "--runner", "nose", "--", "-v")
    assert verdicts(verbose.stdout) == [("alpha", "FAILED: pytest-style tests")]


def test_runners_in_config_name_a_runner_per_package_glob(repo: Repo) -> None:
    workspace(repo)
    repo.write(
        "pyproject.toml",
        '[tool.pytest.ini_options]\n\n[tool.autotest.runners]\n"legacy/*" = "unittest"\n',
    )
    repo.package("legacy/old", tests="def helper_test_x():\n    pass\n")
    repo.package("libs/new")
    done = once(repo.path, "-v")
    assert "unittest (runners 'legacy/*'): legacy/old" in done.stdout, done.stdout
    assert verdicts(done.stdout) == [("legacy/old", "no tests"), ("libs/new", "ok")]
    overridden = once(repo.path, "-v", "--runner", "nose")
    assert "nose (--runner): legacy/old, libs/new" in overridden.stdout


MOCKET_TEST = "import mocket\n\n\ndef test_uses_it():\n    assert mocket\n"


def test_a_missing_third_party_module_is_could_not_run_and_does_not_stop_the_cycle(
    repo: Repo,
) -> None:
    workspace(repo)
    repo.package("libs/net", tests=MOCKET_TEST)
    repo.write("libs/net/test-requirements.txt", "-e ../core\nmocket\n")
    repo.package("libs/web", tests=MOCKET_TEST)
    repo.write("libs/web/pyproject.toml", '[project]\nname = "web"\n\n[dependency-groups]\n'
               'test = ["mocket"]\n')  # fmt: skip
    repo.package("libs/zzz")
    done = once(repo.path)
    assert done.returncode == 1, done.stdout
    assert verdicts(done.stdout) == [
        ("libs/net", "could not run: needs mocket"),
        ("libs/web", "could not run: needs mocket"),
        ("libs/zzz", "ok"),
    ], done.stdout
    net, web = repo.path / "libs" / "net", repo.path / "libs" / "web"
    version = at.pip_version(sys.executable)
    into = " ".join(at.installer(sys.executable, version))  # pip's, or uv's without pip
    pip = f"{into} -r {net}/test-requirements.txt"
    group = f"--group {web}/pyproject.toml:test" if not version or version >= (25, 1) else "mocket"
    assert (
        f"  mocket is not installed for libs/net, libs/web; install their test dependencies: "
        f"{pip} {group}\n"
    ) in done.stdout, done.stdout
    assert "ModuleNotFoundError" not in done.stdout  # not shown as a failure
    summary = done.stdout.splitlines()[-1]
    assert re.match(
        r"^1 of 3 packages passed; could not run: libs/net \(needs mocket\), "
        r"libs/web \(needs mocket\) in ",
        summary,
    ), summary


def test_a_module_a_sibling_no_longer_provides_stays_a_failure(repo: Repo) -> None:
    repo.package("libs/core", name="core")
    repo.package("libs/app", deps=["core"], tests="import core.helpers\n\n\n"
                 "def test_x():\n    assert core.helpers\n")  # fmt: skip
    installed = {**FAST_ENV, "PYTHONPATH": str(repo.path / "libs" / "core")}  # core, as installed
    done = run_autotest(repo.path, "--once", env=installed)
    assert verdicts(done.stdout) == [("libs/core", "ok"), ("libs/app", "FAILED")], done.stdout
    assert "No module named 'core" in done.stdout


def test_could_not_run_is_not_failed_last_time(repo: Repo, watch: Callable[..., Watch]) -> None:
    """While watching, the next cycle does not put it first as "failed last time"."""
    repo.package("alpha", tests=MOCKET_TEST)
    repo.package("beta")
    repo.package("gamma")
    w = watch(repo.path, "--explain", env=FAST_ENV)
    first = w.wait_cycles(1)
    assert verdicts("\n".join(w.lines[:first])) == [
        ("alpha", "could not run: needs mocket"), ("beta", "ok"), ("gamma", "ok"),
    ], w.output  # fmt: skip
    repo.write("gamma/gamma/__init__.py", "VALUE = 2\n")
    second = w.wait_cycles(2)
    lines = w.lines[first:second]
    assert "failed last time" not in "\n".join(lines), w.output
    assert [rel for rel, _ in verdicts("\n".join(lines))] == ["gamma", "alpha", "beta"]


def test_keep_going_runs_every_package_and_lists_every_failure(repo: Repo) -> None:
    failing = "def test_broken():\n    print('OUTPUT-OF-{0}')\n    assert False\n"
    repo.package("alpha", tests=failing.format("ALPHA"))
    repo.package("beta")
    repo.package("gamma", tests=failing.format("GAMMA"))
    done = once(repo.path, "--keep-going", "-j", "2")
    assert done.returncode == 1
    assert verdicts(done.stdout) == [("alpha", "FAILED"), ("beta", "ok"), ("gamma", "FAILED")]
    assert "OUTPUT-OF-ALPHA" in done.stdout and "OUTPUT-OF-GAMMA" in done.stdout
    assert re.search(r"^alpha, gamma FAILED; 1 passed, 0 not run in", done.stdout, re.M)
    repo.write("pyproject.toml", "[tool.autotest]\nkeep-going = true\n")
    assert len(verdicts(once(repo.path).stdout)) == 3


def make_venv(where: Path) -> Path:
    """A real virtualenv of its own that sees this one's site-packages (nose, pytest), holds a
    module nothing else has, and a console script."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(purelib, "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    Path(purelib, "only_in_its_venv.py").write_text("HERE = True\n")
    script = where / "bin" / "venv-tool"
    script.write_text("#!/bin/sh\necho VENV-TOOL-RAN\n")
    script.chmod(0o755)
    return python


VENV_TEST = """\
import os
import sys

import only_in_its_venv


def test_runs_in_its_venv():
    print("PREFIX=" + sys.prefix)
    print("PATH0=" + os.environ["PATH"].split(os.pathsep)[0])
    assert only_in_its_venv.HERE
    assert False, "show the output"
"""


def test_a_package_with_its_own_venv_runs_with_that_interpreter(repo: Repo) -> None:
    repo.package("services/api", tests=VENV_TEST)
    repo.package("libs/core")
    venv = repo.path / "services" / "api" / ".venv"
    python = make_venv(venv)
    done = once(repo.path, "--explain", "--no-warm")
    assert verdicts(done.stdout) == [("libs/core", "ok"), ("services/api", "FAILED")], done.stdout
    assert f"PREFIX={venv}" in done.stdout
    assert f"PATH0={venv / 'bin'}" in done.stdout
    assert "python services/api/.venv/bin/python (its own .venv): services/api" in done.stdout
    assert str(python) not in done.stdout.replace("services/api/.venv/bin/python", "")


def test_a_runner_command_resolves_in_the_packages_environment(repo: Repo) -> None:
    """``python`` and console scripts in a command are the package venv's, as if activated."""
    repo.package("alpha")
    venv = repo.path / "alpha" / "venv"
    make_venv(venv)
    done = once(repo.path, "--runner", "venv-tool {package}")
    assert verdicts(done.stdout) == [("alpha", "ok")], done.stdout + done.stderr
    shown = once(repo.path, "--runner", "python -c 'import sys; print(sys.prefix); 1/0' {package}")
    assert verdicts(shown.stdout) == [("alpha", "FAILED")]
    assert str(venv) in shown.stdout


def test_every_verdict_and_note_keeps_the_column(tmp_path: Path) -> None:
    import io

    stream = io.StringIO()
    reporter = at.Reporter(stream, color=False, width=5)
    package = at.Package(tmp_path / "alpha", "alpha")
    for verdict, note in [
        (at.Verdict.OK, ""), (at.Verdict.NO_TESTS, ""), (at.Verdict.FAILED, "exit 2"),
        (at.Verdict.FAILED, "timed out"), (at.Verdict.FAILED, "SIGKILL"),
        (at.Verdict.COULD_NOT_RUN, "needs mocket"), (at.Verdict.FAILED, "pytest-style tests"),
    ]:  # fmt: skip
        reporter.verdict(at.RunResult(package, verdict, 1.5, "", note))
    columns = {line.index("1.50s") for line in stream.getvalue().splitlines() if "1.50s" in line}
    assert len(columns) == 1, stream.getvalue()


def test_runners_and_venvs_read_from_every_place_settings_live(repo: Repo) -> None:
    def parsed(*argv: str) -> Any:
        return at.parse_options(["--root", str(repo.path), *argv])

    repo.write("setup.cfg", "[autotest]\nrunners =\n    legacy/* = nose\n    tools/x=unittest\n")
    assert parsed().runners == (("legacy/*", "nose"), ("tools/x", "unittest"))
    repo.write("pyproject.toml", '[tool.autotest]\nvenvs = { "svc/*" = "../.venvs/svc" }\n'
               '[tool.autotest.runners]\n"a/*" = "pytest"\n')  # fmt: skip
    assert parsed().runners == (("a/*", "pytest"),)
    assert parsed().venvs == (("svc/*", "../.venvs/svc"),)
    assert parsed("--runners", "b=nose").runners == (("b", "nose"),)
    assert parsed("--runner", "nose").runners == ()  # --runner is for every package


def test_a_venv_named_in_config_runs_the_package(repo: Repo, tmp_path: Path) -> None:
    repo.package("svc/api", tests=VENV_TEST)
    venv = repo.path / "venvs" / "api"
    make_venv(venv)
    repo.write("pyproject.toml", '[tool.autotest.venvs]\n"svc/*" = "../../venvs/api"\n')
    done = once(repo.path, "-v")
    assert f"PREFIX={venv}" in done.stdout, done.stdout
    assert "(venvs 'svc/*'): svc/api" in done.stdout


def test_a_bad_runners_entry_is_one_error_line(repo: Repo) -> None:
    repo.package("alpha")
    repo.write("pyproject.toml", '[tool.autotest.runners]\n"alpha" = "nosey"\n')
    done = once(repo.path)
    assert done.returncode == 2 and done.stderr.startswith("autotest: error: "), done.stderr
    assert "nosey" in done.stderr and len(done.stderr.splitlines()) == 1


ENDS_THE_PROCESS_EARLY = """\
import os
import unittest


class T(unittest.TestCase):
    def test_a_first(self):
        pass

    def test_b_ends_the_process(self):
        os._exit(0)

    def test_c_never_runs(self):
        assert False
"""


@pytest.mark.parametrize("runner", ["nose", "nose2", "pytest", "unittest"])
def test_a_run_that_exits_0_before_its_runner_summary_is_not_a_pass(
    repo: Repo, runner: str
) -> None:
    repo.package("alpha", tests=ENDS_THE_PROCESS_EARLY)
    repo.package("beta", tests=ENDS_THE_PROCESS_EARLY.replace("os._exit(0)", "pass").replace(
        "assert False", "pass"
    ))  # fmt: skip
    done = once(repo.path, "--runner", runner, "--keep-going")
    assert done.returncode == 1, done.stdout
    assert verdicts(done.stdout) == [("alpha", "FAILED (cut short)"), ("beta", "ok")], done.stdout
    assert f"{runner} exited 0 but never printed its summary" in done.stdout


def test_a_quiet_pytest_run_that_ends_normally_still_passes(repo: Repo) -> None:
    """``-qq`` drops pytest's last line; its progress reaching 100% is the summary then."""
    repo.package("alpha")
    done = once(repo.path, "--runner", "pytest", "--", "-qq")
    assert verdicts(done.stdout) == [("alpha", "ok")], done.stdout


def test_a_command_runner_is_judged_by_its_exit_status_alone(repo: Repo) -> None:
    repo.package("alpha")
    done = once(repo.path, "--runner", "true {package}")
    assert verdicts(done.stdout) == [("alpha", "ok")], done.stdout


def test_a_summary_followed_by_a_long_report_still_passes(repo: Repo) -> None:
    """A report printed after the summary (as nose2's coverage plugin does) may push it out of
    the tail autotest keeps: the whole output is searched for it."""
    repo.package("alpha", tests=ENDS_THE_PROCESS_EARLY.replace(
        "os._exit(0)", "os.write(2, b'test output\\n' * 150)"
    ).replace("assert False", "pass"))  # fmt: skip
    repo.write(
        "alpha/tests/conftest_report.py",
        "import atexit\n\natexit.register(lambda: print('report line\\n' * 300))\n",
    )
    repo.write("alpha/tests/__init__.py", "from . import conftest_report  # noqa: F401\n")
    done = once(repo.path, "--runner", "unittest")
    assert verdicts(done.stdout) == [("alpha", "ok")], done.stdout


def test_verbose_names_a_command_runner_quoted_as_it_was_given(repo: Repo) -> None:
    repo.package("alpha")
    done = once(repo.path, "-v", "--runner", "python -c 'print(1)' {package}")
    assert "python -c 'print(1)' '{package}' (--runner): alpha" in done.stdout, done.stdout

"""Verdicts and output to trust on real monorepos: the failing tests always on screen, hints
that group and work for the venv at hand, and a summary that stays short."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Repo, clean_env, run_autotest

FAST_ENV = clean_env(PYTHONDONTWRITEBYTECODE="1")
PASSING = "def test_ok():\n    pass\n"


def once(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_autotest(root, "--once", *args, env=FAST_ENV, timeout=120)


def src_package(repo: Repo, rel: str, name: str, tests: dict[str, str]) -> Path:
    """A src-layout package, its tests in ``tests/``, named ``name`` on PyPI."""
    module = name.replace("-", "_")
    repo.write(f"{rel}/pyproject.toml", f'[project]\nname = "{name}"\nversion = "0.1"\n')
    repo.write(f"{rel}/src/{module}/__init__.py", "VALUE = 1\n")
    for file, text in tests.items():
        repo.write(f"{rel}/tests/{file}", text)
    return repo.path / rel


NOISY_UNITTEST = """\
import sys
import unittest


class RetryTest(unittest.TestCase):
    def test_value(self):
        for attempt in range(80000):
            sys.stderr.write(f"warning: retrying connection, attempt {attempt}\\n")
        value = 2
        self.assertEqual(value, 1, "value is 2")

    def test_fine(self):
        pass
"""


def failing_list(output: str) -> list[str]:
    """The lines listing the failing tests, between the verdict and the raw output."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^\d+ failing tests?:$", line))
    end = lines.index("output:", start)
    return lines[start + 1 : end]


def test_a_failing_test_lost_in_80000_lines_of_stderr_under_nose_is_listed_first(
    repo: Repo,
) -> None:
    src_package(repo, "libs/retry", "retry", {"__init__.py": "", "test_retry.py": NOISY_UNITTEST})
    done = once(repo.path, "--runner", "nose")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    verdict = next(i for i, line in enumerate(lines) if line.startswith("libs/retry "))
    assert lines[verdict + 1] == "1 failing test:", done.stdout[:3000]
    assert failing_list(done.stdout) == [
        "  tests/test_retry.py:10 tests.test_retry.RetryTest.test_value: "
        "AssertionError: 2 != 1 : value is 2"
    ]
    assert re.search(r"^\.\.\. \d+ lines omitted; full output: ", done.stdout, re.M)
    assert "value is 2" not in done.stdout.split("output:\n", 1)[1].split("... ")[0]


VERBOSE_PYTEST = """\
import logging

import pytest

log = logging.getLogger("ingest")


@pytest.mark.parametrize("row", range(300))
def test_rows(row):
    log.info("row %d ingested", row)


def test_value():
    for step in range(400):
        print(f"state {step}")
    value = 2
    assert value == 1, "value is 2"


def test_setup_breaks(tmp_path):
    raise RuntimeError("cannot open the cache")
"""


def test_a_root_pytest_ini_with_verbose_and_log_cli_still_shows_what_failed_first(
    repo: Repo,
) -> None:
    repo.write("pytest.ini", "[pytest]\naddopts = -v -p no:cacheprovider\nlog_cli = true\n"
               "log_cli_level = INFO\n")  # fmt: skip
    src_package(repo, "libs/ingest", "ingest", {"test_ingest.py": VERBOSE_PYTEST})
    done = once(repo.path)
    assert done.returncode == 1
    assert failing_list(done.stdout) == [
        "  tests/test_ingest.py:17 libs.ingest.tests.test_ingest.test_value: "
        "AssertionError: value is 2",
        "  tests/test_ingest.py:21 libs.ingest.tests.test_ingest.test_setup_breaks: "
        "RuntimeError: cannot open the cache",
    ], done.stdout[:3000]
    assert "PASSED" in done.stdout.split("output:\n", 1)[1]  # the raw head follows
    assert "generated xml file" not in done.stdout  # autotest's private report, not the user's


def test_many_failing_tests_take_at_most_twenty_lines(repo: Repo) -> None:
    tests = "import pytest\n\n\n@pytest.mark.parametrize('n', range(45))\ndef test_n(n):\n" \
            "    assert n < 0, f'n is {n}'\n"  # fmt: skip
    src_package(repo, "libs/many", "many", {"test_many.py": tests})
    done = once(repo.path)
    listed = failing_list(done.stdout)
    assert len(listed) == 20, done.stdout[:3000]
    assert listed[-1] == "  ... and 26 more"
    assert listed[0].endswith("test_n[0]: AssertionError: n is 0"), listed[0]


def test_unittest_has_no_report_and_shows_the_output_as_before(repo: Repo) -> None:
    src_package(repo, "libs/plain", "plain", {"__init__.py": "", "test_plain.py": NOISY_UNITTEST})
    done = once(repo.path, "--runner", "unittest")
    assert done.returncode == 1
    assert "failing test" not in done.stdout
    assert "value is 2" in done.stdout  # unittest prints its failures last, in the tail


def test_the_private_reports_are_gone_after_the_runs(repo: Repo, tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    src_package(repo, "libs/a", "a", {"test_a.py": "def test_a():\n    assert False\n"})
    src_package(repo, "libs/b", "b", {"__init__.py": "", "test_b.py": NOISY_UNITTEST})
    env = {**FAST_ENV, "TMPDIR": str(scratch)}
    done = run_autotest(repo.path, "--once", "--keep-going", env=env, timeout=120)
    assert done.returncode == 1
    assert not list(scratch.glob("autotest-junit-*")), list(scratch.iterdir())


def needing(module: str) -> str:
    return f"import {module}\n\n\ndef test_it():\n    assert {module}\n"


def test_a_big_first_cycle_groups_hints_per_module_and_keeps_the_summary_short(
    repo: Repo,
) -> None:
    repo.write("pyproject.toml", "[tool.pytest.ini_options]\naddopts = '-p no:cacheprovider'\n")
    for number in range(7):
        rel = f"integrations/store-{number}"
        src_package(repo, rel, f"store-{number}", {"test_store.py": needing("testcontainers")})
        repo.write(f"{rel}/tests/requirements.txt", "testcontainers\n")
    for name in ("http-mock", "retries"):
        src_package(repo, f"libs/{name}", name, {"test_it.py": needing("mocket")})
    src_package(repo, "libs/core", "core", {"test_core.py": "def test_ok():\n    pass\n"})
    done = once(repo.path, "-j", "2")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    hints = [line for line in lines if line.startswith("  ")]
    assert len(hints) == 2, done.stdout
    stores = ", ".join(f"integrations/store-{n}" for n in range(5))
    assert hints[0].startswith(
        f"  testcontainers is not installed for {stores} and 2 more; install their test "
        "dependencies: "
    ), hints[0]
    for number in range(7):  # one command installs them all
        assert f" -r {repo.path}/integrations/store-{number}/tests/requirements.txt" in hints[0]
    assert hints[1].startswith("  mocket is not installed for libs/http-mock, libs/retries, nor")
    summary = lines[-1]
    assert re.match(
        r"^1 of 10 packages passed; could not run: 9 packages, for want of 2 modules "
        r"\(listed above; -v names every package\) in \d+\.\d\ds$",
        summary,
    ), summary
    verbose = once(repo.path, "-j", "2", "-v").stdout.splitlines()
    assert "integrations/store-6 (needs testcontainers)" in verbose[-1]
    assert "store-5, integrations/store-6; install" in "\n".join(verbose)


def uv_venv(where: Path) -> str:
    """A virtualenv as ``uv venv`` makes it: no pip in it."""
    uv = shutil.which("uv", path=os.pathsep.join([os.path.dirname(sys.executable), os.defpath]))
    if uv is None:
        pytest.skip("uv is not installed (requirements-dev.txt installs it)")
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(where)], check=True)
    python = where / "bin" / "python"
    assert subprocess.run([str(python), "-c", "import pip"], capture_output=True).returncode
    return str(python)


UNITTEST_RUNNER = '[tool.autotest.runners]\n"libs/*" = "unittest"\n'


def test_a_uv_venv_without_pip_gets_uv_pip_install_for_its_python(repo: Repo) -> None:
    repo.write("pyproject.toml", UNITTEST_RUNNER)
    sdk = src_package(
        repo, "libs/sdk", "sdk", {"__init__.py": "", "test_sdk.py": needing("mocket")}
    )
    repo.write("libs/sdk/pyproject.toml", '[project]\nname = "sdk"\nversion = "0.1"\n\n'
               '[dependency-groups]\ntest = ["mocket>=3"]\n')  # fmt: skip
    python = uv_venv(sdk / ".venv")
    done = once(repo.path)
    assert "libs/sdk  could not run" in done.stdout, done.stdout
    assert (
        f"  mocket is not installed for libs/sdk; install its test dependencies: "
        f"uv pip install --python {python} --group {sdk}/pyproject.toml:test\n"
    ) in done.stdout, done.stdout
    assert "-m pip" not in done.stdout


def test_a_uv_venv_without_its_runner_gets_uv_pip_install_for_the_runner(repo: Repo) -> None:
    sdk = src_package(repo, "libs/sdk", "sdk", {"__init__.py": "", "test_sdk.py": needing("os")})
    python = uv_venv(sdk / ".venv")
    done = once(repo.path)
    assert "libs/sdk  could not run" in done.stdout, done.stdout
    assert f"install its test dependencies: uv pip install --python {python} pynose" in (
        done.stdout
    )


def test_a_venv_with_pip_older_than_25_1_gets_the_groups_requirements_by_name(
    repo: Repo,
) -> None:
    repo.write("pyproject.toml", UNITTEST_RUNNER)
    sdk = src_package(
        repo, "libs/sdk", "sdk", {"__init__.py": "", "test_sdk.py": needing("mocket")}
    )
    groups = (
        '[dependency-groups]\nlint = ["ruff"]\ntest = ["mocket>=3", {include-group = "lint"}]\n'
    )
    repo.write("libs/sdk/pyproject.toml", f'[project]\nname = "sdk"\nversion = "0.1"\n\n{groups}\n')
    subprocess.run([sys.executable, "-m", "venv", str(sdk / ".venv")], check=True)
    python = str(sdk / ".venv" / "bin" / "python")
    pip = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, text=True)
    if tuple(int(n) for n in pip.stdout.split()[1].split(".")[:2]) >= (25, 1):
        pytest.skip(f"this Python bundles a pip that knows --group: {pip.stdout}")
    done = once(repo.path)
    assert f"install its test dependencies: {python} -m pip install 'mocket>=3' ruff\n" in (
        done.stdout
    ), done.stdout


SDK_TESTS = {
    "__init__.py": "",
    "test_client.py": "import langgraph.graph\n\n\ndef test_client():\n    assert langgraph\n",
    "test_remote.py": "import respx_fake\n\n\ndef test_remote():\n    assert respx_fake\n",
}


def langgraph_monorepo(repo: Repo) -> tuple[Path, str]:
    """libs/langgraph provides langgraph (a namespace-free src layout); libs/sdk-py has its own
    uv-made venv, in which langgraph is not installed."""
    repo.write("pyproject.toml", UNITTEST_RUNNER)
    src_package(
        repo, "libs/langgraph", "langgraph", {"test_graph.py": "def test_ok():\n    pass\n"}
    )
    repo.write("libs/langgraph/src/langgraph/graph.py", "class StateGraph:\n    pass\n")
    sdk = src_package(repo, "libs/sdk-py", "langgraph-sdk", SDK_TESTS)
    return sdk, uv_venv(sdk / ".venv")


def test_a_sibling_not_installed_in_a_packages_own_venv_could_not_run(repo: Repo) -> None:
    _, python = langgraph_monorepo(repo)
    done = once(repo.path, "--keep-going")
    lines = done.stdout.splitlines()
    assert re.search(
        r"^libs/sdk-py\s+could not run\s+\d+\.\d\ds  needs langgraph "
        r"\(libs/langgraph, not installed in libs/sdk-py/\.venv\)$",
        done.stdout,
        re.M,
    ), done.stdout
    assert (
        "  langgraph is provided by libs/langgraph, which is not installed for libs/sdk-py; "
        f"install it: uv pip install --python {python} -e {repo.path}/libs/langgraph"
    ) in lines, done.stdout
    assert "FAILED" not in done.stdout


def test_a_module_the_sibling_no_longer_provides_stays_a_failure_in_its_own_venv(
    repo: Repo,
) -> None:
    sdk, python = langgraph_monorepo(repo)
    repo.write("libs/sdk-py/tests/test_client.py", "import langgraph.pregel\n")
    (sdk / "tests" / "test_remote.py").unlink()
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "langgraph.pth").write_text(f"{repo.path}/libs/langgraph/src\n")  # installed
    done = once(repo.path, "--keep-going")
    assert re.search(r"^libs/sdk-py\s+FAILED\s", done.stdout, re.M), done.stdout
    assert "No module named 'langgraph.pregel'" in done.stdout


PGVECTOR_TESTS = {
    "unit/test_vector.py": "def test_dimensions():\n    assert len([1, 2, 3]) == 3\n",
    "integration/test_postgres.py": (
        "import pytest\n\n\n@pytest.mark.integration\ndef test_connects():\n"
        "    raise ConnectionError('could not connect to server: Connection refused')\n"
    ),
}


def hatch_monorepo(repo: Repo, where: str) -> Path:
    """A hatch monorepo's package whose test env runs ``pytest -m "not integration"``: its
    integration tests need a Postgres server that is not there.  ``where`` is pyproject.toml or
    hatch.toml."""
    repo.write("pyproject.toml", "[tool.pytest.ini_options]\naddopts = '-p no:cacheprovider'\n"
               "markers = ['integration: needs a database']\n")  # fmt: skip
    package = src_package(repo, "integrations/pgvector", "pgvector-haystack", PGVECTOR_TESTS)
    script = "[{table}envs.test.scripts]\nunit = 'pytest -m \"not integration\" {{args:tests}}'\n"
    if where == "hatch.toml":
        repo.write("integrations/pgvector/hatch.toml", script.format(table=""))
    else:
        text = (package / "pyproject.toml").read_text() + "\n" + script.format(table="tool.hatch.")
        repo.write("integrations/pgvector/pyproject.toml", text)
    return package


@pytest.mark.parametrize("where", ["pyproject.toml", "hatch.toml"])
def test_a_hatch_test_script_decides_which_tests_run(repo: Repo, where: str) -> None:
    hatch_monorepo(repo, where)
    done = once(repo.path, "-v")
    assert re.search(r"^integrations/pgvector\s+ok\s", done.stdout, re.M), done.stdout
    assert (
        f"selection -m 'not integration' tests ({where} hatch env test script unit): "
        "integrations/pgvector"
    ) in done.stdout
    plan = json.loads(run_autotest(repo.path, "--plan", env=FAST_ENV).stdout)
    argv = plan["packages"][0]["argv"]
    assert argv[-3:] == ["-m", "not integration", "tests"], argv


def test_package_args_replace_the_declared_selection(repo: Repo) -> None:
    hatch_monorepo(repo, "pyproject.toml")
    done = once(repo.path, "-v", "--package-args", "integrations/*=tests/integration")
    assert re.search(r"^integrations/pgvector\s+FAILED\s", done.stdout, re.M), done.stdout
    assert "Connection refused" in done.stdout


def test_a_root_tox_ini_names_the_package_tests_and_benchmarks_stay_out(repo: Repo) -> None:
    repo.write("tox.ini", """\
        [tox]
        envlist = py3{9,10,11}-test-instrumentation-{flask,redis}

        [testenv]
        deps = -r dev-requirements.txt
        commands_pre = pip install {toxinidir}/opentelemetry-instrumentation
        commands =
            test-instrumentation-flask: pytest {toxinidir}/instrumentation/flask/tests {posargs}
            test-instrumentation-redis: pytest {toxinidir}/instrumentation/redis/tests {posargs}

        [pytest]
        addopts = -p no:cacheprovider
        """)  # fmt: skip
    benchmark = "def test_speed(benchmark):\n    benchmark(sum, [1, 2])\n"
    for name in ("flask", "redis"):
        rel = f"instrumentation/{name}"
        src_package(repo, rel, f"opentelemetry-instrumentation-{name}",
                    {"test_instrumentation.py": "def test_ok():\n    pass\n"})  # fmt: skip
        repo.write(f"{rel}/benchmarks/test_benchmark.py", benchmark)
    done = once(repo.path, "-v")
    assert done.returncode == 0, done.stdout
    assert "selection tests (tox.ini [testenv] commands): instrumentation/flask, " \
        "instrumentation/redis" in done.stdout  # fmt: skip


def test_an_unknown_declared_command_gives_no_selection_and_says_why(repo: Repo) -> None:
    repo.write("pyproject.toml", "[tool.pytest.ini_options]\naddopts = '-p no:cacheprovider'\n")
    package = src_package(repo, "libs/core", "core", {"test_core.py": PASSING})
    text = (package / "pyproject.toml").read_text()
    repo.write("libs/core/pyproject.toml", text + "\n[tool.hatch.envs.test.scripts]\n"
               "unit = 'pytest {env:TEST_DIR} -x'\n")  # fmt: skip
    repo.write("libs/core/examples/test_example.py", "def test_ok():\n    pass\n")
    done = once(repo.path, "-v")
    assert "selection tests (its tests/ directory; pyproject.toml hatch env test script unit: " \
        "the placeholder {env:TEST_DIR}): libs/core" in done.stdout, done.stdout  # fmt: skip


def test_testpaths_decide_and_tests_directory_is_the_default(repo: Repo) -> None:
    repo.write("pyproject.toml", "[tool.pytest.ini_options]\naddopts = '-p no:cacheprovider'\n")
    src_package(repo, "libs/plain", "plain", {"test_plain.py": PASSING})
    repo.write("libs/plain/scripts/test_deploy.py", "def test_deploy():\n    assert False\n")
    src_package(repo, "libs/own", "own", {"test_own.py": PASSING})
    repo.write("libs/own/pytest.ini", "[pytest]\ntestpaths = tests scripts\n")
    repo.write("libs/own/scripts/test_deploy.py", "def test_deploy():\n    assert False\n")
    done = once(repo.path, "-v", "--keep-going")
    assert re.search(r"^libs/plain\s+ok\s", done.stdout, re.M), done.stdout
    assert re.search(r"^libs/own\s+FAILED\s", done.stdout, re.M), done.stdout
    assert "selection tests (its tests/ directory): libs/plain" in done.stdout


def test_package_args_that_do_not_split_are_one_error_line(repo: Repo) -> None:
    src_package(repo, "libs/core", "core", {"test_core.py": PASSING})
    done = run_autotest(repo.path, "--once", "--package-args", 'libs/*=-m "not integration')
    assert done.returncode == 2
    assert done.stderr.startswith("autotest: error: package-args 'libs/*': "), done.stderr
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_test_module_that_cannot_be_collected_is_listed_with_its_error(repo: Repo) -> None:
    repo.package("libs/client", name="client", tests=PASSING)  # a flat layout: importable
    repo.write("libs/client/tests/test_a.py", "import pytest\nfrom client import missing_name\n")
    done = once(repo.path)
    assert failing_list(done.stdout) == [
        "  tests/test_a.py:2 tests.test_a: ImportError: cannot import name 'missing_name' from "
        f"'client' ({repo.path}/libs/client/client/__init__.py)"
    ], done.stdout

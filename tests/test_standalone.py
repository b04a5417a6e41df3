"""The product is one file: copied alone into another repository, it finds that repository."""

from __future__ import annotations

import shutil
import subprocess
import sys

from conftest import AUTOTEST, FAILING_TEST, Repo, clean_env


def test_copied_alone_into_another_repo_finds_its_packages(repo: Repo) -> None:
    repo.package("services/api", name="acme-api")
    repo.package("services/worker", name="acme-worker", deps=["acme_api"], tests=FAILING_TEST)
    repo.write(
        "pyproject.toml", "[tool.ruff]\nline-length = 120\n"
    )  # workspace config, not a package
    copy = repo.path / "utilities" / "autotest.py"
    copy.parent.mkdir()
    shutil.copy(AUTOTEST, copy)

    done = subprocess.run(
        [sys.executable, str(copy), "--once", "--changed", "services/api/acme_api/__init__.py"],
        cwd=repo.path / "services",
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )

    lines = done.stdout.splitlines()
    assert done.returncode == 1, done.stdout + done.stderr
    assert lines[0] == f"autotest: 2 packages in {repo.path}"
    assert lines[1] == "changed: services/api/acme_api/__init__.py"
    assert lines[2].split()[:2] == ["services/api", "ok"]
    assert lines[3].split()[:2] == ["services/worker", "FAILED"]
    assert "the output of the failing run" in done.stdout

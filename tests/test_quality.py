"""Lint, format and types are part of the suite, so the README's one test command checks them."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

CHECKS = {
    "ruff check": [sys.executable, "-m", "ruff", "check", "."],
    "ruff format": [sys.executable, "-m", "ruff", "format", "--check", "."],
    "mypy": [sys.executable, "-m", "mypy"],
}


@pytest.mark.parametrize("name", CHECKS)
def test_quality(name: str) -> None:
    tool = CHECKS[name][2]
    if subprocess.run([sys.executable, "-m", tool, "--version"], capture_output=True).returncode:
        pytest.skip(f"{tool} is not installed")
    if tool == "mypy" and sys.version_info < (3, 10):
        pytest.skip("mypy checks with the newest Python; the code's 3.9 syntax is ruff's (py39)")
    done = subprocess.run(CHECKS[name], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_module_imports_only_the_modules_below_it(tmp_path: Path) -> None:
    """The layers of src/autotest/__init__.py, held by import-linter's layers contract: a
    module that imports one listed after it fails here, so the reading order cannot drift."""
    if importlib.util.find_spec("importlinter") is None:
        pytest.skip("import-linter is not installed")
    init = ast.parse((ROOT / "src" / "autotest" / "__init__.py").read_text())
    layers = next(
        ast.literal_eval(node.value)
        for node in init.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "LAYERS"
    )
    config = tmp_path / "importlinter.ini"
    config.write_text(
        "[importlinter]\nroot_package = autotest\n\n"
        "[importlinter:contract:layers]\nname = each module imports only those below it\n"
        "type = layers\ncontainers = autotest\nlayers =\n"
        + "".join(f"    {name}\n" for name in reversed(layers))
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()",
         str(config), "--no-cache"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout

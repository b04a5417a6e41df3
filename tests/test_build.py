"""The one file users copy is built from the modules in src/autotest/, and says so."""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from conftest import AUTOTEST, ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

PACKAGE = ROOT / "src" / "autotest"


def load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build", ROOT / "tools" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


build = load_build()


def module_paths() -> list[Path]:
    return sorted(PACKAGE.glob("*.py"))


def test_the_committed_file_is_the_build_of_the_modules() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_check_says_in_one_line_when_the_file_is_stale(tmp_path: Path) -> None:
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "src", copy / "src")
    shutil.copytree(ROOT / "tools", copy / "tools")
    (copy / "utilities").mkdir()
    (copy / "utilities" / "autotest.py").write_text(AUTOTEST.read_text() + "# edited by hand\n")
    done = subprocess.run(
        [sys.executable, str(copy / "tools" / "build.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "build: utilities/autotest.py is not the build of src/autotest/: run python tools/build.py"
    ]


def package_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "autotest"
    shutil.copytree(PACKAGE, copy)
    return copy


def test_two_top_level_definitions_with_one_name_are_refused(tmp_path: Path) -> None:
    copy = package_copy(tmp_path)
    with (copy / "report.py").open("a") as f:
        f.write("\n\ndef run_git() -> None:\n    pass\n")
    with pytest.raises(build.BuildError, match=r"run_git \(in basics.py and report.py\)"):
        build.build(copy)


def test_one_name_imported_from_two_places_is_refused(tmp_path: Path) -> None:
    copy = package_copy(tmp_path)
    with (copy / "main.py").open("a") as f:
        f.write("\n\nfrom os.path import join as Path  # noqa\n")
    with pytest.raises(build.BuildError, match=r"Path \(in "):
        build.build(copy)


def test_a_module_left_out_of_the_layers_is_refused(tmp_path: Path) -> None:
    copy = package_copy(tmp_path)
    (copy / "stray.py").write_text('"""Not listed."""\n')
    with pytest.raises(build.BuildError, match="stray"):
        build.build(copy)


def test_every_line_maps_back_to_its_module_by_its_banner() -> None:
    """A traceback's line in the built file is found in the module its banner names."""
    built = AUTOTEST.read_text().splitlines()
    banner = re.compile(r"^# =+ src/autotest/(\w+)\.py =+$")
    matches = [(i, banner.match(line)) for i, line in enumerate(built)]
    starts = [(i, m.group(1)) for i, m in matches if m]
    assert [name for _, name in starts] == list(build.read_declared().layers)
    for index, (start, name) in enumerate(starts):
        end = starts[index + 1][0] - 2 if index + 1 < len(starts) else len(built)
        source = (PACKAGE / f"{name}.py").read_text().splitlines()
        for offset, line in enumerate(source, 1):
            here = built[start + offset]
            assert here == line or here == f"# {line}", (name, offset)
        assert start + len(source) <= end


def test_the_script_metadata_requirements_and_readme_name_the_same_dependencies() -> None:
    declared = build.read_declared()
    text = AUTOTEST.read_text()
    block = text[text.index("# /// script") : text.index("# ///\n") + 5]
    toml = "\n".join(line[2:] for line in block.splitlines()[1:-1])
    assert tomllib.loads(toml)["dependencies"] == list(declared.dependencies)
    requirements = (ROOT / "requirements.txt").read_text().splitlines()
    readme = (ROOT / "README.md").read_text()
    for requirement in declared.dependencies:
        assert requirement in requirements, requirement
        name = re.split(r"[<>=;]", requirement)[0]
        assert name in readme, name


# ---------------------------------------------------------------------------------------------
# The modules' own limits: readable pieces, not one file cut in slices
# ---------------------------------------------------------------------------------------------

MAX_MODULE_LINES = 900
MAX_CLASS_LINES = 200
MAX_FUNCTION_LINES = 70


def spans(tree: ast.AST, kinds: tuple[type[ast.stmt], ...]) -> list[tuple[str, int]]:
    return [
        (getattr(node, "name", "?"), (node.end_lineno or node.lineno) - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, kinds)
    ]


@pytest.mark.parametrize("path", module_paths(), ids=lambda p: p.name)
def test_each_module_stays_within_its_limits(path: Path) -> None:
    text = path.read_text()
    tree = ast.parse(text)
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    classes = [s for s in spans(tree, (ast.ClassDef,)) if s[1] > MAX_CLASS_LINES]
    functions = spans(tree, (ast.FunctionDef, ast.AsyncFunctionDef))
    assert classes == []
    assert [s for s in functions if s[1] > MAX_FUNCTION_LINES] == []


def test_the_code_sent_to_other_interpreters_uses_the_standard_library_alone() -> None:
    """warm_server runs inside packages' own interpreters (Python 3.9 and newer), which may
    have nothing installed: it names no other module of autotest and nothing installed."""
    tree = ast.parse((PACKAGE / "warm_server.py").read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no import from autotest's other modules"
            imported.add((node.module or "").split(".")[0])
    stdlib = getattr(sys, "stdlib_module_names", None)
    if stdlib is None:
        pytest.skip("sys.stdlib_module_names is new in Python 3.10")
    assert imported - set(stdlib) == set()

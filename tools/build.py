#!/usr/bin/env python3
"""Write utilities/autotest.py, the one file users copy, from the modules in src/autotest/.

Maintainers work in modules; users get one file, as SQLite ships its amalgamation.  The modules
follow one another in layer order (``LAYERS`` in src/autotest/__init__.py), each under a banner
that names its source.  Every line keeps its place within its module: the imports of sibling
modules become comments where they stood (the names they bring are already defined above), and
``from __future__ import annotations`` moves to the top.  So a line N lines below a banner is
line N of that module, and a traceback from the built file points straight back to the source.

    python tools/build.py           write utilities/autotest.py
    python tools/build.py --check   exit 1 when the committed file is not what the build writes

Standard library only, and Python 3.9 or newer, as the file it writes.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "autotest"
TARGET = ROOT / "utilities" / "autotest.py"
FUTURE = "from __future__ import annotations"


class BuildError(Exception):
    """What keeps the modules from making one file: said in one line, exit status 2."""


@dataclass(frozen=True)
class Declared:
    """What src/autotest/__init__.py declares for the build."""

    docstring: str
    layers: tuple[str, ...]
    requires_python: str
    dependencies: tuple[str, ...]


def read_declared(package: Path = PACKAGE) -> Declared:
    """The package's declarations, read as literals: building never runs the code it builds."""
    init = package / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf-8"), str(init))
    values = {
        target.id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    docstring = ast.get_docstring(tree, clean=False)
    if docstring is None:
        raise BuildError(f"{init} has no docstring (it opens the built file)")
    return Declared(
        docstring,
        tuple(values["LAYERS"]),
        values["REQUIRES_PYTHON"],
        tuple(values["DEPENDENCIES"]),
    )


def script_metadata(declared: Declared) -> list[str]:
    """The PEP 723 block, so that ``uv run`` installs what the file needs."""
    lines = ["# /// script", f'# requires-python = "{declared.requires_python}"']
    lines.append("# dependencies = [")
    lines += [f"#     {dependency_literal(d)}," for d in declared.dependencies]
    return [*lines, "# ]", "# ///"]


def dependency_literal(requirement: str) -> str:
    """A TOML basic string holding ``requirement`` (its markers quote with ")."""
    return '"' + requirement.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sibling_import_lines(tree: ast.Module) -> set[int]:
    """The lines (1-based) of the module's imports from its own package, and of its
    ``from __future__`` import: in one file, neither has a place of its own."""
    lines: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or node.module == "__future__"):
            assert node.end_lineno is not None
            lines.update(range(node.lineno, node.end_lineno + 1))
    return lines


def bound_names(tree: ast.Module) -> Iterator[tuple[str, str]]:
    """Each top-level name the module binds, with what binds it: ``def`` for a definition, the
    imported object's dotted name for an import.  Only imports of its own package are left out:
    those names are the other modules' definitions."""
    for node in top_level_statements(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name, "def"
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        yield name.id, "def"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield (alias.asname or alias.name.split(".")[0]), alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            for alias in node.names:
                yield alias.asname or alias.name, f"{node.module}.{alias.name}"


def top_level_statements(body: Sequence[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements run at import time, including those inside ``if`` and ``try`` blocks."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            yield from top_level_statements(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            blocks = node.body + node.orelse + node.finalbody
            for handler in node.handlers:
                blocks += handler.body
            yield from top_level_statements(blocks)


def clashes(modules: Sequence[tuple[str, ast.Module]]) -> list[str]:
    """Names that two modules bind to different things: in one file the later would silently
    replace the earlier.  The same import in several modules is one binding."""
    first: dict[str, tuple[str, str]] = {}
    found = []
    for module, tree in modules:
        seen_here: set[str] = set()
        for name, what in bound_names(tree):
            if name in first and first[name][0] != module:
                other, other_what = first[name]
                if what == "def" or other_what == "def" or what != other_what:
                    found.append(f"{name} (in {other}.py and {module}.py)")
            elif name not in first or name in seen_here:
                first[name] = (module, what)
            seen_here.add(name)
    return sorted(set(found))


def module_source(package: Path, name: str) -> tuple[str, ast.Module]:
    path = package / f"{name}.py"
    if not path.is_file():
        raise BuildError(f"LAYERS names {name}, but {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        return text, ast.parse(text, str(path))
    except SyntaxError as exc:
        raise BuildError(f"{path}:{exc.lineno}: {exc.msg}") from None


def built_body(text: str, tree: ast.Module) -> list[str]:
    """The module's lines, line for line, its sibling and ``__future__`` imports as comments."""
    commented = sibling_import_lines(tree)
    lines = text.splitlines()
    return [f"# {line}" if i in commented else line for i, line in enumerate(lines, 1)]


def unlisted_modules(package: Path, declared: Declared) -> list[str]:
    """Modules in the package that LAYERS leaves out: they would be missing from the file."""
    present = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    return sorted(present - set(declared.layers))


def build(package: Path = PACKAGE) -> str:
    """The whole text of utilities/autotest.py, built from ``package``."""
    declared = read_declared(package)
    missing = unlisted_modules(package, declared)
    if missing:
        raise BuildError(f"not in LAYERS of {package / '__init__.py'}: {', '.join(missing)}")
    sources = [(name, *module_source(package, name)) for name in declared.layers]
    clashing = clashes([(name, tree) for name, _, tree in sources])
    if clashing:
        raise BuildError("two top-level definitions with one name: " + "; ".join(clashing))
    lines = ["#!/usr/bin/env python3", *script_metadata(declared)]
    lines += ['"""' + declared.docstring + '"""', ""]
    lines += [
        "# Generated by tools/build.py from the modules in src/autotest/: edit those, then run",
        "# `python tools/build.py`.  Each module follows under a banner, in layer order; line N",
        "# below a banner is line N of the module it names.",
        "",
        FUTURE,
    ]
    for name, text, tree in sources:
        banner = f"# {'=' * 20} src/autotest/{name}.py "
        lines += ["", "", banner + "=" * max(4, 100 - len(banner))]
        lines += built_body(text, tree)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if utilities/autotest.py is not the build"
    )
    args = parser.parse_args(argv)
    try:
        text = build()
    except (BuildError, OSError, ValueError, KeyError) as exc:
        print(f"build: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.is_file() else ""
        if current != text:
            print(
                "build: utilities/autotest.py is not the build of src/autotest/: "
                "run python tools/build.py",
                file=sys.stderr,
            )
            return 1
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

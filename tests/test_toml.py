"""autotest's own TOML reader, used where Python has neither tomllib nor tomli (3.9, 3.10): it
must read what tomllib reads, the same way, and fail only with ``ValueError("line N: ...")``.
It runs under any Python; where tomllib or tomli is importable the answers are compared."""

from __future__ import annotations

import datetime
import importlib
import math
import random
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conftest import Repo, load_autotest

at = load_autotest()
parse_toml = at.parse_toml

CORPUS = sorted((Path(__file__).parent / "toml_corpus").glob("*.toml"))


def reference() -> ModuleType | None:
    for name in ("tomllib", "tomli"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


TOMLLIB = reference()
needs_reference = pytest.mark.skipif(TOMLLIB is None, reason="neither tomllib nor tomli here")


def reads_toml_1_1() -> bool:
    """tomli 2.3+ reads TOML 1.1 (trailing commas and newlines in inline tables, ``\\x``
    escapes); autotest's reader, like tomllib up to 3.13, reads TOML 1.0."""
    try:
        return TOMLLIB is not None and bool(TOMLLIB.loads("x = {a = 1,}"))
    except ValueError:
        return False


needs_toml_1_0_reference = pytest.mark.skipif(
    TOMLLIB is None or reads_toml_1_1(), reason="needs a TOML 1.0 reference (tomllib <= 3.13)"
)
TOML_1_1 = {"x = {a = 1,}", "x = {a = 1\n}", 'a = "\\x41"'}


def stringify_dates(value: Any) -> Any:
    """tomllib's value with dates and times as the strings autotest's reader keeps."""
    if isinstance(value, dict):
        return {k: stringify_dates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [stringify_dates(v) for v in value]
    if isinstance(value, (datetime.date, datetime.time)):
        return DATE
    return value


DATE = object()


def dates_as_marks(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: dates_as_marks(v) for k, v in value.items()}
    if isinstance(value, list):
        return [dates_as_marks(v) for v in value]
    if isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}.*|[0-9]{2}:.*", value):
        return DATE
    return value


def tomllib_or_error(text: str) -> Any:
    assert TOMLLIB is not None
    try:
        return stringify_dates(TOMLLIB.loads(text))
    except (TOMLLIB.TOMLDecodeError, RecursionError):
        return "ERROR"


def ours_or_error(text: str) -> Any:
    try:
        return dates_as_marks(parse_toml(text))
    except ValueError as error:
        assert re.match(r"line \d+: ", str(error)), error
        return "ERROR"


@needs_reference
@pytest.mark.parametrize("path", CORPUS, ids=lambda path: path.stem)
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_real_pyproject_shapes_read_as_tomllib_reads_them(path: Path, newline: str) -> None:
    text = path.read_text(encoding="utf-8").replace("\n", newline)
    assert ours_or_error(text) == tomllib_or_error(text)


def test_the_shapes_that_lost_edges_before() -> None:
    text = (Path(__file__).parent / "toml_corpus" / "07_markers.toml").read_text(encoding="utf-8")
    assert parse_toml(text)["project"]["dependencies"][:2] == [
        "grpcio >= 1.63.2; python_version < '3.13'",
        "grpcio >= 1.66.2; python_version >= '3.13'",
    ]
    comments = (
        "[project] # the project's table\ndependencies = [ # don't\n  'six', # it's ' \"\n]\n"
    )
    assert parse_toml(comments) == {"project": {"dependencies": ["six"]}}
    groups = parse_toml('[dependency-groups]\ndev = [{include-group = "test"}, "x"]\ntest = []')
    assert groups["dependency-groups"]["dev"] == [{"include-group": "test"}, "x"]


def test_dates_stay_the_strings_they_are_written_as() -> None:
    assert parse_toml("a = 1979-05-27T07:32:00Z\nb = [2024-01-01]\nc = 07:32:00") == {
        "a": "1979-05-27T07:32:00Z",
        "b": ["2024-01-01"],
        "c": "07:32:00",
    }


def test_nan_is_a_float_nan() -> None:
    assert all(math.isnan(v) for v in parse_toml("a = nan\nb = +nan\nc = -nan").values())


# Valid or not, as tomllib decides: tables reopened, dotted keys, inline tables, scalars.
EDGES = [
    "[a]\n[a]", "[a.b]\n[a]\nx = 1", "a.b = 1\n[a]", "a.b = 1\n[a.c]", "[x]\na.b = 1\n[x.a]",
    "[a.b.c]\n[a]\nb.d = 1", "[a]\nb = 1\n[a.b]", "a = {b = 1}\n[a]", "a = {b = 1}\na.c = 2",
    "a = [1]\n[[a]]", "[[a]]\n[a]", "[a]\n[[a]]", "[[a]]\n[a.b]\nx = 1\n[[a]]\n[a.b]\ny = 2",
    "x = {a.b = 1, a.c = 2}", "x = {a = 1, a = 2}", "a.b = 1\na.b = 2", "'a' = 1\n\"a\" = 2",
    "x = {a = 1,}", "x = {a = 1\n}", "a = 01", "a = 1__0", "a = 0X1", "a = 1.", "a = .5",
    "a = True", "a = infinity", "a = 9223372036854775808", 'a = "\\x41"', 'a = "\\uD800"',
    'a = """a\\ \t\n\n  b"""', "a = '''a\n'''b'''", "a = '''''''", 'a = """"""""',
    'a = "\x01"', "a = 1 # control \x7f in a comment", "a = 1\rb = 2",
]  # fmt: skip


@needs_reference
@pytest.mark.parametrize("text", EDGES)
def test_edge_cases_agree_with_tomllib(text: str) -> None:
    if text in TOML_1_1 and reads_toml_1_1():
        pytest.skip("TOML 1.1 reads this differently")
    assert ours_or_error(text) == tomllib_or_error(text)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('[project]\nname = "unterminated\nversion = "1"', 2),
        ('dependencies = [\n  "a",\n  "b"\n', 4),
        ('dependencies = [\n  "a"\n  "b",\n]', 3),
        ('[project]\nname = "a"\nname = "b"', 3),
        ("[tool.ruff]\nx = 1\n\n[tool.ruff]\n", 4),
        ("a = 1 2", 1),
    ],
)
def test_bad_input_names_its_line(text: str, line: int) -> None:
    with pytest.raises(ValueError, match=rf"^line {line}: "):
        parse_toml(text)


@pytest.mark.parametrize("text", ["x = " + "[" * 10_000, "x = " + "{a=" * 10_000])
def test_deep_nesting_is_a_value_error_not_a_recursion_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"^line 1: .*nested deeper"):
        parse_toml(text)


MUTATIONS = [*"[]{}\"'#=.,\n \t\\a0_-+:xeu", '"""', "'''", "\r", "\x00", "é", "inf"]


@needs_toml_1_0_reference
def test_random_edits_of_real_files_agree_with_tomllib() -> None:
    """Hand-picked cases miss combinations; small random edits of real files find them."""
    rng = random.Random(7)
    texts = [p.read_text(encoding="utf-8") for p in CORPUS if "dates" not in p.name]
    for _ in range(1500):
        text = rng.choice(texts)
        for _ in range(rng.randint(1, 3)):
            cut = rng.randrange(len(text) + 1)
            if rng.random() < 0.5:
                text = text[:cut] + rng.choice(MUTATIONS) + text[cut:]
            else:
                text = text[:cut] + text[cut + rng.randint(1, 3) :]
        assert repr(ours_or_error(text)) == repr(tomllib_or_error(text)), text


def declared_by(repo: Repo) -> dict[str, set[tuple[str | None, str]]]:
    packages, _ = at.discover_packages(repo.path)
    return {
        p.rel: {(d.name, d.label) for d in at.read_metadata(p, repo.path).declared}
        for p in packages
    }


def test_without_tomllib_or_tomli_the_edges_are_the_same(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in CORPUS:
        repo.write(f"{path.stem}/pyproject.toml", path.read_text(encoding="utf-8"))
    with_parser = declared_by(repo)
    monkeypatch.setitem(sys.modules, "tomllib", None)
    monkeypatch.setitem(sys.modules, "tomli", None)
    with pytest.raises(ImportError):
        importlib.import_module("tomllib")
    assert declared_by(repo) == with_parser
    assert ("grpcio", "") in with_parser["07_markers"]
    assert ("six", "") in with_parser["08_comments_apostrophes"]

"""docs/SECURITY.md stays checkable: every claim names its cheapest known attack, that
attack's cost, and tests, and every test it names exists, so that renaming or deleting a
test cannot leave a claim resting on nothing."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECURITY = ROOT / "docs" / "SECURITY.md"

#: `tests/test_x.py`, `tests/test_x.py::test_y` or `tests/test_x.py::test_y[id]`.
QUALIFIED = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+)(?:\[[^\]`]*\])?)?`")
#: A bare `test_y` named beside a qualified one in the same table cell.
BARE = re.compile(r"`(test_\w+)(?:\[[^\]`]*\])?`")


def claims() -> dict[str, str]:
    """The numbered claims under "What zchat protects", by heading."""
    text = SECURITY.read_text(encoding="utf-8")
    protects = text.split("## What zchat protects", 1)[1].split("\n## ", 1)[0]
    parts = re.split(r"^### (\d+\. .*)$", protects, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@cache
def defined_tests(path: Path) -> frozenset[str]:
    """The names of the test functions defined in `path`, methods of classes included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return frozenset(
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    )


def every_test() -> frozenset[str]:
    return frozenset().union(*(defined_tests(p) for p in (ROOT / "tests").rglob("test_*.py")))


def test_there_are_eleven_claims() -> None:
    # The claims are cited by number elsewhere (README, PROTOCOL.md, commit messages):
    # one going missing in an edit is a broken reference, not a shorter document.
    assert [h.split(".")[0] for h in claims()] == [str(n) for n in range(1, 12)]


@pytest.mark.parametrize("heading", list(claims()))
def test_each_claim_names_its_cheapest_attack_its_cost_and_its_tests(heading: str) -> None:
    body = claims()[heading]
    assert "**Cheapest known attack" in body, f"{heading}: no cheapest known attack"
    assert "**Cost" in body, f"{heading}: the attack's cost is not named"
    assert QUALIFIED.search(body), f"{heading}: names no test"


def test_every_test_the_document_names_exists() -> None:
    text = SECURITY.read_text(encoding="utf-8")
    missing = []
    for path, name in QUALIFIED.findall(text):
        file = ROOT / path
        if not file.is_file():
            missing.append(path)
        elif name and name not in defined_tests(file):
            missing.append(f"{path}::{name}")
    known = every_test()
    missing += [name for name in BARE.findall(text) if name not in known]
    assert not missing, f"SECURITY.md names tests that do not exist: {missing}"

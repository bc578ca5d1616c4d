"""docs/PROTOCOL.md's tables are the code's: the one limits table (§6), the registries (§5)
and the domain-separation strings (§5.8).

Each limits row names a constant (a module under `zchat.`, or `Class.field` for a default
of a settings class); it is imported and compared with the value the table gives. And the
other way round: every public numeric constant of the modules the protocol is made of, and
every numeric default of `BrokerConfig` and `PeerConfig`, must have its row, so that a
limit added or changed in the code cannot go unwritten.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
from enum import IntEnum
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from zchat.envelope import _primitives

ROOT = Path(__file__).parent.parent
PROTOCOL = ROOT / "docs" / "PROTOCOL.md"

#: Where the limits live: every module of these, and these files.
SCOPE = (
    "envelope/limits.py",
    "envelope/keys.py",
    "wire/*.py",
    "broker/*.py",
    "peer/*.py",
)
#: Modules of the peer that only present things to the user (layout, colours, wording,
#: typing): their numbers are no part of the protocol or of its bounds.
DISPLAY_ONLY = frozenset(
    {
        "peer/graphemes.py",
        "peer/interactive.py",
        "peer/notices.py",
        "peer/prompt.py",
        "peer/render.py",
        "peer/sanitize.py",
        "peer/tty_input.py",
        "peer/tui_style.py",
    }
)
#: The settings classes whose numeric defaults are limits too.
SETTINGS = ("broker.config.BrokerConfig", "peer.config.PeerConfig")

_ROW = re.compile(r"^\| `(?P<name>[\w.]+)` \| (?P<value>[^|]*) \|")
_CONSTANT = re.compile(r"^_?[A-Z][A-Z0-9_]*$")


def section(begin: str, end: str) -> list[str]:
    text = PROTOCOL.read_text()
    start = text.index(begin) + len(begin)
    return text[start : text.index(end, start)].splitlines()


@cache
def table() -> dict[str, str]:
    """Constant -> value text, from the limits table; a name twice fails here."""
    rows: dict[str, str] = {}
    for line in section("<!-- limits:begin -->", "<!-- limits:end -->"):
        match = _ROW.match(line)
        if match is None:
            continue
        name = match["name"]
        assert name not in rows, f"{name} is in the limits table twice"
        rows[name] = match["value"].strip()
    return rows


def parse_value(text: str) -> int | float | tuple[int, ...]:
    """`1,000` is 1000, `2.0` a float, `2048 / 3072 / 4096` a tuple."""
    if " / " in text:
        return tuple(int(part.replace(",", "")) for part in text.split(" / "))
    plain = text.replace(",", "")
    return float(plain) if "." in plain else int(plain)


def resolve(name: str) -> Any:
    """The value `name` stands for: a module attribute, or a settings field's default."""
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            target: Any = importlib.import_module("zchat." + ".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attr in parts[split:-1]:
            target = getattr(target, attr)
        last = parts[-1]
        if dataclasses.is_dataclass(target):
            (field,) = [f for f in dataclasses.fields(target) if f.name == last]
            return field.default
        return getattr(target, last)
    raise AssertionError(f"{name} names no module of zchat")


def is_limit(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return not isinstance(value, IntEnum)
    return isinstance(value, tuple) and bool(value) and all(type(v) is int for v in value)


def scope_files() -> list[Path]:
    files: set[Path] = set()
    for pattern in SCOPE:
        files.update(ROOT.glob(pattern))
    return sorted(p for p in files if str(p.relative_to(ROOT)) not in DISPLAY_ONLY)


def defined_constants(path: Path) -> list[str]:
    """The public upper-case names a module assigns at its top level (not its imports)."""
    names = []
    for node in ast.parse(path.read_text()).body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            public = isinstance(target, ast.Name) and not target.id.startswith("_")
            if public and _CONSTANT.match(target.id):
                names.append(target.id)
    return names


def module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


# --- the limits table ------------------------------------------------------------------


def test_the_limits_table_is_there_and_long() -> None:
    assert len(table()) > 100


@pytest.mark.parametrize("name", sorted(table()))
def test_each_limit_in_the_table_is_the_codes_value(name: str) -> None:
    written = parse_value(table()[name])
    actual = resolve(name)
    assert is_limit(actual), f"{name} is {actual!r}, not a number"
    assert actual == written, f"PROTOCOL.md §6 says {name} is {written!r}; the code has {actual!r}"


@pytest.mark.parametrize("path", scope_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_numeric_constant_of_the_protocols_modules_is_in_the_table(path: Path) -> None:
    module = importlib.import_module("zchat." + module_of(path))
    missing = [
        f"{module_of(path)}.{name}"
        for name in defined_constants(path)
        if is_limit(getattr(module, name)) and f"{module_of(path)}.{name}" not in table()
    ]
    assert not missing, f"not in PROTOCOL.md §6: {', '.join(missing)}"


@pytest.mark.parametrize("settings", SETTINGS)
def test_every_numeric_default_of_the_settings_is_in_the_table(settings: str) -> None:
    cls = resolve(settings)
    module = importlib.import_module(cls.__module__)
    source = ast.parse(Path(module.__file__ or "").read_text())
    (body,) = [n for n in source.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__]
    defaults = {
        n.target.id: n.value
        for n in body.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.value
    }
    names = set(table())
    for field in dataclasses.fields(cls):
        if not is_limit(field.default):
            continue
        expr = defaults[field.name]
        if isinstance(expr, ast.Name):
            # A default taken from a named constant: that constant's row stands for it.
            assert any(n.endswith(f".{expr.id}") for n in names), f"{expr.id} not in §6"
        else:
            assert f"{settings}.{field.name}" in names, f"{settings}.{field.name} not in §6"


# --- the registries ---------------------------------------------------------------------


def registries() -> dict[str, dict[int, str]]:
    """Registry (the IntEnum's dotted path) -> value -> name, from §5's tables."""
    found: dict[str, dict[int, str]] = {}
    lines = PROTOCOL.read_text().splitlines()
    for i, line in enumerate(lines):
        marker = re.match(r"<!-- registry: ([\w.]+) -->", line)
        if marker is None:
            continue
        rows: dict[int, str] = {}
        for row in lines[i + 3 :]:
            if not row.startswith("|"):
                break
            value, name = (cell.strip() for cell in row.strip("|").split("|")[:2])
            rows[int(value, 0)] = name
        found[marker[1]] = rows
    return found


def test_every_registry_of_the_code_has_its_table() -> None:
    assert set(registries()) == {
        "zchat.wire.registries.Command",
        "zchat.wire.registries.RefuseCode",
        "zchat.wire.registries.ErrorCode",
        "zchat.wire.registries.LeaveReason",
        "zchat.envelope.header.MessageKind",
        "zchat.envelope.membership.RecordType",
    }


@pytest.mark.parametrize("registry", sorted(registries()))
def test_each_registry_table_is_its_enum_value_for_value(registry: str) -> None:
    module, _, name = registry.rpartition(".")
    enum: type[IntEnum] = getattr(importlib.import_module(module), name)
    rows = registries()[registry]
    named = {value: text for value, text in rows.items() if re.fullmatch(r"[A-Z_]+", text)}
    assert named == {member.value: member.name for member in enum}
    # A row without a name is a value retired: never a member again.
    for value in rows.keys() - named.keys():
        assert value not in {member.value for member in enum}


def test_the_domain_separation_strings_are_the_codes() -> None:
    rows = [
        line
        for line in section("### 5.8 Domain-separation strings", "### 5.9")
        if line.startswith("| `")
    ]
    names = set()
    for row in rows:
        name, text, length = (cell.strip() for cell in row.strip("|").split("|")[:3])
        name = name.strip("`")
        value = text.strip('`"').replace("\\0", "\x00").encode("ascii")
        assert getattr(_primitives, name) == value
        assert len(value) == int(length)
        names.add(name)
    assert names == {n for n in vars(_primitives) if n.endswith("_CONTEXT")}

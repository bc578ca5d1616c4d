"""Only the shell (`zchat/`) speaks to people in words and exit codes: no library
module imports it, nor typer, which is how the shell raises its exits."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("envelope", "wire", "broker", "peer", "bench")
#: The shell's own modules: zchat/*.py and the zchat/commands/ package.
SHELL = {path.stem for path in (ROOT / "zchat").glob("*.py")} | {"commands"}


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            if node.module == "zchat":  # `from zchat import x`: x is a module or a name
                found |= {f"zchat.{alias.name}" for alias in node.names}
    return found


def shell_imports(path: Path) -> list[str]:
    bad = []
    for name in sorted(imports(path)):
        parts = name.split(".")
        if parts[0] in ("typer", "click") or (
            parts[0] == "zchat" and len(parts) > 1 and parts[1] in SHELL
        ):
            bad.append(name)
    return bad


@pytest.mark.parametrize("library", LIBRARIES)
def test_no_library_module_imports_the_shell(library: str) -> None:
    modules = sorted((ROOT / library).rglob("*.py"))
    assert modules
    offenders = {str(m.relative_to(ROOT)): shell_imports(m) for m in modules}
    assert {m: bad for m, bad in offenders.items() if bad} == {}


def test_the_check_sees_a_shell_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from zchat.console import fail\n"
        "def f():\n    import typer\n    from zchat.commands.peer import exit_code\n"
        "from zchat import home, envelope\n"
    )
    assert shell_imports(module) == [
        "typer",
        "zchat.commands.peer",
        "zchat.console",
        "zchat.home",
    ]

"""The imports draw the architecture: these tests hold them to it.

The direction is one way: the shell (`zchat/`) -> `bench/` -> `peer/`, `broker/`
(siblings that never import each other) -> `wire/` -> `envelope/`. Each top-level folder
installs as `zchat.<folder>` (pyproject.toml, [tool.setuptools.package-dir]), so the
sources are read from the repository, by folder, and every import is read with `ast`,
including those inside functions and under TYPE_CHECKING: a dependency is one wherever
it is written.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: The library folders, each installed as zchat.<name>. The shell is `zchat/` itself.
LIBRARIES = ("envelope", "wire", "broker", "peer", "bench")
SHELL = "zchat"
SOURCE_FOLDERS = (*LIBRARIES, SHELL)

#: What a sans-I/O core may not reach for: clocks, sockets, event loops, files.
IO_MODULES = frozenset(
    {"time", "os", "socket", "zmq", "asyncio", "io", "pathlib", "shutil", "tempfile"}
    | {"select", "selectors", "subprocess", "threading", "signal"}
)
SANS_IO_CORES = ("broker/core.py", "peer/core.py")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted: zchat.peer.core
    target: str  # what it imports, dotted and absolute: zchat.wire.protocol
    line: int
    written: str  # as written in the source, for the failure message

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.written}"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if parts[0] in LIBRARIES:
        parts.insert(0, SHELL)
    return ".".join(parts)


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def source_files() -> list[Path]:
    return python_files(*SOURCE_FOLDERS)


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imports_of(path: Path, root: Path = ROOT) -> Iterator[Import]:
    """Every module `path` imports, with relative imports made absolute."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names = ", ".join(a.name for a in node.names)
            written = f"from {'.' * node.level}{node.module or ''} import {names}"
            # `from zchat import console` imports zchat.console: the name may be a module.
            # For any other base, the base module itself is what is imported.
            if base == SHELL:
                for alias in node.names:
                    yield Import(module, f"{SHELL}.{alias.name}", node.lineno, written)
            else:
                yield Import(module, base, node.lineno, written)


def layer(name: str) -> str | None:
    """Which part of zchat a dotted module name belongs to; None if not zchat's."""
    parts = name.split(".")
    if parts[0] != SHELL:
        return None
    if len(parts) > 1 and parts[1] in LIBRARIES:
        return parts[1]
    return SHELL


def imports_from(folders: tuple[str, ...]) -> list[Import]:
    return [imp for path in python_files(*folders) for imp in imports_of(path)]


def offending(imports: list[Import], *, into: set[str]) -> list[str]:
    return [str(imp) for imp in imports if layer(imp.target) in into]


# --- the folders are the ones these rules are about -------------------------------------


def test_every_installed_package_is_a_folder_these_rules_cover() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == set(SOURCE_FOLDERS)


# --- the direction of the imports ---------------------------------------------------------


def test_the_broker_and_the_peer_never_import_each_other() -> None:
    assert offending(imports_from(("broker",)), into={"peer"}) == []
    assert offending(imports_from(("peer",)), into={"broker"}) == []


@pytest.mark.parametrize("folder", LIBRARIES)
def test_no_library_imports_the_shell(folder: str) -> None:
    # Only the shell turns outcomes into words and exit codes; a library that imports
    # it (or typer, which is how the shell raises its exits) could end the process from
    # inside a library call.
    assert offending(imports_from((folder,)), into={SHELL}) == []
    cli = [str(i) for i in imports_from((folder,)) if i.target.split(".")[0] in ("typer", "click")]
    assert cli == []


def test_the_envelope_imports_nothing_above_it() -> None:
    imports = imports_from(("envelope",))
    assert offending(imports, into={"wire", "broker", "peer", "bench", SHELL}) == []


def test_the_envelope_never_touches_zeromq() -> None:
    found = [str(imp) for imp in imports_from(("envelope",)) if imp.target.split(".")[0] == "zmq"]
    assert found == []


def test_the_wire_imports_nothing_above_it() -> None:
    assert offending(imports_from(("wire",)), into={"broker", "peer", "bench", SHELL}) == []


@pytest.mark.parametrize("core", SANS_IO_CORES)
def test_a_sans_io_core_reaches_for_no_clock_socket_or_file(core: str) -> None:
    # Time and randomness come in as arguments, frames and pin updates go out as
    # values: the loop around the core does the I/O.
    path = ROOT / core
    found = [str(imp) for imp in imports_of(path) if imp.target.split(".")[0] in IO_MODULES]
    found += [
        f"{module_name(path)}:{node.lineno}: open(...)"
        for node in ast.walk(tree(path))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open"
    ]
    assert found == []


# --- how imports are written ----------------------------------------------------------------


def unnamespaced_imports(path: Path, root: Path = ROOT) -> list[str]:
    """Imports of zchat's folders by their bare names, and relative imports."""
    found = []
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append(f"{path.relative_to(root)}:{node.lineno}: relative import")
            names = [node.module or ""]
        else:
            continue
        found += [
            f"{path.relative_to(root)}:{node.lineno}: {name}"
            for name in names
            if name.split(".")[0] in LIBRARIES
        ]
    return found


def test_imports_of_zchat_are_always_written_in_the_namespaced_form() -> None:
    # The folders exist only as zchat.<folder> once installed: `import envelope` or
    # `from broker import core` works from a source checkout by accident and breaks in
    # the wheel; a relative import hides which package is meant.
    paths = python_files(*SOURCE_FOLDERS, "tests")
    assert [found for path in paths for found in unnamespaced_imports(path)] == []


def test_the_namespace_rule_catches_bare_and_relative_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import envelope\n"
        "import zchat.envelope\n"
        "from broker.core import Broker\n"
        "from zchat.broker.core import Broker\n"
        "from .core import PeerCore\n",
        encoding="utf-8",
    )
    assert unnamespaced_imports(probe, root=tmp_path) == [
        "probe.py:1: envelope",
        "probe.py:3: broker.core",
        "probe.py:5: relative import",
    ]


# --- every module says what it is ---------------------------------------------------------


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_opens_with_a_docstring_that_says_what_it_is(path: Path) -> None:
    docstring = ast.get_docstring(tree(path))
    assert docstring, f"{path.relative_to(ROOT)} has no opening docstring"
    assert "placeholder" not in docstring.lower()
    # One word is a label, not a sentence about what the module is.
    assert len(docstring.split()) >= 3


# --- the rules themselves catch what they are for ----------------------------------------


def test_the_import_reader_resolves_every_form_an_import_can_take(tmp_path: Path) -> None:
    # If the reader missed a form, the rules above would pass for the wrong reason.
    probe = tmp_path / "peer" / "probe.py"
    probe.parent.mkdir()
    probe.write_text(
        "import zmq.asyncio\n"
        "from zchat import console\n"
        "from zchat.wire import protocol as p\n"
        "from . import events\n"
        "from ..broker.core import Broker\n"
        "def later():\n"
        "    from zchat.cli import main\n",
        encoding="utf-8",
    )
    found = list(imports_of(probe, root=tmp_path))
    assert {imp.module for imp in found} == {"zchat.peer.probe"}
    targets = [imp.target for imp in found]
    assert targets == [
        "zmq.asyncio",
        "zchat.console",
        "zchat.wire",
        "zchat.peer",
        "zchat.broker.core",
        "zchat.cli",
    ]
    assert [layer(t) for t in targets] == [None, SHELL, "wire", "peer", "broker", SHELL]

"""The imports draw the architecture: these tests hold them to it.

The direction is one way: the shell (`zchat/`) -> `bench/` -> `peer/`, `broker/`
(siblings that never import each other) -> `wire/` -> `envelope/`. Each top-level folder
installs as `zchat.<folder>` (pyproject.toml, [tool.setuptools.package-dir]), so the
sources are read from the repository, by folder, and every import is read with `ast`,
including those inside functions and under TYPE_CHECKING: a dependency is one wherever
it is written.

Inside a package, the same holds: no import circle anywhere, no mixins (parts are
composed), only the client and the front ends import the peer core, every module the
two cores run is sans-I/O (one list of what that forbids, `IO_MODULES`), and no module
grows past `MAX_MODULE_LINES`.
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

#: What a sans-I/O core may not reach for: clocks, the OS (randomness, files), sockets,
#: event loops, threads, processes, signals. The one list: every check of I/O uses it.
IO_MODULES = frozenset(
    {"time", "os", "socket", "zmq", "asyncio", "io", "pathlib", "shutil", "tempfile"}
    | {"select", "selectors", "subprocess", "threading", "signal"}
)
#: The two protocol cores; every module of zchat's they run must be sans-I/O too.
SANS_IO_CORES = ("zchat.broker.core", "zchat.peer.core")
#: The most lines a module may have, and the peer core's class: small, single-purpose
#: modules read in one sitting (h11's and age's are 70 to 460 lines).
MAX_MODULE_LINES = 600
MAX_PEER_CORE_LINES = 400
#: Who may import the peer core: its loop, and the front ends built on it (the
#: session, the commands it carries out, the scripted and terminal UIs with the terminal's
#: input line and status toolbar, the benchmark).
PEER_CORE_IMPORTERS = frozenset(
    {"zchat.peer.client", "zchat.peer.session", "zchat.peer.actions"}
    | {"zchat.peer.scripted", "zchat.peer.interactive", "zchat.peer.prompt"}
)


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


# --- the modules themselves: who imports whom, sizes, no mixins ------------------------


def source_modules() -> dict[str, Path]:
    """Every module of zchat, by dotted name."""
    return {module_name(path): path for path in source_files()}


def module_imports(path: Path, modules: dict[str, Path], root: Path = ROOT) -> set[str]:
    """The zchat modules `path` imports, imports inside functions and under
    TYPE_CHECKING included. `from zchat.peer import events` imports the module
    zchat.peer.events; `from zchat.envelope import seal`, the package's own names."""
    found: set[str] = set()
    for imp, node in zip(imports_of(path, root), import_nodes(path), strict=True):
        if not isinstance(node, ast.ImportFrom):
            found.add(imp.target)
            continue
        submodules = {f"{imp.target}.{alias.name}" for alias in node.names}
        found |= submodules & modules.keys()
        if not submodules <= modules.keys():
            found.add(imp.target)
    found &= modules.keys()
    found.discard(module_name(path, root))
    return found


def import_nodes(path: Path) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of `path`, one per `Import` that `imports_of` yields."""
    nodes: list[ast.Import | ast.ImportFrom] = []
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            nodes += [node] * len(node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            shell = not node.level and base == SHELL
            nodes += [node] * (len(node.names) if shell else 1)
    return nodes


def import_graph() -> dict[str, set[str]]:
    modules = source_modules()
    return {name: module_imports(path, modules) for name, path in modules.items()}


def reachable(graph: dict[str, set[str]], start: str, within: tuple[str, ...]) -> set[str]:
    """The modules `start` imports, directly or not, that lie under one of `within`."""
    seen, todo = {start}, [start]
    while todo:
        for target in graph[todo.pop()]:
            if target not in seen and target.startswith(within):
                seen.add(target)
                todo.append(target)
    return seen


def cycle_in(graph: dict[str, set[str]]) -> list[str]:
    """One import circle of `graph`, as the modules around it; [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def io_in(path: Path) -> list[str]:
    """Every import from `IO_MODULES` in `path`, and every call of the builtin `open`."""
    found = [str(imp) for imp in imports_of(path) if imp.target.split(".")[0] in IO_MODULES]
    found += [
        f"{module_name(path)}:{node.lineno}: open(...)"
        for node in ast.walk(tree(path))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open"
    ]
    return found


def core_modules() -> set[str]:
    """Every module of the broker's, the peer's and the wire's that a core runs."""
    graph = import_graph()
    within = ("zchat.broker", "zchat.peer", "zchat.wire")
    return set().union(*(reachable(graph, core, within) for core in SANS_IO_CORES))


def test_no_import_circle_anywhere() -> None:
    assert cycle_in(import_graph()) == []


def test_the_circle_finder_finds_one_through_a_function_and_type_checking(
    tmp_path: Path,
) -> None:
    # The admission mixin's circle, as it was: the core imported admission, which
    # imported the core under TYPE_CHECKING. A function-level import counts too.
    assert cycle_in({"core": {"admission"}, "admission": {"core"}}) == [
        "admission",
        "core",
        "admission",
    ]
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    probe = tmp_path / "peer" / "probe.py"
    probe.parent.mkdir()
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from zchat.peer.core import PeerCore\n"
        "def later():\n    from zchat.peer import events\n",
        encoding="utf-8",
    )
    modules = {"zchat.peer.core": probe, "zchat.peer.events": probe, "zchat.peer": probe}
    found = module_imports(probe, modules, root=tmp_path)
    assert found == {"zchat.peer.core", "zchat.peer.events"}


def test_the_cores_run_their_parts_and_the_checks_below_cover_them() -> None:
    # If the closure missed the parts, the sans-I/O rule below would pass for nothing.
    parts = {"admission", "directory", "sending", "inbox", "pinning", "roster", "gate"}
    rules = {"outbox", "replay", "withheld", "session_keys", "pins", "contact", "config"}
    assert {f"zchat.peer.{name}" for name in parts | rules} <= core_modules()
    assert {"zchat.broker.held", "zchat.wire.protocol"} <= core_modules()


@pytest.mark.parametrize("module", sorted(core_modules()))
def test_every_module_a_core_runs_reaches_for_no_clock_socket_or_file(module: str) -> None:
    # Time and randomness come in as arguments, frames and pin updates go out as
    # values: the loop around the core does the I/O.
    assert io_in(source_modules()[module]) == []


@pytest.mark.parametrize(
    "source",
    [
        "import time",
        "import os.path",
        "from os import urandom",
        "from zmq.asyncio import Context",
        "import asyncio as aio",
        "from pathlib import Path",
        "def f():\n    import shutil",
        "data = open('pins.json').read()",
    ],
)
def test_the_check_catches_io_however_it_is_written(tmp_path: Path, source: str) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(source, encoding="utf-8")
    assert io_in_probe(probe, tmp_path) != []


def test_the_check_lets_the_cores_own_imports_through(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from zchat.wire import protocol as p\nfrom collections.abc import Callable",
        encoding="utf-8",
    )
    assert io_in_probe(probe, tmp_path) == []


def io_in_probe(path: Path, root: Path) -> list[str]:
    found = [str(imp) for imp in imports_of(path, root) if imp.target.split(".")[0] in IO_MODULES]
    calls = [node for node in ast.walk(tree(path)) if isinstance(node, ast.Call)]
    return found + [
        "open" for node in calls if isinstance(node.func, ast.Name) and node.func.id == "open"
    ]


def test_only_the_client_and_the_front_ends_import_the_peer_core() -> None:
    importers = {
        name
        for name, targets in import_graph().items()
        if "zchat.peer.core" in targets and layer(name) != "bench"
    }
    assert importers <= PEER_CORE_IMPORTERS


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_is_at_most_600_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)}: {lines} lines"


def test_the_peer_core_keeps_to_about_400_lines() -> None:
    (core,) = [
        node
        for node in tree(ROOT / "peer" / "core.py").body
        if isinstance(node, ast.ClassDef) and node.name == "PeerCore"
    ]
    assert core.end_lineno is not None
    assert core.end_lineno - core.lineno + 1 <= MAX_PEER_CORE_LINES


def test_no_mixins() -> None:
    # A part is composed, not inherited: no class takes names from two of zchat's
    # classes, none is called a mixin, and none declares names it does not own
    # under TYPE_CHECKING in its body (what the admission mixin did).
    classes = [
        (path, node)
        for path in source_files()
        for node in ast.walk(tree(path))
        if isinstance(node, ast.ClassDef)
    ]
    ours = {node.name for _, node in classes}
    found = []
    for path, node in classes:
        bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
        declared = [
            stmt
            for stmt in node.body
            if isinstance(stmt, ast.If) and ast.unparse(stmt.test).endswith("TYPE_CHECKING")
        ]
        if len([b for b in bases if b in ours]) > 1 or "mixin" in node.name.lower() or declared:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name}")
    assert found == []

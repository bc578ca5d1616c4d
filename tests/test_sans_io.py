"""The two protocol cores are sans-I/O: read from their source, with `ast`.

A core gets the time, its randomness and its input as arguments, and hands back what
to send, show and save as values; its loop does the I/O. So neither core may import
a clock, the OS, sockets, an event loop or a file module, nor open a file itself.
"""

from __future__ import annotations

import ast
import inspect
from types import ModuleType

import pytest

from zchat.broker import core as broker_core
from zchat.peer import admission as peer_admission
from zchat.peer import core as peer_core

#: What a core must not import: a clock, the OS (randomness, files), the network,
#: an event loop, files.
FORBIDDEN = frozenset(
    {"time", "os", "socket", "zmq", "asyncio", "io", "pathlib", "tempfile", "shutil"}
)


def io_in(source: str) -> list[str]:
    """Every forbidden import in `source`, and every call of the builtin `open`."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "open"
        ):
            names = ["open()"]
        else:
            continue
        found += [n for n in names if n == "open()" or n.split(".")[0] in FORBIDDEN]
    return found


@pytest.mark.parametrize(
    "module", [peer_core, peer_admission, broker_core], ids=lambda m: m.__name__
)
def test_a_protocol_core_imports_no_clock_os_socket_event_loop_or_file(
    module: ModuleType,
) -> None:
    assert io_in(inspect.getsource(module)) == []


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
def test_the_check_catches_io_however_it_is_written(source: str) -> None:
    assert io_in(source) != []


def test_the_check_lets_the_cores_own_imports_through() -> None:
    source = "from zchat.wire import protocol as p\nfrom collections.abc import Callable"
    assert io_in(source) == []

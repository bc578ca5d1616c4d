"""How zchat talks to people on the terminal: ``zchat: error: ...`` and ``zchat: hint: ...``."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

#: Exit codes that mean something to scripts.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NICK_TAKEN = 3
#: `zchat keys`: there is no identity to show (none was made: showing never makes one).
EXIT_NO_KEY = 3
EXIT_REFUSED = 4
EXIT_UNDELIVERED = 5
EXIT_INTERRUPTED = 130


def error(message: str, hint: str | None = None) -> None:
    print(f"zchat: error: {message}", file=sys.stderr)
    if hint:
        print(f"zchat: hint: {hint}", file=sys.stderr)


def fail(message: str, hint: str | None = None, code: int = EXIT_ERROR) -> NoReturn:
    error(message, hint)
    raise typer.Exit(code=code)


def info(message: str) -> None:
    print(f"zchat: {message}", file=sys.stderr)

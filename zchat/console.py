"""How zchat talks to people on the terminal: ``zchat: error: ...`` and ``zchat: hint: ...``.

The exit statuses these end with are `zchat.exit_codes`'.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from zchat.exit_codes import EXIT_ERROR


def error(message: str, hint: str | None = None) -> None:
    print(f"zchat: error: {message}", file=sys.stderr)
    if hint:
        print(f"zchat: hint: {hint}", file=sys.stderr)


def fail(message: str, hint: str | None = None, code: int = EXIT_ERROR) -> NoReturn:
    error(message, hint)
    raise typer.Exit(code=code)


def info(message: str) -> None:
    print(f"zchat: {message}", file=sys.stderr)

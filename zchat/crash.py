"""Errors nobody expected: one line and a hint on the screen, never a traceback.

Expected failures are worded where they happen (`zchat.console.fail`). What is left is
a bug, and what the user needs is the fact, a way to get the details, and their chat
screen intact. So `report` says ``zchat: error: internal error: ...`` and how to run
again with ``--debug``, which prints the traceback. An error inside the event loop (a
callback, a key binding, a task nobody awaits) would otherwise be printed by asyncio's
or prompt_toolkit's handler, over the chat, and the program would go on: `run` makes
it end the run instead, as an error raised in the run itself would.

Nothing here is reached by the network's input on purpose: that is parsed, refused
and reported as events. Only bugs get here.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import sys
import traceback
from collections.abc import Coroutine
from typing import Any, TypeVar

from zchat.console import error

T = TypeVar("T")

#: Set by ``zchat --debug`` (or ZCHAT_DEBUG): tracebacks and debug logs on stderr.
debug = False


def enable_debug(on: bool) -> None:
    """Show tracebacks and log on stderr (``--debug``), or keep the screen clean."""
    global debug  # noqa: PLW0603 (one process-wide switch, set once at start)
    debug = on
    log = logging.getLogger("zchat")
    if on:
        logging.basicConfig(
            level=logging.DEBUG, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
        )
    elif not log.handlers:
        # Without a handler, Python's last resort prints warnings and tracebacks to
        # stderr: over the chat. The broker sets up logging of its own.
        log.addHandler(logging.NullHandler())


def report(exc: BaseException, argv: list[str]) -> None:
    """Say that `exc` ended the program: its traceback with --debug, else a hint."""
    if debug:
        traceback.print_exception(exc)
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    again = shlex.join(["zchat", "--debug", *(a for a in argv[1:] if a != "--debug")])
    error(
        f"internal error ({reason.splitlines()[0][:200]}); this is a bug in zchat",
        None if debug else f"to see where, run it again with --debug: {again}",
    )


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, where an error in the event loop's callbacks ends the run
    with that error (module docstring)."""

    async def guarded() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        failures: list[BaseException] = []

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            failure = context.get("exception") or RuntimeError(context.get("message", "?"))
            if isinstance(failure, asyncio.CancelledError):
                return
            if debug:
                loop.default_exception_handler(context)
            failures.append(failure)
            if task is not None:
                task.cancel()

        loop.set_exception_handler(handler)
        try:
            return await main
        except asyncio.CancelledError:
            if failures:
                raise failures[0] from None
            raise

    return asyncio.run(guarded())

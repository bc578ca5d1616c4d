"""The scripted peer: standard input lines in, events out, for scripts and bots.

Contract (see README): every input line is a message to the room, or a slash command;
``exit`` or end of input leaves once the broker acknowledged everything sent. With
``--json`` each event is one JSON object per line on standard output.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from typing import TextIO

from zchat.console import EXIT_ERROR, EXIT_NICK_TAKEN, EXIT_REFUSED, EXIT_UNDELIVERED, error
from zchat.peer import events as ev
from zchat.peer.actions import execute
from zchat.peer.client import Client
from zchat.peer.commands import Quit, parse_line
from zchat.peer.outbox import Entry
from zchat.peer.render import json_line, to_text
from zchat.peer.sanitize import for_terminal


class _Output:
    """Events to standard output, one line each (JSON or readable text)."""

    def __init__(self, stdout: TextIO, json_mode: bool, lines: asyncio.Queue[str | None]) -> None:
        self._stdout = stdout
        self._json = json_mode
        self._lines = lines
        self._gone = False

    def emit(self, event: ev.Event) -> None:
        line = json_line(event) if self._json else to_text(event)
        if line is None or self._gone:
            return
        try:
            self._stdout.write(line + "\n")
            self._stdout.flush()
        except BrokenPipeError:
            # Whoever read our output has gone (`| head`): leave as at end of input,
            # still after the broker has what was sent.
            self._gone = True
            self.end_input()

    def end_input(self) -> None:
        self._lines.put_nowait(None)


async def _print_events(
    client: Client, out: _Output, ready: asyncio.Event, outcome: list[ev.Event]
) -> None:
    """Show every event; note the first that decides how the session starts."""
    while True:
        event = await client.events.get()
        out.emit(event)
        final = isinstance(event, ev.Disconnected) and client.core.closed_reason
        if isinstance(event, ev.Ready | ev.Refused | ev.TransportFailed) or final:
            outcome.append(event)
            ready.set()
        if isinstance(event, ev.TransportFailed) or final:
            # Stop waiting for input (a bot may type nothing for hours): the session
            # is over, nothing can be sent now.
            out.end_input()


async def run_scripted(
    client: Client,
    *,
    json_mode: bool,
    connect_timeout: float,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
) -> int:
    ready = asyncio.Event()
    outcome: list[ev.Event] = []
    client.start()
    lines = _read_lines(stdin)  # after start, which raises on a malformed endpoint
    out = _Output(stdout, json_mode, lines)
    printer = asyncio.create_task(_print_events(client, out, ready, outcome))
    try:
        try:
            await asyncio.wait_for(ready.wait(), connect_timeout)
        except asyncio.TimeoutError:  # not TimeoutError before Python 3.11
            error(
                f"no answer from a broker at {client.endpoint} within {connect_timeout:g} s",
                "start one with 'make broker' or point --connect at it",
            )
            await client.close(max_idle=0)
            return EXIT_ERROR
        first = outcome[0]  # a TransportFailed falls through: the loop below ends at once
        if isinstance(first, ev.Refused):
            error(f"the broker refused us: {for_terminal(first.reason)}")
            await client.close(max_idle=0)
            return EXIT_NICK_TAKEN if first.code == "nick-taken" else EXIT_REFUSED
        while not client.core.closed_reason and not client.failed:
            line = await lines.get()
            if line is None:
                break
            command = parse_line(line)
            if isinstance(command, Quit):
                break
            for event in execute(command, client):
                out.emit(event)
        unacked = await client.close()
        await asyncio.sleep(0)  # let the printer show the last acknowledgements
        while not client.events.empty():
            out.emit(client.events.get_nowait())
    finally:
        printer.cancel()
    return _exit_code(client, unacked)


def _exit_code(client: Client, unacked: list[Entry]) -> int:
    """How the session ended, for scripts; the reason goes to standard error."""
    if client.failed:
        error(client.failed.reason, client.failed.hint or None)
        return EXIT_ERROR
    if client.core.closed_reason:
        error(client.core.closed_reason)
        return EXIT_ERROR
    if unacked:
        error(
            f"{len(unacked)} message(s) were not acknowledged by the broker: "
            + "; ".join(repr(e.text[:40]) for e in unacked[:5])
        )
        return EXIT_UNDELIVERED
    return 0


def _read_lines(stdin: TextIO) -> asyncio.Queue[str | None]:
    """Lines from `stdin`, read in a thread so a blocking read never stalls the loop.

    The queue always ends with None, even when reading fails (input that is not
    UTF-8): otherwise the session would wait for input forever.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def post(item: str | None) -> None:
        # The session may have ended (and its loop closed) while we were reading.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def reader() -> None:
        try:
            for line in stdin:
                post(line)
        except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            error(f"cannot read standard input: {exc}", "send UTF-8 text, one message a line")
        finally:
            post(None)

    threading.Thread(target=reader, name="stdin", daemon=True).start()
    return queue

"""The scripted peer: standard input lines in, events out, for scripts and bots.

Contract (see README): every input line is a message to the room, or a slash command;
``exit`` or end of input leaves once the broker acknowledged everything sent. With
``--json`` each event is one JSON object per line on standard output; otherwise the
lines of `peer.render`, as plain text.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from zchat.peer import events as ev
from zchat.peer.client import Client
from zchat.peer.json_events import json_line
from zchat.peer.render import Renderer, plain
from zchat.peer.session import Left, Outcome, run_session


class Scripted:
    """The scripted front end: lines from `stdin`, events to `stdout`."""

    def __init__(
        self,
        me: str,
        stdin: TextIO,
        stdout: TextIO,
        *,
        json_mode: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stdout = stdout
        self._renderer = None if json_mode else Renderer(me)
        self._clock = clock
        self._gone = False
        #: Why standard input could not be read, if it could not.
        self.unreadable = ""
        self._lines = self._read_lines(stdin)

    def show(self, events: Sequence[ev.Event]) -> None:
        for event in events:
            self._write(self._format(event))

    async def next_line(self) -> str | None:
        return await self._lines.get()

    def still_waiting(self) -> bool:
        return False  # give up: a script would rather fail than hang

    def leaving(self) -> None:
        pass  # a script learns what was delivered from the acknowledgements

    def _format(self, event: ev.Event) -> list[str]:
        if self._renderer is None:
            return [json_line(event)]
        return [plain(line) for line in self._renderer.render(event, self._clock())]

    def _write(self, lines: list[str]) -> None:
        if not lines or self._gone:
            return
        try:
            self._stdout.write("".join(line + "\n" for line in lines))
            self._stdout.flush()
        except BrokenPipeError:
            # Whoever read our output has gone (`| head`): leave as at end of input,
            # still after the broker has what was sent.
            self._gone = True
            self._lines.put_nowait(None)

    def _read_lines(self, stdin: TextIO) -> asyncio.Queue[str | None]:
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
                self.unreadable = str(exc)
            finally:
                post(None)

        threading.Thread(target=reader, name="stdin", daemon=True).start()
        return queue


async def run_scripted(
    client: Client,
    *,
    json_mode: bool,
    connect_timeout: float,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
) -> Outcome:
    """Start `client` and run its session with lines from `stdin`; how did it end?"""
    client.start()
    # After start, which raises on a malformed endpoint: no reader is left behind.
    front = Scripted(client.core.nick, stdin, stdout, json_mode=json_mode)
    outcome = await run_session(client, front, patience=connect_timeout)
    if isinstance(outcome, Left) and front.unreadable:
        outcome = dataclasses.replace(outcome, unreadable=front.unreadable)
    return outcome

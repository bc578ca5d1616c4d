"""One chat session from start to end, for either front end (scripted or interactive).

The session, from a started client to its end::

    join     -> events are shown until Ready; a refusal ends the session (a front end
                with someone to ask starts another under a new nickname); a broker
                that never answers within `patience` asks the front end whether to
                keep waiting
    chat     -> lines are messages or commands (`peer.slash`, `peer.actions`),
                while events are shown as they come; the session ends by itself when
                the broker closes it (REPLACED), refuses our return for good, or the
                transport cannot work, and then names what was never acknowledged
    leave    -> end of input, /quit or exit: wait for the broker's acks, then show
                the events that came in while leaving

The front end shows events and supplies lines; the session says how it ended as an
`Outcome`, and never as words or an exit status: those are the shell's (``zchat``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from zchat.peer import events as ev
from zchat.peer.actions import execute
from zchat.peer.client import Client
from zchat.peer.core import Phase
from zchat.peer.slash import Quit, parse_line


@dataclass(frozen=True, slots=True)
class Left:
    """We left: by choice, at the end of input, or because the output went away."""

    #: Texts of our messages the broker never acknowledged.
    unacked: tuple[str, ...] = ()
    #: Why input ended early, when it could not be read (not UTF-8, say).
    unreadable: str = ""


@dataclass(frozen=True, slots=True)
class NoAnswer:
    """No broker answered at `endpoint` within `waited` seconds."""

    endpoint: str
    waited: float


@dataclass(frozen=True, slots=True)
class Refused:
    """The broker refused our handshake; `code` is a `wire.protocol.RefuseCode` name.
    `broker_version`: the broker speaks this other protocol version (0: it does not)."""

    code: str
    reason: str
    broker_version: int = 0
    #: Refused on coming back into the room, after trying again (`events.Refused`).
    rejoining: bool = False
    #: Texts of our messages the broker never acknowledged (typed before, or while
    #: we were refused).
    unacked: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The connection to the broker cannot work (a broker with another CURVE key)."""

    reason: str
    hint: str = ""


@dataclass(frozen=True, slots=True)
class Closed:
    """The broker ended the session (our nickname logged in elsewhere with our key)."""

    reason: str
    #: Texts of our messages the broker never acknowledged.
    unacked: tuple[str, ...] = ()


Outcome = Left | NoAnswer | Refused | TransportFailed | Closed


class FrontEnd(Protocol):
    """What the session needs from a front end."""

    def show(self, events: Sequence[ev.Event]) -> None:
        """Show `events`, which just arrived (a burst comes in one call)."""

    async def next_line(self) -> str | None:
        """The next line typed, or None to leave."""

    def still_waiting(self) -> bool:
        """No answer yet from the broker: True to keep waiting (without a limit)."""

    def leaving(self) -> None:
        """We leave, but wait for the broker to acknowledge what we sent."""


async def run_session(client: Client, front: FrontEnd, *, patience: float) -> Outcome:
    """Run a session on `client` (already started) until it ends; return how it did."""
    try:
        outcome = await _join(client, front, patience)
        if outcome is not None:
            return outcome
        return await _chat(client, front)
    finally:
        if client.core.phase is not Phase.CLOSED:
            await client.close(max_idle=0)


async def _join(client: Client, front: FrontEnd, patience: float) -> Outcome | None:
    """Show events until welcomed (None) or until there is no point (the outcome)."""
    timeout: float | None = patience
    while True:
        try:
            event = await client.next_event(timeout)
        except asyncio.TimeoutError:  # not TimeoutError before Python 3.11
            if not front.still_waiting():
                return NoAnswer(client.endpoint, patience)
            timeout = None
            continue
        front.show([event])
        match event:
            case ev.Refused(code, reason, version, rejoining):
                return Refused(code, reason, version, rejoining)
            case ev.Ready():
                return None
            case ev.TransportFailed(reason, hint):
                return TransportFailed(reason, hint)
            case ev.Disconnected() if client.core.closed_reason:
                return Closed(client.core.closed_reason)


async def _chat(client: Client, front: FrontEnd) -> Outcome:
    ended = asyncio.Event()  # the session ended by itself (see _ended), or the printer did
    printer = asyncio.create_task(_show_events(client, front, ended))
    # A printer that fails (a bug) must not leave us reading input with nothing shown:
    # the session ends, and awaiting the printer below raises its error.
    printer.add_done_callback(lambda _: ended.set())
    try:
        while _ended(client) is None and not printer.done():
            line = await _next_line(front, ended)
            if line is None:
                break
            command = parse_line(line)
            if isinstance(command, Quit):
                break
            front.show(execute(command, client))
        if client.core.pending_acks() and _ended(client) is None:
            front.leaving()
        unacked = await client.close()
    finally:
        printer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await printer
    late: list[ev.Event] = []  # acknowledgements that came in while leaving
    while not client.events.empty():
        late.append(client.events.get_nowait())
    if late:
        front.show(late)
    texts = tuple(entry.text for entry in unacked)
    over = _ended(client)
    match over:
        case Refused() | Closed():
            return dataclasses.replace(over, unacked=texts)
    return over or Left(texts)


def _ended(client: Client) -> TransportFailed | Closed | Refused | None:
    """How the session ended by itself, if it did: nothing more can be sent."""
    core = client.core
    if client.failed:
        return TransportFailed(client.failed.reason, client.failed.hint)
    if core.closed_reason:
        return Closed(core.closed_reason)
    if core.refusal is not None:  # refused on coming back, for good
        refusal = core.refusal
        return Refused(refusal.code, refusal.reason, refusal.broker_version, refusal.rejoining)
    return None


async def _show_events(client: Client, front: FrontEnd, ended: asyncio.Event) -> None:
    while True:
        batch = [await client.events.get()]
        while not client.events.empty():  # a burst shows in one go
            batch.append(client.events.get_nowait())
        front.show(batch)
        if _ended(client) is not None:
            ended.set()


async def _next_line(front: FrontEnd, ended: asyncio.Event) -> str | None:
    """The next line, or None when the session ended first (stop waiting for input:
    a bot may type nothing for hours)."""
    ask = asyncio.ensure_future(front.next_line())
    end = asyncio.ensure_future(ended.wait())
    try:
        await asyncio.wait({ask, end}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        end.cancel()
        if not ask.done():
            ask.cancel()
    try:
        return await ask
    except asyncio.CancelledError:
        if ask.cancelled() and not ended.is_set():
            raise  # we are being cancelled ourselves, not ending the wait
        return None

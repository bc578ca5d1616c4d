"""A broker that speaks the protocol but lies, for honest peers that must not believe it.

`LyingBroker` is the real sans-I/O broker core with two hooks: `lie` rewrites (or
drops, or multiplies) every message it is about to send, and `inject` queues frames
of our own making for a peer. It also records what the peers really sent, so a test
can check what a peer encrypted and to whom. Honest `Client`s talk to it over TCP
(`lying_broker`), or a test drives it in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tests.net import FAST, broker_thread
from tests.support.room import seeded
from tests.support.waits import until
from zchat.broker.core import Broker, Outgoing
from zchat.broker.server import Server
from zchat.envelope import Envelope
from zchat.wire import protocol as p
from zchat.wire.errors import ProtocolError

Lie = Callable[[Outgoing], list[Outgoing]]


def command(frames: list[bytes]) -> int:
    return frames[1][0] if len(frames) > 1 and len(frames[1]) == 1 else -1


@dataclass
class LyingBroker(Broker):
    lie: Lie | None = None
    #: nickname -> connection, learned from the WELCOMEs it sends
    conns: dict[str, bytes] = field(default_factory=dict)
    #: every envelope a peer sent, and who sent it
    sends: list[tuple[str, Envelope]] = field(default_factory=list)
    #: every command byte each peer sent
    commands: dict[str, list[int]] = field(default_factory=dict)
    _inject: deque[Outgoing] = field(default_factory=deque)

    def handle(
        self, conn: bytes, frames: list[bytes], now: float, transport_key: bytes | None = None
    ) -> list[Outgoing]:
        nick = next((n for n, c in self.conns.items() if c == conn), "?")
        self.commands.setdefault(nick, []).append(command(frames))
        with contextlib.suppress(ProtocolError):
            msg = p.parse_from_peer(frames)
            if isinstance(msg, p.Send):
                self.sends.append((nick, msg.envelope))
        return self._tamper(super().handle(conn, frames, now, transport_key))

    def tick(self, now: float, *, input_waiting: bool = False) -> list[Outgoing]:
        out = self._tamper(super().tick(now, input_waiting=input_waiting))
        while self._inject:
            out.append(self._inject.popleft())
        return out

    def inject(self, nick: str, frames: list[bytes]) -> None:
        """Send `frames` to `nick` on the next tick (thread-safe: a deque)."""
        self._inject.append(Outgoing(self.conns[nick], frames))

    def _tamper(self, out: list[Outgoing]) -> list[Outgoing]:
        result: list[Outgoing] = []
        for o in out:
            if command(o.frames) == p.Command.WELCOME:
                welcome = p.parse_from_broker(o.frames)
                assert isinstance(welcome, p.Welcome)
                self.conns[welcome.nick] = o.conn
            lie = self.lie
            result += [o] if lie is None else lie(o)
        return result

    def to(self, nick: str, o: Outgoing) -> bool:
        return self.conns.get(nick) == o.conn


@contextlib.contextmanager
def lying_broker(endpoint: str = "tcp://127.0.0.1:*") -> Iterator[tuple[Server, LyingBroker]]:
    core = LyingBroker(FAST, random=seeded(0))
    with broker_thread(FAST, endpoint, core=core) as server:
        yield server, core


def record_deliveries(core: LyingBroker, nick: str) -> list[list[bytes]]:
    """Let everything through, keeping a copy of each DELIVER to `nick`: a recording."""
    captured: list[list[bytes]] = []

    def sniff(o: Outgoing) -> list[Outgoing]:
        if core.to(nick, o) and command(o.frames) == p.Command.DELIVER:
            captured.append(o.frames)
        return [o]

    core.lie = sniff
    return captured


def watch_crashes() -> list[dict[str, object]]:
    """Anything a client callback raises lands in the loop's exception handler."""
    crashes: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: crashes.append(ctx))
    return crashes


async def injected(core: LyingBroker) -> None:
    """Wait until the broker thread took what was injected.

    It sends what a tick returns before it handles anything else, so whatever a peer
    sends after this arrives behind the injected frames.
    """
    await until(lambda: not core._inject, 2, "the broker never ticked")

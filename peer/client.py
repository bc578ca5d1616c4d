"""The peer's socket loop: a DEALER socket driven by `PeerCore`, inside asyncio.

Thin on purpose: it moves frames between the socket and the core, runs the core's
clock, and replaces the socket when the core asks for a reconnect. Front ends (the
scripted mode, the terminal UI, the benchmark, tests) call `send_text`, `trust`, read
`events`, and finish with `close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass
from typing import cast

import zmq

from broker.transport import LINGER_MS, configure, recv_bounded
from peer import events as ev
from peer.core import PeerCore, Phase
from peer.outbox import Entry

#: libzmq retries a lost TCP connection this often (doubling up to the max), so a
#: peer is back within about half a second of the broker's return.
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 500


@dataclass(frozen=True, slots=True)
class CurveKeys:
    """CURVE transport keys (Z85): the broker's public key and our own pair."""

    server_public: bytes
    public: bytes
    secret: bytes


class Client:
    def __init__(
        self,
        core: PeerCore,
        endpoint: str,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        self.core = core
        self.endpoint = endpoint
        self.curve = curve
        self.events: asyncio.Queue[ev.Event] = asyncio.Queue()
        self._context = context or zmq.Context.instance()
        self._sock: zmq.Socket[bytes] | None = None
        self._backlog: deque[list[bytes]] = deque()
        self._ticker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_progress = 0.0

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Connect and say hello. Returns at once; events arrive on `events`."""
        self._loop = asyncio.get_running_loop()
        self._open_socket()
        self.core.start(time.monotonic())
        self._flush()
        period = min(max(self.core.config.heartbeat_interval / 4, 0.01), 0.1)
        self._ticker = asyncio.create_task(self._tick_forever(period))

    async def close(self, max_idle: float = 1.3) -> list[Entry]:
        """Leave the room, after the broker acknowledged everything we sent.

        Waits while acknowledgements keep coming; gives up once none has come for
        `max_idle` seconds (the broker is gone). Returns what stayed unacknowledged.
        """
        self._last_progress = time.monotonic()
        while self.core.pending_acks() and self.core.phase is not Phase.CLOSED:
            if time.monotonic() - self._last_progress > max_idle:
                break
            await asyncio.sleep(0.01)
        unacked = self.core.pending_acks()
        self.core.leave()
        self._flush()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self._close_socket(linger=LINGER_MS)
        return unacked

    async def next_event(self, timeout: float | None = None) -> ev.Event:
        return await asyncio.wait_for(self.events.get(), timeout)

    # --- user actions (they raise peer.errors.PeerError for people to read) ----------

    def send_text(self, text: str, to: list[str] | None = None) -> bytes:
        msg_id = self.core.send_text(text, time.monotonic(), to)
        self._flush()
        return msg_id

    def trust(self, nick: str) -> ev.Trusted:
        trusted = self.core.trust(nick)
        self._flush()
        return trusted

    # --- the loop --------------------------------------------------------------------

    def _open_socket(self) -> None:
        sock = self._context.socket(zmq.DEALER)
        configure(sock)
        sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
        if self.curve is not None:
            sock.setsockopt(zmq.CURVE_SERVERKEY, self.curve.server_public)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, self.curve.public)
            sock.setsockopt(zmq.CURVE_SECRETKEY, self.curve.secret)
        sock.connect(self.endpoint)
        self._sock = sock
        assert self._loop is not None
        self._loop.add_reader(sock.fileno(), self._pump)

    def _close_socket(self, linger: int = 0) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(sock.fileno())
        sock.close(linger=linger)

    async def _tick_forever(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            self._tick()

    def _tick(self) -> None:
        self.core.tick(time.monotonic())
        if self.core.reconnect_wanted:
            self._close_socket()
            self._backlog.clear()  # stale frames for the old connection
            self._open_socket()
            self.core.start(time.monotonic())
        self._flush()
        self._pump()

    def _pump(self) -> None:
        """Read everything waiting. libzmq's FD is edge-triggered: drain it fully."""
        sock = self._sock
        while sock is not None:
            try:
                frames = recv_bounded(sock)
            except zmq.Again:
                break
            self.core.receive(frames, time.monotonic())
            sock = self._sock
        self._flush()

    def _flush(self) -> None:
        self._backlog.extend(self.core.take_outgoing())
        sock = self._sock
        while sock is not None and self._backlog:
            try:
                sock.send_multipart(self._backlog[0], zmq.NOBLOCK)
            except zmq.Again:
                break  # the broker is not reading; try again on the next tick
            self._backlog.popleft()
        # A send can consume the FD's edge: if input is waiting, read it soon.
        if sock is not None and self._loop is not None and _readable(sock):
            self._loop.call_soon(self._pump)
        for event in self.core.take_events():
            if isinstance(event, ev.Acked):
                self._last_progress = time.monotonic()
            self.events.put_nowait(event)


def _readable(sock: zmq.Socket[bytes]) -> bool:
    return bool(cast(int, sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN)

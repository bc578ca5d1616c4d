"""The broker's socket loop: poll, receive, hand to the core, send what it returns.

All protocol decisions live in `broker.core`; this file only moves frames and time.

With CURVE on (`curve_secret`), only peers that complete a CURVE handshake with our
key get in: plain ZMTP and raw TCP never reach the parser. A ZAP handler lets every
client key in (peers prove who they are with their RSA key at HELLO, not with their
transport key) but makes libzmq tag each message with the client's public key, which
the core binds to the session that HELLO opened.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from zchat.broker.core import Broker, BrokerConfig, Outgoing
from zchat.wire.transport import (
    TransportError,
    bind_all,
    configure,
    recv_bounded,
    recv_bounded_with_user,
)

log = logging.getLogger("zchat.broker")

#: Handle at most this many messages per poll before looking at the clock again, so
#: heartbeats go out on time under load.
_BATCH = 512
_STATS_EVERY = 5.0


@dataclass
class Server:
    """A broker bound to endpoints. `run` blocks until `stop` is set."""

    endpoints: list[str]
    config: BrokerConfig = field(default_factory=BrokerConfig)
    context: zmq.Context[zmq.Socket[bytes]] | None = None
    curve_secret: bytes | None = None  # set by wire.curve when CURVE is on
    stop: threading.Event = field(default_factory=threading.Event)
    core: Broker = field(init=False)
    bound: list[str] = field(default_factory=list)
    _sock: zmq.Socket[bytes] | None = None
    _auth: ThreadAuthenticator | None = None
    _own_context: zmq.Context[zmq.Socket[bytes]] | None = None

    def __post_init__(self) -> None:
        self.core = Broker(self.config, random=os.urandom)

    def open(self) -> list[str]:
        ctx = self.context
        if ctx is None and self.curve_secret is not None:
            # libzmq has one ZAP handler per context: a context of our own keeps ours
            # from clashing with anything else in this process.
            ctx = self._own_context = zmq.Context()
        elif ctx is None:
            ctx = zmq.Context.instance()
        if self.curve_secret is not None:
            self._auth = _start_zap(ctx)
            # Proofs of key name the broker they were made for (broker.core).
            self.core.curve_public = zmq.curve_public(self.curve_secret)
        sock = ctx.socket(zmq.ROUTER)
        configure(sock)
        # Report unroutable and full peers instead of dropping silently.
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        if self.curve_secret is not None:
            sock.setsockopt(zmq.CURVE_SERVER, 1)
            sock.setsockopt(zmq.CURVE_SECRETKEY, self.curve_secret)
        try:
            self.bound = bind_all(sock, self.endpoints)
        except Exception:
            sock.close(linger=0)
            self._release()
            raise
        self._sock = sock
        return self.bound

    def run(self) -> None:
        if self._sock is None:
            self.open()
        sock = self._sock
        assert sock is not None
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poll_ms = max(1, int(self.config.heartbeat_interval * 250))
        next_stats = time.monotonic() + _STATS_EVERY
        last = _format(self.core)
        try:
            while not self.stop.is_set():
                if poller.poll(poll_ms):
                    self._drain(sock)
                now = time.monotonic()
                self._send(sock, self.core.tick(now), now)
                if now >= next_stats:
                    next_stats = now + _STATS_EVERY
                    current = _format(self.core)
                    if current != last:  # an idle broker logs nothing
                        log.info("stats %s", current)
                        last = current
        finally:
            sock.close(linger=0)
            self._sock = None
            self._release()

    def _release(self) -> None:
        auth, self._auth = self._auth, None
        if auth is not None:
            auth.stop()
        ctx, self._own_context = self._own_context, None
        if ctx is not None:
            ctx.term()

    def _drain(self, sock: zmq.Socket[bytes]) -> None:
        curve = self.curve_secret is not None
        key: bytes | None = None
        for _ in range(_BATCH):
            try:
                if curve:
                    frames, key = recv_bounded_with_user(sock)
                else:  # the hot path stays free of metadata look-ups
                    frames = recv_bounded(sock)
            except zmq.Again:
                return
            now = time.monotonic()
            self._send(sock, self.core.handle(frames[0], frames[1:], now, key), now)

    def _send(self, sock: zmq.Socket[bytes], outgoing: Iterable[Outgoing], now: float) -> None:
        core = self.core
        # A deque: a message to a room of 256 is 257 sends, and list.pop(0) is O(n).
        pending = deque(outgoing)
        while pending:
            out = pending.popleft()
            try:
                _send_nowait(sock, out.conn, out.frames)
            except zmq.Again:
                pending += core.undeliverable(out, now, backlogged=True)
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EHOSTUNREACH:
                    raise
                pending += core.undeliverable(out, now, backlogged=False)
            else:
                core.delivered(out.conn)


#: Plain ints: pyzmq's `send_multipart` ORs enum flags for every frame, which costs
#: more than libzmq's send itself (`make bench` profile: a third of the broker's time).
_MORE_NOWAIT = int(zmq.SNDMORE | zmq.NOBLOCK)
_NOWAIT = int(zmq.NOBLOCK)


def _send_nowait(sock: zmq.Socket[bytes], conn: bytes, frames: list[bytes]) -> None:
    """`send_multipart([conn, *frames], NOBLOCK)`, frame by frame as pyzmq does it.

    libzmq decides at the first frame (the routing id) whether the message can be
    queued, so zmq.Again and EHOSTUNREACH come from there, before anything is sent.
    """
    send = sock.send
    send(conn, _MORE_NOWAIT)
    for frame in frames[:-1]:
        send(frame, _MORE_NOWAIT)
    send(frames[-1], _NOWAIT)


def _start_zap(ctx: zmq.Context[zmq.Socket[bytes]]) -> ThreadAuthenticator:
    """A ZAP handler that admits any CURVE client key and reports it as the User-Id."""
    auth = ThreadAuthenticator(ctx, log=logging.getLogger("zchat.broker.zap"))
    try:
        auth.start()
    except zmq.ZMQError as exc:  # another ZAP handler already serves this context
        raise TransportError(f"cannot start the CURVE authenticator: {exc.strerror}") from exc
    auth.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
    return auth


def _format(core: Broker) -> str:
    c = core.counters
    return (
        f"peers={c.peers} messages={c.messages} deliveries={c.deliveries} "
        f"absent={c.absent} dropped={c.dropped} errors={c.errors} "
        f"refused={c.refused} evicted={c.evicted} foreign_key={c.foreign_key}"
    )

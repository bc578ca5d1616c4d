"""The broker's socket loop: poll, receive, hand to the core, send what it returns.

All protocol decisions live in `broker.core`; this file only moves frames and time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import zmq

from broker.core import Broker, BrokerConfig, Outgoing
from broker.transport import bind_all, configure, recv_bounded

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
    curve_secret: bytes | None = None  # set by broker.curve when CURVE is on
    stop: threading.Event = field(default_factory=threading.Event)
    core: Broker = field(init=False)
    bound: list[str] = field(default_factory=list)
    _sock: zmq.Socket[bytes] | None = None

    def __post_init__(self) -> None:
        self.core = Broker(self.config)

    def open(self) -> list[str]:
        ctx = self.context or zmq.Context.instance()
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
        last = _snapshot(self.core)
        try:
            while not self.stop.is_set():
                if poller.poll(poll_ms):
                    self._drain(sock)
                now = time.monotonic()
                self._send(sock, self.core.tick(now), now)
                if now >= next_stats:
                    next_stats = now + _STATS_EVERY
                    current = _snapshot(self.core)
                    if current != last:
                        log.info("stats %s", _format(self.core))
                        last = current
        finally:
            sock.close(linger=0)
            self._sock = None

    def _drain(self, sock: zmq.Socket[bytes]) -> None:
        for _ in range(_BATCH):
            try:
                frames = recv_bounded(sock)
            except zmq.Again:
                return
            now = time.monotonic()
            self._send(sock, self.core.handle(frames[0], frames[1:], now), now)

    def _send(self, sock: zmq.Socket[bytes], outgoing: Iterable[Outgoing], now: float) -> None:
        core = self.core
        pending = list(outgoing)
        while pending:
            out = pending.pop(0)
            try:
                sock.send_multipart([out.conn, *out.frames], zmq.NOBLOCK)
            except zmq.Again:
                pending += core.undeliverable(out, now, backlogged=True)
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EHOSTUNREACH:
                    raise
                pending += core.undeliverable(out, now, backlogged=False)
            else:
                core.delivered(out.conn)


def _snapshot(core: Broker) -> tuple[int, ...]:
    c = core.counters
    return (c.peers, c.messages, c.deliveries, c.dropped, c.errors, c.refused, c.evicted)


def _format(core: Broker) -> str:
    c = core.counters
    return (
        f"peers={c.peers} messages={c.messages} deliveries={c.deliveries} "
        f"absent={c.absent} dropped={c.dropped} errors={c.errors} "
        f"refused={c.refused} evicted={c.evicted}"
    )

"""The broker's socket loop: poll, receive, hand to the core, send what it returns.

All protocol decisions live in `broker.core`; this file only moves frames and time.

Memory is bounded in bytes. The ROUTER queues and reads ahead only a few hundred messages
per connection (`ROUTER_SEND_HWM`, `ROUTER_RECV_HWM`). A message it will not take
(zmq.Again), and every later one to the same connection, goes to the core's held queue,
counted in bytes, so the order per connection never changes; the loop retries the
oldest held messages every few milliseconds while any are held. Freed memory is given
back to the system after the core drops a large backlog, and every few seconds while
the broker is busy: glibc's malloc would otherwise keep it for reuse, and the broker's
RSS would stay at its peak long after an attack.

With CURVE on (`curve_secret`), only peers that complete a CURVE handshake with our
key get in: plain ZMTP and raw TCP never reach the parser. A ZAP handler lets every
client key in (peers prove who they are with their RSA key at HELLO, not with their
transport key) but makes libzmq tag each message with the client's public key, which
the core binds to the session that HELLO opened.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from zchat.broker.config import BrokerConfig
from zchat.broker.core import Broker, Outgoing
from zchat.wire.transport import (
    ROUTER_RECV_HWM,
    ROUTER_SEND_HWM,
    TransportError,
    bind_all,
    configure,
    recv_bounded,
    recv_bounded_with_user,
    send_nowait,
)

log = logging.getLogger("zchat.broker")

#: Handle input for at most this long before the timers (`Broker.tick`): a storm of
#: joins must not hold back heartbeats and evictions.
_BATCH_S = 0.02
#: What is read ahead of handling (the inbox), in messages and in bytes of frames:
#: reading is cheap, handling a PROOF in a full room is not, and every message read
#: is a sign of life at once (`Broker.arrived`). A full room's join storm is read
#: ahead whole: a HELLO, a PROOF and a heartbeat from each of MAX_ROOM members are
#: 3,000 messages. 16 MiB holds that storm's HELLOs at their largest (1,000 x 2.7 KB of
#: key and certificate), or 29 SENDs to a full room at theirs (576 KB each: 999
#: wrapped keys of 512 bytes, their leaves and a 22 KB token).
_INBOX_MESSAGES = 4096
_INBOX_BYTES = 16 * 2**20
#: The longest the loop sleeps with nothing due: it still notices `stop` this often.
_IDLE_MS = 1000
_STATS_EVERY = 5.0
#: While messages are held, the loop wakes this often to retry them: libzmq does not
#: say when one connection's queue has room again.
_RETRY_MS = 2
#: Input is not read while the bytes held for slow readers pass this share of their
#: total budget (`BrokerConfig.max_held_total`).
_PAUSE_AT_HELD = 0.5
#: Give freed memory back to the system once this much held data has been dropped.
_TRIM_AFTER_BYTES = 4 * 2**20


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
    _trimmed_at: int = 0  # `core.held.dropped_bytes` when memory was last given back
    #: Messages read and not handled yet: (frames, CURVE key, bytes), oldest first.
    _inbox: deque[tuple[list[bytes], bytes | None, int]] = field(default_factory=deque)
    _inbox_bytes: int = 0

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
        # Few messages in libzmq, which counts only messages; the rest are held by the
        # core, which counts bytes (broker.held, PROTOCOL.md §3.9).
        sock.setsockopt(zmq.SNDHWM, ROUTER_SEND_HWM)
        sock.setsockopt(zmq.RCVHWM, ROUTER_RECV_HWM)
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
        next_stats = time.monotonic() + _STATS_EVERY
        last = _format(self.core)
        core = self.core
        held = core.held
        pause_at = core.config.max_held_total * _PAUSE_AT_HELD
        try:
            while not self.stop.is_set():
                # Asleep until the next deadline: an idle room wakes for what is due
                # (`broker.timers`), not on a fixed beat.
                due = core.next_deadline()
                wait = _IDLE_MS if due is None else (due - time.monotonic()) * 1000
                wait = max(0, min(_IDLE_MS, math.ceil(wait)))
                if held.total > pause_at:
                    # Back-pressure: read no more input until the readers have taken some
                    # of what is held. A storm of joins then goes as fast as the members
                    # read it, instead of piling up until the furthest behind is evicted.
                    # Unread input may hold heartbeats: nobody is evicted for silence.
                    time.sleep(_RETRY_MS / 1000)
                    waiting = True
                elif self._inbox or poller.poll(min(wait, _RETRY_MS) if held else wait):
                    waiting = self._drain(sock)
                else:
                    waiting = False
                now = time.monotonic()
                if held:
                    self._retry_held(sock, now)
                self._send(sock, core.tick(now, input_waiting=waiting), now)
                if held.dropped_bytes - self._trimmed_at >= _TRIM_AFTER_BYTES:
                    self._give_back_memory()
                if now >= next_stats:
                    next_stats = now + _STATS_EVERY
                    current = _format(self.core)
                    if current != last:  # an idle broker logs nothing, and has nothing to give back
                        log.info("stats %s", current)
                        last = current
                        self._give_back_memory()
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

    def _drain(self, sock: zmq.Socket[bytes]) -> bool:
        """Read what is waiting into the inbox, then handle it for a batch's time.

        Every message read counts as a sign of life when it is read (silence judged on
        arrival), even if it is handled a few batches later. True if input is left:
        in the inbox, or unread because the inbox is full.
        """
        curve = self.curve_secret is not None
        key: bytes | None = None
        core, inbox = self.core, self._inbox
        arrived = core.arrived
        full = False
        while True:
            if len(inbox) >= _INBOX_MESSAGES or self._inbox_bytes >= _INBOX_BYTES:
                full = True
                break
            try:
                if curve:
                    frames, key = recv_bounded_with_user(sock)
                else:  # the hot path stays free of metadata look-ups
                    frames = recv_bounded(sock)
            except zmq.Again:
                break
            arrived(frames[0], time.monotonic(), key)
            size = sum(map(len, frames))
            self._inbox_bytes += size
            inbox.append((frames, key, size))
        handle = core.handle
        stop = time.monotonic() + _BATCH_S
        while inbox:
            frames, key, size = inbox.popleft()
            self._inbox_bytes -= size
            now = time.monotonic()
            self._send(sock, handle(frames[0], frames[1:], now, key), now)
            if now > stop:
                break
        return full or bool(inbox)

    def _send(self, sock: zmq.Socket[bytes], outgoing: Iterable[Outgoing], now: float) -> None:
        core = self.core
        held = core.held.by_conn
        # A deque: a message to a room of 256 is 257 sends, and list.pop(0) is O(n).
        pending = deque(outgoing)
        while pending:
            out = pending.popleft()
            if held and out.conn in held:  # behind what already waits: order per peer
                pending += core.hold(out, now)
                continue
            try:
                send_nowait(sock, out.frames, out.conn)
            except zmq.Again:
                pending += core.hold(out, now)
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EHOSTUNREACH:
                    raise
                pending += core.unroutable(out.conn, now, out)

    def _retry_held(self, sock: zmq.Socket[bytes], now: float) -> None:
        """Send what is held, oldest first, until each connection's queue is full again."""
        core = self.core
        more: list[Outgoing] = []
        for conn in core.held:
            while (out := core.held.head(conn)) is not None:
                try:
                    send_nowait(sock, out.frames, conn)
                except zmq.Again:
                    break
                except zmq.ZMQError as exc:
                    if exc.errno != zmq.EHOSTUNREACH:
                        raise
                    more += core.unroutable(conn, now)
                    break
                core.sent_held(conn, now)
        self._send(sock, more, now)

    def _give_back_memory(self) -> None:
        """Return the pages malloc holds free to the system (about 1 ms; glibc only)."""
        self._trimmed_at = self.core.held.dropped_bytes
        if _malloc_trim is not None:
            _malloc_trim(0)


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, where the C library has it (not musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _find_malloc_trim()


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
        f"refused={c.refused} evicted={c.evicted} foreign_key={c.foreign_key} "
        f"held={c.held} held_bytes={core.held.total}"
    )

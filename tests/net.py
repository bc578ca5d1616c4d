"""Helpers for tests over real sockets: an in-process broker thread and event waits.

Every wait is bounded: a poll with a timeout, never a bare sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import zmq

from tests.support.waits import WAIT
from zchat.broker.config import BrokerConfig
from zchat.broker.core import Broker
from zchat.broker.server import Server
from zchat.envelope import Identity
from zchat.peer import events as ev
from zchat.peer.client import Client
from zchat.peer.config import PeerConfig
from zchat.peer.pinfile import PinFile

FAST = BrokerConfig(
    heartbeat_interval=0.1, heartbeat_timeout=0.6, handshake_timeout=0.6, backlog_timeout=0.6
)


@contextlib.contextmanager
def zmq_context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    """A ZeroMQ context of the test's own, destroyed after: nothing it holds outlives
    the test, and nothing of other tests' can stall it."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        yield ctx
    finally:
        ctx.destroy(linger=0)


@contextlib.contextmanager
def broker_thread(
    config: BrokerConfig = FAST,
    endpoint: str = "tcp://127.0.0.1:*",
    curve_secret: bytes | None = None,
    core: Broker | None = None,
) -> Iterator[Server]:
    """A real broker in a thread; `core` replaces its sans-I/O core (a lying one, say)."""
    server = Server([endpoint], config, curve_secret=curve_secret)
    if core is not None:
        server.core = core
    server.open()
    thread = threading.Thread(target=server.run, name="broker", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        thread.join(timeout=5)
        assert not thread.is_alive(), "the broker thread did not stop"


def make_client(
    nick: str,
    identity: Identity,
    endpoint: str,
    config: PeerConfig | None = None,
    pins: PinFile | None = None,
) -> Client:
    # An open room unless the test says otherwise: admission has tests of its own.
    config = config or PeerConfig(admit_all=True)
    return Client.create(nick, identity, endpoint, pin_file=pins, config=config)


async def joined(
    nick: str, identity: Identity, endpoint: str, pins: PinFile | None = None
) -> Client:
    """A client that has finished its handshake (and fails the test if refused)."""
    client = make_client(nick, identity, endpoint, pins=pins)
    await ready(client)
    return client


async def wait_for(
    client: Client, match: Callable[[ev.Event], bool], timeout: float = WAIT
) -> list[ev.Event]:
    """Collect events until one matches; return them all (the match last)."""
    seen: list[ev.Event] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching event within {timeout} s; saw {seen}")
        try:
            event = await client.next_event(remaining)
        except asyncio.TimeoutError:  # not TimeoutError before Python 3.11
            continue
        seen.append(event)
        if match(event):
            return seen


async def ready(client: Client, timeout: float = WAIT) -> ev.Ready:
    client.start()
    events = await wait_for(client, lambda e: isinstance(e, ev.Ready | ev.Refused), timeout)
    last = events[-1]
    assert isinstance(last, ev.Ready), f"handshake failed: {last}"
    return last


async def sees(client: Client, nick: str, timeout: float = WAIT) -> None:
    """Wait until `client` has heard `nick` join: only then will it write to them."""
    await wait_for(client, lambda e: isinstance(e, ev.Joined) and e.nick == nick, timeout)


async def texts(client: Client, count: int, timeout: float = WAIT) -> list[str]:
    """The next `count` message texts `client` receives."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"got {len(got)} of {count} messages: {got[-5:]}")
        try:
            event = await client.next_event(remaining)
        except asyncio.TimeoutError:  # not TimeoutError before Python 3.11
            continue
        if isinstance(event, ev.MessageReceived):
            got.append(event.text)
    return got


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]

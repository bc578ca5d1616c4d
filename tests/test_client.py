"""`peer.client.Client`: what its public methods promise, over a real broker on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import zmq

from tests.net import broker_thread, make_client, ready, sees, texts, wait_for
from tests.procs import running, start_peer
from tests.support.room import ROOM_ID, seeded
from zchat.broker.config import BrokerConfig
from zchat.broker.core import Broker, Outgoing
from zchat.envelope import Envelope, Identity, seal
from zchat.envelope.limits import MAX_FRAME_BYTES
from zchat.peer import events as ev
from zchat.peer.client import Client
from zchat.wire import protocol as p


async def pair(endpoint: str, alice: Identity, bob: Identity) -> tuple[Client, Client]:
    """alice and bob in the room, alice having heard bob join (she writes to him)."""
    a, b = make_client("alice", alice, endpoint), make_client("bob", bob, endpoint)
    await ready(a)
    await ready(b)
    await sees(a, "bob")
    return a, b


def _sealed_for_bob(sender: Client, identity: Identity, text: str) -> Envelope:
    bob = sender.core.members["bob"]
    assert bob.session is not None  # sealed to bob's session key, as the core would
    # Clear of the numbers the core will use: the recipient accepts each once.
    seq = sender.core.seq + 1000
    return seal(
        text.encode(),
        sender=identity,
        sender_nick=sender.core.nick,
        room_id=ROOM_ID,
        recipients=[bob.session.recipient(bob.nick)],
        seq=seq,
    )


def test_an_envelope_sealed_beforehand_is_delivered_and_not_tracked_by_the_core(
    alice: Identity, bob: Identity
) -> None:
    async def main() -> None:
        with broker_thread() as server:
            a, b = await pair(server.bound[0], alice, bob)
            envelope = _sealed_for_bob(a, alice, "sealed beforehand")
            a.send_envelope(envelope)
            assert await texts(b, 1) == ["sealed beforehand"]
            # The broker acknowledges in order: once our own message is acknowledged,
            # the envelope's acknowledgement came before it, and made no event.
            own = a.send_text("sent by the core")
            seen = await wait_for(a, lambda e: isinstance(e, ev.Acked))
            acked = [e.msg_id for e in seen if isinstance(e, ev.Acked)]
            assert acked == [own]
            assert envelope.header.msg_id != own
            assert await texts(b, 1) == ["sent by the core"]
            assert await a.close() == []
            await b.close()

    asyncio.run(main())


def test_an_envelope_queued_without_a_flush_leaves_before_the_next_send(
    alice: Identity, bob: Identity
) -> None:
    async def main() -> None:
        with broker_thread() as server:
            a, b = await pair(server.bound[0], alice, bob)
            a.send_envelope(_sealed_for_bob(a, alice, "queued first"), flush=False)
            a.send_text("sent second")
            assert await texts(b, 2) == ["queued first", "sent second"]
            await a.close()
            await b.close()

    asyncio.run(main())


# --- a frame over the limit ---------------------------------------------------------


@contextlib.contextmanager
def oversized_router() -> Iterator[str]:
    """A raw ROUTER on loopback that lets peers in (the real broker core answers them,
    with a 30 s heartbeat timeout) and then, once, sends the first of them a frame one
    byte over the limit. Yields its endpoint."""
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    core = Broker(BrokerConfig(heartbeat_interval=1.0, heartbeat_timeout=30.0), random=seeded(3))
    stop = threading.Event()

    def serve() -> None:
        sent_junk = False
        while not stop.is_set():
            out: list[Outgoing] = []
            if router.poll(10):
                conn, *frames = router.recv_multipart()
                out = core.handle(conn, frames, time.monotonic())
            for o in [*out, *core.tick(time.monotonic())]:
                router.send_multipart([o.conn, *o.frames])
                if not sent_junk and o.frames[1:2] == [bytes([p.Command.SNAPSHOT])]:
                    router.send_multipart([o.conn, b"x" * (MAX_FRAME_BYTES + 1)])
                    sent_junk = True
        router.close(linger=0)

    thread = threading.Thread(target=serve, name="oversized-router", daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{port}"
    finally:
        stop.set()
        thread.join(timeout=5)
        context.term()


def test_a_frame_over_the_limit_is_noticed_at_once_said_and_the_peer_reconnects(
    alice: Identity,
) -> None:
    """libzmq drops a connection that carries a frame over MAXMSGSIZE, and does not
    reconnect it: the peer must not wait out the heartbeat timeout (30 s here)."""

    async def main() -> None:
        with oversized_router() as endpoint:
            client = make_client("alice", alice, endpoint)
            await ready(client)
            seen = await wait_for(client, lambda e: isinstance(e, ev.Disconnected), timeout=3)
            (lost,) = [e for e in seen if isinstance(e, ev.Disconnected)]
            assert "64 KiB" in lost.reason
            back = await wait_for(client, lambda e: isinstance(e, ev.Ready), timeout=5)
            assert back[-1] == ev.Ready("alice", (), reconnected=True)
            await client.close()

    asyncio.run(main())


# --- the loop's order: read before judging, and slices of input -----------------------


def test_a_stalled_client_reads_what_is_waiting_before_it_judges_the_broker(
    tmp_path: Path, bob: Identity
) -> None:
    """bob's whole loop stalls past the heartbeat timeout (0.6 s here) while the broker
    hands him alice's message and acknowledges it to her as delivered. When the stall
    ends and the ticker's turn comes first, bob reads the message before he judges the
    broker (a new socket would throw it away, and alice, who never lost the broker,
    would never resend it)."""

    async def main() -> None:
        with broker_thread() as server:
            endpoint = server.bound[0]
            b = make_client("bob", bob, endpoint)
            await ready(b)
            alice = start_peer("alice", endpoint, tmp_path / "alice")
            with running(alice):
                await wait_for(b, lambda e: isinstance(e, ev.Joined), timeout=15)
                alice.wait_event("ready")
                # From here bob's loop stalls: these waits block it, and so does the sleep.
                alice.send("sent while bob stalls")
                assert alice.wait_event("ack")["delivered"] == ["bob"]
                time.sleep(1.0)
                b._tick()  # the ticker's turn before the socket's (a race the loop may lose)
                assert await texts(b, 1, timeout=5) == ["sent while bob stalls"]
            await b.close()

    asyncio.run(main())


def test_a_burst_of_input_is_read_in_slices_with_the_ticker_running_between(
    alice: Identity, bob: Identity
) -> None:
    """Each delivery costs an RSA decryption (made slower here): a burst of hundreds is
    longer than the broker's timeout, and the ticker, which sends our heartbeats, must
    still run every so often while it is read."""
    burst = 300

    async def main() -> None:
        with broker_thread() as server:
            a, b = await pair(server.bound[0], alice, bob)
            receive, tick = b.core.receive_many, b.core.tick
            ticks: list[float] = []

            def slow_receive(batch: Iterable[list[bytes]], now: float) -> None:
                batch = list(batch)
                for frames in batch:
                    if frames[1] == bytes([p.Command.DELIVER]):
                        time.sleep(0.002)
                receive(batch, now)

            def counted_tick(now: float) -> None:
                ticks.append(time.monotonic())
                tick(now)

            b.core.receive_many = slow_receive  # type: ignore[method-assign]
            b.core.tick = counted_tick  # type: ignore[method-assign]
            for i in range(burst):  # sealed in a row: they all wait for bob at once
                a.send_text(f"m{i}", to=["bob"])
            began = time.monotonic()
            got = await texts(b, burst, timeout=30)
            ended = time.monotonic()
            assert got == [f"m{i}" for i in range(burst)]
            during = [began, *(t for t in ticks if began <= t <= ended), ended]
            gaps = [later - earlier for earlier, later in itertools.pairwise(during)]
            assert ended - began > 0.6  # longer than the broker's timeout
            assert max(gaps) < 0.3, f"the ticker waited {max(gaps):.2f} s"
            await a.close()
            await b.close()

    asyncio.run(main())

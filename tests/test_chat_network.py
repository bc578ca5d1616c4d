"""The broker and peers over real ZeroMQ sockets on loopback, in one process."""

from __future__ import annotations

import asyncio

import pytest
import zmq

from tests.net import broker_thread, joined, make_client, ready, sees, texts, wait_for
from tests.support.keys import KeyPool
from zchat.envelope import Identity
from zchat.peer import events as ev
from zchat.wire import protocol as p


def test_three_peers_chat_over_tcp(alice: Identity, bob: Identity, carol: Identity) -> None:
    async def main() -> None:
        with broker_thread() as server:
            ep = server.bound[0]
            a, b, c = (
                make_client(n, i, ep) for n, i in (("alice", alice), ("bob", bob), ("carol", carol))
            )
            await ready(a)
            await ready(b)
            await ready(c)
            await sees(a, "carol")  # the room's joins reach alice in order: bob, then carol
            a.send_text("hi from alice")
            assert await texts(b, 1) == ["hi from alice"]
            assert await texts(c, 1) == ["hi from alice"]
            acked = await wait_for(a, lambda e: isinstance(e, ev.Acked))
            assert sorted(acked[-1].delivered) == ["bob", "carol"]  # type: ignore[union-attr]
            c.send_text("psst", to=["bob"])
            assert await texts(b, 1) == ["psst"]
            for client in (a, b, c):
                assert await client.close() == []

    asyncio.run(main())


@pytest.mark.slow
def test_a_burst_arrives_complete_and_in_order(keys: KeyPool) -> None:
    async def main() -> None:
        with broker_thread() as server:
            ep = server.bound[0]
            sender = make_client("sender", keys.get(0), ep)
            receivers = [make_client(f"r{i}", keys.get(i + 1), ep) for i in range(3)]
            for client in (sender, *receivers):
                await ready(client)
            await sees(sender, "r2")
            for i in range(300):
                sender.send_text(f"m{i}")
            for r in receivers:
                assert await texts(r, 300, timeout=20) == [f"m{i}" for i in range(300)]
            assert await sender.close() == []
            for r in receivers:  # closed, or their sockets outlive the test
                await r.close()

    asyncio.run(main())


def test_leaving_announces_and_frees_the_nickname(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    async def main() -> None:
        with broker_thread() as server:
            ep = server.bound[0]
            a, b = await joined("alice", alice, ep), await joined("bob", bob, ep)
            await sees(a, "bob")
            await b.close()
            left = await wait_for(a, lambda e: isinstance(e, ev.Left))
            assert left[-1] == ev.Left("bob", "bye")
            again = await joined("bob", carol, ep)  # a different key may take the name now
            await again.close()
            await a.close()

    asyncio.run(main())


def test_malformed_frames_from_a_raw_socket_leave_the_broker_serving(
    alice: Identity, bob: Identity
) -> None:
    async def main() -> None:
        with broker_thread() as server:
            ep = server.bound[0]
            a, b = await joined("alice", alice, ep), await joined("bob", bob, ep)
            await sees(a, "bob")
            ctx = zmq.Context.instance()
            raw = ctx.socket(zmq.DEALER)
            raw.setsockopt(zmq.LINGER, 0)
            raw.connect(ep)
            junk = [
                [b"garbage"],
                [p.PROTOCOL_TAG, b"\x03", b"not", b"an", b"envelope"],
                [p.PROTOCOL_TAG, b"\xff"],
                [b"x"] * 5000,
                [p.PROTOCOL_TAG, bytes([p.Command.PROOF]), b"sig"],
            ]
            for frames in junk:
                raw.send_multipart(frames)
            raw.send_multipart(p.encode(p.Heartbeat()))
            assert raw.poll(2000), "no HELLO_FIRST for a heartbeat without a session"
            reply = p.parse_from_broker(raw.recv_multipart())
            assert reply == p.Error(p.ErrorCode.HELLO_FIRST, "say hello first")
            raw.close()
            a.send_text("still here")
            assert await texts(b, 1) == ["still here"]
            assert server.core.counters.errors >= len(junk)
            await a.close()
            await b.close()

    asyncio.run(main())


def test_a_peer_works_over_inproc(alice: Identity, bob: Identity) -> None:
    async def main() -> None:
        with broker_thread(endpoint="inproc://zchat-test") as server:
            ep = server.bound[0]
            a, b = await joined("alice", alice, ep), await joined("bob", bob, ep)
            await sees(a, "bob")
            b.send_text("over inproc")
            assert await texts(a, 1) == ["over inproc"]
            await a.close()
            await b.close()

    asyncio.run(main())


def test_a_restarted_broker_gets_everyone_back_and_nothing_is_lost(
    alice: Identity, bob: Identity
) -> None:
    async def main() -> None:
        with broker_thread() as first:
            ep = first.bound[0]
            a, b = await joined("alice", alice, ep), await joined("bob", bob, ep)
            await sees(a, "bob")
            a.send_text("before")
            assert await texts(b, 1) == ["before"]
        # the broker is gone; alice keeps typing
        a.send_text("while down 1")
        a.send_text("while down 2")
        await wait_for(a, lambda e: isinstance(e, ev.Disconnected), timeout=5)
        with broker_thread(endpoint=ep):
            await wait_for(a, lambda e: isinstance(e, ev.Ready) and e.reconnected, timeout=5)
            assert await texts(b, 2, timeout=10) == ["while down 1", "while down 2"]
            assert await a.close() == []
            await b.close()

    asyncio.run(main())

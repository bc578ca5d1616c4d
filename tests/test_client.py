"""`peer.client.Client`: what its public methods promise, over a real broker on loopback."""

from __future__ import annotations

import asyncio

from tests.net import broker_thread, make_client, ready, texts, wait_for
from zchat.envelope import Envelope, Identity, seal
from zchat.peer import events as ev
from zchat.peer.client import Client


def _sealed_for_bob(sender: Client, identity: Identity, text: str) -> Envelope:
    bob = sender.core.members["bob"]
    assert bob.session is not None  # sealed to bob's session key, as the core would
    # Clear of the numbers the core will use: the recipient accepts each once.
    seq = sender.core.seq + 1000
    return seal(
        text.encode(),
        sender=identity,
        sender_nick=sender.core.nick,
        recipients=[bob.session.recipient(bob.nick)],
        seq=seq,
    )


def test_an_envelope_sealed_beforehand_is_delivered_and_not_tracked_by_the_core(
    alice: Identity, bob: Identity
) -> None:
    async def main() -> None:
        with broker_thread() as server:
            a, b = (
                make_client("alice", alice, server.bound[0]),
                make_client("bob", bob, server.bound[0]),
            )
            await ready(a)
            await ready(b)
            await wait_for(a, lambda e: isinstance(e, ev.Joined) and e.nick == "bob")
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
            a, b = (
                make_client("alice", alice, server.bound[0]),
                make_client("bob", bob, server.bound[0]),
            )
            await ready(a)
            await ready(b)
            await wait_for(a, lambda e: isinstance(e, ev.Joined) and e.nick == "bob")
            a.send_envelope(_sealed_for_bob(a, alice, "queued first"), flush=False)
            a.send_text("sent second")
            assert await texts(b, 2) == ["queued first", "sent second"]
            await a.close()
            await b.close()

    asyncio.run(main())

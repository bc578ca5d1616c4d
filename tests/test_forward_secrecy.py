"""Forward secrecy: what was recorded stays shut once the session keys it was sealed to
are gone, whoever steals an identity key later (docs/SECURITY.md, "Forward secrecy").

The rooms here record everything a broker (or, without CURVE, the network) sees, let
the session keys rotate past their grace period, and then play the attacker.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from tests.net import joined, make_client, ready, sees, texts, wait_for
from tests.support.keys import KeyPool
from tests.support.lying_broker import injected, lying_broker, record_deliveries, watch_crashes
from tests.support.room import FAST_CORE, MemoryRoom, seeded
from zchat.broker.core import Broker
from zchat.envelope import (
    DecryptionFailed,
    Delivery,
    Envelope,
    Identity,
    SessionCertificate,
    SessionKey,
    UnknownSessionKey,
    decrypt_verified,
    generate_session_key,
)
from zchat.envelope import _primitives as prim
from zchat.envelope.limits import KEY_ID_BYTES
from zchat.peer import events as ev
from zchat.peer.config import PeerConfig
from zchat.wire import protocol as p

#: Short timers, so that a room on a moved clock rotates in a few seconds.
ROTATE = 2.0
GRACE = 1.0
ROTATING = PeerConfig(rotate_every=ROTATE, key_grace=GRACE, admit_all=True)

SEND = bytes([p.Command.SEND])
DELIVER = bytes([p.Command.DELIVER])
ACK = bytes([p.Command.ACK])


class FreshKeys:
    """Session keys never seen before, each watched: a test can tell when the last
    reference to one is gone."""

    def __init__(self) -> None:
        self.watched: list[weakref.ref[SessionKey]] = []

    def __call__(self) -> SessionKey:
        key = generate_session_key()
        self.watched.append(weakref.ref(key))
        return key

    def alive(self) -> int:
        gc.collect()
        return sum(ref() is not None for ref in self.watched)


class Tape:
    """Everything the peers sent the broker: what a broker, or a network without
    CURVE, can keep forever."""

    def __init__(self) -> None:
        self.frames: list[list[bytes]] = []
        self.on = True

    def __call__(self, conn: bytes, frames: list[bytes]) -> bool:
        if self.on:
            self.frames.append(frames)
        return False  # nothing is lost: it is only copied

    def envelopes(self) -> list[Envelope]:
        sends = [p.parse_from_peer(f) for f in self.frames if f[1] == SEND]
        return [s.envelope for s in sends if isinstance(s, p.Send)]

    def session_fingerprints(self) -> set[bytes]:
        """Every session key announced on the tape, from the cleartext certificates."""
        fps = set()
        for frames in self.frames:
            msg = p.parse_from_peer(frames)
            if isinstance(msg, p.Hello | p.Rekey):
                fps.add(SessionCertificate.parse(msg.certificate).session_fingerprint)
        return fps


def texts_of(room: MemoryRoom, conn: bytes) -> list[str]:
    return [e.text for e in room.of_type(conn, ev.MessageReceived)]


def deliveries(room: MemoryRoom, conn: bytes) -> list[Delivery]:
    parsed = [p.parse_from_broker(f) for f in room.wire[conn] if f[1] == DELIVER]
    return [d.delivery for d in parsed if isinstance(d, p.Deliver)]


# --- the claim --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_stolen_identity_key_opens_nothing_recorded_once_the_session_keys_rotated(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    keys = FreshKeys()
    tape = Tape()
    room = MemoryRoom(session_keys=keys)
    room.lose = tape
    people = {"alice": alice, "bob": bob, "carol": carol}
    conns = {nick: room.join(nick, identity, config=ROTATING) for nick, identity in people.items()}
    for turn in range(2):  # two generations of session keys on the tape
        for nick, conn in conns.items():
            room.send(conn, f"{nick}'s secret {turn}")
            other = next(n for n in conns if n != nick)
            room.send(conn, f"{nick}'s secret {turn} for {other}", to=[other])
        room.pump()
        room.advance(ROTATE + 0.1)
    tape.on = False
    shown = sum(len(texts_of(room, conn)) for conn in conns.values())
    assert shown == 2 * (3 * 2 + 3)  # two turns of three room and three direct messages
    recorded = tape.envelopes()
    captured = [(nick, d) for nick, conn in conns.items() for d in deliveries(room, conn)]
    assert len(recorded) == 12
    assert len(captured) == 18
    # While the keys are held, the recording opens: the test could see a failure.
    nick, sample = captured[-1]
    assert decrypt_verified(sample, me=nick, keys=room.peers[conns[nick]].session_keys.held())

    room.advance(ROTATE + GRACE + 0.5)  # one more rotation, and every grace runs out

    # Every session key the recording was sealed to is gone: no ring lists it, and
    # nothing anywhere holds a reference to it any more.
    announced = tape.session_fingerprints()
    assert len(announced) >= 6
    wrapped_to = {d.leaf.key_id for _, d in captured}
    for conn in conns.values():
        held = room.peers[conn].session_keys.fingerprints()
        assert not {fp[:KEY_ID_BYTES] for fp in held} & wrapped_to
        assert not set(held) & announced
    assert keys.alive() == len(conns)  # only the current keys, made after the recording

    # The attacker now holds every identity key, and every session key the peers
    # hold today (the machines were seized): nothing recorded opens.
    stolen = [
        *people.values(),
        *(k for c in conns.values() for k in room.peers[c].session_keys.held()),
    ]
    for nick, delivery in captured:
        with pytest.raises(UnknownSessionKey):
            decrypt_verified(delivery, me=nick, keys=stolen)
    # Nor by trying every stolen private key against every wrapped key, under every
    # label the recording could have used.
    fingerprints = announced | {i.fingerprint for i in people.values()}
    for envelope in recorded:
        header = envelope.header
        for recipient, wrapped in zip(envelope.recipients, envelope.wrapped_keys, strict=True):
            for thief in stolen:
                for fp in fingerprints:
                    with pytest.raises(DecryptionFailed):
                        prim.unwrap(
                            thief.private_key,
                            wrapped,
                            header.msg_id,
                            header.sender_fingerprint,
                            recipient,
                            fp,
                        )


def test_a_message_in_flight_during_a_rotation_still_opens_within_the_grace_period(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob, config=ROTATING)
    # alice seals to bob's key; the broker holds it while bob rotates (a slow queue)
    _, out = room.send_by_hand(a, "sealed before the rotation", to=["bob"])
    held = [o for o in out if o.conn == b]
    room.deliver([o for o in out if o.conn != b])
    room.advance(ROTATE + 0.1)
    assert len(room.peers[b].session_keys.held()) == 2  # the new key and the retired one
    room.deliver(held)
    room.pump()
    assert texts_of(room, b) == ["sealed before the rotation"]
    # alice seals to the new key from now on
    room.send(a, "after the rotation", to=["bob"])
    room.pump()
    new_key = room.peers[b].session_keys.held()[0]
    assert deliveries(room, b)[-1].leaf.key_id == new_key.fingerprint[:KEY_ID_BYTES]
    assert texts_of(room, b)[-1] == "after the rotation"


def test_a_message_that_comes_after_the_grace_period_is_reported_expired_never_shown(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob, config=ROTATING)
    msg_id = room.send(a, "too late", to=["bob"])
    frames = room.peers[a].take_outgoing()
    room.advance(ROTATE + GRACE + 0.5)  # bob's key was replaced, and its grace ran out
    for f in frames:
        room.deliver(room.broker.handle(a, f, room.now))
    room.pump()
    assert texts_of(room, b) == []
    assert room.of_type(b, ev.Expired) == [ev.Expired("alice", msg_id)]
    assert room.of_type(b, ev.Problem) == []


# --- replays after a restart (the hole in SECURITY.md, closed) ----------------------------


def test_a_capture_replayed_after_the_recipient_restarts_is_expired_not_shown(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    msg_id = room.send(a, "once", to=["bob"])
    room.pump()
    assert texts_of(room, b) == ["once"]
    (captured,) = [f for f in room.wire[b] if f[1] == DELIVER]
    seq = deliveries(room, b)[0].header.seq

    del room.peers[b]  # bob's process ends; he starts again, with nothing of the last run
    again = room.join("bob", bob)
    restarted = room.peers[again]
    # Its replay window is empty: only the session key stands in the way now.
    assert restarted.roster.inbox.replay.is_new("alice", alice.fingerprint, seq)
    restarted.receive(captured, room.now)  # the broker plays the recording back
    events = restarted.take_events()
    assert events == [ev.Expired("alice", msg_id)]


def test_a_capture_replayed_to_a_restarted_client_over_tcp_is_not_shown(keys: KeyPool) -> None:
    alice, bob = keys.many(2)

    async def main() -> None:
        crashes = watch_crashes()
        with lying_broker() as (server, core):
            captured = record_deliveries(core, "bob")
            ep = server.bound[0]
            a, b = await joined("alice", alice, ep), await joined("bob", bob, ep)
            await sees(a, "bob")
            a.send_text("once", to=["bob"])
            assert await texts(b, 1) == ["once"]
            await b.close()
            again = make_client("bob", bob, ep)  # a new process: a new session key
            await ready(again)
            core.inject("bob", captured[0])
            await injected(core)
            a.send_text("marker", to=["bob"])
            seen = await wait_for(
                again, lambda e: isinstance(e, ev.MessageReceived) and e.text == "marker"
            )
            assert [e.text for e in seen if isinstance(e, ev.MessageReceived)] == ["marker"]
            assert [e.sender for e in seen if isinstance(e, ev.Expired)] == ["alice"]
            await a.close(max_idle=0.5)
            await again.close(max_idle=0.5)
        assert crashes == []

    asyncio.run(main())


# --- resends: sealed again to the new key, delivered once ----------------------------------


def sends_of(tape: Tape, msg_id: bytes) -> list[Envelope]:
    return [e for e in tape.envelopes() if e.header.msg_id == msg_id]


@pytest.mark.parametrize("lost", ["the send", "the ack"])
def test_a_resend_across_a_rotation_is_sealed_to_the_new_key_and_shown_once(
    lost: str, alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob, config=ROTATING)
    old_key = room.peers[b].session_keys.held()[0]
    if lost == "the send":
        room.lose = lambda conn, frames: conn == a and frames[1] == SEND
    else:
        room.drop = lambda o: o.conn == a and o.frames[1] == ACK
    msg_id = room.send(a, "across the rotation", to=["bob"])
    room.pump()
    room.lose, room.drop = None, None
    assert [e.msg_id for e in room.peers[a].pending_acks()] == [msg_id]
    # bob rotates, and his old key's grace runs out: the old envelope could not open
    room.advance(ROTATE + GRACE + 0.5)
    new_key = room.peers[b].session_keys.held()[0]
    assert room.peers[b].session_keys.held() == (new_key,)
    assert room.peers[a].members["bob"].session is not None
    assert room.peers[a].members["bob"].session.fingerprint == new_key.fingerprint

    tape = Tape()
    room.lose = tape
    # alice must resend: the broker tells her it forgot her (it restarted, say)
    room.peers[a].receive(p.encode(p.Error(p.ErrorCode.HELLO_FIRST, "say hello first")), room.now)
    room.pump()
    (resent,) = sends_of(tape, msg_id)
    assert resent.key_ids == (new_key.fingerprint[:KEY_ID_BYTES],)
    assert resent.key_ids != (old_key.fingerprint[:KEY_ID_BYTES],)
    assert texts_of(room, b) == ["across the rotation"]  # exactly once
    assert room.of_type(b, ev.Expired) == []
    assert room.peers[a].pending_acks() == []


def test_a_resend_across_a_broker_restart_is_sealed_to_the_new_keys_and_shown_once(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom(broker=Broker(FAST_CORE, random=seeded(20)))
    config = PeerConfig(key_grace=GRACE, admit_all=True)
    a = room.join("alice", alice, config=config)
    b = room.join("bob", bob, config=config)
    c = room.join("carol", carol, config=config)
    before = {conn: room.peers[conn].session_keys.held()[0] for conn in (b, c)}
    # The broker queues the deliveries and acknowledges them, then dies before they leave.
    frames, out = room.send_by_hand(a, "queued when the broker died")
    sent = p.parse_from_peer(frames)
    assert isinstance(sent, p.Send)
    room.deliver([o for o in out if o.conn == a])
    room.pump()
    assert room.peers[a].pending_acks() == []
    tape = Tape()
    room.lose = tape
    room.broker = Broker(FAST_CORE, random=seeded(21))
    room.advance(GRACE + 1.5)  # everyone reconnects with a new key; old ones expire
    for conn in (b, c):
        assert texts_of(room, conn) == ["queued when the broker died"]  # exactly once
        now_key = room.peers[conn].session_keys.held()
        assert before[conn] not in now_key  # the old key is gone
        (got,) = deliveries(room, conn)
        assert got.header.msg_id == sent.envelope.header.msg_id
        assert got.header.seq == sent.envelope.header.seq  # the same message, sealed again
        assert got.leaf.nick == room.peers[conn].nick
        assert got.leaf.key_id == now_key[0].fingerprint[:KEY_ID_BYTES]
    assert room.of_type(b, ev.Expired) == room.of_type(c, ev.Expired) == []

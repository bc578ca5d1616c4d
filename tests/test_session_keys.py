"""Session keys: our ring, the certificates we accept from others, and their rotation.

`tests/test_forward_secrecy.py` shows what this buys; this file checks the rules one
by one: which certificates are never sealed to, what the broker refuses to relay, and
how our own keys come and go.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time

import pytest

from tests.net import broker_thread, make_client, ready, sees, texts
from tests.support.keys import KeyPool
from tests.support.room import (
    CLOSED,
    ROOM_ID,
    WALL_AT_ZERO,
    MemoryRoom,
    certificate,
    hello,
    pooled_session_keys,
    ready_core,
    seeded,
)
from tests.test_broker_core import held_deliveries
from zchat.broker.core import Broker
from zchat.envelope import (
    Envelope,
    Identity,
    SessionKey,
    certify,
    format_fingerprint,
    generate_session_key,
    room_id,
)
from zchat.envelope.limits import CLOCK_SKEW_MS, KEY_ID_BYTES, MAX_CERT_LIFETIME_MS
from zchat.envelope.proof import sign_proof
from zchat.peer import directory as core_module
from zchat.peer import events as ev
from zchat.peer.client import Client
from zchat.peer.config import PeerConfig
from zchat.peer.core import PeerCore, Phase
from zchat.peer.errors import NoSessionKey, UntrustedRecipient
from zchat.peer.pins import Admission, How, Pin, Pins
from zchat.peer.session_keys import (
    MAX_RETIRED_KEYS,
    MIN_LIFETIME_MS,
    KeyRing,
    certificate_lifetime_ms,
)
from zchat.wire import protocol as p

HOUR_MS = 3_600_000
SEND = bytes([p.Command.SEND])


def session_keys(n: int) -> list[SessionKey]:
    make = pooled_session_keys()
    return [make() for _ in range(n)]


# --- our ring ----------------------------------------------------------------------------


def test_a_replaced_key_is_kept_for_the_grace_period_then_dropped(alice: Identity) -> None:
    first, second = session_keys(2)
    ring = KeyRing(grace=10.0)
    cert = certify(alice, "alice", first, room_id=ROOM_ID, created_ms=0, lifetime_ms=HOUR_MS)
    ring.install(first, cert, now=100.0)
    ring.install(second, cert, now=200.0)
    assert ring.held() == (second, first)  # the current one first
    ring.expire(209.9)
    assert ring.held() == (second, first)
    ring.expire(210.0)
    assert ring.held() == (second,)
    assert ring.fingerprints() == (second.fingerprint,)


def test_the_ring_keeps_only_so_many_replaced_keys(alice: Identity) -> None:
    made = session_keys(MAX_RETIRED_KEYS + 3)
    ring = KeyRing(grace=1000.0)
    cert = certify(alice, "alice", made[0], room_id=ROOM_ID, created_ms=0, lifetime_ms=HOUR_MS)
    for i, key in enumerate(made):
        ring.install(key, cert, now=float(i))
    assert len(ring.held()) == 1 + MAX_RETIRED_KEYS
    assert ring.held()[0] is made[-1]
    assert made[0] not in ring.held()


def test_certificates_live_two_rotation_periods_within_bounds() -> None:
    assert certificate_lifetime_ms(3600.0) == 2 * HOUR_MS
    assert certificate_lifetime_ms(0.01) == MIN_LIFETIME_MS
    assert certificate_lifetime_ms(30 * 24 * 3600.0) == MAX_CERT_LIFETIME_MS


# --- the peer: its own keys ------------------------------------------------------------


def test_hello_waits_for_a_session_key_and_carries_its_certificate(alice: Identity) -> None:
    core = PeerCore("alice", alice, seq=1, random=seeded(1))
    core.start(0.0)
    assert core.wants_session_key
    assert core.take_outgoing() == []  # nothing without a session key
    (key,) = session_keys(1)
    core.add_session_key(key, 0.5, wall=WALL_AT_ZERO)
    assert not core.wants_session_key
    (frames,) = core.take_outgoing()
    msg = p.parse_from_peer(frames)
    assert isinstance(msg, p.Hello)
    assert msg.public_der == alice.public_der
    cert = core.session_keys.certificate
    assert cert is not None
    assert msg.certificate == cert.encode()
    assert cert.session_fingerprint == key.fingerprint
    assert cert.created_ms == int(WALL_AT_ZERO * 1000)
    assert cert.expires_ms - cert.created_ms == certificate_lifetime_ms(core.config.rotate_every)


def test_every_connection_and_every_period_makes_a_new_key(alice: Identity, bob: Identity) -> None:
    room = MemoryRoom()
    config = PeerConfig(rotate_every=5.0, key_grace=1.0)
    a = room.join("alice", alice, config=config)
    b = room.join("bob", bob)
    first = room.peers[a].session_keys.held()[0]
    room.advance(4.8)
    assert room.peers[a].session_keys.held() == (first,)
    room.advance(0.4)  # the period is up: a REKEY, and bob seals to the new key
    second = room.peers[a].session_keys.held()[0]
    assert second is not first
    assert [f for f in room.wire[b] if f[1] == bytes([p.Command.REKEYED])]
    session = room.peers[b].members["alice"].session
    assert session is not None
    assert session.fingerprint == second.fingerprint
    # a new connection (the broker forgot us): a new key again, told to bob
    room.peers[a].receive(p.encode(p.Error(p.ErrorCode.HELLO_FIRST, "hello?")), room.now)
    room.pump()
    third = room.peers[a].session_keys.held()[0]
    assert third not in (first, second)
    session = room.peers[b].members["alice"].session
    assert session is not None
    assert session.fingerprint == third.fingerprint
    assert room.of_type(b, ev.Joined)[1:] == []  # a new key is no new member


# --- others' keys: never sealed to unless certified by the pinned identity -----------------


def room_of_two(alice: Identity, bob: Identity) -> tuple[MemoryRoom, bytes, bytes]:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    room.take(a)
    return room, a, b


def wrapped_to(room: MemoryRoom, a: bytes, text: str, to: list[str] | None = None) -> Envelope:
    """What alice seals for `text`, as the broker receives it."""
    frames, _ = room.send_by_hand(a, text, to)
    msg = p.parse_from_peer(frames)
    assert isinstance(msg, p.Send)
    return msg.envelope


def bad_certificates(owner: Identity, nick: str, other: Identity, wall: float) -> dict[str, bytes]:
    """Certificates a hostile broker could announce as `nick`'s session key, at `wall`."""
    (key,) = session_keys(1)
    now = int(wall * 1000)
    genuine = certify(owner, nick, key, room_id=ROOM_ID, created_ms=now, lifetime_ms=HOUR_MS)
    signature = bytearray(genuine.signature)
    signature[10] ^= 1
    return {
        "from another identity": certify(
            other, nick, key, room_id=ROOM_ID, created_ms=now, lifetime_ms=HOUR_MS
        ).encode(),
        "forged": dataclasses.replace(genuine, signature=bytes(signature)).encode(),
        "expired": certify(
            owner, nick, key, room_id=ROOM_ID, created_ms=now - 3 * HOUR_MS, lifetime_ms=HOUR_MS
        ).encode(),
        "from the future": certify(
            owner, nick, key, room_id=ROOM_ID, created_ms=now + 3 * HOUR_MS, lifetime_ms=HOUR_MS
        ).encode(),
        "for another nickname": certify(
            owner, "dave", key, room_id=ROOM_ID, created_ms=now, lifetime_ms=HOUR_MS
        ).encode(),
        "older than the one we have": certify(
            owner, nick, key, room_id=ROOM_ID, created_ms=now - 60_000, lifetime_ms=HOUR_MS
        ).encode(),
        # The member's own key for another room it is in (issue 18.4): a message for
        # this room sealed to it would open there.
        "for another room": certify(
            owner, nick, key, room_id=room_id("exec"), created_ms=now, lifetime_ms=HOUR_MS
        ).encode(),
        "junk": b"\x02" + b"junk" * 100,
        "none": b"",
    }


LIES = [
    "from another identity",
    "forged",
    "expired",
    "from the future",
    "for another nickname",
    "older than the one we have",
    "for another room",
    "junk",
    "none",
]


@pytest.mark.parametrize("lie", LIES)
@pytest.mark.parametrize("via", ["rekeyed", "join"])
def test_a_refused_certificate_is_never_sealed_to(
    lie: str, via: str, alice: Identity, bob: Identity, carol: Identity
) -> None:
    room, a, _ = room_of_two(alice, bob)
    core = room.peers[a]
    genuine = core.members["bob"].session
    assert genuine is not None
    raw = bad_certificates(bob, "bob", carol, room.wall)[lie]
    if via == "rekeyed":
        core.receive(p.encode(p.Rekeyed("bob", raw)), room.now)
    else:  # as if bob had come back on a new connection
        core.receive(p.encode(p.Join(p.Member("bob", bob.public_der, raw))), room.now)
    assert [e.code for e in core.take_events() if isinstance(e, ev.Problem)] == ["bad-certificate"]
    # bob keeps the key we had for him; nothing is wrapped to the one announced
    assert core.members["bob"].session == genuine
    for envelope in (wrapped_to(room, a, "room"), wrapped_to(room, a, "direct", ["bob"])):
        assert envelope.key_ids == (genuine.fingerprint[:KEY_ID_BYTES],)


@pytest.mark.parametrize("lie", [lie for lie in LIES if lie != "older than the one we have"])
def test_a_newcomer_without_a_valid_certificate_is_never_sealed_to(
    lie: str, alice: Identity, bob: Identity, carol: Identity
) -> None:
    room, a, _ = room_of_two(alice, bob)
    core = room.peers[a]
    raw = bad_certificates(carol, "carol", bob, room.wall)[lie]
    core.receive(p.encode(p.Join(p.Member("carol", carol.public_der, raw))), room.now)
    events = core.take_events()
    assert [e.nick for e in events if isinstance(e, ev.Joined)] == ["carol"]
    assert [e.code for e in events if isinstance(e, ev.Problem)] == ["bad-certificate"]
    assert core.members["carol"].session is None
    envelope = wrapped_to(room, a, "for the room")
    assert envelope.recipients == ("bob",)  # carol is left out...
    unsealed = [e for e in core.take_events() if isinstance(e, ev.Unsealed)]
    assert unsealed == [ev.Unsealed(envelope.header.msg_id, ("carol",))]  # ...and it says so
    with pytest.raises(NoSessionKey):
        room.send(a, "just for carol", to=["carol"])


def test_a_changed_identity_is_never_sealed_to_even_with_its_own_valid_certificate(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    # A closed room: alice admitted bob's key (an open room accepts a changed key).
    room = MemoryRoom()
    you = Admission(How.YOU, "", 1)
    pins = Pins([Pin("bob", bob.fingerprint, you), Pin("carol", carol.fingerprint, you)])
    a = room.join("alice", alice, pins=pins, config=CLOSED)
    room.join("bob", bob)
    room.take(a)
    core = room.peers[a]
    # the broker announces carol's identity as bob's, with a certificate carol made
    impostor = certificate(carol, "bob", room.wall)
    core.receive(p.encode(p.Join(p.Member("bob", carol.public_der, impostor))), room.now)
    events = core.take_events()
    assert [type(e) for e in events if isinstance(e, ev.KeyChanged | ev.Problem)] == [ev.KeyChanged]
    assert core.members["bob"].session is None
    with pytest.raises(UntrustedRecipient):
        room.send(a, "for bob", to=["bob"])
    room.join("carol", carol)  # someone to send to, so the room message goes out
    envelope = wrapped_to(room, a, "for the room")
    assert "bob" not in envelope.recipients
    # trusting the new key makes its certificate count (checked against the new pin)
    core.trust("bob", format_fingerprint(carol.fingerprint), room.now)
    session = core.members["bob"].session
    assert session is not None
    assert session.certificate.encode() == impostor


def test_a_certificate_that_expires_is_no_longer_sealed_to(alice: Identity, bob: Identity) -> None:
    room, a, _ = room_of_two(alice, bob)
    core = room.peers[a]
    session = core.members["bob"].session
    assert session is not None
    late = session.certificate.expires_ms / 1000 + CLOCK_SKEW_MS / 1000 + 1
    with pytest.raises(NoSessionKey):
        core.send_text("too late", room.now, ["bob"], wall=late)
    with pytest.raises(NoSessionKey):  # nobody left to seal a room message to
        core.send_text("too late", room.now, wall=late)
    core.send_text("in time", room.now, ["bob"], wall=late - 2)


# --- the broker: checks what it relays ---------------------------------------------------


def handshake(broker: Broker, conn: bytes, nick: bytes, who: Identity) -> list[p.BrokerMessage]:
    out = broker.handle(conn, p.encode(hello(nick, who)), 0.0)
    challenge = p.parse_from_broker(out[-1].frames)
    assert isinstance(challenge, p.Challenge)
    proof = sign_proof(who.private_key, challenge.nonce, nick, who.public_der)
    answer = broker.handle(conn, p.encode(p.Proof(proof)), 0.0)
    broker.tick(0.0)  # as the loop does after a batch: the others hear of the newcomer
    return [p.parse_from_broker(o.frames) for o in answer]


@pytest.mark.parametrize(
    "cert",
    [
        "none",
        "junk",
        "another identity's",
        "for another nickname",
        "for another room",
        "for this room on another broker",
    ],
)
def test_the_broker_refuses_a_hello_whose_certificate_is_not_the_peers(
    cert: str, alice: Identity, bob: Identity
) -> None:
    raw = {
        "none": b"",
        "junk": b"\x02junk",
        "another identity's": certificate(bob, "alice", WALL_AT_ZERO),
        "for another nickname": certificate(alice, "bob", WALL_AT_ZERO),
        "for another room": certificate(alice, "alice", WALL_AT_ZERO, room=room_id("exec")),
        "for this room on another broker": certificate(
            alice, "alice", WALL_AT_ZERO, room=room_id("zchat", b"K" * 40)
        ),
    }[cert]
    broker = Broker(random=seeded(0))
    out = broker.handle(b"c1", p.encode(p.Hello(b"alice", alice.public_der, raw, b"zchat")), 0.0)
    reply = p.parse_from_broker(out[-1].frames)
    assert isinstance(reply, p.Refuse)
    assert reply.code is p.RefuseCode.BAD_CERTIFICATE
    assert broker.nicks == []


def test_the_broker_relays_a_genuine_rekey_answers_it_and_keeps_it_for_newcomers(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    broker = Broker(random=seeded(0))
    handshake(broker, b"a", b"alice", alice)
    handshake(broker, b"b", b"bob", bob)
    (other,) = session_keys(1)
    new = certificate(alice, "alice", WALL_AT_ZERO + 60, other)
    out = broker.handle(b"a", p.encode(p.Rekey(new)), 1.0)
    # The rotating peer hears the same REKEYED, naming itself: its positive answer,
    # from which its old key's grace runs (V3 §5).
    assert [(o.conn, p.parse_from_broker(o.frames)) for o in out] == [
        (b"a", p.Rekeyed("alice", new)),
        (b"b", p.Rekeyed("alice", new)),
    ]
    snapshot = handshake(broker, b"c", b"carol", carol)[-1]
    assert isinstance(snapshot, p.Snapshot)
    assert {m.nick: m.certificate for m in snapshot.members}["alice"] == new


@pytest.mark.parametrize(
    "cert",
    [
        "junk",
        "another identity's",
        "for another nickname",
        "for another room",
        "older than the session's",
        "as old as the session's",
    ],
)
def test_the_broker_never_relays_a_rekey_that_is_not_the_sessions(
    cert: str, alice: Identity, bob: Identity
) -> None:
    (other,) = session_keys(1)
    raw = {
        "junk": b"\x02junk",
        "another identity's": certificate(bob, "alice", WALL_AT_ZERO + 60),
        "for another nickname": certificate(alice, "bob", WALL_AT_ZERO + 60),
        "for another room": certificate(alice, "alice", WALL_AT_ZERO + 60, room=room_id("exec")),
        # A rollback: the HELLO's certificate was made at WALL_AT_ZERO.
        "older than the session's": certificate(alice, "alice", WALL_AT_ZERO - 60, other),
        "as old as the session's": certificate(alice, "alice", WALL_AT_ZERO, other),
    }[cert]
    broker = Broker(random=seeded(0))
    handshake(broker, b"a", b"alice", alice)
    handshake(broker, b"b", b"bob", bob)
    out = broker.handle(b"a", p.encode(p.Rekey(raw)), 1.0)
    assert [o.conn for o in out] == [b"a"]  # nothing for bob
    reply = p.parse_from_broker(out[0].frames)
    assert isinstance(reply, p.Error)
    assert reply.code is p.ErrorCode.BAD_CERTIFICATE
    assert broker.counters.errors == 1


def test_a_member_back_on_a_new_connection_is_announced_with_its_new_key(
    alice: Identity, bob: Identity
) -> None:
    broker = Broker(random=seeded(0))
    handshake(broker, b"a1", b"alice", alice)
    handshake(broker, b"b", b"bob", bob)
    out = broker.handle(b"a2", p.encode(hello(b"alice", alice, WALL_AT_ZERO + 5)), 2.0)
    challenge = p.parse_from_broker(out[-1].frames)
    assert isinstance(challenge, p.Challenge)
    proof = sign_proof(alice.private_key, challenge.nonce, b"alice", alice.public_der)
    out = broker.handle(b"a2", p.encode(p.Proof(proof)), 2.0)
    to_bob = [p.parse_from_broker(o.frames) for o in out if o.conn == b"b"]
    assert [type(m) for m in to_bob] == [p.Rekeyed]


def test_a_member_back_on_a_new_connection_gets_what_was_held_for_its_old_one(
    alice: Identity, carol: Identity
) -> None:
    """Found attacking: carol's first process stopped reading and she started another
    (a new connection, her key): the broker corrected what it held for the old one
    (carol absent) and told alice carol's new key in a REKEYED, not a JOIN. alice waited
    for a JOIN that never came, and after the grace period told her user the messages
    never reached carol, who was there all along."""
    room = MemoryRoom()
    a, old = room.join("alice", alice), room.join("carol", carol)
    held = held_deliveries(room, a, old, 2)
    for out in held:
        room.broker.hold(out, room.now)
    del room.peers[old]  # that process is gone
    new = room.join("carol", carol)
    room.advance(2 * PeerConfig().absent_grace)
    assert [e.text for e in room.of_type(new, ev.MessageReceived)] == ["m0", "m1"]
    assert not room.of_type(a, ev.Undelivered)


# --- the client: keys are made off the event loop ----------------------------------------


def test_the_client_makes_session_keys_in_a_worker_thread_and_rotates_on_schedule(
    alice: Identity, bob: Identity
) -> None:
    threads: list[str] = []

    def made_here() -> SessionKey:
        threads.append(threading.current_thread().name)
        return generate_session_key()

    async def main() -> None:
        with broker_thread() as server:
            ep = server.bound[0]
            config = PeerConfig(rotate_every=0.3, key_grace=0.2)
            a = Client.create("alice", alice, ep, config=config, session_keys=made_here)
            b = make_client("bob", bob, ep)
            await ready(a)
            await ready(b)
            await sees(a, "bob")
            deadline = time.monotonic() + 10
            while len(threads) < 3:  # the first key, and two rotations
                assert time.monotonic() < deadline, threads
                await asyncio.sleep(0.05)
            b.send_text("to alice's newest key", to=["alice"])
            assert await texts(a, 1) == ["to alice's newest key"]
            assert a.core.phase is Phase.READY
            assert len(a.core.session_keys.held()) <= 2  # the current key, maybe one in grace
            await a.close()
            await b.close()

    asyncio.run(main())
    assert threading.main_thread().name not in threads


def alice_with_admitted(alice: Identity, *members: tuple[str, Identity, bytes]) -> PeerCore:
    """alice in a closed room with `members` (nick, identity, certificate), all of whom
    she admitted before."""
    pins = Pins(
        [Pin(nick, who.fingerprint, Admission(How.YOU, "alice", 1)) for nick, who, _ in members]
    )
    here = [p.Member(nick, who.public_der, cert) for nick, who, cert in members]
    core = ready_core(
        "alice", alice, here, pins=pins, seed=3, dated=True, session_key=generate_session_key()
    )
    assert all(core.members[nick].session is not None for nick, _, _ in members)
    return core


def alice_with_bob_admitted(alice: Identity, bob: Identity, bobs_certificate: bytes) -> PeerCore:
    return alice_with_admitted(alice, ("bob", bob, bobs_certificate))


def older_and_newer(bob: Identity) -> tuple[bytes, bytes]:
    """Two genuine certificates of bob's: one half an hour old, and the one after it."""
    wall = WALL_AT_ZERO
    older, newer = generate_session_key(), generate_session_key()
    old = certify(
        bob,
        "bob",
        older,
        room_id=ROOM_ID,
        created_ms=int((wall - 1800) * 1000),
        lifetime_ms=7_200_000,
    )
    new = certify(
        bob, "bob", newer, room_id=ROOM_ID, created_ms=int(wall * 1000), lifetime_ms=7_200_000
    )
    return old.encode(), new.encode()


def test_a_leave_and_a_join_cannot_roll_a_member_back_to_an_older_session_key(
    alice: Identity, bob: Identity
) -> None:
    """A broker that says bob left and came back, with a genuine but older certificate
    of his (a key he dropped, which a thief may hold), does not get it sealed to."""
    old, new = older_and_newer(bob)
    core = alice_with_bob_admitted(alice, bob, new)
    core.receive(p.encode(p.Leave("bob", p.LeaveReason.BYE)), 0.0)
    core.receive(p.encode(p.Join(p.Member("bob", bob.public_der, old))), 0.0)
    assert core.members["bob"].session is None  # refused, and nothing else to seal to
    refused = [e for e in core.take_events() if isinstance(e, ev.Problem)]
    assert [e.code for e in refused] == ["bad-certificate"]
    core.take_outgoing()
    with pytest.raises(NoSessionKey):
        core.send_text("secret", 0.0, wall=WALL_AT_ZERO)


BACK_WITHOUT_A_VALID_KEY = {
    "no certificate": lambda bob, wall: b"",
    "an expired one": lambda bob, wall: certificate(bob, "bob", wall - 3 * 3600),
    "one from the future": lambda bob, wall: certificate(bob, "bob", wall + 3600),
}


@pytest.mark.parametrize("case", BACK_WITHOUT_A_VALID_KEY)
def test_a_member_back_without_a_valid_session_key_is_given_up_on_without_a_crash(
    alice: Identity, bob: Identity, case: str
) -> None:
    """Found by a hostile-broker review: two messages waiting for bob, who comes back
    with no usable key, made the resend raise KeyError out of `receive`."""
    wall = WALL_AT_ZERO
    core = alice_with_bob_admitted(alice, bob, certificate(bob, "bob", wall))
    waiting = []
    for text in ("one", "two"):
        msg_id = core.send_text(text, 0.0, wall=wall)
        core.take_outgoing()
        core.receive(p.encode(p.Ack(msg_id, (), ("bob",))), 0.0)  # the broker: bob is away
        waiting.append(msg_id)
    core.receive(p.encode(p.Leave("bob", p.LeaveReason.BYE)), 0.0)
    core.take_events()
    lie = BACK_WITHOUT_A_VALID_KEY[case](bob, wall)
    core.receive(p.encode(p.Join(p.Member("bob", bob.public_der, lie))), 0.0)
    given_up = [e for e in core.take_events() if isinstance(e, ev.Undelivered)]
    assert given_up == [ev.Undelivered(msg_id, ("bob",)) for msg_id in waiting]
    assert core.take_outgoing() == []  # nothing sealed to a key that is not valid
    assert core.outbox.waiting_for("bob") == []
    assert core.pending_acks() == []  # nothing was resent: `exit` has nothing to wait for


def test_members_the_broker_makes_up_cannot_push_out_the_record_that_stops_a_rollback(
    alice: Identity, bob: Identity, keys: KeyPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a hostile-broker review: the record of bob's newest certificate was
    one of a bounded number kept for anyone, so a broker that joined and removed
    enough made-up members pushed it out, then rolled bob back to a key he dropped."""
    monkeypatch.setattr(core_module, "MAX_NEWEST_CERTIFICATES", 8)  # 4096 in earnest
    wall = WALL_AT_ZERO
    old, new = older_and_newer(bob)
    core = alice_with_bob_admitted(alice, bob, new)
    mallory, made_up = keys.get(5), generate_session_key()  # the broker's own
    for i in range(2 * 8):
        nick = f"fake{i}"
        cert = certificate(mallory, nick, wall, made_up)
        core.receive(p.encode(p.Join(p.Member(nick, mallory.public_der, cert))), 0.0)
        core.receive(p.encode(p.Leave(nick, p.LeaveReason.BYE)), 0.0)
    core.receive(p.encode(p.Leave("bob", p.LeaveReason.BYE)), 0.0)
    core.receive(p.encode(p.Join(p.Member("bob", bob.public_der, old))), 0.0)
    assert core.members["bob"].session is None  # the older key is still refused
    core.take_outgoing()
    with pytest.raises(NoSessionKey):
        core.send_text("secret", 0.0, wall=wall)


def test_a_message_given_up_on_for_one_recipient_still_waits_acknowledged_for_the_others(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    """Found by a review: giving up on bob (back with no valid key) marked the message
    unacknowledged although nothing was resent, so `exit` waited for an answer that
    could never come, then named a message the broker had acknowledged as lost."""
    wall = WALL_AT_ZERO
    core = alice_with_admitted(
        alice,
        ("bob", bob, certificate(bob, "bob", wall)),
        ("carol", carol, certificate(carol, "carol", wall)),
    )
    msg_id = core.send_text("to both", 0.0, wall=wall)
    core.take_outgoing()
    core.receive(p.encode(p.Ack(msg_id, (), ("bob", "carol"))), 0.0)  # both away
    assert core.pending_acks() == []
    core.receive(p.encode(p.Leave("bob", p.LeaveReason.BYE)), 0.0)
    core.receive(p.encode(p.Join(p.Member("bob", bob.public_der, b""))), 0.0)
    assert core.take_outgoing() == []
    assert [e for e in core.take_events() if isinstance(e, ev.Undelivered)] == [
        ev.Undelivered(msg_id, ("bob",))
    ]
    assert core.pending_acks() == []  # acknowledged, and nothing resent since
    assert [e.msg_id for e in core.outbox.waiting_for("carol")] == [msg_id]

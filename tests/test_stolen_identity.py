"""A hostile broker that also holds bob's stolen identity key (not his session keys).

What such a thief can and cannot do is written in docs/SECURITY.md (claim 11, and
"Forward secrecy for messages has a window"). These tests try to get more out of it:
old messages sealed again to a session key the thief certified for bob, by every
path that seals again (a correction, a broker "crash", a takeover, a rekey, a leave
and a join), with certificates dated forward, back, or as old as bob's own, and after
a machine that slept (its monotonic clock stops; the calendar does not).

The thief's certificates are genuine: it signs them with bob's identity key, which is
all a certificate needs. Each core is driven by hand, frame by frame, as the broker
would drive it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.support.keys import KeyPool
from tests.support.room import (
    ROOM_ID,
    WALL_AT_ZERO,
    certificate,
    pooled_session_keys,
    ready_core,
)
from tests.test_admission import admitted_by_alice, typed, vouch_delivery
from tests.test_outbox import hear, opened_by, sends
from zchat.envelope import (
    Identity,
    MembershipRecord,
    Recipient,
    RecordType,
    SessionKey,
    certify,
    generate_session_key,
    make_record,
    seal,
)
from zchat.envelope.limits import KEY_ID_BYTES, MAX_CERT_LIFETIME_MS
from zchat.peer import events as ev
from zchat.peer.config import PeerConfig
from zchat.peer.core import PeerCore
from zchat.peer.outbox import CORRECTION_WINDOW
from zchat.peer.pins import Pins
from zchat.wire import protocol as p

#: An open room (bob reads at once) with the default rotation: plaintext lives 62 min.
OPEN = PeerConfig(admit_all=True)
HOUR = 3600.0
#: The broker's heartbeat timeout, as its WELCOME says: long, so that nothing here is a
#: reconnect the test did not ask for.
TIMEOUT_MS = 60_000


@dataclass
class Calendar:
    """The date as the machine's calendar tells it, moved by the test apart from the
    monotonic clock: a machine that sleeps stops the one and not the other."""

    wall: float = WALL_AT_ZERO

    def __call__(self) -> float:
        return self.wall


def stolen(bob: Identity, key: SessionKey, created: float) -> bytes:
    """A certificate for `key` as bob's, made by the thief with bob's identity key, dated
    `created` (any date it likes) and living as long as any may: a week."""
    return certify(
        bob,
        "bob",
        key,
        room_id=ROOM_ID,
        created_ms=int(created * 1000),
        lifetime_ms=MAX_CERT_LIFETIME_MS,
    ).encode()


def alice_with_bob(alice: Identity, bob: Identity, calendar: Calendar) -> PeerCore:
    """alice, welcomed at 0 into an open room where bob is, with his genuine session
    key, certified at the room's start for an hour."""
    key = pooled_session_keys()()
    genuine = certify(
        bob, "bob", key, room_id=ROOM_ID, created_ms=int(WALL_AT_ZERO * 1000), lifetime_ms=3_600_000
    ).encode()
    return ready_core(
        "alice",
        alice,
        [p.Member("bob", bob.public_der, genuine)],
        config=OPEN,
        timers=(1000, TIMEOUT_MS),
        calendar=calendar,
    )


def reconnect(core: PeerCore, now: float, wall: float, *members: p.Member) -> None:
    """The broker "restarted": alice says hello again and is welcomed with `members`."""
    core.receive(p.encode(p.Error(p.ErrorCode.HELLO_FIRST, "restarted", b"")), now)
    core.add_session_key(pooled_session_keys()(), now, wall=wall)
    hear(core, now, p.Welcome("alice", 1000, TIMEOUT_MS, core.room), p.Snapshot(members))


def test_a_message_pending_when_the_machine_slept_is_never_sealed_to_the_thief_on_waking(
    alice: Identity, bob: Identity
) -> None:
    """Found attacking: the outbox measured a message's lifetime on the monotonic clock,
    which stops while the machine sleeps. Typed, never acknowledged (the broker did not
    answer), then eight hours under a closed lid: on waking it was sealed again to the
    session key the thief had certified for bob meanwhile, dated back into the message's
    window. The lifetime is a promise about the date (docs/SECURITY.md, claim 11)."""
    calendar = Calendar()
    core = alice_with_bob(alice, bob, calendar)
    calendar.wall = WALL_AT_ZERO + 1.0
    msg_id = core.send_text("typed before the lid closed", 1.0, wall=calendar.wall)
    assert len(sends(core)) == 1  # and the broker never answers it

    calendar.wall += 8 * HOUR  # asleep: the calendar moves on, the monotonic clock does not
    core.tick(2.0)
    assert ev.Undelivered(msg_id, ("bob",)) in core.take_events()  # erased, and said so

    thief = generate_session_key()
    backdated = stolen(bob, thief, WALL_AT_ZERO + 10.0)  # newer than bob's, inside the window
    reconnect(core, 2.0, calendar.wall, p.Member("bob", bob.public_der, backdated))
    assert opened_by(thief, sends(core)) == []


def test_a_correction_after_the_machine_slept_through_the_window_reopens_nothing(
    alice: Identity, bob: Identity
) -> None:
    """The same for the correction window: a message delivered just before twenty
    minutes of sleep was still "in its window" on waking, so a correction (nobody got
    it after all, bob absent) reopened it, and bob's return with the thief's key had it
    sealed again. Here the correction comes before the peer's first tick after waking,
    as the broker's messages may."""
    calendar = Calendar()
    core = alice_with_bob(alice, bob, calendar)
    calendar.wall = WALL_AT_ZERO + 1.0
    msg_id = core.send_text("delivered before the lid closed", 1.0, wall=calendar.wall)
    assert len(sends(core)) == 1
    hear(core, 1.0, p.Ack(msg_id, ("bob",), ()))

    calendar.wall += 20 * 60  # less than the lifetime, far more than the correction window
    thief = generate_session_key()
    events = hear(
        core,
        2.0,  # one second on the monotonic clock
        p.Ack(msg_id, (), ("bob",)),
        p.Leave("bob", p.LeaveReason.TIMEOUT),
        p.Join(p.Member("bob", bob.public_der, stolen(bob, thief, WALL_AT_ZERO + 10.0))),
    )
    assert [(e.code, e.context) for e in events if isinstance(e, ev.Problem)] == [
        ("bad-ack", "settled")
    ]
    assert opened_by(thief, sends(core)) == []
    # Nor after a broker "crash" that asks for everything recent again.
    reconnect(core, 3.0, calendar.wall, p.Member("bob", bob.public_der, stolen(bob, thief, 0)))
    assert opened_by(thief, sends(core)) == []


def test_no_path_that_seals_again_gets_the_thief_a_message_past_its_window(
    alice: Identity, bob: Identity
) -> None:
    """Every way the broker can ask alice to seal something again, tried after the
    messages' windows with certificates the thief dated forward, back, and as old as
    bob's own: a correction, a leave and a join, a rekey, a takeover (a correction and
    a REKEYED, as a broker sends them when a member's key logs in again), and a broker
    "crash" whose WELCOME claims an hour's timeout (so that alice reopens what it
    acknowledged in the last hour). One message was delivered and settled; the other
    the broker never acknowledged, so it stayed pending until its lifetime ran out."""
    calendar = Calendar()
    core = alice_with_bob(alice, bob, calendar)
    calendar.wall = WALL_AT_ZERO + 1.0
    settled = core.send_text("delivered, then settled", 1.0, wall=calendar.wall)
    pending = core.send_text("never acknowledged", 1.0, wall=calendar.wall)
    assert len(sends(core)) == 2
    hear(core, 1.0, p.Ack(settled, ("bob",), ()))
    now = 1.0
    while now < 1.0 + OPEN.message_lifetime + CORRECTION_WINDOW:  # both clocks agree here
        now += 30.0
        calendar.wall = WALL_AT_ZERO + now
        hear(core, now, p.Heartbeat())
        core.tick(now)
    assert ev.Undelivered(pending, ("bob",)) in core.take_events()

    thief = generate_session_key()
    dates = {
        "as old as bob's own": WALL_AT_ZERO,
        "back into the messages' window": WALL_AT_ZERO + 10.0,
        "now": calendar.wall,
        "five minutes ahead": calendar.wall + 299.0,
    }
    for created in dates.values():
        cert = stolen(bob, thief, created)
        bob_back = p.Member("bob", bob.public_der, cert)
        for msg_id in (settled, pending):
            hear(core, now, p.Ack(msg_id, (), ("bob",)))  # a correction
        hear(core, now, p.Leave("bob", p.LeaveReason.TIMEOUT), p.Join(bob_back))
        hear(core, now, p.Rekeyed("bob", cert))
        hear(core, now, p.Ack(settled, (), ("bob",)), p.Rekeyed("bob", cert))  # a takeover
        core.receive(p.encode(p.Error(p.ErrorCode.HELLO_FIRST, "restarted", b"")), now)
        core.add_session_key(pooled_session_keys()(), now, wall=calendar.wall)
        hear(core, now, p.Welcome("alice", 1000, 3_600_000, core.room), p.Snapshot((bob_back,)))
        assert opened_by(thief, sends(core)) == []
    assert (core.outbox.find(settled), core.outbox.find(pending)) == (None, None)


# --- what the thief can do with bob's word, and what ends it ------------------------------


def as_bob(bob: Identity, core: PeerCore, text: str, seq: int) -> list[bytes]:
    """A DELIVER of a room message the thief signs as bob, sealed to alice's session key."""
    key = core.session_keys.held()[0]
    envelope = seal(
        text.encode(),
        sender=bob,
        sender_nick="bob",
        room_id=core.room_id,
        recipients=[Recipient("alice", key.private_key.public_key(), key.fingerprint)],
        seq=seq,
    )
    return p.encode(p.Deliver(envelope.delivery_for(0)))


def record(by: Identity, kind: RecordType, nick: str, subject: Identity) -> MembershipRecord:
    return make_record(
        by, kind, room_id=ROOM_ID, nick=nick, fingerprint=subject.fingerprint, time_ms=10
    )


def wrapped_to(core: PeerCore) -> dict[str, bytes]:
    """Whom alice's next room message is sealed to, and to which session key (its id)."""
    sends(core)  # what went before (vouches, resends)
    core.send_text("who reads this?", 5.0, wall=WALL_AT_ZERO + 5.0)
    (envelope,) = sends(core)
    core.take_events()
    return dict(zip(envelope.recipients, envelope.key_ids, strict=True))


def test_a_thief_of_bobs_identity_key_reads_what_is_sent_to_bob_and_admits_whom_it_likes(
    keys: KeyPool,
) -> None:
    """What docs/SECURITY.md says a thief of one member's identity key can do, done: it
    certifies a session key as bob's and is sealed what alice sends from then on; it
    signs messages as bob; it vouches, as bob, for a key of its own under a new name,
    and alice admits that key and keeps it in her pins. And what it cannot: undo alice's
    own comparison of carol, or put its key under carol's name."""
    alice, bob, carol, mallory, evil = (keys.get(i) for i in (0, 1, 2, 3, 5))
    members = [
        p.Member(n, i.public_der, certificate(i, n, WALL_AT_ZERO))
        for n, i in (("bob", bob), ("carol", carol))
    ]
    pins = admitted_by_alice(("bob", bob), ("carol", carol))
    core = ready_core("alice", alice, members, pins=pins, dated=True)
    carol_key = wrapped_to(core)["carol"]

    thief = generate_session_key()
    events = hear(core, 1.0, p.Rekeyed("bob", stolen(bob, thief, WALL_AT_ZERO + 1.0)))
    assert events == []  # nothing tells alice: the identity is the same
    assert wrapped_to(core)["bob"] == thief.fingerprint[:KEY_ID_BYTES]

    core.receive(as_bob(bob, core, "it is me, bob", seq=1 << 50), 2.0)
    (said,) = [e for e in core.take_events() if isinstance(e, ev.MessageReceived)]
    assert (said.sender, said.text, said.admitted) == ("bob", "it is me, bob", True)

    mallory_here = p.Member(
        "mallory", mallory.public_der, certificate(mallory, "mallory", WALL_AT_ZERO)
    )
    hear(core, 3.0, p.Join(mallory_here))
    vouch = record(bob, RecordType.VOUCH, "mallory", mallory)
    core.receive(vouch_delivery(bob, "bob", ("alice", core), [vouch], (1 << 50) + 1), 3.0)
    assert ev.Admitted("mallory", mallory.fingerprint, "vouch", "bob") in core.take_events()
    assert "mallory" in wrapped_to(core)
    assert [pin.admitted for pin in core.pins.items() if pin.nick == "mallory"] == [True]

    lies = [record(bob, RecordType.REVOKE, "carol", carol)]
    core.receive(vouch_delivery(bob, "bob", ("alice", core), lies, (1 << 50) + 2), 4.0)
    lies = [record(bob, RecordType.VOUCH, "carol", evil)]
    core.receive(vouch_delivery(bob, "bob", ("alice", core), lies, (1 << 50) + 3), 4.0)
    events = core.take_events()
    assert ev.Revoked("carol", carol.fingerprint, "bob", dropped=False) in events
    assert [e.reason for e in events if isinstance(e, ev.VouchRejected)] == [
        "it is for another key than the one carol has here"
    ]
    assert wrapped_to(core)["carol"] == carol_key


def test_only_revoking_the_stolen_key_takes_back_whom_the_thief_admitted(
    keys: KeyPool,
) -> None:
    """bob makes a new identity once he knows his key was stolen. Accepting it (/trust)
    ends the thief's session keys (they are checked against the pin, now the new key),
    but not the admissions it made in bob's name: those are by bob's word, and stay.
    /revoke bob while the broker still shows the new key as changed takes back the
    stolen key and, with it, whom alice admitted on its word; then alice compares the
    new key. docs/SECURITY.md tells the user this order."""
    alice, bob, carol, mallory, new_bob = (keys.get(i) for i in (0, 1, 2, 3, 6))
    members = [
        p.Member(n, i.public_der, certificate(i, n, WALL_AT_ZERO))
        for n, i in (("bob", bob), ("carol", carol), ("mallory", mallory))
    ]

    def pins() -> Pins:
        return admitted_by_alice(("bob", bob), ("carol", carol))

    core = ready_core("alice", alice, members, pins=pins(), dated=True)
    vouch = record(bob, RecordType.VOUCH, "mallory", mallory)
    core.receive(vouch_delivery(bob, "bob", ("alice", core), [vouch], 1 << 50), 1.0)
    assert "mallory" in wrapped_to(core)

    bob_again = p.Member("bob", new_bob.public_der, certificate(new_bob, "bob", WALL_AT_ZERO))
    hear(core, 2.0, p.Leave("bob", p.LeaveReason.BYE), p.Join(bob_again))
    trusting = ready_core("alice", alice, members, pins=pins(), dated=True, seed=2)
    trusting.receive(vouch_delivery(bob, "bob", ("alice", trusting), [vouch], 1 << 50), 1.0)
    hear(trusting, 2.0, p.Leave("bob", p.LeaveReason.BYE), p.Join(bob_again))
    trusting.trust("bob", typed(new_bob), 2.0)
    assert set(wrapped_to(trusting)) == {"bob", "carol", "mallory"}  # the thief's stays

    core.revoke("bob", 2.0)  # the pinned key: the stolen one
    events = core.take_events()
    assert ev.Revoked("mallory", mallory.fingerprint, "alice", dropped=True, via="bob") in events
    core.trust("bob", typed(new_bob), 2.0)
    assert set(wrapped_to(core)) == {"bob", "carol"}
    # The stolen key vouches for nobody any more, under any name.
    core.receive(vouch_delivery(bob, "bob", ("alice", core), [vouch], (1 << 50) + 1), 3.0)
    assert "mallory" not in wrapped_to(core)

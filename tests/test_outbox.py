"""Old plaintext is never sealed again (docs/SECURITY.md, claim 11; PROTOCOL.md §4.3).

The attack these tests replay: a broker that later steals one member's identity key
certifies a fresh session key for that member, then "corrects" an old acknowledgement
(nobody delivered, that member absent) so that the member's next JOIN has the sender
seal the kept plaintext to the thief's key. The outbox now keeps a message's plaintext
only while it is pending (never longer than the forward-secrecy window) and for the
correction window after it was delivered; after that the message is settled, an ACK
that would reopen it is refused and reported, and no resend wraps to a key certified
after the message's time and that window.

Each core here is driven by hand, frame by frame, as a broker (the thief) would.
"""

from __future__ import annotations

import pytest

from tests.support.room import ROOM_ID, WALL_AT_ZERO, pooled_session_keys, ready_core
from zchat.envelope import (
    DecryptionFailed,
    Envelope,
    Identity,
    SessionKey,
    certify,
    generate_session_key,
)
from zchat.envelope import _primitives as prim
from zchat.peer import events as ev
from zchat.peer.config import PeerConfig
from zchat.peer.core import PeerCore, Phase
from zchat.peer.outbox import CORRECTION_WINDOW
from zchat.peer.render import problem_text
from zchat.wire import protocol as p

#: An open room (bob reads at once), with the default rotation: plaintext lives 62 min.
OPEN = PeerConfig(admit_all=True)
HOUR_MS = 3_600_000
#: The broker's CHALLENGE to a HELLO: a WELCOME counts only after our PROOF of it.
CHALLENGE = p.Challenge(bytes(p.CHALLENGE_BYTES))


def cert(bob: Identity, key: SessionKey, at: float) -> bytes:
    """bob's session-key certificate for `key`, made at the date `at`: bob's own, or the
    thief's, who holds bob's identity key and so can make any it likes."""
    return certify(
        bob, "bob", key, room_id=ROOM_ID, created_ms=int(at * 1000), lifetime_ms=HOUR_MS
    ).encode()


def alice_with_bob(
    alice: Identity, bob: Identity, config: PeerConfig = OPEN, *, timeout_ms: int = 60_000
) -> tuple[PeerCore, SessionKey]:
    """alice, welcomed at 0 into a room where bob is, with bob's session key; the broker's
    heartbeat timeout is a minute unless said, so that nothing is a reconnect unasked."""
    key = pooled_session_keys()()
    bob_here = p.Member("bob", bob.public_der, cert(bob, key, WALL_AT_ZERO))
    timers = (1000, timeout_ms)
    core = ready_core("alice", alice, [bob_here], config=config, dated=True, timers=timers)
    return core, key


def hear(core: PeerCore, now: float, *messages: p.BrokerMessage) -> list[ev.Event]:
    for message in messages:
        core.receive(p.encode(message), now)
    return core.take_events()


def sends(core: PeerCore) -> list[Envelope]:
    out = [p.parse_from_peer(f) for f in core.take_outgoing()]
    return [m.envelope for m in out if isinstance(m, p.Send)]


def opened_by(key: SessionKey, envelopes: list[Envelope]) -> list[bytes]:
    """The ids of the messages among `envelopes` whose wrapped key for bob `key` opens."""
    opened = []
    for env in envelopes:
        for nick, wrapped in zip(env.recipients, env.wrapped_keys, strict=True):
            if not wrapped:
                continue
            try:
                prim.unwrap(
                    key.private_key,
                    wrapped,
                    env.header.msg_id,
                    env.header.sender_fingerprint,
                    nick,
                    key.fingerprint,
                )
            except DecryptionFailed:
                continue
            opened.append(env.header.msg_id)
    return opened


def send_and_deliver(core: PeerCore, text: str, now: float) -> bytes:
    msg_id = core.send_text(text, now, wall=WALL_AT_ZERO + now)
    assert len(sends(core)) == 1
    hear(core, now, p.Ack(msg_id, ("bob",), ()))
    return msg_id


def test_a_broker_with_a_stolen_identity_key_cannot_reopen_a_settled_message(
    alice: Identity, bob: Identity
) -> None:
    core, _ = alice_with_bob(alice, bob)
    msg_id = send_and_deliver(core, "before the theft", 1.0)
    entry = core.outbox.find(msg_id)
    assert entry is not None
    assert entry.text == "before the theft"  # in its correction window
    # The window passes: settled, the plaintext let go.
    later = 1.0 + CORRECTION_WINDOW + 1.0
    core.tick(later)
    assert core.outbox.find(msg_id) is None
    assert core.outbox.closed(msg_id)
    assert (entry.text, entry.payload, entry.erased) == ("", b"", True)

    # The thief certifies a session key of its own for bob, and replays the correction.
    thief = generate_session_key()
    stolen = cert(bob, thief, WALL_AT_ZERO + later)
    events = hear(
        core,
        later,
        p.Ack(msg_id, (), ("bob",)),  # "bob did not get it after all"
        p.Leave("bob", p.LeaveReason.TIMEOUT),
        p.Join(p.Member("bob", bob.public_der, stolen)),
    )
    (refused,) = [e for e in events if isinstance(e, ev.Problem)]
    assert (refused.code, refused.nicks, refused.context) == ("bad-ack", ("bob",), "settled")
    assert "settled long ago never reached bob: ignored" in problem_text(refused)
    assert not [e for e in events if isinstance(e, ev.Acked | ev.Undelivered)]
    assert sends(core) == []
    # A reconnect (the broker "lost" what it acknowledged) brings nothing back either.
    core.receive(p.encode(p.Error(p.ErrorCode.HELLO_FIRST, "restarted", b"")), later)
    core.add_session_key(pooled_session_keys()(), later, wall=WALL_AT_ZERO + later)
    hear(
        core,
        later,
        p.Welcome("alice", 1000, 60_000, core.room),
        p.Snapshot((p.Member("bob", bob.public_der, stolen),)),
    )
    assert opened_by(thief, sends(core)) == []


def test_a_resend_never_wraps_to_a_key_certified_after_the_messages_window(
    alice: Identity, bob: Identity
) -> None:
    """Within the correction window a correction counts (a broker that could not queue
    a delivery says so), and the resend goes to bob's new key, unless that key is dated
    after the message's time and its lifetime: a thief's, made (or dated) later."""
    lifetime = 60.0
    config = PeerConfig(admit_all=True, rotate_every=lifetime, key_grace=0.0)
    core, _ = alice_with_bob(alice, bob, config)
    honest_id = send_and_deliver(core, "lost in the queue", 1.0)
    stolen_id = send_and_deliver(core, "lost too", 2.0)
    # bob's reconnection, with a new session key made now: the resend reaches it.
    new = generate_session_key()
    events = hear(
        core,
        5.0,
        p.Ack(honest_id, (), ("bob",)),
        p.Ack(stolen_id, (), ("bob",)),
        p.Leave("bob", p.LeaveReason.TIMEOUT),
        p.Join(p.Member("bob", bob.public_der, cert(bob, new, WALL_AT_ZERO + 5.0))),
    )
    assert not [e for e in events if isinstance(e, ev.Problem)]
    assert sorted(opened_by(new, sends(core))) == sorted([honest_id, stolen_id])
    # Again, and now the key is dated after the second message's time and lifetime
    # (a certificate may be dated up to five minutes ahead of the clock).
    thief = generate_session_key()
    hear(core, 6.0, p.Ack(honest_id, (), ("bob",)), p.Ack(stolen_id, (), ("bob",)))
    dated = WALL_AT_ZERO + 2.0 + lifetime + 1.0
    events = hear(
        core,
        6.0,
        p.Leave("bob", p.LeaveReason.TIMEOUT),
        p.Join(p.Member("bob", bob.public_der, cert(bob, thief, dated))),
    )
    assert opened_by(thief, sends(core)) == []
    undelivered = [e for e in events if isinstance(e, ev.Undelivered)]
    assert sorted(e.msg_id for e in undelivered) == sorted([honest_id, stolen_id])


def test_a_message_pending_past_its_lifetime_is_erased_and_who_missed_it_is_told(
    alice: Identity, bob: Identity
) -> None:
    lifetime = 10.0
    config = PeerConfig(admit_all=True, rotate_every=lifetime, key_grace=0.0)
    core, key = alice_with_bob(alice, bob, config)
    msg_id = core.send_text("never acknowledged", 1.0, wall=WALL_AT_ZERO + 1.0)
    entry = core.outbox.get(msg_id)
    assert entry is not None
    core.take_outgoing()
    for now in (4.0, 8.0, 11.0):
        hear(core, now, p.Heartbeat())  # the broker is there, but never answers it
        core.tick(now)
    assert core.take_events() == []  # still pending at 10 s after sealing...
    hear(core, 11.5, p.Heartbeat())
    core.tick(11.5)
    assert ev.Undelivered(msg_id, ("bob",)) in core.take_events()  # ...and not after
    assert (core.outbox.get(msg_id), core.pending_acks(), entry.text) == (None, [], "")
    # Nothing brings it back: not a late ACK, not a reconnect.
    hear(core, 12.0, p.Ack(msg_id, (), ("bob",)))
    core.receive(p.encode(p.Error(p.ErrorCode.HELLO_FIRST, "restarted", b"")), 12.0)
    core.add_session_key(pooled_session_keys()(), 12.0, wall=WALL_AT_ZERO + 12.0)
    hear(
        core,
        12.0,
        CHALLENGE,
        p.Welcome("alice", 1000, 60_000, core.room),
        p.Snapshot((p.Member("bob", bob.public_der, cert(bob, key, WALL_AT_ZERO)),)),
    )
    core.resend(12.0)  # as the client does once the welcome is shown
    assert core.phase is Phase.READY
    assert sends(core) == []


@pytest.mark.parametrize(("back_after", "resent"), [(15.0, True), (40.0, False)])
def test_what_a_crashed_broker_acknowledged_is_resent_within_the_window_and_not_after(
    alice: Identity, bob: Identity, back_after: float, resent: bool
) -> None:
    """A broker acknowledges a delivery when it queues it, and a crash loses its queues:
    what it acknowledged just before it was lost is resent when it is back, while the
    message is in its correction window. After that window the plaintext is gone."""
    core, key = alice_with_bob(alice, bob, timeout_ms=10_000)
    early = send_and_deliver(core, "settled before the crash", 1.0)
    now = 1.0 + CORRECTION_WINDOW + 1.0
    hear(core, now, p.Heartbeat())
    core.tick(now)  # settled
    recent = send_and_deliver(core, "acknowledged just before the crash", now)
    crashed = now
    while not core.reconnect_wanted:  # the broker fell silent: alice notices after its timeout
        now += 1.0
        core.tick(now)
    assert now == crashed + 11.0
    core.start(now)
    while now < crashed + back_after:  # and it is back after this long; alice keeps trying
        now += 1.0
        core.tick(now)
        if core.reconnect_wanted:
            core.start(now)
    core.add_session_key(pooled_session_keys()(), now, wall=WALL_AT_ZERO + now)
    hear(
        core,
        now,
        CHALLENGE,
        p.Welcome("alice", 1000, 10_000, core.room),
        p.Snapshot((p.Member("bob", bob.public_der, cert(bob, key, WALL_AT_ZERO)),)),
    )
    core.resend(now)  # as the client does once the welcome is shown
    assert core.phase is Phase.READY
    out = sends(core)
    assert [e.header.msg_id for e in out] == ([recent] if resent else [])
    assert early not in opened_by(key, out)

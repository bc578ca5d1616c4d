"""The peer's state machine (issue 22, V3 §5): what each phase and handshake step does
with each message from the broker, and what time does in each.

In memory: a bare core fed frames by hand, or a room (`tests.support.room`) whose
broker is the real sans-I/O core, on a clock the test moves.
"""

from __future__ import annotations

import pytest

from tests.support.lying_broker import LyingBroker
from tests.support.room import (
    OPEN,
    WALL_AT_ZERO,
    MemoryRoom,
    certificate,
    pooled_session_keys,
    ready_core,
    seeded,
)
from zchat.broker.config import BrokerConfig
from zchat.broker.core import Broker, Outgoing
from zchat.envelope import Identity
from zchat.peer import events as ev
from zchat.peer.config import PeerConfig
from zchat.peer.core import PeerCore, Phase
from zchat.peer.link import MAX_REKEY_WAIT, MAX_TIMER
from zchat.wire import protocol as p

REKEYED = bytes([p.Command.REKEYED])
HELLO = bytes([p.Command.HELLO])
REKEY = bytes([p.Command.REKEY])


def problems(events: list[ev.Event], code: str) -> list[ev.Problem]:
    return [e for e in events if isinstance(e, ev.Problem) and e.code == code]


def texts(events: list[ev.Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, ev.MessageReceived)]


def handshaking(identity: Identity, nick: str = "alice") -> PeerCore:
    """A core that said HELLO (its session key made) and heard nothing yet."""
    core = PeerCore(nick, identity, config=OPEN, seq=1, random=seeded(1))
    core.start(0.0)
    core.add_session_key(pooled_session_keys()(), 0.0, wall=WALL_AT_ZERO)
    core.take_outgoing()
    return core


def hear(core: PeerCore, *messages: p.BrokerMessage, now: float = 0.0) -> list[ev.Event]:
    for msg in messages:
        core.receive(p.encode(msg), now)
    return core.take_events()


CHALLENGE = p.Challenge(bytes(p.CHALLENGE_BYTES))


# --- 1. a refused return into the room ----------------------------------------------------


def evicted_and_key_taken(room: MemoryRoom, b: bytes, bob: Identity) -> tuple[bytes, bytes]:
    """bob drops out of the broker's room (silent too long, say) and his key comes in
    meanwhile as "bobby" (another zchat with a copy of it): his return is refused with
    KEY_IN_USE for as long as bobby stays. Returns bob's new connection, and bobby's."""
    room.deliver(room.broker.handle(b, p.encode(p.Bye()), room.now))
    twin = room.join("bobby", bob)
    room.peers[b].receive(p.encode(p.Error(p.ErrorCode.EVICTED, "silent too long")), room.now)
    return room.reconnect(b), twin


def test_a_refused_return_is_said_retried_and_what_is_typed_meanwhile_waits_then_goes(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    room.take(a)
    b, twin = evicted_and_key_taken(room, b, bob)
    core = room.peers[b]
    assert core.phase is Phase.WAITING  # not refused for good: the old session may go
    (said,) = problems(room.take(b), "rejoin-refused")
    assert said.context == "key-in-use"
    room.send(b, "typed while refused")
    room.pump()
    assert problems(room.take(b), "rejoin-refused")[0].context == "Sent"  # it waits, and says so
    assert len(core.pending_acks()) == 1
    room.peers[twin].leave()  # the copy goes
    room.pump()
    del room.peers[twin]
    room.advance(2.0)
    assert core.phase is Phase.READY
    assert texts(room.take(a)) == ["typed while refused"]
    assert core.pending_acks() == []
    # While refused, bob sent no heartbeat into a session he did not have.
    assert not [f for f in room.wire[b] if f[1] == bytes([p.Command.ERROR])]


def test_a_refused_return_gives_up_after_its_patience_with_a_final_refusal(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    room.join("alice", alice)
    b = room.join("bob", bob, config=PeerConfig(admit_all=True, rejoin_patience=2.0))
    hellos: list[float] = []

    def count(conn: bytes, frames: list[bytes]) -> bool:
        if frames[1] == HELLO:
            hellos.append(room.now)
        return False

    room.lose = count
    b, _ = evicted_and_key_taken(room, b, bob)
    room.advance(4.0)
    core = room.peers[b]
    assert core.phase is Phase.REFUSED
    assert core.refusal == ev.Refused("key-in-use", core.refusal.reason, rejoining=True)
    events = room.take(b)
    assert len(problems(events, "rejoin-refused")) == 1  # said once, not at every try
    assert events[-1] == core.refusal
    # Backing off: a few tries in the patience, not one a tick.
    assert 3 <= len(hellos) <= 8, hellos
    room.advance(5.0)
    assert len(hellos) <= 8  # and none after giving up


@pytest.mark.parametrize(
    "code", [p.RefuseCode.BAD_PROOF, p.RefuseCode.NICK_INVALID, p.RefuseCode.BAD_CERTIFICATE]
)
def test_a_refused_return_for_good_ends_at_once(bob: Identity, code: p.RefuseCode) -> None:
    core = ready_core("bob", bob, config=OPEN)
    hear(core, p.Error(p.ErrorCode.HELLO_FIRST, "say hello first"))  # the broker restarted
    core.add_session_key(pooled_session_keys()(), 0.0, wall=WALL_AT_ZERO)
    core.take_outgoing()
    events = hear(core, p.Refuse(code, "no"))
    assert core.phase is Phase.REFUSED
    name = code.name.lower().replace("_", "-")
    assert events == [ev.Refused(name, "no", rejoining=True)]


def test_a_return_refused_by_a_broker_of_another_version_ends_at_once_and_says_which(
    bob: Identity,
) -> None:
    """The broker came back speaking another protocol version: no retry can help."""
    core = ready_core("bob", bob, config=OPEN)
    hear(core, p.Error(p.ErrorCode.HELLO_FIRST, "say hello first"))  # the broker restarted
    core.add_session_key(pooled_session_keys()(), 0.0, wall=WALL_AT_ZERO)
    core.take_outgoing()
    events = hear(core, p.VersionRefusal(b"ZCHAT4", "unsupported protocol"))
    assert core.phase is Phase.REFUSED
    refused = ev.Refused("unsupported-version", "unsupported protocol", 4, rejoining=True)
    assert events == [refused]
    assert core.refusal == refused


def test_a_refused_first_handshake_ends_the_session_as_before(alice: Identity) -> None:
    core = handshaking(alice)
    events = hear(core, p.Refuse(p.RefuseCode.NICK_TAKEN, "alice is taken"))
    assert core.phase is Phase.REFUSED
    assert events == [ev.Refused("nick-taken", "alice is taken")]  # the user picks another


# --- 2. what the broker says while we say HELLO again on our connection --------------------


def test_what_comes_while_saying_hello_again_on_the_same_connection_is_taken(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    core = room.peers[b]
    # bob says HELLO again on his connection, where the broker still lists him.
    hear(core, p.Error(p.ErrorCode.HELLO_FIRST, "say hello first"))
    assert core.phase is Phase.HANDSHAKING
    _, out = room.send_by_hand(a, "meanwhile")
    room.deliver(out)  # a DELIVER the broker acknowledged to alice as delivered
    assert texts(core.take_events()) == ["meanwhile"]
    newer = certificate(alice, "alice", room.wall + 1)
    joining = p.Member("carol", carol.public_der, certificate(carol, "carol", room.wall))
    events = hear(core, p.Rekeyed("alice", newer), p.Join(joining), now=room.now)
    events += hear(core, p.Leave("carol", p.LeaveReason.BYE), now=room.now)
    assert not problems(events, "unexpected")
    assert [type(e) for e in events] == [ev.Joined, ev.Left]
    assert core.members["alice"].session is not None
    assert core.members["alice"].session.certificate.encode() == newer
    room.pump()  # the handshake ends as usual
    assert core.phase is Phase.READY
    assert texts(room.take(b)) == []  # shown once


def test_what_comes_before_the_welcome_on_a_new_connection_is_unexpected(
    alice: Identity,
) -> None:
    core = handshaking(alice)
    events = hear(core, p.Leave("bob", p.LeaveReason.BYE))
    assert [e.context for e in problems(events, "unexpected")] == ["Leave"]


# --- 3. the handshake's order -------------------------------------------------------------


def test_a_welcome_before_our_proof_is_unexpected(alice: Identity) -> None:
    core = handshaking(alice)
    events = hear(core, p.Welcome("alice", 1000, 5000), p.Snapshot(()))
    assert [e.context for e in problems(events, "unexpected")] == ["Welcome", "Snapshot"]
    assert core.phase is Phase.HANDSHAKING


def test_a_second_welcome_is_unexpected_and_changes_nothing(alice: Identity) -> None:
    core = handshaking(alice)
    events = hear(core, CHALLENGE, p.Welcome("alice", 1000, 5000), p.Welcome("alice", 10, 20))
    assert [e.context for e in problems(events, "unexpected")] == ["Welcome"]
    hear(core, p.Snapshot(()))
    assert core.phase is Phase.READY
    assert (core.link.interval, core.link.timeout) == (1.0, 5.0)  # the first welcome's


def test_a_welcome_under_our_nickname_in_another_case_is_refused_never_adopted(
    alice: Identity,
) -> None:
    core = handshaking(alice)
    events = hear(core, CHALLENGE, p.Welcome("Alice", 1000, 5000), p.Snapshot(()))
    assert [e.context for e in problems(events, "unexpected")] == ["Welcome", "Snapshot"]
    assert core.nick == "alice"  # every SEND of ours would be FORGED_SENDER otherwise
    assert core.phase is Phase.HANDSHAKING
    core.tick(0.05)
    assert not core.reconnect_wanted
    core.tick(0.2)  # after the backoff: a new connection
    assert core.reconnect_wanted


def test_a_snapshot_before_the_welcome_is_unexpected(alice: Identity) -> None:
    core = handshaking(alice)
    events = hear(core, CHALLENGE, p.Snapshot(()))
    assert [e.context for e in problems(events, "unexpected")] == ["Snapshot"]
    assert core.phase is Phase.HANDSHAKING


def test_a_refusal_after_the_welcome_is_unexpected(alice: Identity) -> None:
    core = handshaking(alice)
    events = hear(core, CHALLENGE, p.Welcome("alice", 1000, 5000), p.Refuse(1, "late"))
    assert [e.context for e in problems(events, "unexpected")] == ["Refuse"]
    hear(core, p.Snapshot(()))
    assert core.phase is Phase.READY


# --- 4. an ERROR's msg_id -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "dropped"),
    [
        (p.ErrorCode.FORGED_SENDER, True),
        (p.ErrorCode.MALFORMED, True),
        (p.ErrorCode.BAD_CERTIFICATE, False),
        (p.ErrorCode.HELLO_FIRST, False),
        (p.ErrorCode.EVICTED, False),
    ],
)
def test_only_forged_sender_and_malformed_drop_the_message_they_name(
    alice: Identity, bob: Identity, code: p.ErrorCode, dropped: bool
) -> None:
    here = [p.Member("bob", bob.public_der, certificate(bob, "bob", WALL_AT_ZERO))]
    core = ready_core("alice", alice, here, config=OPEN, dated=True)
    msg_id = core.send_text("hello", 0.0, wall=WALL_AT_ZERO)
    core.take_outgoing()
    events = hear(core, p.Error(code, "no", msg_id))
    undelivered = [e for e in events if isinstance(e, ev.Undelivered)]
    assert undelivered == ([ev.Undelivered(msg_id, ("bob",))] if dropped else [])
    assert [e.msg_id for e in core.pending_acks()] == ([] if dropped else [msg_id])


# --- 5. a new session key of ours ----------------------------------------------------------

ROTATE = 2.0
ROTATING = PeerConfig(rotate_every=ROTATE, key_grace=1.0, admit_all=True)


def answer_to(conn: bytes, nick: bytes) -> object:
    """A `drop` hook for a room: the broker's REKEYED naming `nick`, to `nick` itself."""

    def drop(out: Outgoing) -> bool:
        return out.conn == conn and out.frames[1] == REKEYED and out.frames[2] == nick

    return drop


def rotating(
    alice: Identity, bob: Identity, broker: BrokerConfig | None = None
) -> tuple[MemoryRoom, bytes, PeerCore]:
    """alice and bob in a room, bob rotating his session key every `ROTATE` seconds; the
    broker's timers are `broker`'s (the defaults unless given)."""
    room = MemoryRoom() if broker is None else MemoryRoom(Broker(broker, random=seeded(0)))
    room.join("alice", alice)
    b = room.join("bob", bob, config=ROTATING)
    return room, b, room.peers[b]


def test_our_old_session_key_stays_current_until_the_broker_accepts_the_new_one(
    alice: Identity, bob: Identity
) -> None:
    room, b, core = rotating(alice, bob)
    ring = core.session_keys
    old = ring.current
    kept: list[Outgoing] = []
    withhold = answer_to(b, b"bob")

    def hold(out: Outgoing) -> bool:
        if withhold(out):  # type: ignore[operator]
            kept.append(out)
            return True
        return False

    room.drop = hold
    room.advance(ROTATE + 0.1)
    (answer,) = kept
    assert ring.current is old  # fully current: no grace has begun
    assert ring.proposed is not None
    assert ring.held()[:2] == (old, ring.proposed[0])  # what comes to the new one opens
    room.drop = None
    room.deliver([answer])
    assert ring.current is not old
    assert ring.held()[1] is old  # in its grace from now on
    room.advance(1.1)
    assert ring.held() == (ring.current,)


def test_a_refused_new_session_key_is_dropped_and_the_old_one_stays(
    alice: Identity, bob: Identity
) -> None:
    room, b, core = rotating(alice, bob)
    ring = core.session_keys
    old = ring.current
    room.lose = lambda conn, frames: conn == b and frames[1] == REKEY
    room.advance(ROTATE + 0.1)
    assert ring.proposed is not None
    events = hear(core, p.Error(p.ErrorCode.BAD_CERTIFICATE, "not newer"), now=room.now)
    assert [e.code for e in events if isinstance(e, ev.Problem)] == ["bad-certificate"]
    assert ring.proposed is None
    assert ring.held() == (old,)
    room.advance(1.0)  # no new key at once, and no reconnect
    assert ring.proposed is None
    assert core.phase is Phase.READY
    room.lose = None
    room.advance(core.link.rekey_wait)  # tried again half that later, and accepted
    assert ring.current is not old


def test_no_answer_to_a_new_session_key_within_the_timeout_means_a_new_connection(
    alice: Identity, bob: Identity
) -> None:
    room, b, core = rotating(alice, bob)
    room.drop = answer_to(b, b"bob")  # type: ignore[assignment]
    room.advance(ROTATE + 0.1)
    assert core.session_keys.proposed is not None
    room.advance(core.link.timeout + 0.2)
    assert core.reconnect_wanted  # a fresh HELLO carries a fresh key
    reasons = [e.reason for e in room.take(b) if isinstance(e, ev.Disconnected)]
    assert reasons == ["the broker did not accept our new session key"]
    room.drop = None
    room.reconnect(b)
    assert core.phase is Phase.READY
    assert core.session_keys.proposed is None


def test_a_broker_with_an_hour_long_timeout_that_swallows_a_rekey_keeps_our_old_key_no_longer(
    alice: Identity, bob: Identity
) -> None:
    # The broker's WELCOME sets the heartbeat timeout, up to an hour; how long our old
    # key stays current once its rotation is due is the peer's own bound, not that.
    hour = BrokerConfig(heartbeat_interval=1.0, heartbeat_timeout=MAX_TIMER)
    room, b, core = rotating(alice, bob, hour)
    assert core.link.timeout == MAX_TIMER
    room.lose = lambda conn, frames: conn == b and frames[1] == REKEY  # swallowed
    room.advance(ROTATE + 0.1)
    old = core.session_keys.current
    assert core.session_keys.proposed is not None
    room.advance(MAX_REKEY_WAIT - 1.0)
    assert core.phase is Phase.READY  # waiting for the answer, heartbeats answered
    room.advance(1.2)
    assert core.reconnect_wanted  # a fresh HELLO carries a fresh key
    reasons = [e.reason for e in room.take(b) if isinstance(e, ev.Disconnected)]
    assert reasons == ["the broker did not accept our new session key"]
    room.lose = None
    room.reconnect(b)
    assert core.phase is Phase.READY
    assert core.session_keys.current is not old


def test_a_broker_with_an_hour_long_timeout_that_refuses_every_rekey_keeps_our_old_key_no_longer(
    alice: Identity, bob: Identity
) -> None:
    # A refused REKEY is tried again; a broker that refuses every one (and set an hour's
    # timeout) must not keep our old key current for as long as it likes either.
    hour = BrokerConfig(heartbeat_interval=1.0, heartbeat_timeout=MAX_TIMER)
    liar = LyingBroker(hour, random=seeded(0))
    room = MemoryRoom(liar)
    room.join("alice", alice)
    b = room.join("bob", bob, config=ROTATING)
    core = room.peers[b]
    refused = p.encode(p.Error(p.ErrorCode.BAD_CERTIFICATE, "not newer"))

    def refuse(out: Outgoing) -> list[Outgoing]:
        if out.frames[1:3] != [REKEYED, b"bob"]:
            return [out]
        return [Outgoing(b, refused)] if out.conn == b else []  # nobody else hears of it

    liar.lie = refuse
    old = core.session_keys.current
    room.advance(ROTATE + 0.1)  # the rotation's first REKEY, refused at once
    assert core.session_keys.proposed is None
    assert core.session_keys.current is old
    room.advance(MAX_REKEY_WAIT - 0.5)
    tried = liar.commands["bob"].count(p.Command.REKEY)
    assert tried >= 2  # tried again within the bound...
    assert core.phase is Phase.READY
    room.advance(1.0)
    assert core.reconnect_wanted  # ...and not past it: a fresh HELLO carries a fresh key
    reasons = [e.reason for e in room.take(b) if isinstance(e, ev.Disconnected)]
    assert reasons == ["the broker did not accept our new session key"]
    assert liar.commands["bob"].count(p.Command.REKEY) == tried
    liar.lie = None
    room.reconnect(b)
    assert core.phase is Phase.READY
    assert core.session_keys.current is not old


# --- 6 (in the core). our own stall is not the broker's silence ------------------------------


def test_a_tick_long_after_the_last_is_our_stall_and_the_broker_gets_a_full_timeout(
    alice: Identity,
) -> None:
    core = ready_core("alice", alice)  # welcomed with 1 s and 5 s
    core.tick(0.5)
    core.tick(60.0)  # a minute stopped (SIGSTOP, a laptop lid)
    assert core.phase is Phase.READY
    assert not core.reconnect_wanted
    for second in range(61, 66):
        core.tick(float(second))
    assert core.phase is Phase.READY
    core.tick(65.5)  # still nothing, five seconds after we woke: the broker is gone
    assert core.reconnect_wanted


# --- 7. timers after a reconnect -------------------------------------------------------------


def test_a_reconnect_uses_the_configured_timers_until_the_new_welcome(alice: Identity) -> None:
    core = ready_core("alice", alice, timers=(100, 600))
    hear(core, p.Error(p.ErrorCode.EVICTED, "silent too long"))
    core.start(0.0)  # a new socket
    core.add_session_key(pooled_session_keys()(), 0.0, wall=WALL_AT_ZERO)
    core.take_outgoing()
    assert (core.link.interval, core.link.timeout) == (1.0, 5.0)
    core.tick(1.0)  # past the old broker's 0.6 s, well within the configured 5 s
    assert not core.reconnect_wanted
    core.tick(5.2)
    assert core.reconnect_wanted  # 5 s and the backoff


# --- 8 and leaving: nothing is lost without its sender being told ---------------------------


def test_leaving_names_whom_a_message_still_waited_for(alice: Identity, bob: Identity) -> None:
    here = [p.Member("bob", bob.public_der, certificate(bob, "bob", WALL_AT_ZERO))]
    core = ready_core("alice", alice, here, config=OPEN, dated=True)
    msg_id = core.send_text("are you there?", 0.0, wall=WALL_AT_ZERO)
    hear(core, p.Ack(msg_id, (), ("bob",)))  # bob is away
    core.leave()
    assert ev.Undelivered(msg_id, ("bob",)) in core.take_events()


def test_a_member_back_with_a_new_session_key_gets_what_it_missed_at_once(
    alice: Identity, bob: Identity
) -> None:
    here = [p.Member("bob", bob.public_der, certificate(bob, "bob", WALL_AT_ZERO))]
    core = ready_core("alice", alice, here, config=OPEN, dated=True)
    msg_id = core.send_text("did you get this?", 0.0, wall=WALL_AT_ZERO)
    core.take_outgoing()
    # The broker corrects its ACK (a delivery it dropped: bob's connection was taken
    # over by his own new one), and announces bob's new session key.
    hear(core, p.Ack(msg_id, ("bob",), ()), p.Ack(msg_id, (), ("bob",)), now=1.0)
    hear(core, p.Rekeyed("bob", certificate(bob, "bob", WALL_AT_ZERO + 1)), now=1.0)
    resent = [p.parse_from_peer(f) for f in core.take_outgoing()]
    assert [m.envelope.header.msg_id for m in resent if isinstance(m, p.Send)] == [msg_id]


def test_a_same_key_takeover_ends_the_old_peer_and_loses_nothing_untold(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    old = room.join("bob", bob)
    # What the broker sends bob's old connection now is held: its socket is full.
    _, out = room.send_by_hand(a, "held for the old bob", to=["bob"])
    for o in out:
        if o.conn == old:
            room.deliver(room.broker.hold(o, room.now))
        else:
            room.deliver([o])
    new = room.join("bob", bob)  # bob again, elsewhere: the takeover
    gone = room.peers[old]
    assert gone.phase is Phase.CLOSED
    assert [e for e in room.take(old) if isinstance(e, ev.Disconnected)][-1].final
    del room.peers[old]
    room.deliver(room.broker.unroutable(old, room.now))  # the old process exits
    room.advance(35.0)  # past alice's grace for absent recipients
    got = texts(room.take(new))
    told = [e for e in room.take(a) if isinstance(e, ev.Undelivered)]
    assert got == ["held for the old bob"] or told

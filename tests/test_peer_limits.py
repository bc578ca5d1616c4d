"""The peer core under a hostile broker: every count and byte it keeps has a bound, and
nothing the broker says crashes it or settles a message it did not deliver.

Members here share a few keys: the core loads each announced key on its own, so a
room of 1,000 needs no 1,000 RSA keys.
"""

from __future__ import annotations

import pytest

from tests.support.keys import KeyPool
from tests.support.room import WALL_AT_ZERO, MemoryRoom, certificate, pooled_session_keys
from tests.support.room import ready_core as support_ready_core
from zchat.envelope import Identity, format_fingerprint, nick_key
from zchat.envelope.limits import MAX_ROOM, MAX_TEXT_BYTES
from zchat.peer import events as ev
from zchat.peer.config import PeerConfig
from zchat.peer.contact import Contact
from zchat.peer.core import PeerCore
from zchat.peer.errors import CannotSeal
from zchat.peer.pins import Admission, How, Pin, Pins
from zchat.peer.render import problem_text
from zchat.peer.withheld import MAX_WITHHELD_BYTES, Withheld, held_size
from zchat.wire import protocol as p

OTHERS = MAX_ROOM - 1  # a room of MAX_ROOM holds us and this many others


def ready_core(me: Identity, members: list[p.Member], now: float = 0.0) -> PeerCore:
    """A core welcomed into an open room the test announces; its events kept."""
    return support_ready_core(
        "me",
        me,
        members,
        config=PeerConfig(admit_all=True),
        now=now,
        wall=WALL_AT_ZERO + now,
        session_key=SESSION_KEYS(),
        timers=(100, 500),
        keep_events=True,
    )


def crowd(n: int, key: Identity, prefix: str = "m") -> list[p.Member]:
    """`n` members sharing one identity key, each with a genuine session certificate."""
    return [member(f"{prefix}{i}", key) for i in range(n)]


def member(nick: str, key: Identity) -> p.Member:
    # A room of a thousand is a thousand signatures: made once a run, for every test.
    index = (nick, key.fingerprint)
    if index not in _MEMBERS:
        _MEMBERS[index] = p.Member(nick, key.public_der, certificate(key, nick, WALL_AT_ZERO))
    return _MEMBERS[index]


_MEMBERS: dict[tuple[str, bytes], p.Member] = {}


SESSION_KEYS = pooled_session_keys()


def problems(events: list[ev.Event], code: str) -> list[ev.Problem]:
    return [e for e in events if isinstance(e, ev.Problem) and e.code == code]


def recipients_of(core: PeerCore) -> tuple[str, ...]:
    (frames,) = core.take_outgoing()
    send = p.parse_from_peer(frames)
    assert isinstance(send, p.Send)
    return send.envelope.recipients


# --- the room limit ------------------------------------------------------------------


def test_a_snapshot_of_more_members_than_a_room_holds_is_cut_at_the_limit_and_said(
    alice: Identity, bob: Identity
) -> None:
    core = ready_core(alice, crowd(OTHERS + 1, bob))
    events = core.take_events()
    assert len(core.members) == OTHERS
    (full,) = problems(events, "room-full")
    assert f"{MAX_ROOM}" in problem_text(full)
    # The line typed next reaches everyone admitted: nothing raises.
    core.send_text("hello", 0.0, wall=1.7e9)
    assert len(recipients_of(core)) == OTHERS
    assert len(core.outbox) == 1


def test_joins_beyond_the_limit_are_refused_and_said_once(alice: Identity, bob: Identity) -> None:
    core = ready_core(alice, crowd(OTHERS - 1, bob))
    core.take_events()
    for i in range(50):
        core.receive(p.encode(p.Join(p.Member(f"late{i}", bob.public_der))), 0.0)
    events = core.take_events()
    assert len(core.members) == OTHERS
    assert [e.nick for e in events if isinstance(e, ev.Joined)] == ["late0"]
    assert len(problems(events, "room-full")) == 1  # not one line per refused join
    assert nick_key("late1") not in core.members
    # Someone leaves: there is room again, and a refusal is news again.
    core.receive(p.encode(p.Leave("m0", p.LeaveReason.BYE)), 0.0)
    core.receive(p.encode(p.Join(p.Member("late1", bob.public_der))), 0.0)
    core.receive(p.encode(p.Join(p.Member("late2", bob.public_der))), 0.0)
    events = core.take_events()
    assert [e.nick for e in events if isinstance(e, ev.Joined)] == ["late1"]
    assert len(problems(events, "room-full")) == 1


def test_after_a_broker_restart_present_and_missing_members_together_stay_within_the_limit(
    alice: Identity, bob: Identity
) -> None:
    """An honest broker restarts: those not back yet are still addressed (they are most
    likely reconnecting), and newcomers arrive. Present members win over missing ones."""
    old, new = OTHERS // 2 + 100, OTHERS // 2 + 50  # together over the limit
    core = ready_core(alice, crowd(old, bob, "old"))
    core.take_events()
    core.receive(p.encode(p.Error(p.ErrorCode.HELLO_FIRST, "who?", b"")), 1.0)  # restarted
    core.add_session_key(pooled_session_keys()(), 1.0, wall=WALL_AT_ZERO + 1)  # HELLO goes
    core.take_outgoing()
    core.receive(p.encode(p.Challenge(bytes(32))), 1.0)
    core.receive(p.encode(p.Welcome("me", 100, 500)), 1.0)
    core.receive(p.encode(p.Snapshot(tuple(crowd(new, bob, "new")))), 1.0)
    events = core.take_events()
    assert len(core.members) == new
    # Those present and those missing are over the limit: the missing longest gone go.
    assert len([e for e in events if isinstance(e, ev.Left)]) == new + old - OTHERS
    assert not problems(events, "room-full")  # nobody present was refused
    core.take_outgoing()
    core.send_text("still here?", 1.0, wall=1.7e9)
    assert len(recipients_of(core)) == OTHERS


def test_a_message_that_cannot_be_sealed_is_a_typed_error_and_nothing_is_lost(
    alice: Identity, bob: Identity
) -> None:
    """Defence in depth: should the directory ever hold more than a header can name,
    sending raises a `PeerError` the front ends show, and the outbox keeps what it had."""
    core = ready_core(alice, crowd(3, bob))
    core.send_text("before", 0.0, wall=1.7e9)
    seq = core.seq
    session = core.members["m0"].session
    assert session is not None
    for i in range(MAX_ROOM):  # behind the core's back
        core.members[f"x{i}"] = Contact(
            f"x{i}",
            bob.public_key,
            bob.public_der,
            bob.fingerprint,
            ev.Trust.PINNED,
            Admission(How.OPEN),
            session=session,
        )
    with pytest.raises(CannotSeal):
        core.send_text("too many", 0.0, wall=1.7e9)
    assert [e.text for e in core.outbox] == ["before"]
    assert core.seq == seq  # no number used up


# --- held-back messages --------------------------------------------------------------


def test_held_back_messages_are_capped_in_bytes_over_all_senders_oldest_dropped_first(
    keys: KeyPool,
) -> None:
    alice, bob, carol, dave, stranger = keys.many(5)
    others = {"bob": bob, "carol": carol, "dave": dave}
    # alice admitted other keys for all three: each arrives CHANGED, and holds back.
    admitted = Admission(How.YOU, "", 1)
    pins = Pins(Pin(nick, stranger.fingerprint, admitted) for nick in others)
    room = MemoryRoom()
    a = room.join("alice", alice, pins=pins, config=PeerConfig(admit_all=False))
    conns = {nick: room.join(nick, key) for nick, key in others.items()}
    room.take(a)
    text = "x" * MAX_TEXT_BYTES
    sent = []
    for i in range(80):
        for conn in conns.values():
            sent.append(room.send(conn, f"{i:03}{text[3:]}", to=["alice"]))
    room.pump()
    events = room.take(a)
    core = room.peers[a]
    arrived = [e.msg_id for e in events if isinstance(e, ev.Untrusted)]
    assert sorted(arrived) == sorted(sent)
    held = core.roster.inbox.withheld
    assert held.total_bytes <= MAX_WITHHELD_BYTES
    dropped = problems(events, "held-back-dropped")
    assert dropped
    assert len(dropped) + len(held) == len(sent)
    still_held = len(held)
    released: list[bytes] = []
    for nick, key in others.items():
        core.trust(nick, format_fingerprint(key.fingerprint), room.now)
        released += [e.msg_id for e in core.take_events() if isinstance(e, ev.MessageReceived)]
    assert len(released) == still_held == len(sent) - len(dropped)
    # The newest survive: every message kept arrived after every message dropped.
    kept = set(released)
    order = {msg_id: i for i, msg_id in enumerate(arrived)}
    assert min(order[m] for m in kept) > max(order[m] for m in arrived if m not in kept)


def test_the_held_back_store_drops_per_sender_and_in_all_oldest_first(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    deliveries = []
    for i in range(6):
        _, out = room.send_by_hand(b, f"message {i}")
        frames = next(o.frames for o in out if o.conn == a)
        deliver = p.parse_from_broker(frames)
        assert isinstance(deliver, p.Deliver)
        deliveries.append(deliver.delivery)
    size = held_size(deliveries[0])
    store = Withheld(max_per_sender=3, max_bytes=4 * size)
    assert store.hold("bob", deliveries[0]) == (True, [])
    assert store.hold("bob", deliveries[0]) == (False, [])  # the same message again
    store.hold("bob", deliveries[1])
    store.hold("bob", deliveries[2])
    added, dropped = store.hold("bob", deliveries[3])  # a fourth from bob: his oldest goes
    assert added
    assert [d.delivery for d in dropped] == [deliveries[0]]
    store.hold("carol", deliveries[4])
    _, dropped = store.hold("carol", deliveries[5])  # over the bytes: the oldest of all goes
    assert [(d.sender, d.delivery) for d in dropped] == [("bob", deliveries[1])]
    assert store.total_bytes <= 4 * size
    assert store.release("bob") == deliveries[2:4]
    assert store.release("carol") == deliveries[4:6]
    assert store.total_bytes == 0
    assert len(store) == 0


# --- acknowledgements ----------------------------------------------------------------


def three(alice: Identity, bob: Identity, carol: Identity) -> tuple[MemoryRoom, bytes]:
    room = MemoryRoom()
    a = room.join("alice", alice, config=PeerConfig(absent_grace=1.0, admit_all=True))
    room.join("bob", bob)
    room.join("carol", carol)
    room.take(a)
    return room, a


def test_an_ack_naming_non_recipients_is_a_problem_and_settles_nothing(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room, a = three(alice, bob, carol)
    core = room.peers[a]
    _, out = room.send_by_hand(a, "for bob and carol")
    msg_id = next(iter(core.outbox)).msg_id
    core.receive(p.encode(p.Ack(msg_id, ("mallory", "eve"), ())), room.now)
    events = core.take_events()
    (lie,) = problems(events, "bad-ack")
    assert "mallory" in problem_text(lie)
    assert "eve" in problem_text(lie)
    assert not [e for e in events if isinstance(e, ev.Acked)]  # never "delivered to 2"
    # Still unacknowledged: resent after a reconnect, and named on leaving if the
    # broker never answers truly.
    (entry,) = core.pending_acks()
    assert sorted(entry.pending.values()) == ["bob", "carol"]
    room.deliver([o for o in out if o.conn == a])  # the broker's true answer
    room.pump()
    assert [(e.delivered, e.absent) for e in room.take(a) if isinstance(e, ev.Acked)] == [
        (("bob", "carol"), ())
    ]
    assert len(core.outbox) == 0


def test_a_recipient_an_ack_leaves_out_is_waited_for_not_pending_for_ever(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room, a = three(alice, bob, carol)
    core = room.peers[a]
    room.send_by_hand(a, "for bob and carol")  # the broker's answer is lost
    msg_id = next(iter(core.outbox)).msg_id
    core.receive(p.encode(p.Ack(msg_id, ("bob",), ())), room.now)  # carol unmentioned
    events = core.take_events()
    assert [(e.delivered, e.absent) for e in events if isinstance(e, ev.Acked)] == [
        (("bob",), ("carol",))
    ]
    room.advance(1.5)
    assert ev.Undelivered(msg_id, ("carol",)) in room.take(a)
    assert len(core.outbox) == 0


def test_a_late_ack_never_reopens_a_settled_message_nor_is_reported_twice(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room, a = three(alice, bob, carol)
    core = room.peers[a]
    msg_id = room.send(a, "settled", to=["bob"])
    room.pump()
    assert [e.delivered for e in room.of_type(a, ev.Acked)] == [("bob",)]
    room.take(a)
    lies = [
        p.Ack(msg_id, (), ("mallory",)),  # a correction for a non-recipient
        p.Ack(msg_id, ("bob",), ()),  # a repeat
        p.Ack(msg_id, ("carol",), ("bob",)),  # not a correction: it names deliveries
        p.Ack(msg_id, (), ("bob", "carol")),  # a correction names one recipient
    ]
    for lie in lies:
        core.receive(p.encode(lie), room.now)
    events = core.take_events()
    assert [e for e in events if isinstance(e, ev.Acked)] == []
    assert len(problems(events, "bad-ack")) == 3  # mallory, carol, carol
    assert len(core.outbox) == 0
    room.advance(1.5)
    assert not room.of_type(a, ev.Undelivered)


def test_a_repeated_ack_of_a_message_still_waiting_reports_only_news(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room, a = three(alice, bob, carol)
    core = room.peers[a]
    room.send_by_hand(a, "to both")
    msg_id = next(iter(core.outbox)).msg_id
    for _ in range(3):
        core.receive(p.encode(p.Ack(msg_id, ("bob",), ("carol",))), room.now)
    core.receive(p.encode(p.Ack(msg_id, ("carol",), ())), room.now)
    acks = [(e.delivered, e.absent) for e in core.take_events() if isinstance(e, ev.Acked)]
    assert acks == [(("bob",), ("carol",)), (("carol",), ())]
    assert len(core.outbox) == 0


def test_an_honest_correction_still_reopens_the_recipient_it_names(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room, a = three(alice, bob, carol)
    core = room.peers[a]
    msg_id = room.send(a, "queued, then lost", to=["bob"])
    room.pump()
    core.receive(p.encode(p.Ack(msg_id, (), ("BOB",))), room.now)  # spelled as bob did
    assert [(e.delivered, e.absent) for e in core.take_events() if isinstance(e, ev.Acked)] == [
        ((), ("BOB",))
    ]
    assert [e.msg_id for e in core.outbox] == [msg_id]
    room.advance(1.5)
    assert ev.Undelivered(msg_id, ("bob",)) in room.take(a)

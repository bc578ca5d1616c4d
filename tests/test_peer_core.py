"""The peer core's own rules, in memory: input it refuses, and what it reports."""

from __future__ import annotations

import pytest

from tests.support.keys import KeyPool
from tests.support.room import WALL_AT_ZERO, MemoryRoom, pooled_session_keys, seeded
from zchat.envelope import Header, Identity, Recipient, generate_identity, room_id, seal
from zchat.envelope.limits import MAX_NAMED
from zchat.peer import events as ev
from zchat.peer.config import PeerConfig
from zchat.peer.core import PeerCore, Phase
from zchat.peer.errors import CannotSeal, NotText
from zchat.peer.pins import ChangeKind, Pin
from zchat.peer.render import problem_text
from zchat.wire import protocol as p


def test_a_line_that_is_not_text_is_refused_and_the_session_goes_on(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    # standard input hands undecodable bytes over as lone surrogates
    with pytest.raises(NotText):
        room.send(a, "caf\udce9")
    room.send(a, "café")
    room.pump()
    assert [e.text for e in room.of_type(b, ev.MessageReceived)] == ["café"]


def test_a_recipient_whose_key_changes_before_the_ack_is_reported_undelivered(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    room.join("bob", bob)
    core = room.peers[a]
    room.send(a, "for the old bob", to=["bob"])
    core.take_outgoing()  # the SEND never reaches the broker
    msg_id = core.outbox.unacked()[0].msg_id
    impostor = generate_identity()
    core.receive(p.encode(p.Join(p.Member("bob", impostor.public_der))), room.now)
    events = core.take_events()
    assert ev.Undelivered(msg_id, ("bob",)) in events
    assert len(core.outbox) == 0  # nobody left to wait for


def test_a_message_older_than_the_replay_window_is_reported_stale(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    sender = room.peers[a]
    room.send(a, "first")
    room.pump()
    (old,) = [f for f in room.wire[b] if f[1] == bytes([p.Command.DELIVER])]
    sender.roster.sending.seq += 1_000_000  # far ahead: the first message is now outside the window
    room.send(a, "much later")
    room.pump()
    room.peers[b].receive(old, room.now)  # a replay of the first
    events = room.peers[b].take_events()
    assert [e.code for e in events if isinstance(e, ev.Problem)] == ["stale"]
    assert not [e for e in events if isinstance(e, ev.MessageReceived)]


def test_a_resent_duplicate_is_dropped_silently(alice: Identity, bob: Identity) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    room.send(a, "once")
    room.pump()
    (copy,) = [f for f in room.wire[b] if f[1] == bytes([p.Command.DELIVER])]
    room.peers[b].receive(copy, room.now)
    assert room.peers[b].take_events() == []


def test_a_snapshot_before_any_welcome_is_ignored(alice: Identity, bob: Identity) -> None:
    core = PeerCore("alice", alice, seq=1, random=seeded(1))
    core.start(0.0)
    core.receive(p.encode(p.Snapshot((p.Member("bob", bob.public_der),))), 0.0)
    assert [type(e) for e in core.take_events()] == [ev.Problem]
    assert core.members == {}


def test_a_delivery_with_a_damaged_wrapped_key_does_not_use_up_its_number(
    alice: Identity, bob: Identity
) -> None:
    """A broker passes on a genuine header and signature with a broken wrapped key:
    it must not burn the sequence number of the genuine resend that follows."""
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    _, out = room.send_by_hand(a, "the real one")
    (genuine,) = [o.frames for o in out if o.conn == b]
    damaged = [*genuine[:-1], bytes(len(genuine[-1]))]  # the wrapped key zeroed
    recipient = room.peers[b]
    recipient.receive(damaged, room.now)
    assert [e.code for e in recipient.take_events() if isinstance(e, ev.Problem)] == [
        "cannot-decrypt"
    ]
    recipient.receive(genuine, room.now)
    assert [e.text for e in recipient.take_events() if isinstance(e, ev.MessageReceived)] == [
        "the real one"
    ]


# --- inputs and outputs: the time, randomness and pins are values --------------------


def test_a_core_seals_with_the_clock_numbers_and_randomness_it_is_given(
    alice: Identity, bob: Identity
) -> None:
    """The same room run twice seals the same header: nothing in it comes from the
    machine's clock or randomness, only from what the room handed the core."""

    def first_header() -> tuple[int, Header]:
        room = MemoryRoom()
        a = room.join("alice", alice)
        room.join("bob", bob)
        room.now += 7.25  # the date moves with the room's clock
        seq = room.peers[a].seq
        frames, _ = room.send_by_hand(a, "hello")
        send = p.parse_from_peer(frames)
        assert isinstance(send, p.Send)
        return seq, send.envelope.header

    (seq, header), (_, again) = first_header(), first_header()
    assert header == again
    assert header.seq == seq
    assert header.timestamp_ms == int((WALL_AT_ZERO + 1000.0 + 7.25) * 1000)


def test_pins_come_out_as_one_value_however_many_joins_pinned_them(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    core = room.peers[room.join("alice", alice)]
    assert core.take_pins() is None  # nobody else here: nothing pinned
    joins = [p.encode(p.Join(p.Member(f"m{i:02}", bob.public_der))) for i in range(30)]
    for frames in joins:  # one batch of input, as a loop reads it
        core.receive(frames, room.now)
    changed = core.take_pins()
    assert changed is not None
    pins = changed.pins
    seen = int(room.wall * 1000)  # the date they were seen, for unadmitted pins to expire by
    assert pins == tuple(Pin(f"m{i:02}", bob.fingerprint, seen_ms=seen) for i in range(30))
    # What the file gets is the changes, one a pin, to merge into what is on disk.
    assert [(c.kind, c.nick) for c in changed.changes] == [
        (ChangeKind.PIN, f"m{i:02}") for i in range(30)
    ]
    assert core.take_pins() is None  # handed out once
    core.receive(joins[0], room.now)  # the same key again: nothing new to save
    assert core.take_pins() is None
    core.receive(p.encode(p.Join(p.Member("carol", alice.public_der))), room.now)
    carol = Pin("carol", alice.fingerprint, seen_ms=seen)
    again = core.take_pins()
    assert again is not None
    assert again.pins == (carol, *pins)  # every pin, sorted
    assert [c.nick for c in again.changes] == ["carol"]  # only what changed
    assert len(pins) == 30  # a value: what was handed out before stays as it was


# --- protocol version 3: rooms, kinds, names ------------------------------------------


def sealed_by_hand(
    room: MemoryRoom, sender: bytes, to: bytes, *, kind: int = 1, room_id: bytes | None = None
) -> list[bytes]:
    """A genuine DELIVER from `sender` to `to`, sealed outside the core (another kind, or
    another room's id), wrapped to `to`'s current session key."""
    me = room.peers[sender]
    them = room.peers[to]
    key = them.session_keys.held()[0]
    env = seal(
        b"from elsewhere",
        sender=me.identity,
        sender_nick=me.nick,
        room_id=me.room_id if room_id is None else room_id,
        recipients=[Recipient(them.nick, key.private_key.public_key(), key.fingerprint)],
        seq=me.seq + 10,
        kind=kind,  # type: ignore[arg-type]
    )
    return p.encode(p.Deliver(env.delivery_for(0)))


def test_a_genuine_message_for_another_room_is_reported_and_never_shown(
    alice: Identity, bob: Identity
) -> None:
    """bob is alice's member in two rooms: her message for "exec", delivered here, is
    refused (issue 18.4), however genuine."""
    room = MemoryRoom()
    a, b = room.join("alice", alice), room.join("bob", bob)
    room.take(b)
    room.peers[b].receive(sealed_by_hand(room, a, b, room_id=room_id("exec")), room.now)
    events = room.peers[b].take_events()
    assert [e.code for e in events if isinstance(e, ev.Problem)] == ["wrong-room"]
    assert [e for e in events if isinstance(e, ev.MessageReceived)] == []


def test_a_message_of_a_kind_this_zchat_does_not_know_is_verified_then_dropped(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    a, b = room.join("alice", alice), room.join("bob", bob)
    room.peers[b].take_events()
    room.peers[b].receive(sealed_by_hand(room, a, b, kind=9), room.now)
    events = room.peers[b].take_events()
    (problem,) = [e for e in events if isinstance(e, ev.Problem)]
    assert problem.code == "unknown-kind"
    assert "(9)" in problem_text(problem)
    assert [e for e in events if isinstance(e, ev.MessageReceived)] == []


def test_a_direct_message_to_more_people_than_a_header_names_is_refused_clearly(
    keys: KeyPool,
) -> None:
    room = MemoryRoom()
    a = room.join("alice", keys.get(0))
    for i in range(MAX_NAMED + 1):
        room.join(f"m{i:02d}", keys.get(1 + i))  # one key holds one nickname
    names = [f"m{i:02d}" for i in range(MAX_NAMED + 1)]
    with pytest.raises(CannotSeal, match=f"at most {MAX_NAMED} people"):
        room.send(a, "too many for a /msg", to=names)
    room.send(a, "sixteen is fine", to=names[:MAX_NAMED])
    room.pump()
    (sent,) = room.of_type(a, ev.Sent)
    assert len(sent.recipients) == MAX_NAMED


def test_a_welcome_into_another_room_than_asked_for_is_a_problem(alice: Identity) -> None:
    core = PeerCore("alice", alice, seq=1, random=seeded(1), config=PeerConfig(room="ops"))
    core.start(0.0)
    core.add_session_key(pooled_session_keys()(), 0.0, wall=WALL_AT_ZERO)
    (hello,) = core.take_outgoing()
    assert hello[-1] == b"ops"  # HELLO names the room
    core.receive(p.encode(p.Challenge(bytes(p.CHALLENGE_BYTES))), 0.0)
    core.take_outgoing()  # the PROOF
    core.receive(p.encode(p.Welcome("alice", 1000, 5000, "zchat")), 0.0)
    assert [e.code for e in core.take_events() if isinstance(e, ev.Problem)] == ["unexpected"]
    core.receive(p.encode(p.Snapshot(())), 0.0)
    assert core.phase is not Phase.READY

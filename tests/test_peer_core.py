"""The peer core's own rules, in memory: input it refuses, and what it reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.memory import MemoryRoom
from zchat.envelope import Identity, generate_identity
from zchat.peer import events as ev
from zchat.peer.core import PeerCore
from zchat.peer.errors import NotText
from zchat.peer.pins import PINS_FILE, PinStore
from zchat.wire import protocol as p


def test_a_line_that_is_not_text_is_refused_and_the_session_goes_on(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    # standard input hands undecodable bytes over as lone surrogates
    with pytest.raises(NotText):
        room.peers[a].send_text("caf\udce9", room.now)
    room.peers[a].send_text("café", room.now)
    room.pump()
    assert [e.text for e in room.of_type(b, ev.MessageReceived)] == ["café"]


def test_a_recipient_whose_key_changes_before_the_ack_is_reported_undelivered(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    room.join("bob", bob)
    core = room.peers[a]
    core.send_text("for the old bob", room.now, to=["bob"])
    core.take_outgoing()  # the SEND never reaches the broker
    msg_id = core.outbox.unacked()[0].msg_id
    impostor = generate_identity()
    core.receive(p.encode(p.Join(p.Member("bob", impostor.public_der))), room.now)
    events = core.take_events()
    assert ev.Undelivered(msg_id, ("bob",)) in events
    assert len(core.outbox) == 0  # nobody left to wait for


def test_a_pins_file_that_cannot_be_written_is_reported_not_raised(
    tmp_path: Path, alice: Identity, bob: Identity
) -> None:
    pins = PinStore.open(tmp_path)
    # A directory where the temporary file must go: no write can succeed, not even
    # as root (a read-only mode would not stop root).
    (tmp_path / (PINS_FILE + ".tmp")).mkdir()
    room = MemoryRoom()
    a = room.join("alice", alice, pins=pins)
    room.join("bob", bob)
    assert [e.code for e in room.of_type(a, ev.Problem)] == ["pins"]
    assert pins.get("bob") == bob.fingerprint  # the pin holds for the session
    assert [e.nick for e in room.of_type(a, ev.Joined)] == ["bob"]


def test_a_message_older_than_the_replay_window_is_reported_stale(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    sender = room.peers[a]
    sender.send_text("first", room.now)
    room.pump()
    (old,) = [f for f in room.wire[b] if f[1] == bytes([p.Command.DELIVER])]
    sender.seq += 1_000_000  # far ahead: the first message is now outside the window
    sender.send_text("much later", room.now)
    room.pump()
    room.peers[b].receive(old, room.now)  # a replay of the first
    events = room.peers[b].take_events()
    assert [e.code for e in events if isinstance(e, ev.Problem)] == ["stale"]
    assert not [e for e in events if isinstance(e, ev.MessageReceived)]


def test_a_resent_duplicate_is_dropped_silently(alice: Identity, bob: Identity) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    room.peers[a].send_text("once", room.now)
    room.pump()
    (copy,) = [f for f in room.wire[b] if f[1] == bytes([p.Command.DELIVER])]
    room.peers[b].receive(copy, room.now)
    assert room.peers[b].take_events() == []


def test_a_snapshot_before_any_welcome_is_ignored(alice: Identity, bob: Identity) -> None:
    core = PeerCore("alice", alice)
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

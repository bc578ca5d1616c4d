"""Batched receive: deliveries read in one go are opened in one pass
(`PeerCore.receive_many`), and come to what they would have one at a time."""

from __future__ import annotations

from tests.support.room import MemoryRoom
from zchat.broker.outgoing import Outgoing
from zchat.envelope import Identity
from zchat.peer import events as ev
from zchat.wire import protocol as p


def _held_for(room: MemoryRoom, conn: bytes) -> list[list[bytes]]:
    """Have the room keep `conn`'s DELIVERs back; they land in the list returned."""
    held: list[list[bytes]] = []

    def drop(out: Outgoing) -> bool:
        if out.conn == conn and out.frames[1] == bytes([p.Command.DELIVER]):
            held.append(out.frames)
            return True
        return False

    room.drop = drop
    return held


def _alice_to_bob(
    alice: Identity, bob: Identity
) -> tuple[MemoryRoom, bytes, bytes, list[list[bytes]]]:
    """A room of alice and bob, bob's DELIVERs kept back from now on (the list)."""
    room = MemoryRoom()
    a, b = room.join("alice", alice), room.join("bob", bob)
    room.take(b)
    return room, a, b, _held_for(room, b)


def _texts(events: list[ev.Event]) -> list[tuple[str, str]]:
    return [(e.sender, e.text) for e in events if isinstance(e, ev.MessageReceived)]


def test_a_batch_from_two_senders_is_shown_in_the_order_it_came(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    a, b, c = room.join("alice", alice), room.join("bob", bob), room.join("carol", carol)
    room.take(b)
    held = _held_for(room, b)
    for i in range(3):
        room.send(a, f"a{i}")
        room.send(c, f"c{i}")
        room.pump()
    assert len(held) == 6
    room.peers[b].receive_many(held, room.now)
    events = room.peers[b].take_events()
    assert _texts(events) == [(n, f"{n[0]}{i}") for i in range(3) for n in ("alice", "carol")]
    assert not [e for e in events if isinstance(e, ev.Problem)]


def test_a_duplicate_and_a_forgery_in_a_batch_spoil_nothing_else(
    alice: Identity, bob: Identity
) -> None:
    room, a, b, held = _alice_to_bob(alice, bob)
    for text in ("one", "two", "three"):
        room.send(a, text)
        room.pump()
    one, two, three = held
    forged = [*two[:-1], two[-1][:-1] + bytes([two[-1][-1] ^ 1])]
    room.peers[b].receive_many([one, one, forged, three], room.now)
    events = room.peers[b].take_events()
    assert _texts(events) == [("alice", "one"), ("alice", "three")]  # the copy shown once
    assert len([e for e in events if isinstance(e, ev.Problem)]) == 1  # the forgery


def test_a_message_a_later_one_in_the_batch_makes_stale_is_reported_stale(
    alice: Identity, bob: Identity
) -> None:
    # One at a time, the later message moves the window past the first, which then
    # comes in stale; in one pass both are checked before either is recorded, so the
    # pass asks again once the later one is.
    room, a, b, held = _alice_to_bob(alice, bob)
    room.send(a, "first")
    room.pump()
    room.peers[a].roster.sending.seq += 1_000_000  # far ahead: outside the window
    room.send(a, "much later")
    room.pump()
    first, later = held
    room.peers[b].receive_many([later, first], room.now)
    events = room.peers[b].take_events()
    assert _texts(events) == [("alice", "much later")]
    assert [e.code for e in events if isinstance(e, ev.Problem)] == ["stale"]

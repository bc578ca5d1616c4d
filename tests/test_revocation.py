"""Revocation (docs/PROTOCOL.md §4.5, docs/SECURITY.md claim 9): /revoke takes an
admission back, at once and for good, and the room follows.

alice admitted everyone by comparing fingerprints; the others admitted each other on
her word (`closed_room`). When alice takes dave back, whoever admitted dave only on her
word drops him, passes the revocation on, and drops whoever it admitted only on dave's
word; whoever compared dave itself keeps its own decision and is told. Only a new vouch,
newer than the revocation, admits dave again; and at alice's, only her own comparison
(a tombstone).

Cores here run in memory, back to back with a real broker core; tests/test_pinfile.py
and tests/test_admission_live.py do the same with files, processes and sockets.
"""

from __future__ import annotations

import pytest

from tests.support.keys import KeyPool
from tests.support.room import CLOSED, MemoryRoom
from tests.test_admission import Tap, closed_room, readers, typed, vouch_delivery
from zchat.envelope import MessageKind, make_vouch
from zchat.peer import events as ev
from zchat.peer.errors import UnknownRecipient
from zchat.peer.pins import How, Tombstone
from zchat.peer.render import Renderer, plain


def revoked(room: MemoryRoom, conn: bytes) -> list[tuple[str, str, bool, str]]:
    return [(e.nick, e.by, e.dropped, e.via) for e in room.of_type(conn, ev.Revoked)]


def test_a_revocation_drops_a_member_admitted_only_on_the_revokers_word(keys: KeyPool) -> None:
    room, conns = closed_room(["alice", "bob", "carol", "dave"], keys)
    a, b, c, d = (conns[n] for n in ("alice", "bob", "carol", "dave"))
    dave = keys.get(3)
    # carol compares dave herself: her own decision, which no one else's revocation undoes.
    room.peers[c].admit("dave", typed(dave), room.now)
    room.pump()
    for conn in conns.values():
        room.take(conn)
    tap = Tap(room)

    room.peers[a].revoke("dave", room.now)
    room.pump()
    # alice: nothing more for dave, at once; the REVOKE goes to the others, not to dave.
    assert "dave" not in readers(room.peers[a])
    assert revoked(room, a) == [("dave", "alice", True, "")]
    (revoke,) = tap.take(a)
    assert revoke.envelope.header.kind is MessageKind.MEMBERSHIP
    assert sorted(revoke.envelope.recipients) == ["bob", "carol"]
    assert room.peers[a].pins.get("dave") is None  # the pin goes...
    tomb = room.peers[a].pins.tombstone(dave.fingerprint)  # ...a tombstone stays
    assert tomb is not None
    # bob admitted dave on alice's word: he drops him. carol compared: she keeps him.
    assert revoked(room, b) == [("dave", "alice", True, "")]
    assert "dave" not in readers(room.peers[b])
    assert revoked(room, c) == [("dave", "alice", False, "")]
    assert "dave" in readers(room.peers[c])
    assert revoked(room, d) == []
    # What bob writes from now on is not sealed to dave; carol's still is.
    room.send(b, "after the revocation")
    room.send(c, "carol still writes to dave")
    room.pump()
    assert [e.text for e in room.of_type(d, ev.MessageReceived)] == ["carol still writes to dave"]
    (line,) = Renderer("bob").render(room.of_type(b, ev.Revoked)[0], room.wall)
    assert (
        plain(line) == "! alice took back the admission of dave: dave reads nothing more from you"
    )
    (line,) = Renderer("carol").render(room.of_type(c, ev.Revoked)[0], room.wall)
    assert "you admitted dave yourself" in plain(line)


def test_a_revocation_is_passed_on_and_takes_with_it_whom_the_dropped_member_vouched_for(
    keys: KeyPool,
) -> None:
    """erin came in later through bob (she admitted alice, carol and dave on his word).
    frank came in through dave only. When alice takes dave back, bob passes it on to erin,
    and frank, admitted only on dave's word, goes with dave wherever dave goes."""
    room, conns = closed_room(["alice", "bob", "carol", "dave"], keys)
    a, b, c, d = (conns[n] for n in ("alice", "bob", "carol", "dave"))
    dave, erin, frank = keys.get(3), keys.get(6), keys.get(7)
    room.peers[c].admit("dave", typed(dave), room.now)  # carol compared dave herself
    e = room.join("erin", erin, config=CLOSED)
    room.peers[e].admit("bob", typed(keys.get(1)), room.now)
    room.peers[b].admit("erin", typed(erin), room.now)
    room.pump()
    f = room.join("frank", frank, config=CLOSED)
    room.peers[f].admit("dave", typed(dave), room.now)
    room.peers[d].admit("frank", typed(frank), room.now)
    room.pump()
    for conn in (a, b, c, e):
        assert readers(room.peers[conn]) >= {"dave", "frank"}, conn
    assert room.peers[e].members["dave"].admission.by == "bob"  # type: ignore[union-attr]
    for conn in (*conns.values(), e, f):
        room.take(conn)

    room.peers[a].revoke("dave", room.now)
    room.pump()
    assert revoked(room, a) == [("dave", "alice", True, ""), ("frank", "alice", True, "dave")]
    assert revoked(room, b) == [("dave", "alice", True, ""), ("frank", "alice", True, "dave")]
    # erin heard alice (she admitted dave on bob's word: kept), then bob, who passed it on.
    assert revoked(room, e) == [
        ("dave", "alice", False, ""),
        ("dave", "bob", True, ""),
        ("frank", "bob", True, "dave"),
    ]
    assert revoked(room, c) == [("dave", "alice", False, "")]  # carol keeps dave, and frank
    for conn in (a, b, e):
        assert not readers(room.peers[conn]) & {"dave", "frank"}, conn
    assert readers(room.peers[c]) >= {"dave", "frank"}
    # Nobody who dropped them seals anything more to them.
    for conn in (a, b, e):
        room.send(conn, "after")
    room.pump()
    assert room.of_type(d, ev.MessageReceived) == []
    assert room.of_type(f, ev.MessageReceived) == []


def test_a_vouch_newer_than_the_revocation_admits_again_but_never_at_the_revokers(
    keys: KeyPool,
) -> None:
    room, conns = closed_room(["alice", "bob", "carol", "dave"], keys)
    a, b, c = (conns[n] for n in ("alice", "bob", "carol"))
    carol, dave = keys.get(2), keys.get(3)
    room.peers[c].admit("dave", typed(dave), room.now)
    room.pump()
    room.peers[a].revoke("dave", room.now)
    room.pump()
    assert "dave" not in readers(room.peers[b])
    # carol's vouch for dave, as old as the one alice took back: alice refuses it, since
    # only her own comparison admits a key she forgot.
    seq = 1 << 50
    old = make_vouch(
        carol, room_id=room.peers[a].room_id, nick="dave", fingerprint=dave.fingerprint, time_ms=1
    )
    delivery = vouch_delivery(carol, "carol", ("alice", room.peers[a]), [old], seq)
    room.peers[a].receive(delivery, room.now)
    room.pump()
    # Nor under another name: the key was forgotten, whatever it is called.
    renamed = make_vouch(
        carol, room_id=room.peers[a].room_id, nick="dave2", fingerprint=dave.fingerprint, time_ms=2
    )
    delivery = vouch_delivery(carol, "carol", ("alice", room.peers[a]), [renamed], seq + 1)
    room.peers[a].receive(delivery, room.now)
    room.pump()
    refused, renamed_refused = room.of_type(a, ev.VouchRejected)
    for rejected in (refused, renamed_refused):
        assert "you took back the admission of that key" in rejected.reason
    assert "dave" not in readers(room.peers[a])
    assert room.peers[a].gate.held_count() == 0
    # A new comparison, later: alice admits dave again and vouches for him anew, and bob,
    # who heard her take dave back, admits him on this newer word.
    room.advance(1.0)
    room.peers[a].admit("dave", typed(dave), room.now)
    room.pump()
    assert "dave" in readers(room.peers[a])
    assert "dave" in readers(room.peers[b])
    admission = room.peers[b].members["dave"].admission
    assert admission is not None
    assert (admission.how, admission.by) == (How.VOUCH, "alice")


def test_revoke_someone_unknown_is_refused_and_a_key_never_admitted_is_only_buried(
    keys: KeyPool,
) -> None:
    room = MemoryRoom()
    mallory = keys.get(3)
    room.join("mallory", mallory)
    a = room.join("alice", keys.get(0), config=CLOSED)
    with pytest.raises(UnknownRecipient, match="nobody is not in the room"):
        room.peers[a].revoke("nobody", room.now)
    room.peers[a].revoke("mallory", room.now)
    room.pump()
    assert revoked(room, a) == [("mallory", "alice", False, "")]
    assert room.peers[a].pins.tombstone(mallory.fingerprint) is not None


def test_a_tombstone_written_elsewhere_takes_back_an_admission_unless_compared_again_since(
    keys: KeyPool,
) -> None:
    """`zchat keys forget` writes a tombstone that the running peer reads: it acts as
    /revoke, unless the user compared that key (in this peer) after it was forgotten."""
    room, conns = closed_room(["alice", "bob", "carol"], keys)
    a = conns["alice"]
    core = room.peers[a]
    bob, carol = keys.get(1), keys.get(2)
    compared_ms = int(room.wall * 1000)  # when alice compared bob and carol
    tombs = (
        Tombstone("bob", bob.fingerprint, compared_ms - 500),  # forgotten, then compared
        Tombstone("carol", carol.fingerprint, compared_ms + 500),  # compared, then forgotten
    )
    core.forgotten_elsewhere(tombs, room.now)
    room.pump()
    assert revoked(room, a) == [("carol", "alice", True, "")]
    assert readers(room.peers[a]) == {"bob"}
    core.forgotten_elsewhere(tombs, room.now)  # read from the file again: no news
    room.pump()
    assert len(revoked(room, a)) == 1

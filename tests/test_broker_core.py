"""Broker and peer cores back to back in memory: every rule of the room protocol."""

from __future__ import annotations

import dataclasses

import pytest

from tests.support.keys import KeyPool
from tests.support.room import FAST_CORE, ROOM_ID, MemoryRoom, certificate, hello, seeded
from zchat.broker.core import Broker, Outgoing
from zchat.broker.held import held_size
from zchat.envelope import Header, Identity, Recipient, room_id, seal
from zchat.envelope.proof import sign_proof
from zchat.peer import events as ev
from zchat.peer.core import Phase
from zchat.wire import protocol as p


def messages(room: MemoryRoom, conn: bytes) -> list[str]:
    return [e.text for e in room.of_type(conn, ev.MessageReceived)]


def sent_to(room: MemoryRoom, conn: bytes, command: p.Command) -> list[list[bytes]]:
    return [f for f in room.wire[conn] if f[1] == bytes([command])]


# --- handshake ----------------------------------------------------------------------


def test_a_newcomer_gets_a_snapshot_and_the_others_a_join(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    room.take(a)
    c = room.join("carol", carol)
    ready = room.of_type(c, ev.Ready)[0]
    assert sorted(ready.peers) == ["alice", "bob"]
    assert [e.nick for e in room.of_type(a, ev.Joined)] == ["carol"]
    assert [e.nick for e in room.of_type(b, ev.Joined) if not e.already_here] == ["carol"]
    assert room.events[c][0] == ready  # Ready comes before the snapshot's key news


def test_a_duplicate_nickname_is_refused_even_in_another_case(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    room.join("carol", alice)
    other = room.join("Carol", bob)
    refused = room.of_type(other, ev.Refused)
    assert refused[0].code == "nick-taken"
    assert room.peers[other].phase is Phase.REFUSED
    assert room.broker.nicks == ["carol"]


@pytest.mark.parametrize(
    "nick", ["", "x" * 33, "x" * 300, "bad nick", "b\u043eb", "evil\x1b[2J", "a,b"]
)
def test_invalid_nicknames_are_refused_with_the_rules(alice: Identity, nick: str) -> None:
    broker = Broker(random=seeded(0))
    out = broker.handle(b"c1", p.encode(hello(nick.encode(), alice)), 0.0)
    reply = p.parse_from_broker(out[-1].frames)
    assert isinstance(reply, p.Refuse)
    assert reply.code in (p.RefuseCode.NICK_INVALID,)
    assert "ASCII" in reply.reason


def test_a_wrong_proof_is_refused(alice: Identity, bob: Identity) -> None:
    broker = Broker(random=seeded(0))
    broker.handle(b"c1", p.encode(hello(b"alice", alice)), 0.0)
    # sign the right bytes with the wrong key
    out = broker.handle(b"c1", p.encode(p.Proof(b"\x00" * 256)), 0.0)
    reply = p.parse_from_broker(out[-1].frames)
    assert isinstance(reply, p.Refuse)
    assert reply.code is p.RefuseCode.BAD_PROOF
    assert broker.nicks == []


def test_a_proof_for_another_challenge_is_refused(alice: Identity) -> None:
    broker = Broker(random=seeded(0))
    broker.handle(b"c1", p.encode(hello(b"alice", alice)), 0.0)
    stale = sign_proof(alice.private_key, b"\x00" * 32, b"alice", alice.public_der)
    reply = p.parse_from_broker(broker.handle(b"c1", p.encode(p.Proof(stale)), 0.0)[-1].frames)
    assert isinstance(reply, p.Refuse)
    assert reply.code is p.RefuseCode.BAD_PROOF


@pytest.mark.parametrize(
    "frames",
    [
        [b"ZCHAT9", b"\x01", b"alice", b"der"],
        [b"ZCHAT2"],  # whatever the frame count
        [b"ZCHAT2", b"\x04"],
        [b"ZCHAT12", *([b"x"] * (p.MAX_MESSAGE_FRAMES + 1))],
    ],
)
def test_another_version_is_refused_in_its_own_tag_whatever_it_sent(
    alice: Identity, frames: list[bytes]
) -> None:
    """The one message every version reads (V3 §6): REFUSE UNSUPPORTED_VERSION, tagged
    with the peer's tag, to a stranger as to a member, one small message back."""
    room = MemoryRoom()
    a = room.join("alice", alice)
    for conn in (b"stranger", a):
        (out,) = room.broker.handle(conn, frames, room.now)
        assert out.conn == conn
        assert out.frames == [frames[0], b"\x13", b"\x03", b"this broker speaks zchat protocol 3"]
    assert room.broker.counters.refused_by_code["UNSUPPORTED_VERSION"] == 2
    assert room.broker.nicks == ["alice"]  # a member who sent it is still one


def test_a_command_of_a_later_version_is_malformed_from_a_member_and_ignored_from_a_stranger(
    alice: Identity,
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    later = [p.PROTOCOL_TAG, b"\x07", b"a body this version cannot read"]
    assert room.broker.handle(b"stranger", later, room.now) == []
    (out,) = room.broker.handle(a, later, room.now)
    reply = p.parse_from_broker(out.frames)
    assert isinstance(reply, p.Error)
    assert (reply.code, reply.msg_id) == (p.ErrorCode.MALFORMED, b"")


def test_a_malformed_send_is_named_in_the_error(alice: Identity, bob: Identity) -> None:
    """ERROR MALFORMED carries the msg_id of the SEND it refused (issue 22): the sender
    knows which message the broker would not route."""
    room = MemoryRoom()
    a = room.join("alice", alice)
    room.join("bob", bob)
    frames, _ = room.send_by_hand(a, "hello")
    msg_id = Header.parse(frames[2]).msg_id
    frames[5] = frames[5].replace(b"bob", b"bib")  # not the recipient the header signs
    (out,) = room.broker.handle(a, frames, room.now)
    assert out.conn == a
    assert p.parse_from_broker(out.frames) == p.Error(
        p.ErrorCode.MALFORMED, "the recipients are not those the header signs", msg_id
    )
    assert room.broker.counters.deliveries == 1  # the first, good copy only


def test_a_certificate_for_another_room_than_the_hello_names_is_refused(
    alice: Identity,
) -> None:
    """A certificate's room id must be that of the room its HELLO names: one made for
    "zchat" does not open "ops"."""
    broker = Broker(random=seeded(0))
    frames = p.encode(hello(b"alice", alice, room="zchat"))
    frames[-1] = b"ops"
    reply = p.parse_from_broker(broker.handle(b"c1", frames, 0.0)[-1].frames)
    assert isinstance(reply, p.Refuse)
    assert reply.code is p.RefuseCode.BAD_CERTIFICATE
    assert "another room" in reply.reason
    out = broker.handle(b"c1", p.encode(hello(b"alice", alice, room="ops")), 0.0)
    assert isinstance(p.parse_from_broker(out[-1].frames), p.Challenge)


@pytest.mark.parametrize("room", [b"", b"x" * 65, b"bad\nroom", "r\u00f6\u00f6m".encode()])
def test_a_hello_for_an_invalid_room_is_refused_with_the_rules(
    alice: Identity, room: bytes
) -> None:
    hello_frames = p.encode(hello(b"alice", alice))
    hello_frames[-1] = room
    reply = p.parse_from_broker(
        Broker(random=seeded(0)).handle(b"c1", hello_frames, 0.0)[-1].frames
    )
    assert isinstance(reply, p.Refuse)
    assert reply.code is p.RefuseCode.ROOM_INVALID
    assert "printable ASCII" in reply.reason


def test_with_curve_the_room_id_names_the_brokers_key(alice: Identity) -> None:
    """A certificate made for room "zchat" without CURVE (or on another broker) is not
    one for "zchat" on a broker whose CURVE key is K."""
    broker = Broker(random=seeded(0))
    broker.curve_public = b"K" * 40
    assert room_id("zchat", b"K" * 40) != ROOM_ID
    out = broker.handle(b"c1", p.encode(hello(b"alice", alice)), 0.0, b"T" * 40)
    reply = p.parse_from_broker(out[-1].frames)
    assert isinstance(reply, p.Refuse)
    assert reply.code is p.RefuseCode.BAD_CERTIFICATE
    assert "another room" in reply.reason
    ours = hello(b"alice", alice, broker_key=b"K" * 40)
    out = broker.handle(b"c1", p.encode(ours), 0.0, b"T" * 40)
    assert isinstance(p.parse_from_broker(out[-1].frames), p.Challenge)


def test_a_send_whose_recipients_are_not_those_its_header_signs_is_malformed(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    room.join("bob", bob)
    room.join("carol", carol)
    frames, _ = room.send_by_hand(a, "for bob and carol")  # handled once, as sent
    delivered = room.broker.counters.deliveries
    # Someone on the way swaps carol's key id for that of a key of its own: the tree
    # head no longer matches, and nobody gets the message.
    frames[5] = frames[5][:-8] + b"\xee" * 8
    out = room.broker.handle(a, frames, room.now)
    assert [o.conn for o in out] == [a]
    reply = p.parse_from_broker(out[0].frames)
    assert isinstance(reply, p.Error)
    assert reply.code is p.ErrorCode.MALFORMED
    assert "not those the header signs" in reply.reason
    assert room.broker.counters.deliveries == delivered


def test_same_nick_and_key_takes_its_old_place_at_once(alice: Identity, bob: Identity) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    room.take(a)
    again = room.join("bob", bob)  # bob's process crashed and came back
    assert room.of_type(again, ev.Ready)
    assert room.of_type(a, ev.Joined) == []  # alice already knows this key: no news
    replaced = sent_to(room, b, p.Command.ERROR)
    assert p.parse_from_broker(replaced[-1]) == p.Error(p.ErrorCode.REPLACED, "logged in elsewhere")
    assert room.peers[b].phase is Phase.CLOSED
    assert room.broker.counters.peers == 2


def test_a_key_that_holds_one_nickname_is_refused_under_another(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    twin = room.join("alice-bot", alice)  # alice's key, another name, another connection
    refused = room.of_type(twin, ev.Refused)
    assert [e.code for e in refused] == ["key-in-use"]
    assert "alice" not in refused[0].reason  # a HELLO proves nothing: it names nobody
    assert sorted(room.broker.nicks) == ["alice", "bob"]
    assert [e.nick for e in room.of_type(b, ev.Joined) if not e.already_here] == []
    # the member itself may change its name on its own connection...
    renamed = room.broker.handle(a, p.encode(hello(b"alice2", alice)), room.now)
    challenge = p.parse_from_broker(renamed[-1].frames)
    assert isinstance(challenge, p.Challenge)
    # ...and once it is gone, its key may come back under any name
    room.peers[a].leave()
    room.pump()
    assert room.broker.nicks == ["bob"]
    again = room.join("alice-bot", alice)
    assert room.of_type(again, ev.Ready)


def test_of_two_handshakes_with_one_key_under_two_names_only_the_first_to_prove_gets_in(
    alice: Identity,
) -> None:
    broker = Broker(random=seeded(0))
    nonces = {}
    for conn, nick in ((b"c1", b"alice"), (b"c2", b"alice-bot")):
        out = broker.handle(conn, p.encode(hello(nick, alice)), 0.0)
        challenge = p.parse_from_broker(out[-1].frames)
        assert isinstance(challenge, p.Challenge)  # neither name is taken yet
        nonces[conn] = (nick, challenge.nonce)

    def prove(conn: bytes) -> p.BrokerMessage:
        nick, nonce = nonces[conn]
        proof = sign_proof(alice.private_key, nonce, nick, alice.public_der)
        return p.parse_from_broker(broker.handle(conn, p.encode(p.Proof(proof)), 0.0)[-1].frames)

    assert isinstance(prove(b"c2"), p.Snapshot)
    late = prove(b"c1")
    assert isinstance(late, p.Refuse)
    assert late.code is p.RefuseCode.KEY_IN_USE
    assert broker.nicks == ["alice-bot"]


def test_a_message_before_the_handshake_gets_hello_first(alice: Identity) -> None:
    broker = Broker(random=seeded(0))
    out = broker.handle(b"stranger", p.encode(p.Heartbeat()), 0.0)
    assert p.parse_from_broker(out[0].frames).code is p.ErrorCode.HELLO_FIRST  # type: ignore[union-attr]


def test_junk_from_a_stranger_gets_no_answer_and_is_counted() -> None:
    broker = Broker(random=seeded(0))
    assert broker.handle(b"stranger", [b"GET / HTTP/1.1"], 0.0) == []
    assert broker.counters.errors == 1


# --- routing ------------------------------------------------------------------------


def test_room_message_reaches_everyone_but_the_sender_each_with_one_wrapped_key(
    keys: KeyPool,
) -> None:
    room = MemoryRoom()
    conns = [room.join(f"p{i}", keys.get(i)) for i in range(4)]
    room.send(conns[0], "hello room")
    room.pump()
    for conn in conns[1:]:
        assert messages(room, conn) == ["hello room"]
        (deliver,) = sent_to(room, conn, p.Command.DELIVER)
        # tag, command, header, signature, token, its leaf, its path, ONE key
        assert len(deliver) == 2 + 6
    assert messages(room, conns[0]) == []
    assert sent_to(room, conns[0], p.Command.DELIVER) == []


def test_the_ack_names_who_got_it_and_who_was_absent(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    room.join("bob", bob)
    c = room.join("carol", carol)
    room.peers[c].leave()
    room.pump()
    # alice still lists carol if the leave has not reached her: seal for both
    core = room.peers[a]
    env = seal(
        b"hi",
        sender=alice,
        sender_nick="alice",
        room_id=ROOM_ID,
        seq=core.seq,
        recipients=[Recipient("bob", bob.public_key), Recipient("carol", carol.public_key)],
    )
    out = room.broker.handle(a, p.encode(p.Send(env)), room.now)
    ack = p.parse_from_broker(out[-1].frames)
    assert ack == p.Ack(env.header.msg_id, ("bob",), ("carol",))


def test_a_direct_message_reaches_only_its_target(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    c = room.join("carol", carol)
    room.send(a, "just for bob", to=["bob"])
    room.pump()
    (got,) = room.of_type(b, ev.MessageReceived)
    assert got.direct
    assert got.text == "just for bob"
    assert room.of_type(c, ev.MessageReceived) == []
    assert sent_to(room, c, p.Command.DELIVER) == []


def test_the_broker_refuses_a_forged_sender(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    room.join("carol", carol)
    # alice seals with her own key but writes bob's name as the sender
    forged = seal(
        b"I am bob",
        sender=alice,
        sender_nick="bob",
        room_id=ROOM_ID,
        seq=1,
        recipients=[Recipient("carol", carol.public_key)],
    )
    out = room.broker.handle(a, p.encode(p.Send(forged)), room.now)
    assert len(out) == 1
    assert out[0].conn == a
    error = p.parse_from_broker(out[0].frames)
    assert isinstance(error, p.Error)
    assert error.code is p.ErrorCode.FORGED_SENDER
    assert room.broker.counters.deliveries == 0
    del b


def test_a_forged_fingerprint_is_refused_too(alice: Identity, bob: Identity) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    room.join("bob", bob)
    env = seal(
        b"x",
        sender=alice,
        sender_nick="alice",
        room_id=ROOM_ID,
        seq=1,
        recipients=[Recipient("bob", bob.public_key)],
    )
    header = dataclasses.replace(env.header, sender_fingerprint=bob.fingerprint)
    frames = p.encode(p.Send(env))
    frames[2] = header.encode()
    out = room.broker.handle(a, frames, room.now)
    assert p.parse_from_broker(out[0].frames).code is p.ErrorCode.FORGED_SENDER  # type: ignore[union-attr]


def test_a_blank_wrapped_key_means_do_not_deliver(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    c = room.join("carol", carol)
    env = seal(
        b"x",
        sender=alice,
        sender_nick="alice",
        room_id=ROOM_ID,
        seq=1,
        recipients=[Recipient("bob", bob.public_key), Recipient("carol", carol.public_key)],
    )
    out = room.broker.handle(a, p.encode(p.Send(env.only_for({"carol"}))), room.now)
    assert [o.conn for o in out] == [c, a]
    assert p.parse_from_broker(out[-1].frames) == p.Ack(env.header.msg_id, ("carol",), ())
    del b


# --- liveness -----------------------------------------------------------------------


def test_a_silent_peer_is_evicted_and_its_nickname_freed(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom(broker=Broker(FAST_CORE, random=seeded(1)))
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    del room.peers[b]  # bob's process dies without a word
    room.advance(0.8)
    assert [(e.nick, e.reason) for e in room.of_type(a, ev.Left)] == [("bob", "timeout")]
    newcomer = room.join("bob", carol)  # another key may now take the name
    assert room.of_type(newcomer, ev.Ready)


def test_heartbeats_keep_an_idle_room_alive(alice: Identity, bob: Identity) -> None:
    room = MemoryRoom(broker=Broker(FAST_CORE, random=seeded(2)))
    a = room.join("alice", alice)
    room.join("bob", bob)
    room.advance(3.0)
    assert room.of_type(a, ev.Left) == []
    assert room.of_type(a, ev.Disconnected) == []
    assert sorted(room.broker.nicks) == ["alice", "bob"]


def test_after_a_broker_restart_peers_rejoin_and_resend_without_duplicates(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom(broker=Broker(FAST_CORE, random=seeded(3)))
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    room.send(a, "before")
    room.pump()
    room.broker = Broker(FAST_CORE, random=seeded(4))  # the broker restarts and forgets everything
    room.send(a, "during")  # sent into the void: no ack
    room.pump()
    room.advance(1.0)  # heartbeats meet HELLO_FIRST; both handshake again
    assert messages(room, b) == ["before", "during"]
    assert room.peers[a].pending_acks() == []
    assert [e.reconnected for e in room.of_type(a, ev.Ready)] == [False, True]
    assert room.of_type(a, ev.Left) == []  # bob was only briefly missing


def test_a_replayed_delivery_is_dropped(alice: Identity, bob: Identity) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    room.send(a, "once")
    room.pump()
    (captured,) = sent_to(room, b, p.Command.DELIVER)
    room.peers[b].receive(captured, room.now)
    room.events[b] += room.peers[b].take_events()
    assert messages(room, b) == ["once"]


def test_a_message_sent_before_a_member_rejoins_after_a_restart_still_reaches_it(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom(broker=Broker(FAST_CORE, random=seeded(5)))
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    room.broker = Broker(FAST_CORE, random=seeded(6))
    bob_core = room.peers.pop(b)  # bob is slow to notice the restart
    room.advance(0.3)  # alice alone re-handshakes
    assert room.of_type(a, ev.Ready)[-1].reconnected
    room.send(a, "are you back?")  # bob is only 'missing'
    room.pump()
    room.peers[b] = bob_core
    room.advance(0.5)  # bob reconnects; alice resends what he missed
    assert messages(room, b) == ["are you back?"]
    assert room.of_type(a, ev.Left) == []


def test_deliveries_a_crashing_broker_acknowledged_but_lost_are_resent(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom(broker=Broker(FAST_CORE, random=seeded(7)))
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    _, out = room.send_by_hand(a, "queued when the broker died")
    # The broker queued the delivery for bob and acknowledged it to alice, then
    # crashed before the delivery left its queue.
    room.deliver([o for o in out if o.conn == a])
    room.pump()
    assert room.peers[a].pending_acks() == []
    room.broker = Broker(FAST_CORE, random=seeded(8))
    room.advance(1.0)
    assert messages(room, b) == ["queued when the broker died"]


def test_a_delivery_the_broker_could_not_queue_is_corrected_and_resent_later(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom(
        broker=Broker(dataclasses.replace(FAST_CORE, backlog_timeout=0.3), random=seeded(0))
    )
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    room.take(a)
    _, out = room.send_by_hand(a, "for bob")
    deliver = next(o for o in out if o.conn == b)
    room.deliver([o for o in out if o.conn == a])  # alice hears "delivered to bob"
    # ...but bob's socket queue was full: the broker holds the delivery, bob reads
    # nothing more, and the broker evicts him and corrects its acknowledgement
    assert room.broker.hold(deliver, room.now) == []
    room.advance(1.0)
    assert [(e.nick, e.reason) for e in room.of_type(a, ev.Left)] == [("bob", "backlog")]
    # bob, who was only slow, says hello again, and alice resends what he missed
    assert [e.nick for e in room.of_type(a, ev.Joined)] == ["bob"]
    acks = room.of_type(a, ev.Acked)
    assert [(x.delivered, x.absent) for x in acks] == [
        (("bob",), ()),
        ((), ("bob",)),  # the correction
        (("bob",), ()),  # the resend
    ]
    assert messages(room, b) == ["for bob"]


def test_a_resend_to_a_returning_member_lost_in_a_crash_is_sent_again(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom(broker=Broker(FAST_CORE, random=seeded(9)))
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    room.broker = Broker(FAST_CORE, random=seeded(10))  # a restart; bob is slow to come back
    bob_core = room.peers.pop(b)
    room.advance(0.3)
    room.send(a, "while bob was away")  # absent: waits for him
    room.pump()
    # bob comes back and alice resends to him, but the broker dies before it reads
    # that resend
    room.peers[b] = bob_core
    room.lose = lambda conn, frames: conn == a and frames[1] == bytes([p.Command.SEND])
    room.advance(1.0)
    room.lose = None
    room.broker = Broker(FAST_CORE, random=seeded(11))
    room.advance(1.5)
    assert messages(room, b) == ["while bob was away"]


def test_a_delivery_to_a_vanished_connection_is_reported_absent(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice)
    b = room.join("bob", bob)
    _, out = room.send_by_hand(a, "into the void")
    deliver = next(o for o in out if o.conn == b)
    corrections = room.broker.unroutable(b, room.now, deliver)
    msg_id = room.peers[a].outbox.unacked()[0].msg_id
    assert p.Ack(msg_id, (), ("bob",)) in [p.parse_from_broker(o.frames) for o in corrections]
    assert room.broker.nicks == ["alice"]  # and bob's session is gone


def test_a_room_that_filled_up_during_the_proof_refuses(
    keys: KeyPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("zchat.broker.rooms.MAX_ROOM", 2)
    broker = Broker(random=seeded(0))

    def challenge(conn: bytes, ident: Identity) -> p.Challenge:
        out = broker.handle(conn, p.encode(hello(conn, ident)), 0.0)
        challenge = p.parse_from_broker(out[-1].frames)
        assert isinstance(challenge, p.Challenge)
        return challenge

    def prove(conn: bytes, ident: Identity, challenge: p.Challenge) -> p.BrokerMessage:
        proof = sign_proof(ident.private_key, challenge.nonce, conn, ident.public_der)
        return p.parse_from_broker(broker.handle(conn, p.encode(p.Proof(proof)), 0.0)[-1].frames)

    first, second, third = keys.get(0), keys.get(1), keys.get(2)
    prove(b"one", first, challenge(b"one", first))
    late = challenge(b"three", third)  # room for one more when it says hello...
    prove(b"two", second, challenge(b"two", second))  # ...but this one proves first
    reply = prove(b"three", third, late)
    assert isinstance(reply, p.Refuse)
    assert reply.code is p.RefuseCode.ROOM_FULL
    assert sorted(broker.nicks) == ["one", "two"]


def test_a_member_that_says_hello_again_and_leaves_is_gone(alice: Identity) -> None:
    """No half-finished handshake can keep a nickname listed: it was a way to hold one
    forever (HELLO again on the same connection, then BYE)."""
    broker = Broker(dataclasses.replace(FAST_CORE, handshake_timeout=0.5), random=seeded(0))
    room = MemoryRoom(broker=broker)
    a = room.join("alice", alice)
    broker.handle(a, p.encode(hello(b"alice", alice)), room.now)
    broker.handle(a, p.encode(p.Bye()), room.now)
    assert broker.nicks == []
    out = broker.handle(a, p.encode(hello(b"alice", alice)), room.now)
    challenge = p.parse_from_broker(out[-1].frames)
    assert isinstance(challenge, p.Challenge)
    del room.peers[a]
    room.advance(2.0)  # an abandoned re-handshake expires with its own timer...
    proof = sign_proof(alice.private_key, challenge.nonce, b"alice", alice.public_der)
    late = broker.handle(a, p.encode(p.Proof(proof)), room.now)
    # ...so even a valid proof for it comes too late, and nobody is listed
    assert [p.parse_from_broker(o.frames) for o in late] == [
        p.Error(p.ErrorCode.HELLO_FIRST, "say hello first")
    ]
    assert broker.nicks == []


def test_a_key_with_another_public_exponent_is_refused_at_hello() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from zchat.envelope import public_der

    odd = public_der(rsa.generate_private_key(3, 2048).public_key())
    out = Broker(random=seeded(0)).handle(b"c1", p.encode(p.Hello(b"odd", odd, b"", b"zchat")), 0.0)
    reply = p.parse_from_broker(out[0].frames)
    assert isinstance(reply, p.Refuse)
    assert reply.code is p.RefuseCode.BAD_KEY


# --- memory: what the socket would not take, held and counted in bytes ---------------


def held_deliveries(room: MemoryRoom, sender: bytes, to: bytes, count: int) -> list[Outgoing]:
    """`count` messages from `sender`; the broker handles them, and the deliveries to
    `to` are returned undelivered (for the test to hold), the rest delivered."""
    held = []
    for i in range(count):
        _, out = room.send_by_hand(sender, f"m{i}")
        held += [o for o in out if o.conn == to]
        room.deliver([o for o in out if o.conn != to])
    return held


def parsed(out: list[Outgoing]) -> list[tuple[bytes, p.BrokerMessage]]:
    return [(o.conn, p.parse_from_broker(o.frames)) for o in out]


def test_a_member_whose_held_bytes_pass_the_budget_is_evicted_at_once_and_corrected(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    a, b, c = room.join("alice", alice), room.join("bob", bob), room.join("carol", carol)
    deliveries = held_deliveries(room, a, b, 3)
    size = held_size(deliveries[0].frames)  # the three are the same size
    broker = room.broker
    broker.config = dataclasses.replace(broker.config, max_held_bytes=int(size * 2.5))
    assert broker.hold(deliveries[0], room.now) == []
    assert broker.hold(deliveries[1], room.now) == []
    assert broker.held.bytes_for(b) == 2 * size
    evicted = parsed(broker.hold(deliveries[2], room.now))  # past 2.5 deliveries' worth
    msg_ids = [d.header.msg_id for d in deliveries if d.header is not None]
    assert evicted == [
        *[(a, p.Ack(msg_id, (), ("bob",))) for msg_id in msg_ids],  # all three corrected
        (a, p.Leave("bob", p.LeaveReason.BACKLOG)),
        (c, p.Leave("bob", p.LeaveReason.BACKLOG)),
    ]
    assert b not in broker.held  # dropped at once, not when some timer runs
    assert broker.held.total == 0
    assert sorted(broker.nicks) == ["alice", "carol"]


def test_when_all_that_is_held_passes_the_total_the_member_furthest_behind_goes(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    a, b, c = room.join("alice", alice), room.join("bob", bob), room.join("carol", carol)
    to_bob = held_deliveries(room, a, b, 3)
    to_carol = held_deliveries(room, a, c, 2)
    size = held_size(to_bob[0].frames)
    broker = room.broker
    broker.config = dataclasses.replace(broker.config, max_held_total=int(size * 4.5))
    for out in [*to_bob, to_carol[0]]:
        assert broker.hold(out, room.now) == []
    evicted = parsed(broker.hold(to_carol[1], room.now))  # carol's pushes the total over
    assert [(conn, m) for conn, m in evicted if isinstance(m, p.Leave)] == [
        (a, p.Leave("bob", p.LeaveReason.BACKLOG)),  # bob held three, carol two
        (c, p.Leave("bob", p.LeaveReason.BACKLOG)),
    ]
    assert sorted(broker.nicks) == ["alice", "carol"]
    # carol's deliveries are a little larger than bob's: her leaf names her.
    assert (
        broker.held.bytes_for(c) == broker.held.total == sum(held_size(o.frames) for o in to_carol)
    )


def test_held_messages_leave_oldest_first_and_only_a_queue_that_stops_moving_is_evicted(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    a, b = room.join("alice", alice), room.join("bob", bob)
    first, second = held_deliveries(room, a, b, 2)
    broker = room.broker
    broker.config = dataclasses.replace(broker.config, backlog_timeout=0.3)
    t = room.now
    broker.hold(first, t)
    broker.hold(second, t)
    assert broker.held.head(b) is first
    broker.sent_held(b, t + 0.2)  # bob read one: his queue moved
    assert broker.held.head(b) is second
    broker.tick(t + 0.4)
    assert broker.nicks == ["alice", "bob"]  # 0.2 s since it moved
    left = parsed(broker.tick(t + 0.6))  # 0.4 s: stuck
    assert (a, p.Leave("bob", p.LeaveReason.BACKLOG)) in left
    assert broker.nicks == ["alice"]
    assert b not in broker.held


def test_a_correction_goes_only_to_the_key_that_sent_the_lost_delivery(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    a, b = room.join("alice", alice), room.join("bob", bob)
    (lost,) = held_deliveries(room, a, b, 1)
    room.broker.hold(lost, room.now)
    room.peers[a].leave()
    room.pump()
    room.join("alice", carol)  # another key takes the name while bob's queue is stuck
    sent = parsed(room.broker.unroutable(b, room.now))
    assert [m for _, m in sent if isinstance(m, p.Ack)] == []
    assert [m for _, m in sent] == [p.Leave("bob", p.LeaveReason.TIMEOUT)]


def test_a_lost_delivery_is_corrected_without_parsing_what_the_broker_sent(
    alice: Identity, bob: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = MemoryRoom()
    a, b = room.join("alice", alice), room.join("bob", bob)
    (lost,) = held_deliveries(room, a, b, 1)
    msg_id = Header.parse(lost.frames[2]).msg_id

    def no_parsing(cls: type[Header], data: bytes) -> Header:
        raise AssertionError("the broker parsed a header it had already parsed")

    monkeypatch.setattr(Header, "parse", classmethod(no_parsing))
    sent = parsed(room.broker.unroutable(b, room.now, lost))
    assert (a, p.Ack(msg_id, (), ("bob",))) in sent


def test_a_takeover_corrects_what_was_held_for_the_old_connection_and_tells_it_for_sure(
    alice: Identity, carol: Identity
) -> None:
    """Issue 22: a same-key takeover dropped what was held for the old connection
    without a correcting ACK, and the ERROR REPLACED with it, so the old connection
    was never told and took its place back when it woke."""
    room = MemoryRoom()
    a, old = room.join("alice", alice), room.join("carol", carol)
    held = held_deliveries(room, a, old, 2)  # carol's old connection stopped reading
    broker = room.broker
    for out in held:
        broker.hold(out, room.now)
    hi = broker.handle(b"new", p.encode(hello(b"carol", carol)), room.now)
    challenge = p.parse_from_broker(hi[-1].frames)
    assert isinstance(challenge, p.Challenge)
    proof = sign_proof(carol.private_key, challenge.nonce, b"carol", carol.public_der)
    sent = parsed(broker.handle(b"new", p.encode(p.Proof(proof)), room.now))
    msg_ids = [o.header.msg_id for o in held if o.header is not None]
    corrections = [(a, p.Ack(msg_id, (), ("carol",))) for msg_id in msg_ids]
    assert sent[:3] == [*corrections, (old, p.Error(p.ErrorCode.REPLACED, "logged in elsewhere"))]
    assert isinstance(sent[3][1], p.Rekeyed)  # alice hears of the new key after the news
    assert old not in broker.held  # the notice goes out next, behind nothing
    assert broker.nicks == ["alice", "carol"]
    # Should the notice be lost all the same (its socket queue full, and dropped when it
    # did not move), the old connection is told again when it speaks.
    broker.hold(Outgoing(old, p.encode(p.Error(p.ErrorCode.REPLACED, "logged in elsewhere"))), 0)
    broker.tick(room.now + broker.config.backlog_timeout + 1)
    assert old not in broker.held
    (again,) = parsed(broker.handle(old, p.encode(p.Heartbeat()), room.now))
    assert again == (old, p.Error(p.ErrorCode.REPLACED, "logged in elsewhere"))


def test_a_good_rekey_is_answered_to_the_rotating_member_as_it_is_told_the_others(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    """REKEY gets a positive answer (V3 §5): REKEYED naming the rotating member itself,
    with the certificate the broker accepted. Only then may its old key's grace start.
    A later newcomer's SNAPSHOT lists the new certificate, not the one it replaced."""
    room = MemoryRoom()
    a, b = room.join("alice", alice), room.join("bob", bob)
    cert = certificate(alice, "alice", room.wall + 60)
    out = room.broker.handle(a, p.encode(p.Rekey(cert)), room.now)
    assert sorted(parsed(out)) == sorted(
        [(a, p.Rekeyed("alice", cert)), (b, p.Rekeyed("alice", cert))]
    )
    hi = room.broker.handle(b"c", p.encode(hello(b"carol", carol)), room.now)
    challenge = p.parse_from_broker(hi[-1].frames)
    assert isinstance(challenge, p.Challenge)
    proof = sign_proof(carol.private_key, challenge.nonce, b"carol", carol.public_der)
    *_, (_, snapshot) = parsed(room.broker.handle(b"c", p.encode(p.Proof(proof)), room.now))
    assert isinstance(snapshot, p.Snapshot)
    assert {m.nick: m.certificate for m in snapshot.members}["alice"] == cert


def test_a_member_saying_hello_again_keeps_getting_its_deliveries_until_its_proof(
    alice: Identity, bob: Identity
) -> None:
    """A HELLO on a listed connection starts a handshake beside the session (§3.6):
    the member stays listed, so what is sent to it meanwhile is delivered to it, and
    acknowledged so; it reads them in its handshake (it still holds the session key
    they are wrapped to). A refused re-handshake changes nothing either."""
    room = MemoryRoom()
    a, b = room.join("alice", alice), room.join("bob", bob)
    broker = room.broker
    again = broker.handle(b, p.encode(hello(b"bob", bob, room.wall + 1)), room.now)
    challenge = p.parse_from_broker(again[-1].frames)
    assert isinstance(challenge, p.Challenge)
    _, out = room.send_by_hand(a, "while bob says hello again")
    sent = parsed(out)
    assert [conn for conn, msg in sent if isinstance(msg, p.Deliver)] == [b]
    (ack,) = [msg for _, msg in sent if isinstance(msg, p.Ack)]
    assert ack.delivered == ("bob",)
    taken = broker.handle(b, p.encode(hello(b"alice", bob, room.wall + 2)), room.now)
    assert p.parse_from_broker(taken[-1].frames) == p.Refuse(
        p.RefuseCode.NICK_TAKEN, "alice is taken"
    )
    _, out = room.send_by_hand(a, "after a refused hello")
    assert [conn for conn, msg in parsed(out) if isinstance(msg, p.Deliver)] == [b]
    assert broker.nicks == ["alice", "bob"]

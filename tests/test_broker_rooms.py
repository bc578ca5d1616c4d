"""One broker, many rooms: each kept apart, bounded in number, gone when empty.

In memory (a broker core and peer cores back to back), then over real sockets.
"""

from __future__ import annotations

import dataclasses

from tests.net import broker_thread, make_client, ready, run, sees, texts
from tests.support.keys import KeyPool
from tests.support.room import OPEN, MemoryRoom, certificate, hello, seeded
from zchat.broker.config import BrokerConfig
from zchat.broker.core import Broker, Outgoing
from zchat.envelope import Identity, room_id
from zchat.envelope.proof import sign_proof
from zchat.peer import events as ev
from zchat.peer.config import PeerConfig
from zchat.wire import protocol as p

OPS = dataclasses.replace(OPEN, room="ops")
GENERAL = dataclasses.replace(OPEN, room="general")


def commands(room: MemoryRoom, conn: bytes) -> list[p.BrokerMessage]:
    return [p.parse_from_broker(f) for f in room.wire[conn]]


def named(messages: list[p.BrokerMessage]) -> set[str]:
    """Every nickname the broker named to one connection."""
    nicks: set[str] = set()
    for msg in messages:
        match msg:
            case p.Snapshot(members):
                nicks |= {m.nick for m in members}
            case p.Join(member):
                nicks.add(member.nick)
            case p.Leave(nick) | p.Rekeyed(nick):
                nicks.add(nick)
            case p.Ack(_, delivered, absent):
                nicks |= {*delivered, *absent}
            case p.Deliver(delivery):
                nicks.add(delivery.header.sender)
    return nicks


def test_the_same_nickname_in_two_rooms_is_two_members_who_never_hear_of_each_other(
    keys: KeyPool,
) -> None:
    alice, bob, carol, dave = keys.many(4)
    room = MemoryRoom()
    a_ops = room.join("alice", alice, config=OPS)
    b_ops = room.join("bob", bob, config=OPS)
    a_gen = room.join("Alice", carol, config=GENERAL)  # another key, another case: still fine
    d_gen = room.join("dave", dave, config=GENERAL)
    broker = room.broker
    assert broker.nicks_in("ops") == ["alice", "bob"]
    assert broker.nicks_in("general") == ["Alice", "dave"]
    assert (broker.room_count, broker.member_count) == (2, 4)

    room.send(a_ops, "for ops")  # a room message: to bob only
    room.send(d_gen, "for alice in general", to=["Alice"])
    room.pump()
    assert [e.text for e in room.of_type(b_ops, ev.MessageReceived)] == ["for ops"]
    assert [e.text for e in room.of_type(a_gen, ev.MessageReceived)] == ["for alice in general"]
    assert room.of_type(a_ops, ev.MessageReceived) == []
    assert room.of_type(d_gen, ev.MessageReceived) == []

    room.peers[a_ops].leave()  # LEAVE goes to ops only
    room.pump()
    assert [e.nick for e in room.of_type(b_ops, ev.Left)] == ["alice"]
    assert room.of_type(a_gen, ev.Left) == room.of_type(d_gen, ev.Left) == []
    assert broker.nicks_in("general") == ["Alice", "dave"]

    # Nobody in one room was ever named to the other: JOIN, SNAPSHOT, DELIVER, ACK, LEAVE.
    assert named(commands(room, b_ops)) <= {"alice", "bob"}
    assert named(commands(room, a_ops)) <= {"alice", "bob"}
    assert named(commands(room, a_gen)) <= {"Alice", "dave"}
    assert named(commands(room, d_gen)) <= {"Alice", "dave"}
    acks = [m for m in commands(room, d_gen) if isinstance(m, p.Ack)]
    assert acks == [p.Ack(acks[0].msg_id, ("Alice",), ())]


def test_one_key_may_be_a_member_of_two_rooms_and_its_new_key_is_told_in_each_alone(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    room = MemoryRoom()
    a_ops = room.join("alice", alice, config=OPS)
    b_ops = room.join("bob", bob, config=OPS)
    a_gen = room.join("alice", alice, config=GENERAL)
    c_gen = room.join("carol", carol, config=GENERAL)
    assert room.broker.nicks_in("ops") == ["alice", "bob"]
    assert room.broker.nicks_in("general") == ["alice", "carol"]
    cert = certificate(alice, "alice", room.wall + 1, room=room_id("general"))
    rekeyed = room.broker.handle(a_gen, p.encode(p.Rekey(cert)), room.now)
    told = {o.conn for o in rekeyed if p.parse_from_broker(o.frames) == p.Rekeyed("alice", cert)}
    assert c_gen in told
    assert not told & {a_ops, b_ops}


def test_a_room_exists_while_it_has_members_and_goes_when_the_last_leaves(
    alice: Identity, bob: Identity
) -> None:
    room = MemoryRoom()
    a = room.join("alice", alice, config=OPS)
    b = room.join("bob", bob, config=GENERAL)
    assert room.broker.room_count == 2
    room.peers[a].leave()
    room.pump()
    assert room.broker.room_count == 1
    assert room.broker.nicks_in("ops") == []
    room.peers[b].leave()
    room.pump()
    assert room.broker.room_count == 0


def test_a_room_lasts_while_messages_are_held_for_a_member_who_left(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    """Held messages count in their room: it is not forgotten, nor its place given to
    another room, until they are sent or dropped."""
    broker = Broker(BrokerConfig(max_rooms=1), random=seeded(0))
    room = MemoryRoom(broker=broker)
    a, b = room.join("alice", alice, config=OPS), room.join("bob", bob, config=OPS)
    _, out = room.send_by_hand(a, "held for bob")
    (to_bob,) = [o for o in out if o.conn == b]
    assert broker.hold(to_bob, room.now) == []
    for conn in (a, b):  # both leave; bob has not read what is held for him
        broker.handle(conn, p.encode(p.Bye()), room.now)
    assert broker.nicks == []
    assert broker.room_count == 1
    refused = broker.handle(b"c3", p.encode(hello(b"carol", carol, room="general")), room.now)
    assert p.parse_from_broker(refused[-1].frames) == p.Refuse(
        p.RefuseCode.TOO_MANY_ROOMS, "this broker holds as many rooms as it may"
    )
    broker.sent_held(b, room.now)  # bob's socket took it
    assert broker.room_count == 0
    out = broker.handle(b"c3", p.encode(hello(b"carol", carol, room="general")), room.now)
    assert isinstance(p.parse_from_broker(out[-1].frames), p.Challenge)


def handshake(broker: Broker, conn: bytes, nick: str, ident: Identity, room: str) -> p.Challenge:
    out = broker.handle(conn, p.encode(hello(nick.encode(), ident, room=room)), 0.0)
    challenge = p.parse_from_broker(out[-1].frames)
    assert isinstance(challenge, p.Challenge), challenge
    return challenge


def prove(
    broker: Broker, conn: bytes, nick: str, ident: Identity, challenge: p.Challenge
) -> list[Outgoing]:
    proof = sign_proof(ident.private_key, challenge.nonce, nick.encode(), ident.public_der)
    return broker.handle(conn, p.encode(p.Proof(proof)), 0.0)


def test_max_rooms_refuses_a_new_room_at_hello_and_again_at_proof(keys: KeyPool) -> None:
    alice, bob, carol = keys.many(3)
    broker = Broker(BrokerConfig(max_rooms=2), random=seeded(0))
    first = handshake(broker, b"a", "alice", alice, "one")
    late = handshake(broker, b"c", "carol", carol, "three")  # two rooms may still be made...
    prove(broker, b"a", "alice", alice, first)
    prove(broker, b"b", "bob", bob, handshake(broker, b"b", "bob", bob, "two"))  # ...no more
    (reply,) = prove(broker, b"c", "carol", carol, late)
    assert p.parse_from_broker(reply.frames) == p.Refuse(
        p.RefuseCode.TOO_MANY_ROOMS, "this broker holds as many rooms as it may"
    )
    out = broker.handle(b"c", p.encode(hello(b"carol", carol, room="three")), 0.0)
    assert isinstance(p.parse_from_broker(out[-1].frames), p.Refuse)
    prove(broker, b"c", "carol", carol, handshake(broker, b"c", "carol", carol, "two"))
    assert (broker.nicks_in("one"), broker.nicks_in("two")) == (["alice"], ["bob", "carol"])
    assert broker.counters.refused_by_code == {"TOO_MANY_ROOMS": 2}


def test_a_member_alone_in_its_room_may_move_to_a_new_one_when_no_more_may_be_made(
    alice: Identity, bob: Identity
) -> None:
    broker = Broker(BrokerConfig(max_rooms=2), random=seeded(0))
    prove(broker, b"a", "alice", alice, handshake(broker, b"a", "alice", alice, "one"))
    prove(broker, b"b", "bob", bob, handshake(broker, b"b", "bob", bob, "two"))
    broker.tick(0.0)
    moved = prove(broker, b"a", "alice", alice, handshake(broker, b"a", "alice", alice, "three"))
    welcome = p.parse_from_broker(moved[-2].frames)
    assert isinstance(welcome, p.Welcome)
    assert welcome.room == "three"
    assert [o.conn for o in moved] == [b"a", b"a"]  # nobody in room one is left to tell
    assert (broker.room_count, broker.nicks_in("one"), broker.nicks_in("three")) == (
        2,
        [],
        ["alice"],
    )


def test_a_member_that_moves_to_another_room_leaves_its_old_one(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    broker = Broker(random=seeded(0))
    prove(broker, b"a", "alice", alice, handshake(broker, b"a", "alice", alice, "one"))
    prove(broker, b"b", "bob", bob, handshake(broker, b"b", "bob", bob, "one"))
    prove(broker, b"c", "carol", carol, handshake(broker, b"c", "carol", carol, "two"))
    broker.tick(0.0)
    moved = prove(broker, b"a", "alice", alice, handshake(broker, b"a", "alice", alice, "two"))
    sent = [(o.conn, p.parse_from_broker(o.frames)) for o in moved]
    assert (b"b", p.Leave("alice", p.LeaveReason.BYE)) in sent
    assert [conn for conn, _ in sent] == [b"b", b"a", b"a"]  # carol hears of her at the tick
    assert [o.conn for o in broker.tick(0.0)] == [b"c"]
    assert (broker.nicks_in("one"), broker.nicks_in("two")) == (["bob"], ["carol", "alice"])


# --- over real sockets -------------------------------------------------------------------


def test_two_rooms_on_one_real_broker_with_the_same_nicknames_keep_apart(keys: KeyPool) -> None:
    alice, bob, carol, dave = keys.many(4)

    async def main() -> None:
        with broker_thread(BrokerConfig(max_rooms=2)) as server:
            ep = server.bound[0]
            ops = PeerConfig(admit_all=True, room="ops")
            general = PeerConfig(admit_all=True, room="general")
            a1, b1 = make_client("alice", alice, ep, ops), make_client("bob", bob, ep, ops)
            a2, b2 = make_client("alice", carol, ep, general), make_client("bob", dave, ep, general)
            for client in (a1, b1, a2, b2):
                await ready(client)
            await sees(a1, "bob")
            await sees(a2, "bob")
            a1.send_text("to ops")
            a2.send_text("to general")
            assert await texts(b1, 1) == ["to ops"]
            assert await texts(b2, 1) == ["to general"]
            third = make_client("eve", alice, ep, PeerConfig(admit_all=True, room="third"))
            third.start()
            refused = await third.next_event(10)
            assert isinstance(refused, ev.Refused)
            assert refused.code == "too-many-rooms"
            assert sorted(server.core.nicks) == ["alice", "alice", "bob", "bob"]
            assert server.core.room_count == 2
            for client in (a1, b1, a2, b2, third):
                await client.close(max_idle=0)

    run(main())

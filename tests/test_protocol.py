"""The broker protocol codec: every message round-trips; junk is refused by type."""

from __future__ import annotations

import pytest

from zchat.envelope import Identity, Recipient, seal
from zchat.wire import protocol as p
from zchat.wire.errors import ProtocolError, UnsupportedProtocol

ID = bytes(range(16))


def peer_messages(alice: Identity, bob: Identity) -> list[p.PeerMessage]:
    env = seal(
        b"x",
        sender=alice,
        sender_nick="alice",
        recipients=[Recipient("bob", bob.public_key)],
        seq=1,
    )
    return [
        p.Hello(b"alice", alice.public_der),
        p.Proof(b"\x01" * 256),
        p.Send(env),
        p.Heartbeat(),
        p.Bye(),
    ]


def broker_messages(alice: Identity, bob: Identity) -> list[p.BrokerMessage]:
    env = seal(
        b"x",
        sender=alice,
        sender_nick="alice",
        recipients=[Recipient("bob", bob.public_key)],
        seq=1,
    )
    member = p.Member("alice", alice.public_der)
    return [
        p.Challenge(b"\x02" * 32),
        p.Welcome("alice", 1000, 5000),
        p.Refuse(p.RefuseCode.NICK_TAKEN, "alice is taken"),
        p.Snapshot((member, p.Member("bob", bob.public_der))),
        p.Snapshot(()),
        p.Join(member),
        p.Leave("alice", p.LeaveReason.TIMEOUT),
        p.Deliver(env.delivery_for(0)),
        p.Ack(ID, ("bob", "carol"), ("dave",)),
        p.Ack(ID, (), ()),
        p.Error(p.ErrorCode.HELLO_FIRST, "say hello first"),
        p.Error(p.ErrorCode.FORGED_SENDER, "sender is not you", ID),
        p.Heartbeat(),
    ]


def test_every_peer_message_round_trips(alice: Identity, bob: Identity) -> None:
    for msg in peer_messages(alice, bob):
        frames = p.encode(msg)
        assert frames[0] == p.PROTOCOL_TAG
        assert p.parse_from_peer(frames) == msg


def test_every_broker_message_round_trips(alice: Identity, bob: Identity) -> None:
    for msg in broker_messages(alice, bob):
        assert p.parse_from_broker(p.encode(msg)) == msg


def test_deliver_frames_match_the_encoded_deliver(alice: Identity, bob: Identity) -> None:
    env = seal(
        b"x",
        sender=alice,
        sender_nick="alice",
        recipients=[Recipient("bob", bob.public_key)],
        seq=1,
    )
    assert p.deliver_frames(env, 0) == p.encode(p.Deliver(env.delivery_for(0)))


def test_a_peer_cannot_send_broker_commands(alice: Identity, bob: Identity) -> None:
    with pytest.raises(ProtocolError, match="not a peer command"):
        p.parse_from_peer(p.encode(p.Welcome("alice", 1, 1)))


def test_another_protocol_version_is_recognised_as_such() -> None:
    with pytest.raises(UnsupportedProtocol):
        p.parse_from_peer([b"ZCHAT2", bytes([p.Command.HELLO]), b"a", b"k"])


@pytest.mark.parametrize(
    "frames",
    [
        [],
        [b"ZCHAT1"],
        [b"HTTP/1.1", b"\x01"],
        [b"ZCHAT1", b"\x99"],
        [b"ZCHAT1", b"\x01\x01", b"a", b"b"],
        [b"ZCHAT1", bytes([p.Command.HELLO]), b"a"],
        [b"ZCHAT1", bytes([p.Command.HEARTBEAT]), b"extra"],
        [b"ZCHAT1", bytes([p.Command.SEND]), b"h", b"s", b"t"],
        [b"ZCHAT1", bytes([p.Command.SEND])] + [b"x"] * 300,
    ],
)
def test_junk_from_a_peer_is_a_protocol_error(frames: list[bytes]) -> None:
    with pytest.raises(ProtocolError):
        p.parse_from_peer(frames)


@pytest.mark.parametrize(
    "body",
    [
        [bytes([p.Command.CHALLENGE]), b"short"],
        [bytes([p.Command.WELCOME]), b"bad nick!", b"\0\0\0\1", b"\0\0\0\1"],
        [bytes([p.Command.SNAPSHOT]), b"alice"],
        [bytes([p.Command.SNAPSHOT]), b"alice", b"k", b"ALICE", b"k"],
        [bytes([p.Command.JOIN]), b"\x1b[31mevil", b"k"],
        [bytes([p.Command.LEAVE]), b"alice", b"\x77"],
        [bytes([p.Command.ACK]), b"short", b"", b""],
        [bytes([p.Command.ACK]), ID, b"bob,,carol", b""],
        [bytes([p.Command.ERROR]), b"\x01"],
        [bytes([p.Command.REFUSE]), b"\x63", b"why"],
    ],
)
def test_junk_from_a_broker_is_a_protocol_error(body: list[bytes]) -> None:
    with pytest.raises(ProtocolError):
        p.parse_from_broker([p.PROTOCOL_TAG, *body])

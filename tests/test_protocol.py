"""The broker protocol codec: every message round-trips; junk is refused by type."""

from __future__ import annotations

import pytest

from tests.support.room import ROOM_ID, certificate
from zchat.envelope import Identity, Recipient, seal
from zchat.envelope.limits import MAX_CERT_BYTES
from zchat.wire import protocol as p
from zchat.wire.errors import ProtocolError, UnsupportedProtocol

ID = bytes(range(16))
WALL = 1_700_000_000.0


def peer_messages(alice: Identity, bob: Identity) -> list[p.PeerMessage]:
    env = seal(
        b"x",
        sender=alice,
        sender_nick="alice",
        room_id=ROOM_ID,
        recipients=[Recipient("bob", bob.public_key)],
        seq=1,
    )
    return [
        p.Hello(b"alice", alice.public_der, certificate(alice, "alice", WALL), b"zchat"),
        p.Proof(b"\x01" * 256),
        p.Send(env),
        p.Heartbeat(),
        p.Bye(),
        p.Rekey(certificate(alice, "alice", WALL + 3600)),
    ]


def broker_messages(alice: Identity, bob: Identity) -> list[p.BrokerMessage]:
    env = seal(
        b"x",
        sender=alice,
        sender_nick="alice",
        room_id=ROOM_ID,
        recipients=[Recipient("bob", bob.public_key)],
        seq=1,
    )
    member = p.Member("alice", alice.public_der, certificate(alice, "alice", WALL))
    bob_cert = certificate(bob, "bob", WALL)
    return [
        p.Challenge(b"\x02" * 32),
        p.Welcome("alice", 1000, 5000),
        p.Refuse(p.RefuseCode.NICK_TAKEN, "alice is taken"),
        p.Snapshot((member, p.Member("bob", bob.public_der, bob_cert))),
        p.Snapshot((p.Member("carol", bob.public_der),)),  # no certificate: the peer judges
        p.Snapshot(()),
        p.Join(member),
        p.Leave("alice", p.LeaveReason.TIMEOUT),
        p.Deliver(env.delivery_for(0)),
        p.Ack(ID, ("bob", "carol"), ("dave",)),
        p.Ack(ID, (), ()),
        p.Error(p.ErrorCode.HELLO_FIRST, "say hello first"),
        p.Error(p.ErrorCode.FORGED_SENDER, "sender is not you", ID),
        p.Error(p.ErrorCode.BAD_CERTIFICATE, "bad session-key certificate"),
        p.Heartbeat(),
        p.Rekeyed("bob", bob_cert),
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
        room_id=ROOM_ID,
        recipients=[Recipient("bob", bob.public_key)],
        seq=1,
    )
    assert p.deliver_frames(env, 0) == p.encode(p.Deliver(env.delivery_for(0)))


def test_a_peer_cannot_send_broker_commands(alice: Identity, bob: Identity) -> None:
    with pytest.raises(ProtocolError, match="not a peer command"):
        p.parse_from_peer(p.encode(p.Welcome("alice", 1, 1)))


def test_the_protocol_tag_says_version_3() -> None:
    assert p.PROTOCOL_TAG == b"ZCHAT3"


@pytest.mark.parametrize("tag", [b"ZCHAT1", b"ZCHAT2", b"ZCHAT4"])
def test_another_protocol_version_is_recognised_as_such(tag: bytes) -> None:
    with pytest.raises(UnsupportedProtocol):
        p.parse_from_peer([tag, bytes([p.Command.HELLO]), b"a", b"k", b"c"])


def test_a_deliver_carries_the_leaf_and_path_of_its_recipient_only(
    alice: Identity, bob: Identity
) -> None:
    env = seal(
        b"x",
        sender=alice,
        sender_nick="alice",
        room_id=ROOM_ID,
        recipients=[Recipient(n, bob.public_key) for n in ("bob", "carol", "dave")],
        seq=1,
    )
    frames = p.deliver_frames(env, 2)
    assert len(frames) == 2 + 6  # tag, command, header, signature, token, leaf, path, key
    assert frames[5] == (2).to_bytes(2, "big") + b"\x04dave" + env.key_ids[2]
    assert frames[6] == env.tree.path(2)
    msg = p.parse_from_broker(frames)
    assert isinstance(msg, p.Deliver)
    assert msg.delivery.leaf.nick == "dave"


@pytest.mark.parametrize(
    "frames",
    [
        [],
        [p.PROTOCOL_TAG],
        [b"HTTP/1.1", b"\x01"],
        [p.PROTOCOL_TAG, b"\x99"],
        [p.PROTOCOL_TAG, b"\x01\x01", b"a", b"b", b"c"],
        [p.PROTOCOL_TAG, bytes([p.Command.HELLO]), b"a"],
        [p.PROTOCOL_TAG, bytes([p.Command.HELLO]), b"a", b"k"],  # version 1's: no certificate
        [p.PROTOCOL_TAG, bytes([p.Command.HELLO]), b"a", b"k", b"c"],  # version 2's: no room
        [p.PROTOCOL_TAG, bytes([p.Command.HEARTBEAT]), b"extra"],
        [p.PROTOCOL_TAG, bytes([p.Command.SEND]), b"h", b"s", b"t"],
        [p.PROTOCOL_TAG, bytes([p.Command.SEND]), b"h", b"s", b"t", b"r"],
        [p.PROTOCOL_TAG, bytes([p.Command.SEND])] + [b"x"] * 300,
        [p.PROTOCOL_TAG, bytes([p.Command.REKEY])],
        [p.PROTOCOL_TAG, bytes([p.Command.REKEY]), b"c", b"extra"],
        [p.PROTOCOL_TAG, bytes([p.Command.REKEY]), b"c" * (MAX_CERT_BYTES + 1)],
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
        [bytes([p.Command.SNAPSHOT]), b"alice", b"k", b"c", b"ALICE", b"k", b"c"],
        [bytes([p.Command.SNAPSHOT]), b"alice", b"k", b"bob", b"k"],  # version 1's
        [bytes([p.Command.JOIN]), b"\x1b[31mevil", b"k", b"c"],
        [bytes([p.Command.JOIN]), b"alice", b"k"],  # version 1's: no certificate
        [bytes([p.Command.JOIN]), b"alice", b"k", b"c" * (MAX_CERT_BYTES + 1)],
        [bytes([p.Command.REKEYED]), b"alice"],
        [bytes([p.Command.REKEYED]), b"bad nick!", b"c"],
        [bytes([p.Command.REKEYED]), b"alice", b"c" * (MAX_CERT_BYTES + 1)],
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

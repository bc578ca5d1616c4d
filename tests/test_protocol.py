"""The broker protocol codec: every message round-trips; junk is refused by type."""

from __future__ import annotations

import pytest

from tests.support.room import ROOM_ID, certificate
from zchat.envelope import Envelope, Identity, Recipient, seal
from zchat.envelope.limits import MAX_CERT_BYTES
from zchat.wire import protocol as p
from zchat.wire.errors import ProtocolError, UnsupportedProtocol

ID = bytes(range(16))
WALL = 1_700_000_000.0


def sealed(alice: Identity, bob: Identity, *to: str) -> Envelope:
    """An envelope from alice to `to` (bob alone by default), each wrapped to bob's key."""
    recipients = [Recipient(nick, bob.public_key) for nick in to or ("bob",)]
    return seal(
        b"x", sender=alice, sender_nick="alice", room_id=ROOM_ID, recipients=recipients, seq=1
    )


def peer_messages(alice: Identity, bob: Identity) -> list[p.PeerMessage]:
    env = sealed(alice, bob)
    return [
        p.Hello(b"alice", alice.public_der, certificate(alice, "alice", WALL), b"zchat"),
        p.Proof(b"\x01" * 256),
        p.Send(env),
        p.Heartbeat(),
        p.Bye(),
        p.Rekey(certificate(alice, "alice", WALL + 3600)),
    ]


def broker_messages(alice: Identity, bob: Identity) -> list[p.BrokerMessage]:
    env = sealed(alice, bob)
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
    env = sealed(alice, bob)
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
    env = sealed(alice, bob, "bob", "carol", "dave")
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
        [b"ZCHAT", bytes([p.Command.HELLO]), b"a", b"k", b"c", b"r"],  # no version
        [b"ZCHATX", bytes([p.Command.HELLO]), b"a", b"k", b"c", b"r"],
        [b"ZCHAT3 ", bytes([p.Command.HELLO]), b"a", b"k", b"c", b"r"],
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
        [bytes([p.Command.LEAVE]), b"alice", b"\x77\x77"],
        [bytes([p.Command.ACK]), b"short", b"", b""],
        [bytes([p.Command.ACK]), ID, b"bob,,carol", b""],
        [bytes([p.Command.ERROR]), b"\x01"],
        [bytes([p.Command.REFUSE]), b"", b"why"],
        [bytes([p.Command.ERROR]), b"\x42", b"why", b"short id"],
    ],
)
def test_junk_from_a_broker_is_a_protocol_error(body: list[bytes]) -> None:
    with pytest.raises(ProtocolError):
        p.parse_from_broker([p.PROTOCOL_TAG, *body])


# --- what a later version may add: codes, commands, and the version refusal -----------


def test_codes_this_version_does_not_know_parse_as_their_raw_numbers() -> None:
    """A later version may add a code: it is the receiver's to judge, never junk."""
    tag = p.PROTOCOL_TAG
    refuse = p.parse_from_broker([tag, bytes([p.Command.REFUSE]), b"\x63", b"why"])
    leave = p.parse_from_broker([tag, bytes([p.Command.LEAVE]), b"alice", b"\x03"])
    error = p.parse_from_broker([tag, bytes([p.Command.ERROR]), b"\x42", b"why", ID])
    assert refuse == p.Refuse(0x63, "why")
    assert leave == p.Leave("alice", 3)  # retired: never sent, and no reason of ours
    assert error == p.Error(0x42, "why", ID)
    for msg in (refuse, leave, error):
        assert p.parse_from_broker(p.encode(msg)) == msg


@pytest.mark.parametrize("command", [0x00, 0x07, 0x1B, 0x99, 0xFF])
def test_a_command_byte_this_version_does_not_know_parses_from_either_side(command: int) -> None:
    frames = [p.PROTOCOL_TAG, bytes([command]), b"a body", b"of any shape"]
    assert p.parse_from_peer(frames) == p.UnknownCommand(command)
    assert p.parse_from_broker(frames) == p.UnknownCommand(command)
    assert p.encode(p.UnknownCommand(command)) == frames[:2]


@pytest.mark.parametrize(
    "frames",
    [
        [b"ZCHAT2"],
        [b"ZCHAT2", bytes([p.Command.HELLO])],
        [b"ZCHAT2", bytes([p.Command.HELLO]), b"alice", b"der", b"cert"],
        [b"ZCHAT4", b"a command of version 4"],
        [b"ZCHAT10", *([b""] * (p.MAX_MESSAGE_FRAMES + 10))],
    ],
)
def test_another_versions_tag_is_recognised_whatever_the_frames(frames: list[bytes]) -> None:
    with pytest.raises(UnsupportedProtocol) as raised:
        p.parse_from_peer(frames)
    assert raised.value.tag == frames[0]


@pytest.mark.parametrize(
    "tag", [b"ZCHAT", b"ZCHATX", b"ZCHAT-2", b"ZCHAT\xd9\xa2", b"ZCHAT" + b"9" * 12]
)
def test_a_tag_that_is_no_versions_is_junk_not_another_version(tag: bytes) -> None:
    """Only "ZCHAT" and up to 11 ASCII digits name a version: the refusal echoes the
    tag, so nothing longer is answered."""
    with pytest.raises(ProtocolError) as raised:
        p.parse_from_peer([tag, bytes([p.Command.HELLO]), b"a", b"k", b"c", b"r"])
    assert not isinstance(raised.value, UnsupportedProtocol)


def test_the_version_refusal_keeps_its_layout_and_the_tag_it_answers() -> None:
    refusal = p.VersionRefusal(b"ZCHAT2", "this broker speaks zchat protocol 3")
    frames = p.encode(refusal)
    assert frames == [b"ZCHAT2", b"\x13", b"\x03", b"this broker speaks zchat protocol 3"]
    assert p.parse_from_broker(frames) == refusal
    assert refusal.version == 2
    assert p.encode(p.VersionRefusal(b"ZCHAT2", "x" * 300))[3] == b"x" * p.MAX_REASON_BYTES


@pytest.mark.parametrize(
    "frames",
    [
        [b"ZCHAT2", b"\x13", b"\x01", b"nick taken"],  # another refusal of version 2
        [b"ZCHAT2", b"\x13", b"\x03"],
        [b"ZCHAT2", b"\x13", b"\x03", b"why", b"extra"],
        [b"ZCHAT2", b"\x12", b"alice", b"\0\0\0\1", b"\0\0\0\1", b"zchat"],
        [b"ZCHAT4", b"\x17"],
    ],
)
def test_a_broker_of_another_version_is_read_only_as_a_version_refusal(
    frames: list[bytes],
) -> None:
    with pytest.raises(ProtocolError):
        p.parse_from_broker(frames)


def test_a_malformed_send_names_its_message_when_the_header_says_that_much(
    alice: Identity, bob: Identity
) -> None:
    env = sealed(alice, bob)
    msg_id = env.header.msg_id
    frames = p.encode(p.Send(env))
    other_leaf = frames[5].replace(b"bob", b"bib")  # not the recipient the root signs
    cut_header = frames[2][: 2 + len(msg_id)]  # version, kind, id: nothing more
    for body, named in (
        ([*frames[2:5], other_leaf, *frames[6:]], msg_id),
        ([cut_header, *frames[3:]], msg_id),
        ([frames[2][: 1 + len(msg_id)], *frames[3:]], b""),  # the id is cut short
        ([b"\x02" + frames[2][1:], *frames[3:]], b""),  # another version's layout
    ):
        with pytest.raises(ProtocolError) as raised:
            p.parse_from_peer([*frames[:2], *body])
        assert raised.value.msg_id == named

"""The swarm's light sessions on the wire: every frame layout they rely on, and only here.

A light session (`bench.swarm_worker`) speaks the broker protocol (docs/PROTOCOL.md §3)
without the peer library: it says HELLO, proves its key, heartbeats, sends room messages
whose envelopes are *shaped* like real ones and reads what comes back by command byte.
The broker checks certificates and proofs, so those are genuine; it never checks an
envelope's signature or wrapped keys, so those are random bytes of the right size,
and the token carries the instant the message was due instead of a ciphertext.

The dialog, as the light session plays it::

    -> HELLO nick, identity DER, certificate, room
    <- CHALLENGE nonce                              -> PROOF signature
    <- WELCOME nick, interval, timeout, room        <- SNAPSHOT (3 frames per member)
    <- JOIN / LEAVE / REKEYED                       (counted, never checked)
    -> SEND header | signature | token | recipients (leaves) | wrapped key per recipient
    <- DELIVER header | signature | token | leaf | path | wrapped key
    <- ACK id, delivered, absent
    -> HEARTBEAT every interval                     -> BYE

Protocol version 3: HELLO names the room; the header signs a Merkle tree head over the
recipients' leaves, which SEND carries in one frame; a DELIVER carries its leaf and
path. A change of framing is a change of this module.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric import rsa

from zchat.envelope import Header, Leaf, MessageKind
from zchat.envelope import _primitives as prim
from zchat.envelope.limits import KEY_ID_BYTES, MIN_RSA_BYTES, MSG_ID_BYTES
from zchat.envelope.merkle import tree_head
from zchat.envelope.proof import sign_proof
from zchat.wire.protocol import PROTOCOL_TAG, Command, LeaveReason

#: A room message: one line of chat, as the issue measures it.
TEXT_BYTES: Final = 64
#: What seal() makes of TEXT_BYTES: the token is sized like the real thing.
TOKEN_BYTES: Final = len(prim.encrypt(prim.new_message_key(), bytes(TEXT_BYTES), 0))
#: The token starts with the instant the message was due and its number in its room.
_STAMP: Final = struct.Struct(">QQ")
#: Signatures and wrapped keys: RSA-2048 sized, never checked by the broker.
_RSA_BLOB: Final = os.urandom(MIN_RSA_BYTES)
_KEY_ID: Final = bytes(KEY_ID_BYTES)

_HELLO: Final = bytes([Command.HELLO])
_PROOF: Final = bytes([Command.PROOF])
_SEND: Final = bytes([Command.SEND])
_HEARTBEAT: Final = [PROTOCOL_TAG, bytes([Command.HEARTBEAT])]
_BYE: Final = [PROTOCOL_TAG, bytes([Command.BYE])]

# Command bytes of what the broker sends, for the session's dispatch.
CHALLENGE: Final = int(Command.CHALLENGE)
WELCOME: Final = int(Command.WELCOME)
REFUSE: Final = int(Command.REFUSE)
SNAPSHOT: Final = int(Command.SNAPSHOT)
JOIN: Final = int(Command.JOIN)
LEAVE: Final = int(Command.LEAVE)
DELIVER: Final = int(Command.DELIVER)
ACK: Final = int(Command.ACK)
ERROR: Final = int(Command.ERROR)
#: LEAVE reasons that mean the broker gave up on a member (not a goodbye).
EVICTION_REASONS: Final = frozenset({LeaveReason.TIMEOUT, LeaveReason.BACKLOG})
_SNAPSHOT_MEMBER_FRAMES: Final = 3


def hello(nick: str, public_der: bytes, certificate: bytes, room: str) -> list[bytes]:
    return [PROTOCOL_TAG, _HELLO, nick.encode(), public_der, certificate, room.encode()]


@dataclass(frozen=True, slots=True)
class Recipients:
    """A sender's recipients as a SEND carries them: made once per room, since every
    message of a light session goes to all the others."""

    count: int
    root: bytes
    frame: bytes

    @classmethod
    def of(cls, nicks: tuple[str, ...]) -> Recipients:
        data = [Leaf(nick, _KEY_ID).encode() for nick in nicks]
        return cls(len(data), tree_head(data), b"".join(data))


def proof(
    identity_key: rsa.RSAPrivateKey, nonce: bytes, nick: str, public_der: bytes
) -> list[bytes]:
    """PROOF for the CHALLENGE `nonce`, on a connection without CURVE."""
    signature = sign_proof(identity_key, nonce, nick.encode(), public_der)
    return [PROTOCOL_TAG, _PROOF, signature]


def heartbeat() -> list[bytes]:
    return _HEARTBEAT


def bye() -> list[bytes]:
    return _BYE


def room_message(
    sender: str,
    sender_fp: bytes,
    room_id: bytes,
    recipients: Recipients,
    *,
    number: int,
    due_ns: int,
    wall_ms: int,
) -> list[bytes]:
    """SEND of a room message to `recipients`, due at `due_ns`, the `number`-th of its room."""
    header = Header(
        kind=MessageKind.ROOM,
        msg_id=os.urandom(MSG_ID_BYTES),
        timestamp_ms=wall_ms,
        seq=number + 1,
        sender=sender,
        sender_fingerprint=sender_fp,
        room_id=room_id,
        count=recipients.count,
        root=recipients.root,
    )
    token = _STAMP.pack(due_ns, number).ljust(TOKEN_BYTES, b"x")
    wrapped = [_RSA_BLOB] * recipients.count
    return [PROTOCOL_TAG, _SEND, header.encode(), _RSA_BLOB, token, recipients.frame, *wrapped]


# --- what the broker sends: read by position, nothing more -------------------------------


def command(frames: list[bytes]) -> int:
    """The command byte of a broker message (0 for anything too short to have one)."""
    return frames[1][0] if len(frames) > 1 and frames[1] else 0


def challenge_nonce(frames: list[bytes]) -> bytes:
    return frames[2]


def welcome_interval_ms(frames: list[bytes]) -> int:
    """The heartbeat interval WELCOME names."""
    return int.from_bytes(frames[3], "big")


def refuse_code(frames: list[bytes]) -> int:
    return frames[2][0] if len(frames) > 2 and frames[2] else 0


def snapshot_size(frames: list[bytes]) -> int:
    """How many members a SNAPSHOT lists."""
    return (len(frames) - 2) // _SNAPSHOT_MEMBER_FRAMES


def leave_nick_and_reason(frames: list[bytes]) -> tuple[bytes, int]:
    return frames[2], frames[3][0]


def error_code(frames: list[bytes]) -> int:
    return frames[2][0]


def delivery_stamp(frames: list[bytes]) -> tuple[int, int]:
    """(due_ns, number) of a DELIVER of a message `room_message` made."""
    due_ns, number = _STAMP.unpack_from(frames[4])
    return due_ns, number


def ack_absent(frames: list[bytes]) -> int:
    """How many recipients an ACK names as absent."""
    absent = frames[4]
    return absent.count(b",") + 1 if absent else 0

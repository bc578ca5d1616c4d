"""The protocol's registries: its version and tag, and every one-byte code it sends.

One IntEnum per registry (command bytes, REFUSE codes, ERROR codes, LEAVE reasons),
each value written into docs/PROTOCOL.md §5 and never reused. A value a
registry does not list is a later version's: it parses as its raw int (`code_of`), and
the receiver decides what it means, so that a version can add one without breaking the
one before. `wire.protocol` re-exports all of it.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final, TypeVar

from zchat.wire.errors import ProtocolError

_E = TypeVar("_E", bound=IntEnum)

PROTOCOL_VERSION: Final = 3
PROTOCOL_TAG: Final = b"ZCHAT%d" % PROTOCOL_VERSION
#: Every version's tag is this and its number in decimal digits.
TAG_FAMILY: Final = b"ZCHAT"
#: The longest tag taken for a version's: the version refusal echoes the tag, so a
#: longer one (up to 64 KiB) is junk, never answered.
MAX_TAG_BYTES: Final = 16


def is_foreign_tag(tag: bytes) -> bool:
    """Whether frame 0 is the tag of another version: "ZCHAT" and decimal digits, not
    ours, and short (a version refusal echoes it)."""
    return (
        len(TAG_FAMILY) < len(tag) <= MAX_TAG_BYTES
        and tag != PROTOCOL_TAG
        and tag.startswith(TAG_FAMILY)
        and tag[len(TAG_FAMILY) :].isdigit()  # bytes.isdigit: ASCII digits only
    )


class Command(IntEnum):
    """Frame 1 of every message. A byte not listed here parses as its raw int
    (`UnknownCommand`): a later version's, which the receiver refuses or drops."""

    # peer -> broker
    HELLO = 0x01
    PROOF = 0x02
    SEND = 0x03
    HEARTBEAT = 0x04  # both ways
    BYE = 0x05
    REKEY = 0x06  # a new session key (forward secrecy)
    # broker -> peer
    CHALLENGE = 0x11
    WELCOME = 0x12
    REFUSE = 0x13
    SNAPSHOT = 0x14
    JOIN = 0x15
    LEAVE = 0x16
    DELIVER = 0x17
    ACK = 0x18
    ERROR = 0x19
    REKEYED = 0x1A  # a member's new session key


class RefuseCode(IntEnum):
    """Why a handshake was refused. The peer may retry with another nickname. A code
    not listed here (a later version's) is a permanent refusal: its reason is shown."""

    NICK_TAKEN = 1
    NICK_INVALID = 2
    UNSUPPORTED_VERSION = 3
    BAD_PROOF = 4
    BAD_KEY = 5
    ROOM_FULL = 6
    NOT_AUTHORIZED = 7  # CURVE: this transport key may not use this nickname
    KEY_IN_USE = 8  # this key already holds another nickname in the room
    BAD_CERTIFICATE = 9  # the session-key certificate is not this nickname's, key's, room's
    #: The HELLO names a room that does not exist yet, and the broker holds as many
    #: rooms as it may (`zchat broker --max-rooms`).
    TOO_MANY_ROOMS = 10
    ROOM_INVALID = 11  # the room name is not 1-64 printable ASCII characters


class ErrorCode(IntEnum):
    """Problems with one message of an established (or missing) session. A code not
    listed here (a later version's) is reported, and otherwise ignored."""

    HELLO_FIRST = 1  # no session on this connection: say HELLO again
    MALFORMED = 2  # with the msg_id of a SEND whose header could be read that far
    FORGED_SENDER = 3  # the header names someone else as the sender
    REPLACED = 4  # the same nickname and key logged in on another connection
    EVICTED = 5
    BAD_CERTIFICATE = 6  # a REKEY whose certificate is not this session's: not relayed


class LeaveReason(IntEnum):
    """Why a member left. A reason not listed here (a later version's): it left."""

    BYE = 1
    TIMEOUT = 2
    BACKLOG = 4  # it stopped reading (3 is retired: never reuse a wire value)


def code_of(kind: type[_E], raw: bytes) -> _E | int:
    """A one-byte code: its registry's member, or its raw number if this version does
    not know it (a later version may add codes; the receiver decides what it means)."""
    if len(raw) != 1:
        raise ProtocolError(f"bad {kind.__name__} field")
    try:
        return kind(raw[0])
    except ValueError:
        return raw[0]

"""Rooms: the name a peer asks for, and the room id everything signed for it carries.

A session-key certificate, an envelope header and a membership record are each good in
one room only. They carry the room id, a hash of the room's name and of the broker's
CURVE key, so that nobody (a broker least of all) can take one signed for one room and
have it count in another::

    room_id = SHA-256( ROOM_CONTEXT || u8 len(room) || room
                       || u8 len(broker_key) || broker_key )

`broker_key` is the broker's CURVE public key as its 40 Z85 characters when the
transport is CURVE, else empty. With CURVE, "general" on one broker and "general" on
another are two rooms; without it, a room is its name (docs/SECURITY.md says what that
leaves open).
"""

from __future__ import annotations

import hashlib

from zchat.envelope._primitives import ROOM_CONTEXT
from zchat.envelope.limits import CURVE_KEY_TEXT, MAX_ROOM_NAME_BYTES

#: The room a peer joins unless told another (`zchat peer --room`, ZCHAT_ROOM).
DEFAULT_ROOM = "zchat"
#: The rule, in the words every side uses.
ROOM_RULES = f"a room name is 1-{MAX_ROOM_NAME_BYTES} printable ASCII characters"


def is_valid_room(room: str) -> bool:
    """A room name is 1-64 printable ASCII characters."""
    return 0 < len(room) <= MAX_ROOM_NAME_BYTES and room.isascii() and room.isprintable()


def room_id(room: str, broker_key: bytes = b"") -> bytes:
    """The 32-byte id of `room` on the broker whose CURVE public key is `broker_key`."""
    if not is_valid_room(room):
        raise ValueError(f"invalid room name {room!r}: {ROOM_RULES}")
    if len(broker_key) not in (0, CURVE_KEY_TEXT):
        raise ValueError("a CURVE key is 40 Z85 characters, or empty without CURVE")
    name = room.encode("ascii")
    return hashlib.sha256(
        b"".join([ROOM_CONTEXT, bytes([len(name)]), name, bytes([len(broker_key)]), broker_key])
    ).digest()

"""A message's recipients as Merkle leaves: who, and which of their session keys.

Each recipient is one leaf of the tree whose head the signed header carries
(`envelope.merkle`)::

    leaf_data  = u8 len(nick) || nick (ASCII) || key_id (KEY_ID_BYTES)

`key_id` is the start of the fingerprint of the session key the recipient's message
key is wrapped to. A SEND carries every leaf in one frame, the leaf data concatenated
in the sender's order (its `recipients` frame); a DELIVER carries one, with its
position::

    leaf frame = u16 index || leaf_data

Nicknames in one message are unique, compared case-folded, and never the sender's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from zchat.envelope._codec import Reader, short_string
from zchat.envelope.errors import MalformedEnvelope
from zchat.envelope.limits import KEY_ID_BYTES, LEAF_INDEX_BYTES, MAX_LEAF_BYTES
from zchat.envelope.nick import is_valid_nick, nick_key


@dataclass(frozen=True, slots=True)
class Leaf:
    """One recipient: its nickname as the sender spells it, and its session key's id."""

    nick: str
    key_id: bytes

    def __post_init__(self) -> None:
        if not is_valid_nick(self.nick):
            raise ValueError("invalid recipient nickname")
        if len(self.key_id) != KEY_ID_BYTES:
            raise ValueError(f"a key id is {KEY_ID_BYTES} bytes")

    def encode(self) -> bytes:
        return short_string(self.nick) + self.key_id


def leaves_problem(leaves: Sequence[Leaf], sender: str) -> str | None:
    """Why `leaves` cannot be the recipients of a message from `sender`, or None."""
    keys = {nick_key(leaf.nick) for leaf in leaves}
    if len(keys) != len(leaves):
        return "duplicate recipient"
    if nick_key(sender) in keys:
        return "the sender cannot be a recipient"
    return None


def parse_leaves(frame: bytes, count: int) -> tuple[tuple[Leaf, ...], tuple[bytes, ...]]:
    """The `count` leaves of a SEND's recipients frame, and each one's leaf data.

    The caller bounds `count` and the frame's size first; every leaf is read whole,
    and nothing may follow the last.
    """
    reader = Reader(frame, what="recipients")
    leaves: list[Leaf] = []
    data: list[bytes] = []
    start = 0
    for _ in range(count):
        leaf = _read_leaf(reader)
        end = start + 1 + len(leaf.nick) + KEY_ID_BYTES
        leaves.append(leaf)
        data.append(frame[start:end])
        start = end
    reader.expect_end()
    return tuple(leaves), tuple(data)


def leaf_frame(index: int, leaf_data: bytes) -> bytes:
    """DELIVER's leaf frame: the leaf's position and its data."""
    return index.to_bytes(LEAF_INDEX_BYTES, "big") + leaf_data


def parse_leaf_frame(frame: bytes) -> tuple[int, Leaf, bytes]:
    """(index, leaf, leaf data) from DELIVER's leaf frame."""
    if not LEAF_INDEX_BYTES < len(frame) <= LEAF_INDEX_BYTES + MAX_LEAF_BYTES:
        raise MalformedEnvelope("leaf size out of range")
    reader = Reader(frame, what="leaf")
    index = reader.u16()
    leaf = _read_leaf(reader)
    reader.expect_end()
    return index, leaf, frame[LEAF_INDEX_BYTES:]


def _read_leaf(reader: Reader) -> Leaf:
    nick = reader.short_string()
    key_id = reader.take(KEY_ID_BYTES)
    try:
        return Leaf(nick, key_id)
    except ValueError as exc:
        raise MalformedEnvelope(str(exc)) from None

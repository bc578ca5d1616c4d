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

from zchat.envelope._codec import short_string
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
    and nothing may follow the last. The broker's hot path (a thousand leaves a SEND),
    so each leaf costs one length byte, one bounds check and one slice.
    """
    leaves: list[Leaf] = []
    data: list[bytes] = []
    pos, size = 0, len(frame)
    for _ in range(count):
        end = pos + 1 + frame[pos] + KEY_ID_BYTES if pos < size else size + 1
        if end > size:
            raise MalformedEnvelope("recipients truncated")
        raw = frame[pos:end]
        leaves.append(_leaf(raw))
        data.append(raw)
        pos = end
    if pos != size:
        raise MalformedEnvelope("trailing bytes after recipients")
    return tuple(leaves), tuple(data)


def leaf_frame(index: int, leaf_data: bytes) -> bytes:
    """DELIVER's leaf frame: the leaf's position and its data."""
    return index.to_bytes(LEAF_INDEX_BYTES, "big") + leaf_data


def parse_leaf_frame(frame: bytes) -> tuple[int, Leaf, bytes]:
    """(index, leaf, leaf data) from DELIVER's leaf frame."""
    if not LEAF_INDEX_BYTES < len(frame) <= LEAF_INDEX_BYTES + MAX_LEAF_BYTES:
        raise MalformedEnvelope("leaf size out of range")
    raw = frame[LEAF_INDEX_BYTES:]
    if len(raw) != 1 + raw[0] + KEY_ID_BYTES:
        raise MalformedEnvelope("leaf size does not match its nickname's")
    return int.from_bytes(frame[:LEAF_INDEX_BYTES], "big"), _leaf(raw), raw


def _leaf(raw: bytes) -> Leaf:
    """The leaf whose data is `raw`, its length already checked against its first byte."""
    nick = raw[1:-KEY_ID_BYTES]
    # Nicknames are ASCII by definition: no later code sees a decoded non-ASCII name.
    if not nick.isascii():
        raise MalformedEnvelope("recipients: a name is not ASCII")
    try:
        return Leaf(nick.decode("ascii"), raw[-KEY_ID_BYTES:])
    except ValueError as exc:
        raise MalformedEnvelope(str(exc)) from None

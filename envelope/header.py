"""The envelope header: a fixed binary layout with exactly one encoding per header.

A binary layout rather than JSON: there are no duplicate keys, NaNs, nesting or
whitespace to canonicalise, so the bytes that are signed are the only bytes that can
mean this header, and parsing is a handful of bounds checks. Layout (big-endian)::

    version    u8        ENVELOPE_VERSION (3)
    kind       u8        MessageKind
    msg_id     16 bytes  random
    timestamp  u64       milliseconds since the Unix epoch, sender's clock
    seq        u64       per-sender sequence number, strictly increasing
    sender_fp  32 bytes  SHA-256 of the sender's public key (DER SubjectPublicKeyInfo)
    room_id    32 bytes  the room it is for (`envelope.room`)
    sender     u8 length, then that many ASCII bytes
    count      u16       number of recipients, 1..MAX_RECIPIENTS
    root       32 bytes  Merkle tree head over the recipients' leaves (`envelope.merkle`)
    named      u8 count, then that many (u8 length, ASCII nickname): for DIRECT only,
               every recipient in leaf order, at most MAX_NAMED; 0 for other kinds

The recipients themselves travel apart (`envelope.frames`): a leaf each, `u8 length,
nickname, key id`, whose tree head is `root`. So the header stays the same size
whatever the room's (at most MAX_HEADER_BYTES), and the signature over it still covers
every recipient and the session key each one's message key is wrapped to.

A kind this code does not know parses (as its raw number): it is verified like any
envelope, then dropped and reported by the receiver, so that a kind can be added.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from zchat.envelope._codec import Reader, short_string
from zchat.envelope.errors import MalformedEnvelope, UnsupportedVersion
from zchat.envelope.limits import (
    ENVELOPE_VERSION,
    FINGERPRINT_BYTES,
    HASH_BYTES,
    HEADER_FIXED_BYTES,
    MAX_HEADER_BYTES,
    MAX_NAMED,
    MAX_RECIPIENTS,
    MSG_ID_BYTES,
    ROOM_ID_BYTES,
)
from zchat.envelope.nick import is_valid_nick, nick_key

_U64_MAX = 2**64 - 1
_PREFIX = struct.Struct(f">BB{MSG_ID_BYTES}sQQ{FINGERPRINT_BYTES}s{ROOM_ID_BYTES}s")
#: Where the message id lies: after the version and the kind.
_MSG_ID_AT = 2
_MSG_ID_END = _MSG_ID_AT + MSG_ID_BYTES


class MessageKind(IntEnum):
    """What the sealed plaintext is. Signed, so a broker cannot turn one into another."""

    ROOM = 1  # text to everyone present
    DIRECT = 2  # text to the named recipients only
    MEMBERSHIP = 3  # vouches and revocations (`envelope.membership`), not text


@dataclass(frozen=True, slots=True)
class Header:
    """The signed, cleartext part of an envelope. The broker reads it to route."""

    #: A MessageKind, or the raw number of a kind this code does not know.
    kind: MessageKind | int
    msg_id: bytes
    timestamp_ms: int
    seq: int
    sender: str
    sender_fingerprint: bytes
    room_id: bytes
    #: How many recipients the tree has, and its head.
    count: int
    root: bytes
    #: DIRECT only: every recipient's nickname, in leaf order; () for other kinds.
    named: tuple[str, ...] = ()
    version: int = ENVELOPE_VERSION

    def __post_init__(self) -> None:
        # Caller misuse is a ValueError; bytes from the network go through `parse`,
        # which turns the same conditions into MalformedEnvelope.
        problem = self._problem()
        if problem:
            raise ValueError(problem)

    def _problem(self) -> str | None:
        if not 0 <= self.kind <= 255:
            return "message kind must fit in a byte"
        if len(self.msg_id) != MSG_ID_BYTES:
            return "message id must be 16 bytes"
        if len(self.sender_fingerprint) != FINGERPRINT_BYTES:
            return "sender fingerprint must be 32 bytes"
        if len(self.room_id) != ROOM_ID_BYTES:
            return "room id must be 32 bytes"
        if len(self.root) != HASH_BYTES:
            return "tree head must be 32 bytes"
        if not 0 <= self.timestamp_ms <= _U64_MAX or not 0 <= self.seq <= _U64_MAX:
            return "timestamp and sequence must fit in 64 bits"
        if not is_valid_nick(self.sender):
            return "invalid sender nickname"
        if not 1 <= self.count <= MAX_RECIPIENTS:
            return f"a message goes to 1 to {MAX_RECIPIENTS} recipients"
        return _named_problem(self.kind, self.named, self.count, self.sender)

    def encode(self) -> bytes:
        parts = [
            _PREFIX.pack(
                self.version,
                self.kind,
                self.msg_id,
                self.timestamp_ms,
                self.seq,
                self.sender_fingerprint,
                self.room_id,
            ),
            short_string(self.sender),
            self.count.to_bytes(2, "big"),
            self.root,
            len(self.named).to_bytes(1, "big"),
            *(short_string(nick) for nick in self.named),
        ]
        return b"".join(parts)

    @classmethod
    def parse(cls, data: bytes) -> Header:
        """Parse header bytes strictly; anything but a canonical header is refused."""
        # The version first: another version may have another length.
        if data and data[0] != ENVELOPE_VERSION:
            raise UnsupportedVersion(data[0])
        if not HEADER_FIXED_BYTES <= len(data) <= MAX_HEADER_BYTES:
            raise MalformedEnvelope("header length out of range")
        version, raw_kind, msg_id, ts, seq, fp, room = _PREFIX.unpack_from(data)
        kind: MessageKind | int
        try:
            kind = MessageKind(raw_kind)
        except ValueError:
            kind = raw_kind  # unknown: the receiver drops it after verifying it
        reader = Reader(data, _PREFIX.size)
        sender = reader.short_string()
        count = reader.u16()
        root = reader.take(HASH_BYTES)
        named_count = reader.u8()
        if named_count > MAX_NAMED:  # before reading a single name
            raise MalformedEnvelope("too many names in the header")
        named = tuple(reader.short_string() for _ in range(named_count))
        reader.expect_end()
        try:
            return cls(kind, msg_id, ts, seq, sender, fp, room, count, root, named, version)
        except ValueError as exc:
            raise MalformedEnvelope(str(exc)) from None


def peek_msg_id(data: bytes) -> bytes:
    """The message id of header bytes that can be read that far (a version-3 header at
    least as long as its fixed prefix), else b"": the broker names the SEND it refused
    as malformed, even when the rest of the header is wrong."""
    if len(data) < _MSG_ID_END or data[0] != ENVELOPE_VERSION:
        return b""
    return bytes(data[_MSG_ID_AT:_MSG_ID_END])


def _named_problem(
    kind: MessageKind | int, named: tuple[str, ...], count: int, sender: str
) -> str | None:
    """Why `named` cannot be the names of a `kind` message to `count` recipients."""
    if kind != MessageKind.DIRECT:
        return "only a direct message names its recipients" if named else None
    if len(named) > MAX_NAMED:
        return f"a direct message goes to at most {MAX_NAMED} people"
    if len(named) != count:
        return "a direct message names every recipient"
    if not all(is_valid_nick(n) for n in named):
        return "invalid recipient nickname"
    keys = {nick_key(n) for n in named}
    if len(keys) != len(named):
        return "duplicate recipient"
    if nick_key(sender) in keys:
        return "the sender cannot be a recipient"
    return None

"""The envelope header: a fixed binary layout with exactly one encoding per header.

A binary layout rather than JSON: there are no duplicate keys, NaNs, nesting or
whitespace to canonicalise, so the bytes that are signed are the only bytes that can
mean this header, and parsing is a handful of bounds checks. Layout (big-endian)::

    version    u8        ENVELOPE_VERSION
    kind       u8        MessageKind
    msg_id     16 bytes  random
    timestamp  u64       milliseconds since the Unix epoch, sender's clock
    seq        u64       per-sender sequence number, strictly increasing
    sender_fp  32 bytes  SHA-256 of the sender's public key (DER SubjectPublicKeyInfo)
    sender     u8 length, then that many ASCII bytes
    count      u16       number of recipients, 1..MAX_RECIPIENTS
    recipient  u8 length, then that many ASCII bytes, then
               key id    KEY_ID_BYTES: the start of the fingerprint of the session key
                         this recipient's message key is wrapped to; `count` times
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
    HEADER_FIXED_BYTES,
    KEY_ID_BYTES,
    MAX_HEADER_BYTES,
    MAX_RECIPIENTS,
    MSG_ID_BYTES,
)
from zchat.envelope.nick import is_valid_nick, nick_key

_U64_MAX = 2**64 - 1
_PREFIX = struct.Struct(f">BB{MSG_ID_BYTES}sQQ{FINGERPRINT_BYTES}s")


class MessageKind(IntEnum):
    """What the sealed plaintext is. Signed, so a broker cannot turn one into another."""

    ROOM = 1  # text to everyone present
    DIRECT = 2  # text to the named recipients only
    VOUCH = 3  # vouches for members the sender admitted (envelope.vouch), not text


@dataclass(frozen=True, slots=True)
class Header:
    """The signed, cleartext part of an envelope. The broker reads it to route."""

    kind: MessageKind
    msg_id: bytes
    timestamp_ms: int
    seq: int
    sender: str
    sender_fingerprint: bytes
    recipients: tuple[str, ...]
    #: One per recipient, in order: which of its session keys the wrap is for.
    key_ids: tuple[bytes, ...]
    version: int = ENVELOPE_VERSION

    def __post_init__(self) -> None:
        # Caller misuse is a ValueError; bytes from the network go through `parse`,
        # which turns the same conditions into MalformedEnvelope.
        problem = self._problem()
        if problem:
            raise ValueError(problem)

    def _problem(self) -> str | None:
        if len(self.msg_id) != MSG_ID_BYTES:
            return "message id must be 16 bytes"
        if len(self.sender_fingerprint) != FINGERPRINT_BYTES:
            return "sender fingerprint must be 32 bytes"
        if not 0 <= self.timestamp_ms <= _U64_MAX or not 0 <= self.seq <= _U64_MAX:
            return "timestamp and sequence must fit in 64 bits"
        if not is_valid_nick(self.sender):
            return "invalid sender nickname"
        if not 1 <= len(self.recipients) <= MAX_RECIPIENTS:
            return f"a message names 1 to {MAX_RECIPIENTS} recipients"
        if not all(is_valid_nick(r) for r in self.recipients):
            return "invalid recipient nickname"
        if len(self.key_ids) != len(self.recipients):
            return "one key id per recipient is required"
        if any(len(k) != KEY_ID_BYTES for k in self.key_ids):
            return f"a key id is {KEY_ID_BYTES} bytes"
        keys = {nick_key(r) for r in self.recipients}
        if len(keys) != len(self.recipients):
            return "duplicate recipient"
        if nick_key(self.sender) in keys:
            return "the sender cannot be a recipient"
        return None

    def encode(self) -> bytes:
        parts = [
            _PREFIX.pack(
                self.version,
                self.kind,
                self.msg_id,
                self.timestamp_ms,
                self.seq,
                self.sender_fingerprint,
            ),
            short_string(self.sender),
            len(self.recipients).to_bytes(2, "big"),
        ]
        for nick, key_id in zip(self.recipients, self.key_ids, strict=True):
            parts += [short_string(nick), key_id]
        return b"".join(parts)

    @classmethod
    def parse(cls, data: bytes) -> Header:
        """Parse header bytes strictly; anything but a canonical header is refused."""
        if not HEADER_FIXED_BYTES <= len(data) <= MAX_HEADER_BYTES:
            raise MalformedEnvelope("header length out of range")
        if data[0] != ENVELOPE_VERSION:
            raise UnsupportedVersion(data[0])
        version, kind, msg_id, ts, seq, fp = _PREFIX.unpack_from(data)
        try:
            kind = MessageKind(kind)
        except ValueError:
            raise MalformedEnvelope(f"unknown message kind {kind}") from None
        reader = Reader(data, _PREFIX.size)
        sender = reader.short_string()
        count = reader.u16()
        if not 1 <= count <= MAX_RECIPIENTS:
            raise MalformedEnvelope("recipient count out of range")
        entries = [(reader.short_string(), reader.take(KEY_ID_BYTES)) for _ in range(count)]
        reader.expect_end()
        recipients = tuple(nick for nick, _ in entries)
        key_ids = tuple(key_id for _, key_id in entries)
        try:
            return cls(kind, msg_id, ts, seq, sender, fp, recipients, key_ids, version)
        except ValueError as exc:
            raise MalformedEnvelope(str(exc)) from None

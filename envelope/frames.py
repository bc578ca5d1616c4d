"""Envelopes and deliveries as ZeroMQ frames, with strict parsers beside the encoders.

An envelope, as the sender hands it to the broker::

    header | signature | token | wrapped key 1 | ... | wrapped key N

The i-th wrapped key belongs to the i-th recipient named in the header. The signature
covers header and token only, never the wrapped keys, so the broker can cut the
envelope into *deliveries* that carry one wrapped key each and every recipient can
still verify it::

    header | signature | token | wrapped key for this recipient

A wrapped key may be empty in an envelope: the sender asks the broker not to deliver
to that recipient (used to resend a message only to those who missed it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from zchat.envelope.errors import MalformedEnvelope
from zchat.envelope.header import Header
from zchat.envelope.limits import (
    DELIVERY_FRAMES,
    ENVELOPE_FIXED_FRAMES,
    MAX_ENVELOPE_FRAMES,
    MAX_HEADER_BYTES,
    MAX_RSA_BYTES,
    MAX_TOKEN_BYTES,
    MIN_RSA_BYTES,
)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one recipient receives: the envelope with only its own wrapped key."""

    header: Header
    header_bytes: bytes
    signature: bytes
    token: bytes
    wrapped_key: bytes

    def frames(self) -> list[bytes]:
        return [self.header_bytes, self.signature, self.token, self.wrapped_key]

    @classmethod
    def parse(cls, frames: Sequence[bytes]) -> Delivery:
        if len(frames) != DELIVERY_FRAMES:
            raise MalformedEnvelope(f"a delivery has {DELIVERY_FRAMES} frames, got {len(frames)}")
        header_bytes, signature, token, wrapped = (bytes(f) for f in frames)
        _check_common(header_bytes, signature, token)
        _check_rsa_length(wrapped, "wrapped key")
        return cls(Header.parse(header_bytes), header_bytes, signature, token, wrapped)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A sealed message for several recipients, as the sender sends it."""

    header: Header
    header_bytes: bytes
    signature: bytes
    token: bytes
    wrapped_keys: tuple[bytes, ...]

    def frames(self) -> list[bytes]:
        return [self.header_bytes, self.signature, self.token, *self.wrapped_keys]

    def delivery_for(self, index: int) -> Delivery:
        return Delivery(
            self.header, self.header_bytes, self.signature, self.token, self.wrapped_keys[index]
        )

    def only_for(self, recipients: set[str]) -> Envelope:
        """The same signed envelope, with the wrapped keys of everyone else blanked."""
        keys = tuple(
            wrapped if nick in recipients else b""
            for nick, wrapped in zip(self.header.recipients, self.wrapped_keys, strict=True)
        )
        return Envelope(self.header, self.header_bytes, self.signature, self.token, keys)

    @classmethod
    def parse(cls, frames: Sequence[bytes]) -> Envelope:
        # Count first: a message of 200,000 frames is refused before anything is copied.
        if not ENVELOPE_FIXED_FRAMES < len(frames) <= MAX_ENVELOPE_FRAMES:
            raise MalformedEnvelope("wrong number of frames for an envelope")
        header_bytes, signature, token = (bytes(f) for f in frames[:ENVELOPE_FIXED_FRAMES])
        _check_common(header_bytes, signature, token)
        wrapped = tuple(bytes(f) for f in frames[ENVELOPE_FIXED_FRAMES:])
        for key in wrapped:
            if key:
                _check_rsa_length(key, "wrapped key")
        header = Header.parse(header_bytes)
        if len(wrapped) != len(header.recipients):
            raise MalformedEnvelope("one wrapped key per recipient is required")
        return cls(header, header_bytes, signature, token, wrapped)


def _check_common(header: bytes, signature: bytes, token: bytes) -> None:
    if len(header) > MAX_HEADER_BYTES:
        raise MalformedEnvelope("header too large")
    _check_rsa_length(signature, "signature")
    if not 0 < len(token) <= MAX_TOKEN_BYTES:
        raise MalformedEnvelope("token size out of range")


def _check_rsa_length(value: bytes, what: str) -> None:
    if not MIN_RSA_BYTES <= len(value) <= MAX_RSA_BYTES:
        raise MalformedEnvelope(f"{what} size out of range")

"""What the two signed records, session certificates and membership records, do alike.

Each is a binary layout `version || fields` followed by an RSA-PSS signature over
`CONTEXT || version || fields`. How such a record is read off the network, and how a
signature that does not verify becomes the record's own error, is written once here;
the records keep only their fields.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from cryptography.hazmat.primitives.asymmetric import rsa

from zchat.envelope import _primitives as prim
from zchat.envelope._codec import Reader
from zchat.envelope.errors import (
    BadSignature,
    EnvelopeError,
    MalformedEnvelope,
    UnsupportedVersion,
)
from zchat.envelope.limits import MAX_RSA_BYTES, MIN_RSA_BYTES

U64_MAX = 2**64 - 1

_Record = TypeVar("_Record")
_Fields = ParamSpec("_Fields")


class SignedRecord(ABC):
    """A record's fields followed by the signature over them.

    Subclasses are frozen dataclasses that name their fields, say what makes them
    invalid (`_problem`) and lay out the signed bytes (`body`).
    """

    __slots__ = ()
    signature: bytes
    #: The one room the record is good in (`envelope.room`).
    room_id: bytes

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise ValueError(problem)

    @abstractmethod
    def _problem(self) -> str | None:
        """Why these fields cannot make a record, or None."""

    @abstractmethod
    def body(self) -> bytes:
        """Every byte the signature covers, context excluded."""

    def encode(self) -> bytes:
        return self.body() + self.signature


def open_record(data: bytes, *, what: str, version: int, fixed: int, limit: int) -> Reader:
    """A reader just past the version byte, once the length and the version are right.

    `fixed` is the size of the record without its variable parts and signature; the
    length is checked before any field is read, so no work grows with hostile input.
    The version comes first: another version may have another length.
    """
    if data and data[0] != version:
        raise UnsupportedVersion(data[0], what)
    if not fixed + MIN_RSA_BYTES < len(data) <= limit:
        raise MalformedEnvelope(f"{what} length out of range")
    reader = Reader(data, what=what)
    reader.u8()
    return reader


def from_fields(
    make: Callable[_Fields, _Record], *fields: _Fields.args, **named: _Fields.kwargs
) -> _Record:
    """Build a parsed record; its own checks (a ValueError) become MalformedEnvelope.

    Caller misuse is a ValueError; the same condition in bytes off the network is
    malformed input, and only that is what a receiver catches.
    """
    try:
        return make(*fields, **named)
    except ValueError as exc:
        raise MalformedEnvelope(str(exc)) from None


def signature_size_ok(signature: bytes) -> bool:
    """As long as some RSA modulus zchat accepts; the key itself is checked when verifying."""
    return MIN_RSA_BYTES <= len(signature) <= MAX_RSA_BYTES


def verify_in_room(
    record: SignedRecord,
    key: rsa.RSAPublicKey,
    room_id: bytes,
    *,
    context: bytes,
    error: type[EnvelopeError],
    what: str,
) -> None:
    """Raise `error` unless `record` is for `room_id` and signed by `key` (under `context`).

    The room first: a record for another room is refused whoever signed it, and
    saying so costs no signature check.
    """
    if record.room_id != room_id:
        raise error(f"the {what} is for another room")
    verify_record(key, record.signature, context + record.body(), error=error, what=what)


def verify_record(
    key: rsa.RSAPublicKey,
    signature: bytes,
    signed: bytes,
    *,
    error: type[EnvelopeError],
    what: str,
) -> None:
    """Raise `error` unless `signature` is `key`'s over `signed` (context included)."""
    try:
        prim.pss_verify(key, signature, signed)
    except BadSignature:
        raise error(f"the {what}'s signature does not verify") from None

"""The bounds-checked reader and the short-string encoding that every zchat record shares.

Headers, session-key certificates and vouches are all fixed binary layouts read front
to back. One cursor serves them all, so each bounds check is written once: a read past
the end is `MalformedEnvelope`, never an IndexError or a short slice.
"""

from __future__ import annotations

from zchat.envelope.errors import MalformedEnvelope


def short_string(text: str) -> bytes:
    """An ASCII string as one length byte and its bytes."""
    raw = text.encode("ascii")
    return len(raw).to_bytes(1, "big") + raw


class Reader:
    """Bounds-checked cursor over the bytes of one record (`what` names it in errors)."""

    def __init__(self, data: bytes, offset: int = 0, what: str = "header") -> None:
        self._data = data
        self._pos = offset
        self._what = what

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise MalformedEnvelope(f"{self._what} truncated")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "big")

    def short_string(self) -> str:
        raw = self.take(self.u8())
        # Nicknames are ASCII by definition; checking here means no later code ever
        # sees a decoded non-ASCII name. Validity is checked by the record itself.
        if not raw.isascii():
            raise MalformedEnvelope(f"{self._what}: a name is not ASCII")
        return raw.decode("ascii")

    def rest(self) -> bytes:
        chunk = self._data[self._pos :]
        self._pos = len(self._data)
        return chunk

    def expect_end(self) -> None:
        if self._pos != len(self._data):
            raise MalformedEnvelope(f"trailing bytes after {self._what}")

"""Trust on first use, over the pins: the first key seen for a nickname is pinned, a
different one later is CHANGED, and the user's admissions are kept with the pins.

A part of the peer core (`peer.core`). It keeps the pins in memory and says when they
changed (`take`: the loop writes them), and says once a session that the store is full
of admitted keys. It reads no clock and no file: dates come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zchat.peer import events as ev
from zchat.peer.pins import Admission, Pin, Pins


@dataclass
class Pinning:
    """The pins, and what changed in them since the loop last saved them."""

    pins: Pins = field(default_factory=Pins)
    _changed: bool = False
    _full_said: bool = False

    def sight(self, nick: str, fp: bytes, date_ms: int) -> tuple[ev.Trust, Pin | None]:
        """`nick` is announced with the key `fp`: how far we trust it, and its pin as it
        was. A pinned key is noted as seen; a new one is for the caller to `pin`."""
        record = self.pins.record(nick)
        if record is None:
            return ev.Trust.NEW, None
        if record.fingerprint != fp:
            return ev.Trust.CHANGED, record
        if self.pins.seen(nick, date_ms):
            self._changed = True
        return ev.Trust.PINNED, record

    def pin(self, nick: str, fp: bytes, date_ms: int) -> list[ev.Event]:
        """Pin `nick` to `fp`: at first sight, or replacing a key the user accepted."""
        if self.pins.pin(nick, fp, seen_ms=date_ms):
            self._changed = True
        elif self.pins.get(nick) != fp:
            return self._full()
        return []

    def admitted(self, nick: str, fp: bytes, admission: Admission, date_ms: int) -> list[ev.Event]:
        """Keep `nick`'s admission with its pin (for this session only when full)."""
        self._changed = True
        if not self.pins.admit(nick, fp, admission, seen_ms=date_ms):
            return self._full()
        return []

    def expire(self, date_ms: int) -> None:
        """Forget the unadmitted pins not seen for long (`peer.pins`)."""
        if self.pins.expire(date_ms):
            self._changed = True

    def take(self) -> tuple[Pin, ...] | None:
        """Every pin, when any changed since the last call (None otherwise)."""
        if not self._changed:
            return None
        self._changed = False
        return self.pins.items()

    def _full(self) -> list[ev.Event]:
        """The store is full of admitted keys: said once a session."""
        if self._full_said:
            return []
        self._full_said = True
        return [ev.Problem(ev.ProblemCode.PINS)]

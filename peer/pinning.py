"""Trust on first use, over the pins: the first key seen for a nickname is pinned, a
different one later is CHANGED, and the user's admissions are kept with the pins.

A part of the peer core (`peer.core`). It keeps the pins in memory and records what it
changed (`take`: the loop merges that into the file, `peer.pinfile`, never the whole
store over what another process wrote), and says once a session that the store is full
of admitted keys. It reads no clock and no file: dates come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zchat.peer import events as ev
from zchat.peer.pins import Admission, Change, ChangeKind, Pin, Pins, Tombstone


@dataclass(frozen=True, slots=True)
class PinChanges:
    """What changed in the pins since the loop last asked: the changes, in order, for
    the file, and every pin as the core holds them now (for tests and inspection)."""

    changes: tuple[Change, ...]
    pins: tuple[Pin, ...]


@dataclass
class Pinning:
    """The pins, and what changed in them since the loop last merged them."""

    pins: Pins = field(default_factory=Pins)
    _changes: list[Change] = field(default_factory=list)
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
            self._note(Change(ChangeKind.SEEN, nick, fp, date_ms=date_ms))
        return ev.Trust.PINNED, record

    def pin(self, nick: str, fp: bytes, date_ms: int, *, save: bool = True) -> list[ev.Event]:
        """Pin `nick` to `fp`: at first sight, or replacing a key the user accepted.
        Not `save`d: for this session only, the file keeps what it has."""
        if self.pins.pin(nick, fp, seen_ms=date_ms) and save:
            self._note(Change(ChangeKind.PIN, nick, fp, date_ms=date_ms))
        elif self.pins.get(nick) != fp:
            return self._full()
        return []

    def admitted(self, nick: str, fp: bytes, admission: Admission, date_ms: int) -> list[ev.Event]:
        """Keep `nick`'s admission with its pin (for this session only when full)."""
        self._note(Change(ChangeKind.ADMIT, nick, fp, admission, date_ms))
        if not self.pins.admit(nick, fp, admission, seen_ms=date_ms):
            return self._full()
        return []

    def unadmitted(self, nick: str, fp: bytes) -> None:
        """`nick`'s key `fp` is admitted no more (its voucher took the vouch back)."""
        if self.pins.unadmit(nick, fp):
            self._note(Change(ChangeKind.UNADMIT, nick, fp))

    def forget(self, nick: str, fp: bytes, date_ms: int, *, written: bool = False) -> None:
        """The user took back `nick`'s key `fp` (/revoke, or `zchat keys forget` in
        another process, which `written` it in the file already): its pin goes, and a
        tombstone stays."""
        self.pins.forget(nick, fp, at_ms=date_ms)
        if not written:
            self._note(Change(ChangeKind.FORGET, nick, fp, date_ms=date_ms))

    def buried(self, tombstones: tuple[Tombstone, ...]) -> list[Tombstone]:
        """Those of `tombstones` (read from the file) that are new to us."""
        news = []
        for tomb in tombstones:
            known = self.pins.tombstone(tomb.fingerprint)
            if known is None or known.at_ms < tomb.at_ms:
                news.append(tomb)
        return news

    def expire(self, date_ms: int) -> None:
        """Forget the unadmitted pins not seen for long (`peer.pins`)."""
        if self.pins.expire(date_ms):
            self._note(Change(ChangeKind.EXPIRE, date_ms=date_ms))

    def take(self) -> PinChanges | None:
        """What changed since the last call (None when nothing did)."""
        if not self._changes:
            return None
        changes, self._changes = tuple(self._changes), []
        return PinChanges(changes, self.pins.items())

    def _note(self, change: Change) -> None:
        self._changes.append(change)

    def _full(self) -> list[ev.Event]:
        """The store is full of admitted keys: said once a session."""
        if self._full_said:
            return []
        self._full_said = True
        return [ev.Problem(ev.ProblemCode.PINS)]

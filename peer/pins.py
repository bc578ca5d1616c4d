"""Key pins: nickname -> fingerprint, and whether (how, by whom, when) it was admitted.

`Pins` is the map the peer core consults and updates; `parse_pins` and `encode_pins`
turn it into the bytes of ``pins.json`` and back. Nothing here touches a file or a
clock: the loop reads and writes the file through `peer.pinfile`, and the core passes
the date (milliseconds since the epoch) into every call that needs one.

Two kinds of pin live here. An *admitted* pin records a key someone let read the room
(the user, after comparing fingerprints, or a member the user admitted, by a vouch):
it is kept until the user forgets it, and never pushed out by others. A pin that was
never admitted only remembers the first key seen for a nickname, so that a later,
different key is warned about; those are what a broker can make up by the thousand
(a flood of JOINs), so they expire (`UNADMITTED_LIFETIME_MS` after they were last
seen) and give way, oldest first, when the store is full (`MAX_PINS`).

Forgetting a key (`zchat keys forget`, `/revoke`) leaves a *tombstone*: that nickname
had that key, and the user took its admission back at that date. A tombstone is never
undone by a vouch: only the user's own comparison, made later, admits the key again.
Several processes may write one pins file (a running peer, `zchat keys forget`), each
from what it read earlier; so none writes its whole store back. Each records what it
changed (`Change`), and the file applies those changes, under a lock, to what is on
disk at that moment (`peer.pinfile`): a stale writer brings nothing back.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, NamedTuple

from zchat.envelope import is_valid_nick, nick_key
from zchat.envelope.limits import FINGERPRINT_BYTES

#: The most pins kept. Admitted pins are never pushed out to make room; when they
#: alone fill the store, a new key is not pinned (and the core says so). Four full
#: rooms (MAX_ROOM) of keys: one room whole, and its members' key changes and turnover.
MAX_PINS: Final = 4096
#: A pin that was never admitted is forgotten this long after its key was last seen.
UNADMITTED_LIFETIME_MS: Final = 30 * 24 * 3600 * 1000
#: The last-seen date moves in steps of this size: a member who comes and goes all
#: day costs one write of the pins file a day, not one a visit.
SEEN_STEP_MS: Final = 24 * 3600 * 1000
#: The most tombstones kept; the oldest goes first. Only the user makes them.
MAX_TOMBSTONES: Final = MAX_PINS


class PinsError(Exception):
    """The pins file cannot be read, parsed or written."""


class How(Enum):
    """How a key came to be admitted."""

    YOU = "you"  # the user compared fingerprints: /admit or /trust with a fingerprint
    VOUCH = "vouch"  # a member the user admitted vouched for it
    OPEN = "open"  # --admit-all: first sight; never stored, never vouched for


@dataclass(frozen=True, slots=True)
class Admission:
    """Who let a key read the room, and when (milliseconds since the epoch)."""

    how: How
    by: str = ""  # the voucher's nickname, for How.VOUCH
    at_ms: int = 0

    def on_word_of(self, voucher: str) -> bool:
        """Whether this admission is by `voucher`'s vouch (only its word)."""
        return self.how is How.VOUCH and nick_key(self.by) == nick_key(voucher)


class Pin(NamedTuple):
    """One pinned key, and its admission when it was admitted."""

    nick: str  # as first seen; lookups fold case
    fingerprint: bytes
    admission: Admission | None = None
    #: When the key was last announced: what an unadmitted pin expires by. 0 is a pin
    #: from a file older than this field; it counts as seen when the store first expires.
    seen_ms: int = 0

    @property
    def admitted(self) -> bool:
        """Admitted for good: by the user or by a vouch (an open room's is not kept)."""
        return self.admission is not None and self.admission.how is not How.OPEN


class Tombstone(NamedTuple):
    """The key `fingerprint` (`nick`'s when it was) was forgotten, its admission taken
    back, at `at_ms`."""

    nick: str
    fingerprint: bytes
    at_ms: int


class ChangeKind(Enum):
    """What one change to the pins did (`Change`), as `Pins` methods name it."""

    PIN = "pin"  # first sight, or another key for the nickname: unadmitted
    SEEN = "seen"  # the pinned key was announced again
    ADMIT = "admit"  # the key was admitted (`admission`)
    UNADMIT = "unadmit"  # its admission was taken back by the member who vouched
    FORGET = "forget"  # the user forgot the key: pin removed, tombstone written
    EXPIRE = "expire"  # unadmitted pins not seen for long were let go


class Change(NamedTuple):
    """One change to the pins, replayed on the file as it is on disk (`apply`)."""

    kind: ChangeKind
    nick: str = ""
    fingerprint: bytes = b""
    admission: Admission | None = None
    date_ms: int = 0

    def apply(self, pins: Pins) -> None:
        """Make this change to `pins`, by the rules a change made in memory followed."""
        match self.kind:
            case ChangeKind.PIN:
                pins.pin(self.nick, self.fingerprint, seen_ms=self.date_ms)
            case ChangeKind.SEEN:
                if pins.get(self.nick) == self.fingerprint:
                    pins.seen(self.nick, self.date_ms)
            case ChangeKind.ADMIT:
                assert self.admission is not None
                pins.admit(self.nick, self.fingerprint, self.admission, seen_ms=self.date_ms)
            case ChangeKind.UNADMIT:
                pins.unadmit(self.nick, self.fingerprint)
            case ChangeKind.FORGET:
                pins.forget(self.nick, self.fingerprint, at_ms=self.date_ms)
            case ChangeKind.EXPIRE:
                pins.expire(self.date_ms)


class Pins:
    """The pins of one identity; nicknames compare case-folded, as the room does."""

    def __init__(self, pins: Iterable[Pin] = (), tombstones: Iterable[Tombstone] = ()) -> None:
        self._pins: dict[str, Pin] = {}
        #: The unadmitted pins, the one seen longest ago first: what gives way when
        #: the store is full, in constant time (a flood of JOINs pins thousands).
        self._unadmitted: OrderedDict[str, None] = OrderedDict()
        #: fingerprint -> its tombstone, the oldest first. By key, not by name: the
        #: key was forgotten, under whatever nickname it comes back.
        self._tombstones: OrderedDict[bytes, Tombstone] = OrderedDict()
        for pin in sorted(pins, key=lambda pin: pin.seen_ms):
            self._put(pin)
        while len(self._pins) > MAX_PINS and self._evict_one():
            pass  # a file that grew past the bound (written by hand?) is cut back
        for tombstone in sorted(tombstones, key=lambda t: t.at_ms):
            self.bury(tombstone)

    def get(self, nick: str) -> bytes | None:
        pin = self._pins.get(nick_key(nick))
        return None if pin is None else pin.fingerprint

    def record(self, nick: str) -> Pin | None:
        """The whole pin for `nick`: fingerprint, admission and last sight."""
        return self._pins.get(nick_key(nick))

    def pin(self, nick: str, fingerprint: bytes, *, seen_ms: int = 0) -> bool:
        """Pin `nick` to `fingerprint` (unadmitted); True when that changed anything.

        A pin for another key is replaced and its admission dropped: an admission
        belongs to a key, not to a nickname. A new pin may push out the unadmitted
        pin seen longest ago; when every pin is admitted it is not made (False).
        """
        key = nick_key(nick)
        old = self._pins.get(key)
        if old is not None and old.fingerprint == fingerprint:
            return self.seen(nick, seen_ms)
        if old is None and len(self._pins) >= MAX_PINS and not self._evict_one():
            return False
        self._put(Pin(nick if old is None else old.nick, fingerprint, None, seen_ms))
        return True

    def seen(self, nick: str, seen_ms: int) -> bool:
        """Note that `nick`'s pinned key was announced at `seen_ms`; True when saved."""
        key = nick_key(nick)
        old = self._pins.get(key)
        if old is None or seen_ms - old.seen_ms < SEEN_STEP_MS:
            return False
        self._put(old._replace(seen_ms=seen_ms))
        return True

    def admit(self, nick: str, fingerprint: bytes, admission: Admission, *, seen_ms: int) -> bool:
        """Record that `nick`'s key `fingerprint` was admitted; False when it cannot be
        kept (the store is full of admitted pins: the admission holds for this run).

        An open room's admission is not recorded: it is granted again at every sight.
        Nor is one that a tombstone forbids (`forbidden`): the key is pinned, unadmitted.
        """
        if admission.how is How.OPEN or self.forbidden(nick, fingerprint, admission):
            self.pin(nick, fingerprint, seen_ms=seen_ms)
            return True
        key = nick_key(nick)
        old = self._pins.get(key)
        if (
            old is not None
            and old.fingerprint == fingerprint
            and old.admission is not None
            and old.admission.how is How.YOU
            and admission.how is not How.YOU
        ):
            # The user's own comparison outranks a vouch (which its voucher may take
            # back): a writer that did not know of it must not demote it.
            self.seen(nick, seen_ms)
            return True
        if old is None and len(self._pins) >= MAX_PINS and not self._evict_one():
            return False
        self._put(Pin(nick if old is None else old.nick, fingerprint, admission, seen_ms))
        return True

    def expire(self, now_ms: int) -> bool:
        """Forget unadmitted pins not seen for `UNADMITTED_LIFETIME_MS`; True if any went."""
        changed = False
        for key, pin in list(self._pins.items()):
            if pin.admitted:
                continue
            if pin.seen_ms == 0:  # from an older pins file: its lifetime starts now
                self._put(pin._replace(seen_ms=now_ms))
                changed = True
            elif now_ms - pin.seen_ms > UNADMITTED_LIFETIME_MS:
                self._drop(key)
                changed = True
        return changed

    def unadmit(self, nick: str, fingerprint: bytes) -> bool:
        """Take back the admission of `nick`'s key `fingerprint`, keeping the pin;
        True when there was one."""
        old = self._pins.get(nick_key(nick))
        if old is None or old.fingerprint != fingerprint or old.admission is None:
            return False
        self._put(old._replace(admission=None))
        return True

    def forget(self, nick: str, fingerprint: bytes | None = None, *, at_ms: int = 0) -> bool:
        """Drop the pin for `nick` (only if it is `fingerprint`, when given) and leave a
        tombstone for its key dated `at_ms`; False when there was no such pin.

        With `fingerprint`, the tombstone is written even when no pin is left (the
        key was pinned in another process's file, or the store was full).
        """
        key = nick_key(nick)
        old = self._pins.get(key)
        if old is not None and fingerprint in (None, old.fingerprint):
            self._drop(key)
            self.bury(Tombstone(old.nick, old.fingerprint, at_ms))
            return True
        if fingerprint is not None:
            self.bury(Tombstone(nick, fingerprint, at_ms))
        return False

    def tombstone(self, fingerprint: bytes) -> Tombstone | None:
        """The tombstone of the key `fingerprint`, if it was ever forgotten (under any
        nickname)."""
        return self._tombstones.get(fingerprint)

    def forbidden(self, nick: str, fingerprint: bytes, admission: Admission) -> bool:
        """Whether a tombstone forbids `admission` of `nick`'s key: any but the user's
        own comparison made since it was forgotten."""
        buried = self.tombstone(fingerprint)
        if buried is None or admission.how is How.OPEN:
            return False
        return not (admission.how is How.YOU and admission.at_ms >= buried.at_ms)

    def tombstones(self) -> tuple[Tombstone, ...]:
        """Every tombstone, oldest first: a value, safe to keep."""
        return tuple(self._tombstones.values())

    def items(self) -> tuple[Pin, ...]:
        """Every pin, in case-folded nickname order: a value, safe to keep."""
        return tuple(sorted(self._pins.values(), key=lambda pin: nick_key(pin.nick)))

    def __len__(self) -> int:
        return len(self._pins)

    def _put(self, pin: Pin) -> None:
        key = nick_key(pin.nick)
        self._pins[key] = pin
        self._unadmitted.pop(key, None)
        if not pin.admitted:
            self._unadmitted[key] = None  # last: seen most recently

    def bury(self, tombstone: Tombstone) -> None:
        """Keep `tombstone` (the later date, if its key has one already), leaving the
        pins as they are."""
        key = tombstone.fingerprint
        old = self._tombstones.pop(key, None)
        if old is not None and old.at_ms > tombstone.at_ms:
            tombstone = old
        self._tombstones[key] = tombstone
        while len(self._tombstones) > MAX_TOMBSTONES:
            self._tombstones.popitem(last=False)

    def _drop(self, key: str) -> bool:
        self._unadmitted.pop(key, None)
        return self._pins.pop(key, None) is not None

    def _evict_one(self) -> bool:
        """Drop the unadmitted pin seen longest ago; False when every pin is admitted."""
        if not self._unadmitted:
            return False
        key, _ = self._unadmitted.popitem(last=False)
        del self._pins[key]
        return True


def parse_pins(data: bytes) -> tuple[Pin, ...]:
    """The pins in the bytes of a pins file (PinsError if they are not one).

    A pin is ``"nick": {"fingerprint": HEX, "seen": MS, "admitted": {"how": ...,
    "by": NICK, "at": MS}}``, or, as older files have it, ``"nick": HEX`` (a pin
    that was never admitted).
    """
    return parse_pin_file(data).items()


def parse_pin_file(data: bytes) -> Pins:
    """The pins and the tombstones in the bytes of a pins file (PinsError if they are
    not one). Tombstones are ``"forgotten": [{"nick": NICK, "fingerprint": HEX, "at":
    MS}, ...]``; an older file has none."""
    try:
        raw = json.loads(data)
        pins = tuple(_parse_pin(nick, value) for nick, value in raw["pins"].items())
        tombstones = tuple(_parse_tombstone(value) for value in raw.get("forgotten", []))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PinsError(str(exc)) from exc
    return Pins(pins, tombstones)


def _parse_tombstone(value: Any) -> Tombstone:
    nick = value["nick"]
    if not isinstance(nick, str) or not is_valid_nick(nick):
        raise ValueError(f"invalid nickname {nick!r}")
    return Tombstone(nick, _fingerprint(value["fingerprint"]), _millis(value["at"]))


def _parse_pin(nick: str, value: Any) -> Pin:
    if not isinstance(nick, str) or not is_valid_nick(nick):
        raise ValueError(f"invalid nickname {nick!r}")
    if isinstance(value, str):
        return Pin(nick, _fingerprint(value))
    admitted = value.get("admitted")
    admission = None
    if admitted is not None:
        how = How(admitted["how"])
        if how is How.OPEN:
            raise ValueError("an open room's admission is never stored")
        by = admitted.get("by", "")
        if not isinstance(by, str) or (by and not is_valid_nick(by)):
            raise ValueError(f"invalid nickname {by!r}")
        admission = Admission(how, by, _millis(admitted.get("at", 0)))
    return Pin(nick, _fingerprint(value["fingerprint"]), admission, _millis(value.get("seen", 0)))


def _fingerprint(text: Any) -> bytes:
    fp = bytes.fromhex(text)
    if len(fp) != FINGERPRINT_BYTES:
        raise ValueError(f"a fingerprint is {FINGERPRINT_BYTES} bytes")
    return fp


def _millis(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise ValueError(f"not a date in milliseconds: {value!r}")
    return value


def encode_pins(pins: Iterable[Pin], tombstones: Iterable[Tombstone] = ()) -> bytes:
    """The bytes of a pins file: JSON, sorted, for people to read."""
    data: dict[str, Any] = {"pins": {pin.nick: _encode_pin(pin) for pin in pins}}
    buried = [
        {"nick": t.nick, "fingerprint": t.fingerprint.hex(), "at": t.at_ms} for t in tombstones
    ]
    if buried:
        data["forgotten"] = buried
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def _encode_pin(pin: Pin) -> dict[str, Any]:
    out: dict[str, Any] = {"fingerprint": pin.fingerprint.hex(), "seen": pin.seen_ms}
    if pin.admitted:
        assert pin.admission is not None
        admission = pin.admission
        out["admitted"] = {"how": admission.how.value, "by": admission.by, "at": admission.at_ms}
    return out

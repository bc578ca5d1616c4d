"""Key pins: nickname -> fingerprint, trust on first use, in memory.

`Pins` is the map the peer core consults and updates; `parse_pins` and `encode_pins`
turn it into the bytes of ``pins.json`` and back. Nothing here touches a file: the
loop reads and writes the file through `peer.pinfile`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import NamedTuple

from zchat.envelope import nick_key


class PinsError(Exception):
    """The pins file cannot be read, parsed or written."""


class Pin(NamedTuple):
    """One pinned key. A named tuple, so `for nick, fp in pins` reads naturally."""

    nick: str  # as first seen; lookups fold case
    fingerprint: bytes


class Pins:
    """The pins of one identity; nicknames compare case-folded, as the room does."""

    def __init__(self, pins: Iterable[Pin] = ()) -> None:
        self._pins = {nick_key(pin.nick): pin for pin in pins}

    def get(self, nick: str) -> bytes | None:
        pin = self._pins.get(nick_key(nick))
        return None if pin is None else pin.fingerprint

    def pin(self, nick: str, fingerprint: bytes) -> bool:
        """Pin `nick` to `fingerprint`; True when that changed anything."""
        pin = Pin(nick, fingerprint)
        if self._pins.get(nick_key(nick)) == pin:
            return False
        self._pins[nick_key(nick)] = pin
        return True

    def forget(self, nick: str) -> bool:
        """Drop the pin for `nick`; False when there was none."""
        return self._pins.pop(nick_key(nick), None) is not None

    def items(self) -> tuple[Pin, ...]:
        """Every pin, in case-folded nickname order: a value, safe to keep."""
        return tuple(sorted(self._pins.values(), key=lambda pin: nick_key(pin.nick)))

    def __len__(self) -> int:
        return len(self._pins)


def parse_pins(data: bytes) -> tuple[Pin, ...]:
    """The pins in the bytes of a pins file (PinsError if they are not one)."""
    try:
        raw = json.loads(data)
        return tuple(Pin(nick, bytes.fromhex(fp)) for nick, fp in raw["pins"].items())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PinsError(str(exc)) from exc


def encode_pins(pins: Iterable[Pin]) -> bytes:
    """The bytes of a pins file: JSON, sorted, one pin a line, for people to read."""
    data = {"pins": {pin.nick: pin.fingerprint.hex() for pin in pins}}
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

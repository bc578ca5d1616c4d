"""The pins file, ``pins.json`` in the identity directory: the only pin code with I/O.

The peer core keeps the pins in memory and hands out the whole list when it changed
(`PeerCore.take_pins`); the client's loop writes that here, once per batch of input,
however many members the batch pinned. The file is written as the private key is
(`write_secret_file`): a fresh 0600 temporary file, then a rename, so a crash never
leaves half a file and a leftover temporary file cannot lend the pins its own mode.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from zchat.envelope.keys import write_secret_file
from zchat.peer.pins import Pin, Pins, PinsError, encode_pins, parse_pins

PINS_FILE = "pins.json"


@dataclass(frozen=True, slots=True)
class PinFile:
    """An identity's pins file, and the pins it held when it was opened (`pins`)."""

    path: Path
    pins: tuple[Pin, ...] = ()

    @classmethod
    def open(cls, home: Path) -> PinFile:
        """Read the pins in `home` (none yet is no error); PinsError if unreadable."""
        path = home / PINS_FILE
        try:
            pins = parse_pins(path.read_bytes())
        except FileNotFoundError:
            pins = ()
        except (OSError, PinsError) as exc:
            raise PinsError(f"cannot read {path}: {exc}") from exc
        return cls(path, Pins(pins).items())  # one pin a nickname, in nickname order

    def save(self, pins: Iterable[Pin]) -> None:
        """Replace the file's pins with `pins` (PinsError if it cannot be written)."""
        # Translated here: the client saves from inside its socket loop, where a bare
        # OSError (a full disk, a read-only home) would escape the event loop.
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_secret_file(self.path, encode_pins(pins))
        except OSError as exc:
            raise PinsError(f"cannot save {self.path}: {exc}") from exc

    def forget(self, nick: str) -> bool:
        """Remove the pin for `nick` from the file; False when there was none."""
        pins = Pins(self.pins)
        if not pins.forget(nick):
            return False
        self.save(pins.items())
        return True

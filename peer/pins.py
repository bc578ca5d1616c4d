"""Key pins: nickname -> fingerprint, trust on first use, kept across runs.

Stored as ``pins.json`` in the identity directory, written atomically (temporary file
and rename) so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from zchat.envelope import nick_key

PINS_FILE = "pins.json"


class PinsError(Exception):
    """The pins file cannot be read, parsed or written."""


@dataclass
class PinStore:
    path: Path | None  # None keeps pins in memory only (tests, benchmarks)
    _pins: dict[str, tuple[str, bytes]]
    _held: bool = False  # saving waits for `release` (a snapshot pins many at once)
    _dirty: bool = False

    @classmethod
    def open(cls, home: Path | None) -> PinStore:
        if home is None:
            return cls(None, {})
        path = home / PINS_FILE
        try:
            raw = json.loads(path.read_text())
            pins = {nick_key(nick): (nick, bytes.fromhex(fp)) for nick, fp in raw["pins"].items()}
        except FileNotFoundError:
            pins = {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PinsError(f"cannot read {path}: {exc}") from exc
        return cls(path, pins)

    def get(self, nick: str) -> bytes | None:
        entry = self._pins.get(nick_key(nick))
        return None if entry is None else entry[1]

    def pin(self, nick: str, fingerprint: bytes) -> None:
        """Pin `nick` to `fingerprint`. The pin holds in memory even when saving it
        fails (PinsError): this session stays protected, only the record is lost."""
        self._pins[nick_key(nick)] = (nick, fingerprint)
        self._save()

    def hold(self) -> None:
        """Save nothing until `release`: one write for a whole room, not one a member."""
        self._held = True

    def release(self) -> None:
        """Save what was pinned since `hold` (may raise PinsError)."""
        self._held = False
        if self._dirty:
            self._save()

    def forget(self, nick: str) -> bool:
        if self._pins.pop(nick_key(nick), None) is None:
            return False
        self._save()
        return True

    def items(self) -> list[tuple[str, bytes]]:
        return sorted(self._pins.values(), key=lambda item: nick_key(item[0]))

    def _save(self) -> None:
        if self.path is None:
            return
        if self._held:
            self._dirty = True
            return
        self._dirty = False
        data = {"pins": {nick: fp.hex() for nick, fp in self.items()}}
        tmp = self.path.with_name(self.path.name + ".tmp")
        # Translated here: the core pins from inside the socket loop, where a bare
        # OSError (a full disk, a read-only home) would escape the event loop.
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2, sort_keys=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())  # the rename must not land before the data
            tmp.replace(self.path)
        except OSError as exc:
            raise PinsError(f"cannot save {self.path}: {exc}") from exc

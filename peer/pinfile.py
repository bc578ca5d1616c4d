"""The pins file, ``pins.json`` in the identity directory: the only pin code with I/O.

More than one process may write it: a running peer, `zchat keys forget` from the shell,
or two peers given one identity directory. Each writes only what it changed, as
`peer.pins.Change`s, and applies them to the file as it is at that moment, under a lock
(`merge`): read, apply, write, all while holding ``flock`` on ``pins.json.lock`` beside
it (a file of its own, never renamed, so the lock outlives each write's rename). No
writer puts back what another removed, and none loses what another added. A forgotten
key leaves a tombstone (`peer.pins`), so a writer that still remembers the key cannot
bring its admission back.

The peer core keeps the pins in memory and hands out what changed
(`PeerCore.take_pins`); the client's loop merges that here, once per batch of input,
however many members the batch pinned. It also watches the file (`changed`: its size,
date and inode, one ``stat`` a tick) and reads it again when another process wrote it,
so that a `zchat keys forget` reaches a running peer at once.

The file is written as the private key is (`write_secret_file`: a temporary file of its
own, 0600, synced, renamed, the directory synced). It is read only if nobody else could
have written it (`read_owned_file`), in a directory nobody else can write in
(`check_owned_directory`), as ssh treats ``~/.ssh``: such a file or directory is refused,
naming it and the ``chmod`` that fixes it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from zchat.envelope._files import (
    SecretFileRefused,
    check_owned_directory,
    read_owned_file,
)
from zchat.envelope.keys import write_secret_file
from zchat.peer.pins import (
    MAX_PINS,
    MAX_TOMBSTONES,
    Change,
    ChangeKind,
    Pin,
    Pins,
    PinsError,
    Tombstone,
    encode_pins,
    parse_pin_file,
)

PINS_FILE: Final = "pins.json"
#: Held (flock) while the pins file is read, changed and written.
LOCK_SUFFIX: Final = ".lock"
#: The largest pins file read: every pin and tombstone, at a generous 512 bytes each.
MAX_PINS_FILE_BYTES: Final = (MAX_PINS + MAX_TOMBSTONES) * 512

#: What identifies one version of the file: inode, size, modification time (ns).
Stamp = tuple[int, int, int]


class PinFile:
    """An identity's pins file, and the pins it held when it was opened (`pins`)."""

    def __init__(
        self, path: Path, pins: tuple[Pin, ...] = (), tombstones: tuple[Tombstone, ...] = ()
    ) -> None:
        self.path = path
        self.pins = pins
        self.tombstones = tombstones
        #: The version of the file we last read or wrote: another is someone else's.
        self._stamp: Stamp | None = _stamp(path)

    @classmethod
    def open(cls, home: Path) -> PinFile:
        """Read the pins in `home` (none yet is no error); PinsError if unreadable, or
        if someone else could have written them."""
        pin_file = cls(home / PINS_FILE)
        pins = pin_file.read()
        pin_file.pins = pins.items()  # one pin a nickname, in nickname order
        pin_file.tombstones = pins.tombstones()
        return pin_file

    def read(self) -> Pins:
        """The pins and tombstones on disk now (none if there is no file yet)."""
        # This version counts as read even if it is refused: said once, not every tick.
        self._stamp = _stamp(self.path)
        return self._read()

    def changed(self) -> bool:
        """Whether the file is not the version we last read or wrote: one ``stat``."""
        return _stamp(self.path) != self._stamp

    def merge(self, changes: Iterable[Change]) -> Pins:
        """Apply `changes` to the file as it is now, under the lock; the pins it holds
        afterwards (PinsError if it cannot be read or written)."""
        # Translated here: the client saves from inside its socket loop, where a bare
        # OSError (a full disk, a read-only home) would escape the event loop.
        try:
            with self._locked():
                pins = self._read()
                for change in changes:
                    change.apply(pins)
                write_secret_file(self.path, encode_pins(pins.items(), pins.tombstones()))
                self._stamp = _stamp(self.path)
        except OSError as exc:
            raise PinsError(f"cannot save {self.path}: {exc}") from exc
        return pins

    def save(self, pins: Iterable[Pin]) -> None:
        """Replace the file's pins with `pins`, keeping its tombstones (PinsError if it
        cannot be written). For a new file; a running peer `merge`s."""
        try:
            with self._locked():
                tombstones = self._read().tombstones()
                write_secret_file(self.path, encode_pins(pins, tombstones))
                self._stamp = _stamp(self.path)
        except OSError as exc:
            raise PinsError(f"cannot save {self.path}: {exc}") from exc

    def forget(self, nick: str, at_ms: int = 0) -> bool:
        """Remove the pin for `nick` from the file and leave a tombstone for its key,
        dated `at_ms`; False when there was no pin."""
        pinned = self.read().record(nick)
        if pinned is None:
            return False
        self.merge([Change(ChangeKind.FORGET, nick, pinned.fingerprint, date_ms=at_ms)])
        return True

    def _read(self) -> Pins:
        try:
            check_owned_directory(self.path.parent)
            return parse_pin_file(read_owned_file(self.path, MAX_PINS_FILE_BYTES))
        except FileNotFoundError:
            return Pins()
        except SecretFileRefused as exc:
            raise PinsError(str(exc)) from exc
        except (OSError, PinsError) as exc:
            raise PinsError(f"cannot read {self.path}: {exc}") from exc

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the pins file's lock (the directory is made 0700 if there is none)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + LOCK_SUFFIX)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(lock, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held for one read and one write: milliseconds
            yield
        finally:
            os.close(fd)  # and the lock with it


def _stamp(path: Path) -> Stamp | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)

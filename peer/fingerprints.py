"""Fingerprints as people compare them: what /admit and /trust accept, and the command
to type.

The user reads a fingerprint aloud (`format_fingerprint`: base32 in groups) and types
its start; `check_fingerprint` decides whether that is the key there is now.
"""

from __future__ import annotations

from typing import Final

from zchat.envelope import format_fingerprint
from zchat.peer.errors import FingerprintMismatch

#: The fewest fingerprint characters /admit and /trust accept: 8 of base32, 40 bits.
#: Enough that no one finds a key matching what a user compared by chance or by
#: grinding keys for a day, and short enough to read out and type.
MIN_PREFIX: Final = 8


def admit_command(command: str, nick: str, fp: bytes) -> str:
    """The exact command that accepts `nick`'s key `fp`: its first two groups."""
    return f"/{command} {nick} {' '.join(format_fingerprint(fp).split(' ')[:2])}"


def check_fingerprint(nick: str, typed: str, fp: bytes, *, command: str = "admit") -> None:
    """Raise FingerprintMismatch unless `typed` is what the user was shown of `fp`.

    At least `MIN_PREFIX` characters of its base32 form (`format_fingerprint`), from
    the start; spaces and case do not matter. A prefix of another key (the one the
    user compared, before it changed again) is refused with the key there is now.
    """
    shown = format_fingerprint(fp)
    whole = shown.replace(" ", "")
    given = "".join(typed.split()).upper()
    command_line = admit_command(command, nick, fp)
    how = f"compare it with {nick} (in person, by phone), then type {command_line}"
    if not given:
        raise FingerprintMismatch(f"{nick}'s fingerprint is {shown}; {how}")
    if len(given) < MIN_PREFIX:
        raise FingerprintMismatch(
            f"give at least {MIN_PREFIX} characters of {nick}'s fingerprint: nothing changed"
        )
    if not whole.startswith(given):
        raise FingerprintMismatch(
            f"{nick}'s key is {shown}, which does not start with what you typed: "
            f"nothing changed; {how}"
        )

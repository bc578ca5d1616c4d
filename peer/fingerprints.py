"""Fingerprints as people compare them: what /admit and /trust accept, and the command
to type.

The user reads a fingerprint aloud (`format_fingerprint`: base32 in groups of four) and
types its start; `check_fingerprint` decides whether that is the key there is now.

How much must match is a price, not a taste. A fingerprint is SHA-256 over the key's
DER, and an attacker who wants a key whose fingerprint starts like someone's need not
make RSA keys: it fixes one large prime P and varies a small prime q, so each candidate
modulus N = P*q costs one multiplication and one SHA-256, and zchat accepts N (2048
bits, e = 65537, canonical DER), whose private key the attacker knows.
docs/SECURITY.md gives the rate measured here: 40 bits fall in core-days, 80 bits
would take billions of core-years. Hence `MIN_PREFIX`.

A refusal never shows the fingerprint, not even its start: it would be the screen the
broker controls telling the user what to read back. It says where to look instead
(`/fingerprint NICK`) and to compare out of band.
"""

from __future__ import annotations

from typing import Final

from zchat.envelope import format_fingerprint
from zchat.peer.errors import FingerprintMismatch

#: The fewest fingerprint characters /admit and /trust accept: 16 of base32, 80 bits,
#: four groups read aloud. Ground the P*q way, 80 bits cost about 2^80 SHA-256
#: (docs/SECURITY.md prices it); fewer would be within reach of a determined broker.
MIN_PREFIX: Final = 16
#: Characters per group, as `format_fingerprint` shows them.
GROUP: Final = 4
#: Groups the command we suggest carries: exactly `MIN_PREFIX` characters.
SHOWN_GROUPS: Final = MIN_PREFIX // GROUP
#: Base32 (RFC 4648) has no 0, 1 or 8: a user who reads "0" or "1" off a screen or
#: hears it means the letter. Mapping them costs no bit, since neither is a digit here.
_LOOKALIKES: Final = str.maketrans({"0": "O", "1": "I", "8": "B"})


def admit_command(command: str, nick: str, fp: bytes) -> str:
    """The exact command that accepts `nick`'s key `fp`: its first `SHOWN_GROUPS` groups.

    Only for a notice that shows the whole fingerprint beside it (the user compares
    first); never for a refusal of what the user typed.
    """
    return f"/{command} {nick} {' '.join(format_fingerprint(fp).split(' ')[:SHOWN_GROUPS])}"


def check_fingerprint(nick: str, typed: str, fp: bytes, *, command: str = "admit") -> None:
    """Raise FingerprintMismatch unless `typed` is what the user was shown of `fp`.

    At least `MIN_PREFIX` characters of its base32 form (`format_fingerprint`), from
    the start; spaces and case do not matter, and whatever more is typed is compared
    too, up to the whole. A prefix of another key (the one the user compared, before
    it changed again) is refused. No refusal contains any part of `fp`.
    """
    whole = format_fingerprint(fp).replace(" ", "")
    given = "".join(typed.split()).upper().translate(_LOOKALIKES)
    how = (
        f"run /fingerprint {nick}, read it to {nick} out of band (in person, by phone) "
        f"and type /{command} {nick} followed by at least its first {MIN_PREFIX} characters"
    )
    if not given:
        raise FingerprintMismatch(f"no fingerprint given for {nick}: nothing changed; {how}")
    if len(given) < MIN_PREFIX:
        raise FingerprintMismatch(
            f"give at least {MIN_PREFIX} characters of {nick}'s fingerprint "
            f"({len(given)} given): nothing changed; {how}"
        )
    if not whole.startswith(given):
        raise FingerprintMismatch(
            f"what you typed is not the start of the key {nick} has here: nothing changed; {how}"
        )

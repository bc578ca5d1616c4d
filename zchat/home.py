"""Where a peer keeps its identity and pins, and how the shell unlocks them: asking
for a passphrase on a terminal, and saying what went wrong otherwise.

The default identity directory is the per-user data directory (XDG on Linux:
``~/.local/share/zchat``), overridden by ``--home`` or ``ZCHAT_HOME``.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

import platformdirs

from zchat.console import fail, info
from zchat.envelope import (
    Identity,
    IdentityError,
    PassphraseRequired,
    WrongPassphrase,
    load_or_create_identity,
)

PASSPHRASE_ENV = "ZCHAT_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)
#: Passphrases asked on a terminal before giving up, as sudo and ssh do.
PASSPHRASE_TRIES = 3


def default_home() -> Path:
    return Path(platformdirs.user_data_dir("zchat", appauthor=False))


def unlock(home: Path, key_size: int = 2048) -> Identity:
    """Load the identity in `home`, creating it on first use; ask for a passphrase
    on a terminal when the key needs one. Exits with a readable error otherwise."""
    passphrase = os.environ.get(PASSPHRASE_ENV, "").encode() or None
    asked = 0  # passphrases typed so far: each one is tried before asking again
    while True:
        try:
            identity, created = load_or_create_identity(home, passphrase, key_size)
        except PassphraseRequired as exc:
            if not sys.stdin.isatty() or asked:
                fail(str(exc), f"set {PASSPHRASE_ENV} or run on a terminal to be asked")
            path = exc.path
        except WrongPassphrase as exc:
            if not sys.stdin.isatty():
                fail(str(exc))
            if asked >= PASSPHRASE_TRIES:
                fail(f"wrong passphrase ({asked} attempts)")
            info("wrong passphrase, try again")
            path = exc.path
        except IdentityError as exc:
            fail(str(exc))
        else:
            if created:
                info(f"created a new identity in {home}")
            return identity
        passphrase = getpass.getpass(f"passphrase for {path}: ").encode()
        asked += 1

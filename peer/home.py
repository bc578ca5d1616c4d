"""Where a peer keeps its identity and pins, and how it unlocks them.

The default identity directory is the per-user data directory (XDG on Linux:
``~/.local/share/zchat``), overridden by ``--home`` or ``ZCHAT_HOME``.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

import platformdirs

from envelope import (
    Identity,
    IdentityError,
    PassphraseRequired,
    WrongPassphrase,
    load_or_create_identity,
)
from zchat.console import fail, info

PASSPHRASE_ENV = "ZCHAT_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)


def default_home() -> Path:
    return Path(platformdirs.user_data_dir("zchat", appauthor=False))


def unlock(home: Path, key_size: int = 2048) -> Identity:
    """Load the identity in `home`, creating it on first use; ask for a passphrase
    on a terminal when the key needs one. Exits with a readable error otherwise."""
    passphrase = os.environ.get(PASSPHRASE_ENV, "").encode() or None
    for attempt in range(3):
        try:
            identity, created = load_or_create_identity(home, passphrase, key_size)
        except PassphraseRequired as exc:
            if not sys.stdin.isatty() or attempt:
                fail(str(exc), f"set {PASSPHRASE_ENV} or run on a terminal to be asked")
            passphrase = getpass.getpass(f"passphrase for {exc.path}: ").encode()
            continue
        except WrongPassphrase as exc:
            if not sys.stdin.isatty():
                fail(str(exc))
            info("wrong passphrase, try again")
            passphrase = getpass.getpass(f"passphrase for {exc.path}: ").encode()
            continue
        except IdentityError as exc:
            fail(str(exc))
        if created:
            info(f"created a new identity in {home}")
        return identity
    fail("wrong passphrase (3 attempts)")

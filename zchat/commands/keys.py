"""``zchat keys``: your identity and the keys you have pinned."""

from __future__ import annotations

import getpass
import time
from pathlib import Path
from typing import Annotated

import typer

from zchat.console import fail, info
from zchat.envelope import (
    PRIVATE_KEY_FILE,
    format_fingerprint,
    generate_identity,
    save_identity,
)
from zchat.envelope.limits import KEY_SIZES
from zchat.exit_codes import EXIT_USAGE
from zchat.home import default_home, unlock
from zchat.peer.pinfile import PinFile
from zchat.peer.pins import How, Pin, PinsError
from zchat.peer.sanitize import for_terminal

app = typer.Typer(name="keys", help="Your identity key and the keys you have pinned.")

HomeOption = Annotated[
    Path | None,
    typer.Option(envvar="ZCHAT_HOME", help="Identity directory.", show_default=False),
]


@app.command()
def show(home: HomeOption = None) -> None:
    """Print your fingerprint, to compare aloud with the people you chat with."""
    home = home or default_home()
    identity = unlock(home)
    print(format_fingerprint(identity.fingerprint))


@app.command()
def init(
    home: HomeOption = None,
    passphrase: Annotated[
        bool, typer.Option("--passphrase", help="Protect the private key with a passphrase.")
    ] = False,
    key_size: Annotated[int, typer.Option(help=f"RSA key size, one of {KEY_SIZES}.")] = 2048,
) -> None:
    """Create your identity key pair (zchat peer also creates one on first use)."""
    home = home or default_home()
    if key_size not in KEY_SIZES:
        fail(f"key size must be one of {', '.join(map(str, KEY_SIZES))}", code=EXIT_USAGE)
    if (home / PRIVATE_KEY_FILE).exists():
        fail(f"{home / PRIVATE_KEY_FILE} already exists", "remove it first to make a new one")
    secret = None
    if passphrase:
        secret = getpass.getpass("new passphrase: ").encode()
        if secret != getpass.getpass("again: ").encode():
            fail("the passphrases differ")
    identity = generate_identity(key_size)
    save_identity(identity, home, secret)
    info(f"created {home / PRIVATE_KEY_FILE}")
    print(format_fingerprint(identity.fingerprint))


@app.command()
def pins(home: HomeOption = None) -> None:
    """List the nicknames whose keys you have pinned, and who admitted them."""
    for pin in _pins(home).pins:
        print(f"{pin.nick:<32}  {format_fingerprint(pin.fingerprint)}  {_admission(pin)}")


@app.command()
def forget(
    nick: Annotated[str, typer.Argument(help="Nickname whose pin to remove.")],
    home: HomeOption = None,
) -> None:
    """Remove a pin: the next key seen for NICK is pinned afresh."""
    try:
        forgotten = _pins(home).forget(nick)
    except PinsError as exc:
        fail(str(exc))
    if not forgotten:
        fail(f"no pin for {nick}", "'zchat keys pins' lists them")
    info(f"forgot the pin for {nick}")


def _admission(pin: Pin) -> str:
    if not pin.admitted or pin.admission is None:
        return "not admitted"
    when = time.strftime("%Y-%m-%d", time.localtime(pin.admission.at_ms / 1000))
    if pin.admission.how is How.VOUCH:
        return f"vouched by {for_terminal(pin.admission.by)} {when}"
    return f"admitted by you {when}"


def _pins(home: Path | None) -> PinFile:
    try:
        return PinFile.open(home or default_home())
    except PinsError as exc:
        fail(str(exc))

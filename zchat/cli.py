"""The root ``zchat`` command. Each subcommand lives in its own package's ``cli`` module."""

from __future__ import annotations

from typing import Annotated

import typer

from bench.cli import app as bench_app
from broker.cli import app as broker_app
from peer.cli import app as peer_app
from peer.keys_cli import app as keys_app
from zchat import __version__

app = typer.Typer(
    name="zchat",
    help="A secure single-room chat over ZeroMQ: end-to-end encrypted, signed, pinned.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"zchat {__version__}")
        raise typer.Exit


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """zchat: a secure single-room chat over ZeroMQ."""


app.add_typer(broker_app)
app.add_typer(peer_app)
app.add_typer(keys_app)
app.add_typer(bench_app)


def main() -> None:
    app()

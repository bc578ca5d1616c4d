"""The root ``zchat`` command. Each subcommand is a module of `zchat.commands`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from zchat import __version__, crash
from zchat.commands import bench, broker, keys, peer
from zchat.console import error
from zchat.exit_codes import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE

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
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar="ZCHAT_DEBUG",
            help="On an unexpected error, show its traceback; log on standard error.",
        ),
    ] = False,
) -> None:
    """zchat: a secure single-room chat over ZeroMQ."""
    crash.enable_debug(debug)


app.add_typer(broker.app)
app.add_typer(peer.app)
app.add_typer(keys.app)
app.add_typer(bench.app)


def main() -> None:
    """Run `zchat`; usage errors read like every other zchat error, and an error nobody
    expected ends with one line and a hint, never a traceback (`zchat.crash`)."""
    try:
        code = app(standalone_mode=False)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except Exception as exc:
        # click's UsageError, duck-typed: click may be its own package or vendored
        # inside typer, depending on typer's version.
        if getattr(exc, "exit_code", None) == EXIT_USAGE and hasattr(exc, "format_message"):
            ctx = getattr(exc, "ctx", None)
            command = getattr(ctx, "command_path", "zchat")
            error(_sentence(exc.format_message()), f"see '{command} --help'")
            code = EXIT_USAGE
        elif type(exc).__name__ == "Abort":  # Ctrl-C at a prompt
            code = EXIT_INTERRUPTED
        else:
            crash.report(exc, sys.argv)
            code = EXIT_ERROR
    sys.exit(code if isinstance(code, int) else 0)


def _sentence(message: str) -> str:
    """click's messages in zchat's voice: lower-case first letter, no final period."""
    message = message.rstrip(".")
    return message[:1].lower() + message[1:]

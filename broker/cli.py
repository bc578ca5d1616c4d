"""``zchat broker``: run the room's broker."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType
from typing import Annotated

import typer

from broker.core import BrokerConfig
from broker.server import Server
from broker.transport import TransportError
from zchat.console import EXIT_ERROR, fail

DEFAULT_BIND = "tcp://127.0.0.1:5555"

app = typer.Typer()


@app.command("broker")
def broker(
    bind: Annotated[
        list[str] | None,
        typer.Option(
            "--bind",
            "-b",
            envvar="ZCHAT_BIND",
            help=f"Endpoint to listen on; repeat for several. Default {DEFAULT_BIND}.",
            show_default=False,
        ),
    ] = None,
    heartbeat_interval: Annotated[
        float,
        typer.Option(envvar="ZCHAT_HEARTBEAT_INTERVAL", min=0.01, help="Seconds between beats."),
    ] = 1.0,
    heartbeat_timeout: Annotated[
        float,
        typer.Option(
            envvar="ZCHAT_HEARTBEAT_TIMEOUT", min=0.05, help="Silence before a peer is evicted."
        ),
    ] = 5.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every event.")] = False,
) -> None:
    """Run the broker: routes sealed messages between peers; never sees plaintext."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s zchat-broker %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    config = BrokerConfig(
        heartbeat_interval=heartbeat_interval,
        heartbeat_timeout=heartbeat_timeout,
        handshake_timeout=heartbeat_timeout,
        backlog_timeout=heartbeat_timeout,
    )
    server = Server(endpoints=bind or [DEFAULT_BIND], config=config)
    try:
        endpoints = server.open()
    except TransportError as exc:
        fail(str(exc), "is another broker running? choose another port with --bind", EXIT_ERROR)

    def stop(signum: int, frame: FrameType | None) -> None:
        server.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for endpoint in endpoints:
        logging.getLogger("zchat.broker").info("listening on %s", endpoint)
    server.run()
    logging.getLogger("zchat.broker").info("stopped")

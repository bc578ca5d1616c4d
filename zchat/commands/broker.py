"""``zchat broker``: run a broker, for every room its peers name."""

from __future__ import annotations

import enum
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
import zmq

from zchat.broker.config import DEFAULT_MAX_ROOMS, BrokerConfig
from zchat.broker.server import Server
from zchat.console import fail, info
from zchat.exit_codes import EXIT_ERROR, EXIT_USAGE
from zchat.wire import curve as bc
from zchat.wire.transport import TransportError

if TYPE_CHECKING:
    from zchat.broker.metrics import MetricsAddress

DEFAULT_BIND = "tcp://127.0.0.1:5555"
#: The timers a broker runs with when not told: the core's own (docs/PROTOCOL.md §3.8),
#: written once. The interval once stayed 2 s here after the core's became 2.5 s.
_DEFAULTS = BrokerConfig()


class LogLevel(str, enum.Enum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


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
    ] = _DEFAULTS.heartbeat_interval,
    heartbeat_timeout: Annotated[
        float,
        typer.Option(
            envvar="ZCHAT_HEARTBEAT_TIMEOUT",
            min=0.05,
            help="Seconds of silence before a peer is evicted; also bounds handshakes.",
        ),
    ] = _DEFAULTS.heartbeat_timeout,
    curve: Annotated[
        bool,
        typer.Option(
            "--curve",
            envvar="ZCHAT_CURVE",
            help="Encrypt the transport with CurveZMQ; only peers given our key get in.",
        ),
    ] = False,
    curve_dir: Annotated[
        Path | None,
        typer.Option(
            "--curve-dir",
            envvar="ZCHAT_BROKER_HOME",
            help="Where the broker's CURVE key pair lives. Default: your data directory.",
            show_default=False,
        ),
    ] = None,
    print_key: Annotated[
        bool,
        typer.Option(
            "--print-key", help="Print the CURVE public key (creating it if needed) and exit."
        ),
    ] = False,
    max_rooms: Annotated[
        int,
        typer.Option(
            "--max-rooms",
            envvar="ZCHAT_MAX_ROOMS",
            min=1,
            help="The most rooms at once; a peer naming another is refused (too-many-rooms).",
        ),
    ] = DEFAULT_MAX_ROOMS,
    room: Annotated[
        str | None,
        # Gone in protocol 3: peers name their rooms. Kept, hidden, to say so. No
        # envvar: ZCHAT_ROOM is the peer's, and may be set where a broker runs too.
        typer.Option("--room", hidden=True, show_default=False),
    ] = None,
    metrics: Annotated[
        str | None,
        typer.Option(
            "--metrics",
            envvar="ZCHAT_METRICS",
            metavar="ADDR",
            help="Serve Prometheus metrics over HTTP at HOST:PORT (or PORT) "
            "(needs the 'metrics' extra). Bind it to a private address: no authentication.",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[
        LogLevel,
        typer.Option(
            "--log-level",
            envvar="ZCHAT_LOG_LEVEL",
            case_sensitive=False,
            help="What to log, one line per event on standard error.",
        ),
    ] = LogLevel.INFO,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log every event (--log-level debug).")
    ] = False,
) -> None:
    """Run the broker: routes sealed messages between peers; never sees plaintext."""
    keys = _curve_keys(curve_dir or bc.default_broker_home()) if curve or print_key else None
    if print_key:
        assert keys is not None
        print(keys.public.decode("ascii"))
        raise typer.Exit
    if room is not None:
        fail(
            "a broker no longer names a room: it serves every room its peers name",
            "give --room to each 'zchat peer' instead",
            EXIT_USAGE,
        )
    if heartbeat_timeout <= heartbeat_interval:
        # Otherwise every peer is evicted between two of its own heartbeats.
        fail(
            f"--heartbeat-timeout ({heartbeat_timeout:g} s) must be longer than "
            f"--heartbeat-interval ({heartbeat_interval:g} s)",
            "a timeout of several intervals lets a peer miss a beat or two",
            EXIT_USAGE,
        )
    address = _metrics_address(metrics) if metrics is not None else None
    logging.basicConfig(
        level=logging.DEBUG if verbose else log_level.name,
        # One line per event; the level in every line, for filters and journald.
        format="%(asctime)s zchat-broker %(levelname)s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
    )
    config = BrokerConfig(
        heartbeat_interval=heartbeat_interval,
        heartbeat_timeout=heartbeat_timeout,
        handshake_timeout=heartbeat_timeout,
        backlog_timeout=heartbeat_timeout,
        max_rooms=max_rooms,
    )
    server = Server(
        endpoints=bind or [DEFAULT_BIND],
        config=config,
        curve_secret=None if keys is None else keys.secret,
    )
    try:
        endpoints = server.open()
    except TransportError as exc:
        fail(str(exc), "is another broker running? choose another port with --bind", EXIT_ERROR)

    def stop(signum: int, frame: FrameType | None) -> None:
        server.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log = logging.getLogger("zchat.broker")
    if address is not None:
        _serve_metrics(server, address)
        log.info("metrics on http://%s:%d/metrics", address.host, address.port)
    for endpoint in endpoints:
        log.info("listening on %s", endpoint)
    log.info("at most %d rooms", max_rooms)  # never their names: nobody is told them
    if keys is not None:
        log.info("CURVE on; public key: %s", keys.public.decode("ascii"))
        # Z85 has shell metacharacters ($, &, !, ...) but never a single quote.
        log.info("peers connect with: zchat peer --broker-key '%s'", keys.public.decode("ascii"))
    server.run()
    log.info("stopped")


def _metrics_address(text: str) -> MetricsAddress:
    """The --metrics address, checked before anything starts; prometheus_client must be
    installed, as the 'metrics' extra."""
    try:
        from zchat.broker.metrics import MetricsAddress  # noqa: PLC0415  optional extra
    except ImportError:
        fail(
            "--metrics needs prometheus_client, which is not installed",
            "pip install 'zchat[metrics]'",
        )
    try:
        return MetricsAddress.parse(text)
    except ValueError as exc:
        fail(
            f"invalid --metrics address: {exc}", "for example --metrics 127.0.0.1:9100", EXIT_USAGE
        )


def _serve_metrics(server: Server, address: MetricsAddress) -> None:
    from zchat.broker.metrics import serve_metrics  # noqa: PLC0415  optional extra

    try:
        serve_metrics(server.core, address)
    except OSError as exc:
        fail(f"cannot serve metrics on {address.host}:{address.port}: {exc.strerror}")


def _curve_keys(home: Path) -> bc.CurvePair:
    """The broker's CURVE key pair from `home`, created there on first use."""
    if not zmq.has("curve"):
        fail("this libzmq was built without CURVE support", "install pyzmq's wheel with libsodium")
    try:
        keys, created = bc.load_or_create(home)
    except bc.CurveKeyError as exc:
        fail(str(exc))
    if created:
        info(f"created the broker's CURVE key pair in {home}")
    return keys

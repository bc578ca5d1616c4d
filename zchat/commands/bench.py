"""``zchat bench``: measure zchat against bare ZeroMQ and the raw cryptography."""

from __future__ import annotations

import contextlib
import importlib.util
import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from zchat.bench.run import QUICK, BenchError, Settings, run
from zchat.bench.swarm_results import QUICK_SWARM, SwarmSettings
from zchat.console import fail, info
from zchat.exit_codes import EXIT_INTERRUPTED, EXIT_USAGE

#: Every peer is a process of its own; more than this on one machine measures the
#: scheduler, not zchat.
MAX_BENCH_ROOM = 100
#: Light sessions a swarm may run on one machine: every one is two sockets.
MAX_SWARM = 5000
DEFAULT_OUT = Path("bench-results.json")
SWARM_OUT = Path("swarm-results.json")
#: Steps of one room, as `bench.run` announces them.
_ROOM_STEPS = 7
_SETUP_STEPS = 4

app = typer.Typer()


@app.command("bench")
def bench(
    room: Annotated[
        list[int] | None,
        typer.Option(
            "--room",
            "-r",
            help="Room size to measure; repeat for several. Default 2, 10, 50 (2, 5 with --quick).",
            show_default=False,
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="A short run (under 20 s): small rooms, short phases.")
    ] = False,
    phase_seconds: Annotated[
        float | None,
        typer.Option(min=0.5, max=60, help="Length of each measured phase, in seconds."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where to write the results as JSON.")
    ] = DEFAULT_OUT,
    plot: Annotated[
        Path | None,
        typer.Option(help="Also draw the results to this PNG (needs the 'bench' extra)."),
    ] = None,
    time_crypto: Annotated[
        bool,
        typer.Option(
            "--time-crypto",
            help="Also run the closed loop once more with each primitive timed inside the "
            "peers: the cryptography as it runs there, against the ceiling's hot loops.",
        ),
    ] = False,
    swarm: Annotated[
        int | None,
        typer.Option(
            "--swarm",
            min=2,
            max=MAX_SWARM,
            help="Instead: real brokers against this many light sessions in a few processes "
            "(a join storm, an idle room, busy rooms, many rooms). Results go to "
            f"{SWARM_OUT} unless --out says otherwise.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Measure zchat against bare ZeroMQ and the raw cryptography, on this machine.

    Starts a broker and, per room size, that many peer processes on 127.0.0.1.
    With --swarm, measures the broker at scale instead (issue 21's workloads).
    """
    if swarm is not None:
        _swarm(swarm, quick=quick, phase_seconds=phase_seconds, out=out)
        return
    settings = QUICK if quick else Settings()
    if room:
        if not all(2 <= n <= MAX_BENCH_ROOM for n in room):
            fail(f"room sizes run from 2 to {MAX_BENCH_ROOM} peers", code=EXIT_USAGE)
        settings = replace(settings, rooms=tuple(dict.fromkeys(room)))
    if phase_seconds is not None:
        warmup = min(settings.warmup_s, phase_seconds / 4)
        settings = replace(settings, phase_s=phase_seconds, warmup_s=warmup)
    settings = replace(settings, time_crypto=time_crypto)
    # Checked first: nobody should wait two minutes to learn the plot cannot be drawn.
    if plot is not None and importlib.util.find_spec("matplotlib") is None:
        fail("--plot needs matplotlib, which is not installed", "pip install 'zchat[bench]'")

    from zchat.bench import report  # noqa: PLC0415  matplotlib and rich tables only when asked

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 120))
    progress = Progress(
        TextColumn("{task.fields[label]:>8}"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    tasks: dict[int | None, TaskID] = {
        None: progress.add_task("", total=_SETUP_STEPS, label="setup")
    }
    steps = _ROOM_STEPS + settings.time_crypto
    for n in settings.rooms:
        tasks[n] = progress.add_task("waiting", total=steps, label=f"room {n}")
    current: dict[int | None, bool] = {}

    def step(room_size: int | None, what: str) -> None:
        task = tasks[room_size]
        if current.get(room_size):
            progress.advance(task)
        current[room_size] = True
        if room_size is not None and current.get(None):
            progress.update(tasks[None], completed=_SETUP_STEPS, description="done")
            current[None] = False
        progress.update(task, description=what)

    with _run_ends_cleanly(), progress:
        results = run(settings, step)
        for n in settings.rooms:
            progress.update(tasks[n], completed=steps, description="done")

    report.show(results, console)
    report.write_json(results, out)
    info(f"results written to {out}")
    if plot is not None:
        report.plot(results, plot)
        info(f"plot written to {plot}")


def _swarm(members: int, *, quick: bool, phase_seconds: float | None, out: Path) -> None:
    from zchat.bench import swarm_report  # noqa: PLC0415  rich tables only when asked
    from zchat.bench.swarm import run_swarm  # noqa: PLC0415

    settings = replace(QUICK_SWARM if quick else SwarmSettings(), members=members)
    if phase_seconds is not None:
        warmup = min(settings.warmup_s, phase_seconds / 4)
        settings = replace(settings, phase_s=phase_seconds, idle_s=phase_seconds, warmup_s=warmup)
    if out == DEFAULT_OUT:
        out = SWARM_OUT
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 140))
    with _run_ends_cleanly(), Console(stderr=True).status("starting") as shown:
        results = run_swarm(settings, shown.update)
    swarm_report.show(results, console)
    swarm_report.write_json(results, out)
    info(f"results written to {out}")


@contextlib.contextmanager
def _run_ends_cleanly() -> Iterator[None]:
    """A run's failure or interruption, in zchat's words. Termination is an interruption
    too: the run's own cleanup must stop every child process it started."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    except BenchError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted; every benchmark process was stopped", code=EXIT_INTERRUPTED)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt

"""Process supervision: every child of a run is started here, and ended when it ends.

Children are our own interpreter running one of our modules (`python -m ...`), with
standard input closed and output going to a log file, whose last lines explain a
child that died. `Children` is a context manager: however the run ends, by a result,
an error or Ctrl-C, every child it started is terminated, and killed if it lingers.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from zchat.bench.errors import BenchError


class Children:
    """Every process the run started; all of them are ended when the run ends."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 3
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        for log in self._logs:
            log.close()

    def spawn(self, module_args: list[str], log: Path) -> subprocess.Popen[bytes]:
        out = log.open("wb")
        self._logs.append(out)
        proc = subprocess.Popen(  # noqa: S603  our own interpreter and modules
            [sys.executable, "-m", *module_args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 0.0) -> None:
        """Give `proc` `grace` seconds to finish by itself, then end it."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


#: `zchat bench`'s broker timers: a peer starved of CPU by 49 busy neighbours is not dead.
BENCH_TIMERS = ("--heartbeat-interval", "1", "--heartbeat-timeout", "60")
#: How long a broker may take to listen once started.
_LISTEN_S = 20.0


def start_broker(
    children: Children, workdir: Path, options: Sequence[str] = BENCH_TIMERS
) -> tuple[str, int]:
    """A real `zchat broker` on a free loopback port: its endpoint and pid, once it listens."""
    ((endpoint, proc),) = start_brokers(children, workdir, [options])
    return endpoint, proc.pid


def start_brokers(
    children: Children, workdir: Path, options: Sequence[Sequence[str]]
) -> list[tuple[str, subprocess.Popen[bytes]]]:
    """Real brokers, one per entry of `options` (its command-line options), started
    together: each is a second of interpreter start-up."""
    started = []
    count = len(options)
    for opts in options:
        port = free_port()
        endpoint = f"tcp://127.0.0.1:{port}"
        log = workdir / f"broker-{port}.log"
        proc = children.spawn(["zchat", "broker", "--bind", endpoint, *opts], log)
        started.append((port, endpoint, proc, log))
    deadline = time.monotonic() + _LISTEN_S + count * 0.5
    for port, endpoint, proc, log in started:
        while True:
            if proc.poll() is not None:
                raise BenchError(f"the broker exited ({proc.returncode}): {tail(log)}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise BenchError(f"the broker did not listen on {endpoint} in time")
            time.sleep(0.05)
    return [(endpoint, proc) for _, endpoint, proc, _ in started]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tail(log: Path, lines: int = 5) -> str:
    """The last lines of a child's log, on one line, for an error message."""
    with contextlib.suppress(OSError):
        text = log.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "no output"
    return "no output"

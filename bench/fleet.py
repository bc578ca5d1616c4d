"""The parent's side of the control dialog: one room's worker processes, driven as one.

The parent binds a ROUTER on loopback; every worker (`bench.worker`, where the dialog
is written out) connects a DEALER whose identity names its room and seat, and answers
each command with one JSON object when it is done. A phase is announced a moment
ahead with the instant it starts, so that it starts at the same instant everywhere.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import zmq

from zchat.bench.errors import BenchError
from zchat.bench.machine import CpuWatch
from zchat.bench.processes import Children, tail
from zchat.bench.results import Settings

#: How long before a phase's start instant the parent announces it.
LEAD_S = 0.3
#: After a phase, how long workers may take to drain what is still in flight.
DRAIN_S = 15.0


class Fleet:
    """The worker processes of one room, and the control socket that drives them."""

    def __init__(
        self, room: int, control: zmq.Socket[bytes], children: Children, name: str = ""
    ) -> None:
        self.room = room
        #: What error messages call these workers.
        self.name = name or f"room of {room}"
        self.control = control
        self.children = children
        self.procs: dict[bytes, subprocess.Popen[bytes]] = {}
        self.logs: dict[bytes, Path] = {}

    def spawn(self, index: int, control_endpoint: str, workdir: Path) -> None:
        ident = f"r{self.room}w{index}".encode()
        log = workdir / f"worker-{self.room}-{index}.log"
        args = ["zchat.bench.worker", control_endpoint, str(index), str(self.room), str(workdir)]
        self.spawn_module(ident, args, log)

    def spawn_module(self, ident: bytes, args: list[str], log: Path) -> None:
        """A worker running `python -m args...`, which connects with identity `ident`."""
        self.procs[ident] = self.children.spawn(args, log)
        self.logs[ident] = log

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs.values()]

    def send_all(self, msg: dict[str, Any]) -> None:
        data = json.dumps(msg).encode()
        for ident in self.procs:
            self.control.send_multipart([ident, data])

    def run_phase(
        self,
        cmd: dict[str, Any],
        settings: Settings,
        *,
        window: int,
        watch: CpuWatch | None = None,
    ) -> list[dict[str, Any]]:
        """Start a phase at the same instant everywhere; return every worker's counts."""
        start = time.monotonic_ns() + int(LEAD_S * 1e9)
        timing: dict[str, Any] = {
            "start_ns": start,
            "measure_ns": start + int(settings.warmup_s * 1e9),
            "end_ns": start + int(settings.phase_s * 1e9),
            "window": window,
            "drain_s": DRAIN_S,
            "max_messages": settings.max_messages,
        }
        self.send_all({**cmd, **timing})
        if watch is not None:  # the workers answer only after the window anyway
            watch.between(timing["measure_ns"], timing["end_ns"])
        replies = self.gather("the phase", timeout=LEAD_S + settings.phase_s + DRAIN_S + 20)
        return list(replies.values())

    def gather(self, what: str, timeout: float) -> dict[bytes, dict[str, Any]]:
        """One answer from every worker; a worker that reports an error or dies ends the run."""
        replies: dict[bytes, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(replies) < len(self.procs):
            if self.control.poll(100):
                ident, data = self.control.recv_multipart()
                if ident not in self.procs:
                    continue  # a straggler of an earlier room
                msg = json.loads(data)
                if "error" in msg:
                    raise BenchError(f"{self.name}: {msg['error']}")
                replies[ident] = msg
                continue
            for ident, proc in self.procs.items():
                if proc.poll() is not None and ident not in replies:
                    raise BenchError(
                        f"{self.name}: worker {ident.decode()} exited "
                        f"({proc.returncode}) while waiting for {what}: {tail(self.logs[ident])}"
                    )
            if time.monotonic() > deadline:
                missing = len(self.procs) - len(replies)
                raise BenchError(
                    f"{self.name}: {missing} worker(s) gave no answer "
                    f"within {timeout:.0f} s while waiting for {what}"
                )
        return replies

    def quit(self) -> None:
        self.send_all({"cmd": "quit"})
        with contextlib.suppress(BenchError):
            self.gather("goodbyes", timeout=10)
        for proc in self.procs.values():
            self.children.stop(proc, grace=5.0)

"""The benchmark run: a real broker, real peer processes, and the ceilings, in one go.

For each room size n the parent starts n worker processes (`bench.worker`) and drives
them through the phases below over a control socket, each phase starting at the same
instant in every worker and measured after a warm-up:

    bare      the workers fan out through a bare ROUTER (`bench.ceilings`): the ZeroMQ ceiling
    join      each worker joins the real broker with the peer client library
    replay    pre-sealed envelopes as fast as the broker acknowledges them: broker routing
    closed    real sealed messages, opened by every recipient: end-to-end maximum
    open      half that load on a fixed schedule: latency from due time to opened

Every child runs on 127.0.0.1, every wait has a deadline, and every child is ended
when the run ends, however it ends.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import cryptography
import zmq
from cryptography.hazmat.primitives import serialization

from zchat.bench.ceilings import (
    CryptoTimings,
    EnvelopeOverhead,
    crypto_ceiling,
    crypto_seconds_per_message,
    envelope_overhead,
    sleep_until,
    time_crypto,
)
from zchat.bench.worker import Board, bench_text, board_path, key_path
from zchat.envelope import Identity, generate_identity

#: How long before a phase's start instant the parent announces it.
_LEAD_S = 0.3
#: After a phase, how long workers may take to drain what is still in flight.
_DRAIN_S = 15.0


class BenchError(Exception):
    """The benchmark could not run; the message says why, for people."""


@dataclass(frozen=True, slots=True)
class Settings:
    rooms: tuple[int, ...] = (2, 10, 50)
    #: Length of each measured phase, warm-up included.
    phase_s: float = 3.0
    #: The start of each phase that is not counted.
    warmup_s: float = 0.5
    #: Messages in flight per sender through the bare router and the broker.
    window: int = 8
    #: End-to-end messages per sender that recipients have not opened yet.
    e2e_window: int = 4
    #: Fewer crypto timing iterations below 1.
    crypto_scale: float = 1.0
    #: Per sender and phase: every load loop is bounded in count as well as time.
    max_messages: int = 200_000


QUICK = Settings(rooms=(2, 5), phase_s=1.0, warmup_s=0.25, crypto_scale=0.25)


@dataclass(frozen=True, slots=True)
class RoomResult:
    """One room size: the figures of the issue, and nothing else (this is the JSON)."""

    room: int
    zmq_ceiling_deliveries_per_s: float
    crypto_ceiling_msgs_per_s: float
    broker_deliveries_per_s: float
    e2e_msgs_per_s: float
    latency_ms: dict[str, float]
    wire_bytes_per_delivery: float
    broker_vs_zmq: float
    e2e_vs_crypto: float


@dataclass
class RoomNotes:
    """What else was seen in a room: for the reader, not for comparisons."""

    room: int
    startup_s: float = 0.0
    join_s: float = 0.0
    #: The closed loop's CPU per message, all zchat processes (broker and peers), and
    #: the cryptography's share of it: a ratio other tenants of the machine barely move.
    e2e_cpu_ms_per_msg: float = 0.0
    #: of that, the kernel's share: loopback TCP, wake-ups, epoll
    e2e_kernel_share: float = 0.0
    crypto_cpu_ms_per_msg: float = 0.0
    #: Cores busy with something other than this benchmark during the closed loop.
    other_load_cores: float = 0.0
    open_rate_msgs_per_s: float = 0.0
    latency_samples: int = 0
    unopened: int = 0  # deliveries due in the latency window never seen opened
    problems: list[str] = field(default_factory=list)


@dataclass
class Results:
    settings: Settings
    machine: dict[str, Any]
    crypto: CryptoTimings
    overhead: EnvelopeOverhead
    rooms: list[RoomResult] = field(default_factory=list)
    notes: list[RoomNotes] = field(default_factory=list)


Step = Callable[[int | None, str], None]


def machine_info() -> dict[str, Any]:
    return {
        "cores": cores(),
        "cpu": platform.processor() or platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "cryptography": cryptography.__version__,
    }


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run(settings: Settings, step: Step) -> Results:
    step(None, "generating keys")
    identities = [generate_identity(2048) for _ in range(max(*settings.rooms, 2))]
    payload = bench_text(0).encode()
    step(None, "timing the cryptography")
    crypto = time_crypto(identities[0], payload, scale=settings.crypto_scale)
    step(None, "timing seal and open")
    overhead = envelope_overhead(
        identities[0], identities[1], payload, crypto, scale=settings.crypto_scale
    )
    results = Results(settings, machine_info(), crypto, overhead)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="zchat-bench-")))
        for i, identity in enumerate(identities):
            _write_key(key_path(workdir, i), identity)
        children = stack.enter_context(_Children())
        ctx = zmq.Context()
        stack.callback(ctx.term)
        control = ctx.socket(zmq.ROUTER)
        stack.callback(control.close, 0)
        control.bind("tcp://127.0.0.1:*")
        control_endpoint = control.getsockopt_string(zmq.LAST_ENDPOINT)
        step(None, "starting the broker")
        broker, broker_pid = _start_broker(children, workdir)
        for room in settings.rooms:
            result, notes = _run_room(
                room,
                settings,
                crypto,
                workdir,
                children,
                control,
                control_endpoint,
                broker,
                broker_pid,
                step,
            )
            results.rooms.append(result)
            results.notes.append(notes)
    return results


def _run_room(
    room: int,
    settings: Settings,
    crypto: CryptoTimings,
    workdir: Path,
    children: _Children,
    control: zmq.Socket[bytes],
    control_endpoint: str,
    broker: str,
    broker_pid: int,
    step: Step,
) -> tuple[RoomResult, RoomNotes]:
    notes = RoomNotes(room)
    board = board_path(workdir, room)
    board.write_bytes(bytes(Board.size(room)))
    step(room, f"starting {room} peer processes")
    started = time.monotonic()
    fleet = _Fleet(room, control, children)
    for i in range(room):
        fleet.spawn(i, control_endpoint, workdir)
    fleet.gather("ready", timeout=60 + room)
    notes.startup_s = time.monotonic() - started

    step(room, "bare ZeroMQ fan-out")
    bare_endpoint = f"tcp://127.0.0.1:{_free_port()}"
    router = children.spawn(
        ["zchat.bench.ceilings", bare_endpoint, str(room)], workdir / f"router{room}.log"
    )
    fleet.send_all({"cmd": "bare", "endpoint": bare_endpoint})
    fleet.gather("connected to the bare router", timeout=30)
    bare = fleet.run_phase({}, settings, window=settings.window)
    children.stop(router)
    seconds = settings.phase_s - settings.warmup_s
    zmq_rate = sum(c["deliveries"] for c in bare) / seconds

    step(room, "joining the broker")
    started = time.monotonic()
    fleet.send_all({"cmd": "join", "endpoint": broker, "timeout": 30 + room})
    fleet.gather("everyone in the room", timeout=40 + room)
    notes.join_s = time.monotonic() - started

    step(room, "broker routing (pre-sealed)")
    replay = fleet.run_phase({"cmd": "replay"}, settings, window=settings.window)
    broker_rate = sum(c["deliveries"] for c in replay) / seconds
    received = sum(c["received"] for c in replay)
    wire = sum(c["wire_bytes"] for c in replay) / received if received else 0.0

    e2e_rate, latencies = _end_to_end(fleet, room, settings, crypto, broker_pid, notes, step)

    step(room, "leaving")
    fleet.quit()

    ceiling = crypto_ceiling(crypto, room, cores())
    result = RoomResult(
        room=room,
        zmq_ceiling_deliveries_per_s=round(zmq_rate, 1),
        crypto_ceiling_msgs_per_s=round(ceiling, 1),
        broker_deliveries_per_s=round(broker_rate, 1),
        e2e_msgs_per_s=round(e2e_rate, 1),
        latency_ms={
            "p50": round(_percentile(latencies, 50) / 1000, 2),
            "p99": round(_percentile(latencies, 99) / 1000, 2),
            "max": round((latencies[-1] if latencies else 0) / 1000, 2),
        },
        wire_bytes_per_delivery=round(wire, 1),
        broker_vs_zmq=round(broker_rate / zmq_rate, 3) if zmq_rate else 0.0,
        e2e_vs_crypto=round(e2e_rate / ceiling, 3),
    )
    return result, notes


def _end_to_end(
    fleet: _Fleet,
    room: int,
    settings: Settings,
    crypto: CryptoTimings,
    broker_pid: int,
    notes: RoomNotes,
    step: Step,
) -> tuple[float, list[int]]:
    """The closed loop's messages per second, then the open loop's latencies (us)."""
    seconds = settings.phase_s - settings.warmup_s
    step(room, "end to end, closed loop")
    cpu = _CpuWatch([broker_pid, *fleet.pids])
    closed = fleet.run_phase({"cmd": "closed"}, settings, window=settings.e2e_window, watch=cpu)
    e2e_rate = sum(c["opened"] for c in closed) / (room - 1) / seconds
    notes.problems += [msg for c in closed for msg in c["problems"]]
    if e2e_rate <= 0:
        raise BenchError(f"room of {room}: no message was opened end to end")
    notes.e2e_cpu_ms_per_msg = round(cpu.processes_s / (e2e_rate * seconds) * 1000, 2)
    notes.e2e_kernel_share = round(cpu.kernel_s / cpu.processes_s, 2) if cpu.processes_s else 0.0
    notes.crypto_cpu_ms_per_msg = round(crypto_seconds_per_message(crypto, room) * 1000, 2)
    notes.other_load_cores = round(max(0.0, cpu.machine_s - cpu.processes_s) / seconds, 2)

    step(room, "end to end, half load")
    notes.open_rate_msgs_per_s = e2e_rate / 2
    per_sender = notes.open_rate_msgs_per_s / room
    opened = fleet.run_phase(
        {"cmd": "open", "rate": per_sender}, settings, window=settings.e2e_window
    )
    latencies = sorted(us for c in opened for us in c["latencies_us"])
    notes.problems += [msg for c in opened for msg in c["problems"]]
    notes.latency_samples = len(latencies)
    due = _due_in_window(room, per_sender, settings)
    notes.unopened = max(0, due * (room - 1) - len(latencies))
    return e2e_rate, latencies


def _due_in_window(room: int, per_sender: float, settings: Settings) -> int:
    """How many messages the open-loop schedule puts inside the measuring window."""
    period = 1 / per_sender
    total = 0
    for i in range(room):
        first = period * i / room
        due = [first + k * period for k in range(int(settings.phase_s / period) + 1)]
        total += sum(1 for t in due if settings.warmup_s <= t < settings.phase_s)
    return total


def _percentile(values: list[int], pct: float) -> float:
    """Nearest rank: the smallest value with at least pct% of the values at or below."""
    if not values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(values)))
    return float(values[rank - 1])


class _Fleet:
    """The worker processes of one room, and the control socket that drives them."""

    def __init__(self, room: int, control: zmq.Socket[bytes], children: _Children) -> None:
        self.room = room
        self.control = control
        self.children = children
        self.procs: dict[bytes, subprocess.Popen[bytes]] = {}
        self.logs: dict[bytes, Path] = {}

    def spawn(self, index: int, control_endpoint: str, workdir: Path) -> None:
        ident = f"r{self.room}w{index}".encode()
        log = workdir / f"worker-{self.room}-{index}.log"
        args = ["zchat.bench.worker", control_endpoint, str(index), str(self.room), str(workdir)]
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
        watch: _CpuWatch | None = None,
    ) -> list[dict[str, Any]]:
        """Start a phase at the same instant everywhere; return every worker's counts."""
        start = time.monotonic_ns() + int(_LEAD_S * 1e9)
        timing: dict[str, Any] = {
            "start_ns": start,
            "measure_ns": start + int(settings.warmup_s * 1e9),
            "end_ns": start + int(settings.phase_s * 1e9),
            "window": window,
            "drain_s": _DRAIN_S,
            "max_messages": settings.max_messages,
        }
        self.send_all({**cmd, **timing})
        if watch is not None:  # the workers answer only after the window anyway
            watch.between(timing["measure_ns"], timing["end_ns"])
        replies = self.gather("the phase", timeout=_LEAD_S + settings.phase_s + _DRAIN_S + 20)
        return list(replies.values())

    def gather(self, what: str, timeout: float) -> dict[bytes, dict[str, Any]]:
        replies: dict[bytes, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(replies) < len(self.procs):
            if self.control.poll(100):
                ident, data = self.control.recv_multipart()
                if ident not in self.procs:
                    continue  # a straggler of an earlier room
                msg = json.loads(data)
                if "error" in msg:
                    raise BenchError(f"room of {self.room}: {msg['error']}")
                replies[ident] = msg
                continue
            for ident, proc in self.procs.items():
                if proc.poll() is not None and ident not in replies:
                    tail = _tail(self.logs[ident])
                    raise BenchError(
                        f"room of {self.room}: worker {ident.decode()} exited "
                        f"({proc.returncode}) while waiting for {what}: {tail}"
                    )
            if time.monotonic() > deadline:
                missing = len(self.procs) - len(replies)
                raise BenchError(
                    f"room of {self.room}: {missing} worker(s) gave no answer "
                    f"within {timeout:.0f} s while waiting for {what}"
                )
        return replies

    def quit(self) -> None:
        self.send_all({"cmd": "quit"})
        with contextlib.suppress(BenchError):
            self.gather("goodbyes", timeout=10)
        for proc in self.procs.values():
            self.children.stop(proc, grace=5.0)


class _CpuWatch:
    """CPU time of some processes, and of the whole machine, between two instants.

    Read from /proc (Linux; zero elsewhere) by the parent, which is idle during a
    phase and so wakes on time, unlike the busy processes it watches.
    """

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.processes_s = 0.0
        self.kernel_s = 0.0
        self.machine_s = 0.0

    def between(self, start_ns: int, end_ns: int) -> None:
        sleep_until(start_ns)
        (user, kernel), machine = self._processes(), self._machine()
        sleep_until(end_ns)
        user_end, kernel_end = self._processes()
        self.kernel_s = kernel_end - kernel
        self.processes_s = user_end - user + self.kernel_s
        self.machine_s = self._machine() - machine

    def _processes(self) -> tuple[float, float]:
        """(user, kernel) CPU seconds of the watched processes so far."""
        user = kernel = 0
        for pid in self.pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            user += int(fields[11])  # utime
            kernel += int(fields[12])  # stime
        tick = os.sysconf("SC_CLK_TCK")
        return user / tick, kernel / tick

    @staticmethod
    def _machine() -> float:
        """Busy CPU seconds of all cores since boot: everything but idle and iowait."""
        try:
            with open("/proc/stat") as f:
                ticks = [int(v) for v in f.readline().split()[1:]]
        except OSError:
            return 0.0
        busy = sum(ticks[:8]) - ticks[3] - ticks[4]
        return busy / os.sysconf("SC_CLK_TCK")


class _Children:
    """Every process the run started; all of them are ended when the run ends."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    def __enter__(self) -> _Children:
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


def _start_broker(children: _Children, workdir: Path) -> tuple[str, int]:
    port = _free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    log = workdir / "broker.log"
    proc = children.spawn(
        [
            "zchat",
            "broker",
            "--bind",
            endpoint,
            "--heartbeat-interval",
            "1",
            # Generous: a peer starved of CPU by 49 busy neighbours is not dead.
            "--heartbeat-timeout",
            "60",
        ],
        log,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the broker exited ({proc.returncode}): {_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return endpoint, proc.pid
        time.sleep(0.05)
    raise BenchError(f"the broker did not listen on {endpoint} within 20 s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _write_key(path: Path, identity: Identity) -> None:
    pem = identity.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _tail(log: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        text = log.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "no output"
    return "no output"

"""The benchmark run: a real broker, real peer processes, and the ceilings, in one go.

For each room size n the parent starts n worker processes (`bench.worker`) and drives
them through the phases below over a control socket, each phase starting at the same
instant in every worker and measured after a warm-up:

    bare      the workers fan out through a bare ROUTER (`bench.bare`): the ZeroMQ ceiling
    join      each worker joins the real broker with the peer client library
    replay    pre-sealed envelopes as fast as the broker acknowledges them: broker routing
    closed    real sealed messages, opened by every recipient: end-to-end maximum
    timed     with --time-crypto, the closed loop again with each primitive timed in
              the peers (`bench.crypto_in_place`): the cryptography as it runs there
    open      half that load on a fixed schedule: latency from due time to opened

Every child runs on 127.0.0.1, every wait has a deadline, and every child is ended
when the run ends, however it ends (`bench.processes`). The cryptography ceiling is
timed first, in this process (`bench.crypto`); what comes out is `bench.results`.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import zmq

from zchat.bench import crypto_in_place
from zchat.bench.board import Board, board_path
from zchat.bench.crypto import (
    crypto_ceiling,
    crypto_seconds_per_message,
    envelope_overhead,
    time_crypto,
    time_rotation,
)
from zchat.bench.errors import BenchError
from zchat.bench.fleet import Fleet
from zchat.bench.keys import key_path, write_key
from zchat.bench.machine import CpuWatch, cores, machine_info
from zchat.bench.messages import bench_text
from zchat.bench.processes import Children, free_port, start_broker
from zchat.bench.results import (
    QUICK,
    CryptoTimings,
    Results,
    RoomNotes,
    RoomResult,
    Settings,
    percentile,
)
from zchat.envelope import generate_identity

# What `zchat bench` takes from here; the settings and the error live in their own modules.
__all__ = ["QUICK", "BenchError", "Settings", "Step", "run"]


#: Told what starts next: `step(room, what)`, with room None for the set-up.
Step = Callable[[int | None, str], None]


def run(settings: Settings, step: Step) -> Results:
    """Measure every room size of `settings`; raises BenchError when it cannot."""
    step(None, "generating keys")
    identities = [generate_identity(2048) for _ in range(max(*settings.rooms, 2))]
    payload = bench_text(0).encode()
    step(None, "timing the cryptography")
    crypto = time_crypto(identities[0], payload, scale=settings.crypto_scale)
    step(None, "timing seal and open")
    overhead = envelope_overhead(
        identities[0], identities[1], payload, crypto, scale=settings.crypto_scale
    )
    step(None, "timing a session-key rotation")
    rotation = time_rotation(identities[0], scale=settings.crypto_scale)
    results = Results(settings, machine_info(), crypto, overhead, rotation)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="zchat-bench-")))
        for i, identity in enumerate(identities):
            write_key(key_path(workdir, i), identity)
        children = stack.enter_context(Children())
        ctx = zmq.Context()
        stack.callback(ctx.term)
        control = ctx.socket(zmq.ROUTER)
        stack.callback(control.close, 0)
        control.bind("tcp://127.0.0.1:*")
        control_endpoint = control.getsockopt_string(zmq.LAST_ENDPOINT)
        step(None, "starting the broker")
        broker, broker_pid = start_broker(children, workdir)
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
    children: Children,
    control: zmq.Socket[bytes],
    control_endpoint: str,
    broker: str,
    broker_pid: int,
    step: Step,
) -> tuple[RoomResult, RoomNotes]:
    notes = RoomNotes(room)
    Board.create(board_path(workdir, room), room)
    step(room, f"starting {room} peer processes")
    started = time.monotonic()
    fleet = Fleet(room, control, children)
    for i in range(room):
        fleet.spawn(i, control_endpoint, workdir)
    fleet.gather("ready", timeout=60 + room)
    notes.startup_s = time.monotonic() - started

    step(room, "bare ZeroMQ fan-out")
    bare_endpoint = f"tcp://127.0.0.1:{free_port()}"
    router = children.spawn(
        ["zchat.bench.bare", bare_endpoint, str(room)], workdir / f"router{room}.log"
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
            "p50": round(percentile(latencies, 50) / 1000, 2),
            "p99": round(percentile(latencies, 99) / 1000, 2),
            "max": round((latencies[-1] if latencies else 0) / 1000, 2),
        },
        wire_bytes_per_delivery=round(wire, 1),
        broker_vs_zmq=round(broker_rate / zmq_rate, 3) if zmq_rate else 0.0,
        e2e_vs_crypto=round(e2e_rate / ceiling, 3),
    )
    return result, notes


def _end_to_end(
    fleet: Fleet,
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
    cpu = CpuWatch([broker_pid, *fleet.pids])
    closed = fleet.run_phase({"cmd": "closed"}, settings, window=settings.e2e_window, watch=cpu)
    e2e_rate = sum(c["opened"] for c in closed) / (room - 1) / seconds
    notes.problems += [msg for c in closed for msg in c["problems"]]
    if e2e_rate <= 0:
        raise BenchError(f"room of {room}: no message was opened end to end")
    notes.e2e_cpu_ms_per_msg = round(cpu.processes_s / (e2e_rate * seconds) * 1000, 2)
    notes.e2e_kernel_share = round(cpu.kernel_s / cpu.processes_s, 2) if cpu.processes_s else 0.0
    notes.crypto_cpu_ms_per_msg = round(crypto_seconds_per_message(crypto, room) * 1000, 2)
    notes.other_load_cores = round(max(0.0, cpu.machine_s - cpu.processes_s) / seconds, 2)

    if settings.time_crypto:
        _time_crypto_in_place(fleet, room, settings, notes, step)

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


def _time_crypto_in_place(
    fleet: Fleet, room: int, settings: Settings, notes: RoomNotes, step: Step
) -> None:
    """The closed loop again, each primitive timed inside the peers: what the
    cryptography costs there, against the ceiling's hot loops."""
    step(room, "end to end, primitives timed")
    timed = fleet.run_phase({"cmd": "closed_timed"}, settings, window=settings.e2e_window)
    notes.problems += [msg for c in timed for msg in c["problems"]]
    in_place = crypto_in_place.in_place(c["crypto"] for c in timed)
    if in_place is None:
        notes.problems.append("--time-crypto: a primitive was never called in the timed loop")
    else:
        per_msg = crypto_seconds_per_message(in_place, room)
        notes.crypto_in_place_ms_per_msg = round(per_msg * 1000, 2)
        notes.crypto_in_place_us = in_place.as_us()


def _due_in_window(room: int, per_sender: float, settings: Settings) -> int:
    """How many messages the open-loop schedule puts inside the measuring window."""
    period = 1 / per_sender
    total = 0
    for i in range(room):
        first = period * i / room
        due = [first + k * period for k in range(int(settings.phase_s / period) + 1)]
        total += sum(1 for t in due if settings.warmup_s <= t < settings.phase_s)
    return total

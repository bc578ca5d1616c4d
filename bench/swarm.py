"""``zchat bench --swarm N``: real brokers against many light sessions, issue 21's four loads.

The parent starts a few worker processes (`bench.swarm_worker`), each holding a few
hundred light sessions (`bench.lightwire`), and real `zchat broker` processes, then runs:

    storm   N sessions say HELLO at the same instant to an empty broker: time until all
            are welcomed and know each other, bytes, evictions
    idle    the same N, idle: the broker's CPU and RSS
    busy    room messages on a fixed schedule, from every member in turn to all others:
            deliveries per second, broker CPU, p99 latency, loss. In the big room at
            `members_rate`, in a room of `busy_members` at `busy_rate`, and in `rooms`
            rooms of `room_size` at `room_rate` each

Where rooms go is `broker_groups`: a broker holds every room its peers name (protocol
3), up to ROOMS_PER_BROKER of them here, so the many-rooms load runs on one broker.

Broker CPU is read from /proc, by this process, which is idle while it watches.
Identity keys come from the key cache (`bench.keycache`).
"""

from __future__ import annotations

import contextlib
import math
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import zmq

from zchat.bench.errors import BenchError
from zchat.bench.fleet import Fleet
from zchat.bench.keycache import ensure_keys, key_dir
from zchat.bench.machine import CpuWatch, cpu_seconds, machine_info, rss_bytes
from zchat.bench.processes import Children, start_brokers
from zchat.bench.results import percentile
from zchat.bench.swarm_results import (
    BusyResult,
    IdleResult,
    StormResult,
    SwarmResults,
    SwarmSettings,
)

#: Rooms one broker carries: the issue's hundred rooms on one broker. Each broker the
#: swarm starts is told it as its `--max-rooms`.
ROOMS_PER_BROKER: Final = 100
#: Sessions per worker process: enough that a few processes carry a thousand, few
#: enough that one process's poll loop keeps its heartbeats on time.
SEATS_PER_WORKER: Final = 250
MAX_WORKERS: Final = 4
#: How long before a phase's start the parent announces it.
LEAD_S: Final = 0.5
#: How long before a join's start the parent announces it.
JOIN_LEAD_S: Final = 2.0
#: After a busy phase, how long workers may wait for what is still in flight.
DRAIN_S: Final = 10.0
#: The idle room is left this long after the storm settles before it is watched.
SETTLE_S: Final = 1.0
_NS: Final = 1_000_000_000

#: Told what starts next.
SwarmStep = Callable[[str], None]


def broker_groups(rooms: Sequence[str]) -> list[list[str]]:
    """The rooms each broker carries, ROOMS_PER_BROKER at most to one."""
    return [list(rooms[i : i + ROOMS_PER_BROKER]) for i in range(0, len(rooms), ROOMS_PER_BROKER)]


def run_swarm(settings: SwarmSettings, step: SwarmStep) -> SwarmResults:
    """Run every workload of `settings`; raises BenchError when it cannot."""
    _raise_file_limit()
    keys = key_dir()
    step(f"identity keys for {settings.seats} members (cached in {keys})")
    made = ensure_keys(keys, settings.seats)
    results = SwarmResults(settings, machine_info(), {"dir": str(keys), "made": made})
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="zchat-swarm-")))
        children = stack.enter_context(Children())
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        stack.callback(ctx.term)
        control = ctx.socket(zmq.ROUTER)
        stack.callback(control.close, 0)
        control.bind("tcp://127.0.0.1:*")
        endpoint = control.getsockopt_string(zmq.LAST_ENDPOINT)
        step("starting the swarm's worker processes")
        swarm = _start_workers(settings, control, endpoint, children, workdir, keys)
        run = _Run(settings, swarm, children, workdir, results)
        run.big_room(step)
        if settings.members > settings.busy_members:
            run.busy_room(settings.busy_members, settings.busy_rate, step)
        run.many_rooms(step)
        swarm.send_all({"cmd": "quit"})
        with contextlib.suppress(BenchError):
            swarm.gather("goodbyes", timeout=10)
    return results


def _start_workers(
    settings: SwarmSettings,
    control: zmq.Socket[bytes],
    endpoint: str,
    children: Children,
    workdir: Path,
    keys: Path,
) -> Fleet:
    count = min(MAX_WORKERS, max(1, math.ceil(settings.seats / SEATS_PER_WORKER)))
    per = math.ceil(settings.seats / count)
    swarm = Fleet(0, control, children, name="swarm")
    for w in range(count):
        first = w * per
        seats = min(per, settings.seats - first)
        args = ["zchat.bench.swarm_worker", endpoint, str(w), str(first), str(seats), str(keys)]
        swarm.spawn_module(f"w{w}".encode(), args, workdir / f"swarm-worker-{w}.log")
    swarm.gather("workers to load their keys", timeout=60 + settings.seats * 0.05)
    return swarm


class _Run:
    """The workloads, in turn, on one set of workers; each starts brokers of its own."""

    def __init__(
        self,
        settings: SwarmSettings,
        swarm: Fleet,
        children: Children,
        workdir: Path,
        results: SwarmResults,
    ) -> None:
        self.settings = settings
        self.swarm = swarm
        self.children = children
        self.workdir = workdir
        self.results = results
        self.endpoints: dict[str, str] = {}

    def big_room(self, step: SwarmStep) -> None:
        s = self.settings
        step(f"join storm: {s.members} members at once")
        brokers = self._brokers(["big"])
        pids = [proc.pid for proc in brokers.values()]
        cpu_before = sum(cpu_seconds(pids))
        swarm_before = sum(cpu_seconds(self.swarm.pids))
        seats = {"big": list(range(s.members))}
        started, replies = self._join(seats)
        storm_cpu = sum(cpu_seconds(pids)) - cpu_before
        swarm_cpu = sum(cpu_seconds(self.swarm.pids)) - swarm_before
        evicted = self._evicted()
        welcome = max(r["last_welcome_ns"] for r in replies)
        settled = max(r["last_settled_ns"] for r in replies)
        rx = sum(r["rx_bytes"] for r in replies)
        refused: dict[str, int] = {}
        for r in replies:
            for code, n in r["refused"].items():
                refused[code] = refused.get(code, 0) + n
        self.results.storm = StormResult(
            members=s.members,
            welcomed=sum(r["welcomed"] for r in replies),
            welcome_s=_since(started, welcome),
            settled=sum(r["settled"] for r in replies),
            settled_s=_since(started, settled),
            bytes=rx,
            bytes_per_member=round(rx / s.members, 1),
            evicted=len(evicted),
            refused=refused,
            rehellos=sum(r["rehellos"] for r in replies),
            broker_cpu_s=round(storm_cpu, 2),
            swarm_cpu_s=round(swarm_cpu, 2),
        )

        # Real peers come back after an eviction or a refusal: so do the light sessions,
        # before the room is measured idle and busy.
        started, replies = self._join(seats, rejoin=True)
        back = sum(r["connected"] for r in replies)
        if back:
            self.results.notes.append(
                f"after the storm, {back} members joined again: "
                f"{sum(r['welcomed'] for r in replies)} welcomed, the last after "
                f"{_since(started, max(r['last_welcome_ns'] for r in replies)):.1f} s"
            )
        step(f"idle room: {s.members} members for {s.idle_s:g} s")
        time.sleep(SETTLE_S)
        watch = CpuWatch(pids)
        start = time.monotonic_ns()
        watch.between(start, start + int(s.idle_s * _NS))
        rss = sum(rss_bytes(pid) for pid in pids)
        self.results.idle = IdleResult(
            members=self._present(),
            seconds=s.idle_s,
            broker_cpu_pct=round(100 * watch.processes_s / s.idle_s, 2),
            broker_rss_mb=round(rss / 2**20, 1),
            evicted=len(self._evicted() - evicted),
        )
        if s.members > s.busy_members:
            step(f"busy room: {s.members} members, {s.members_rate:g} messages/s")
            self._busy(f"room of {s.members}", brokers, seats, s.members_rate)
        else:
            step(f"busy room: {s.members} members, {s.busy_rate:g} messages/s")
            self._busy(f"room of {s.members}", brokers, seats, s.busy_rate)
        self._leave(brokers)

    def busy_room(self, members: int, rate: float, step: SwarmStep) -> None:
        step(f"busy room: {members} members, {rate:g} messages/s")
        brokers = self._brokers(["busy"])
        seats = {"busy": list(range(members))}
        self._join(seats)
        self._busy(f"room of {members}", brokers, seats, rate)
        self._leave(brokers)

    def many_rooms(self, step: SwarmStep) -> None:
        s = self.settings
        names = [f"room{r:03d}" for r in range(s.rooms)]
        step(f"many rooms: {s.rooms} rooms of {s.room_size}, {s.room_rate:g} messages/s each")
        brokers = self._brokers(names)
        seats = {
            name: list(range(r * s.room_size, (r + 1) * s.room_size))
            for r, name in enumerate(names)
        }
        self._join(seats)
        self._busy(f"{s.rooms} rooms of {s.room_size}", brokers, seats, s.room_rate)
        self._leave(brokers)

    # --- steps -----------------------------------------------------------------------

    def _brokers(self, rooms: list[str]) -> dict[str, subprocess.Popen[bytes]]:
        """Brokers for `rooms`, by room (several rooms share one when a broker holds many)."""
        groups = broker_groups(rooms)
        options = self.settings.broker_options
        # The peers name the rooms; a broker holds as many as it is given.
        per_broker = [[*options, "--max-rooms", str(ROOMS_PER_BROKER)] for _ in groups]
        started = start_brokers(self.children, self.workdir, per_broker)
        placed = list(zip(groups, started, strict=True))
        self.endpoints = {room: ep for group, (ep, _) in placed for room in group}
        return {room: proc for group, (_, proc) in placed for room in group}

    def _join(
        self, seats: dict[str, list[int]], *, rejoin: bool = False
    ) -> tuple[int, list[dict[str, Any]]]:
        # Longer ahead than a phase: workers certify their seats' session keys for the
        # room first (a signature each).
        start = time.monotonic_ns() + int(JOIN_LEAD_S * _NS)
        by_seat = {
            seat: [self.endpoints[room], room, len(members)]
            for room, members in seats.items()
            for seat in members
        }
        cmd = {
            "cmd": "join",
            "seats": by_seat,
            "rooms": seats,
            "start_ns": start,
            "timeout_s": self.settings.join_timeout_s,
            "rejoin": rejoin,
        }
        self.swarm.send_all(cmd)
        timeout = JOIN_LEAD_S + self.settings.join_timeout_s + 30
        replies = list(self.swarm.gather("the join", timeout=timeout).values())
        return start, replies

    def _busy(
        self,
        name: str,
        brokers: dict[str, subprocess.Popen[bytes]],
        seats: dict[str, list[int]],
        rate: float,
    ) -> None:
        s = self.settings
        evicted = self._evicted()
        start = time.monotonic_ns() + int(LEAD_S * _NS)
        measure = start + int(s.warmup_s * _NS)
        end = start + int(s.phase_s * _NS)
        rooms = {
            room: {"seats": members, "rate": rate, "offset": i / len(seats)}
            for i, (room, members) in enumerate(seats.items())
        }
        cmd = {
            "cmd": "busy",
            "rooms": rooms,
            "start_ns": start,
            "measure_ns": measure,
            "end_ns": end,
            "drain_s": DRAIN_S,
        }
        self.swarm.send_all(cmd)
        pids = sorted({proc.pid for proc in brokers.values()})
        watch = CpuWatch(pids)
        watch.between(measure, end)
        timeout = LEAD_S + s.phase_s + DRAIN_S + 30
        replies = list(self.swarm.gather(f"{name} to drain", timeout=timeout).values())
        seconds = (end - measure) / _NS
        latencies = sorted(us for r in replies for us in r["latencies_us"])
        received = sum(r["received"] for r in replies)
        expected = sum(r["expected"] for r in replies)
        size = len(next(iter(seats.values())))
        self.results.busy.append(
            BusyResult(
                name=name,
                rooms=len(seats),
                room_size=size,
                rate=rate,
                brokers=len(pids),
                sent=sum(r["sent"] for r in replies),
                expected=expected,
                received=received,
                lost=max(0, expected - received),
                deliveries_per_s=round(sum(r["in_window"] for r in replies) / seconds, 1),
                broker_cpu_pct=round(100 * watch.processes_s / seconds, 2),
                latency_ms={
                    "p50": round(percentile(latencies, 50) / 1000, 2),
                    "p99": round(percentile(latencies, 99) / 1000, 2),
                    "max": round((latencies[-1] if latencies else 0) / 1000, 2),
                },
                wire_bytes_per_delivery=round(
                    sum(r["wire_bytes"] for r in replies) / received if received else 0.0, 1
                ),
                evicted=len(self._evicted() - evicted),
            )
        )

    def _leave(self, brokers: dict[str, subprocess.Popen[bytes]]) -> None:
        self.swarm.send_all({"cmd": "leave"})
        self.swarm.gather("goodbyes", timeout=30)
        for proc in {id(p): p for p in brokers.values()}.values():
            self.children.stop(proc, grace=0.0)

    def _evicted(self) -> set[str]:
        return {nick for r in self._stats() for nick in r["evicted"]}

    def _present(self) -> int:
        """Sessions in a room now, by their own account."""
        return sum(r["present"] for r in self._stats())

    def _stats(self) -> list[dict[str, Any]]:
        self.swarm.send_all({"cmd": "stats"})
        return list(self.swarm.gather("counters", timeout=30).values())


def _since(start_ns: int, end_ns: int) -> float:
    return round(max(0, end_ns - start_ns) / _NS, 2) if end_ns else 0.0


def _raise_file_limit() -> None:
    """Every session is a socket in a worker and in its broker: lift the soft limit on
    open files to the hard one, for this process and the children it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

"""What a swarm run is asked to do, and what it finds: plain data, no measuring.

`SwarmSettings` go in; `SwarmResults` come out: the join storm, the idle room, and one
`BusyResult` per busy workload (a large room, the largest room, many rooms). The four
workloads are issue 21's; `bench.swarm_report` shows them against its targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class SwarmSettings:
    #: The big room: the join storm, the idle room and a busy room at `members_rate`.
    members: int = 1000
    members_rate: float = 5.0
    #: A busy room of this many at `busy_rate` room messages per second.
    busy_members: int = 256
    busy_rate: float = 20.0
    #: Many rooms at once, each at `room_rate` messages per second.
    rooms: int = 100
    room_size: int = 10
    room_rate: float = 1.0
    #: How long the idle room is watched, and each busy workload runs (warm-up included).
    idle_s: float = 10.0
    phase_s: float = 10.0
    warmup_s: float = 1.0
    #: A join that has not settled by then is reported as it stands.
    join_timeout_s: float = 60.0
    #: Extra `zchat broker` options (e.g. timers); empty: the broker's own defaults.
    broker_options: tuple[str, ...] = ()

    @property
    def seats(self) -> int:
        """Sessions needed at once in the largest workload: one identity key each."""
        busy = self.busy_members if self.members > self.busy_members else 0
        return max(self.members, busy, self.rooms * self.room_size)


QUICK_SWARM = SwarmSettings(
    members=64,
    busy_members=32,
    rooms=5,
    room_size=6,
    idle_s=2.0,
    phase_s=2.5,
    warmup_s=0.5,
    join_timeout_s=20.0,
)


@dataclass(frozen=True, slots=True)
class StormResult:
    """Every member says HELLO at the same instant to a broker with nobody in it."""

    members: int
    welcomed: int
    #: From the instant of the HELLOs to the last WELCOME.
    welcome_s: float
    #: ... to the last member that knew every other (snapshot and joins).
    settled: int
    settled_s: float
    #: Everything the broker sent the swarm, frames only, until every member settled.
    bytes: int
    bytes_per_member: float
    evicted: int
    refused: dict[str, int]
    #: Handshakes the broker forgot (ERROR HELLO_FIRST to a PROOF), said again.
    rehellos: int
    broker_cpu_s: float
    #: The swarm's own worker processes: when they are the busier, the storm's time
    #: is theirs (a thousand sessions reading a gigabyte in a few processes).
    swarm_cpu_s: float


@dataclass(frozen=True, slots=True)
class IdleResult:
    members: int
    seconds: float
    #: The broker's CPU time over the idle window, in percent of one core.
    broker_cpu_pct: float
    broker_rss_mb: float
    evicted: int


@dataclass(frozen=True, slots=True)
class BusyResult:
    """Room messages from every member in turn, on a fixed schedule, to all the others."""

    name: str
    rooms: int
    room_size: int
    #: Room messages per second, in each room.
    rate: float
    brokers: int
    sent: int
    expected: int  # deliveries the messages sent should make
    received: int
    lost: int
    deliveries_per_s: float
    broker_cpu_pct: float
    latency_ms: dict[str, float]
    wire_bytes_per_delivery: float
    evicted: int


@dataclass
class SwarmResults:
    settings: SwarmSettings
    machine: dict[str, Any]
    #: Where the identity keys are cached, and how many this run had to make.
    keys: dict[str, Any]
    storm: StormResult | None = None
    idle: IdleResult | None = None
    busy: list[BusyResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

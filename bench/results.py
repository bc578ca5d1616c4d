"""What a run is asked to do, and what it finds: plain data, no measuring.

`Settings` go in; `Results` come out, made of the crypto timings, the envelope
overhead, and per room size a `RoomResult` (the figures compared across runs, the
JSON's "rooms") and `RoomNotes` (what else was seen). `Counts` and `Opened` are what
one worker reports after a phase. `bench.report` shows and writes `Results`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


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
    #: One more closed loop, each primitive timed inside the peers (`--time-crypto`).
    time_crypto: bool = False


QUICK = Settings(rooms=(2, 5), phase_s=1.0, warmup_s=0.25, crypto_scale=0.25)


@dataclass(frozen=True, slots=True)
class CryptoTimings:
    """Seconds per operation, each the fastest of several timed batches."""

    sign: float
    verify: float
    wrap: float
    unwrap: float
    encrypt: float
    decrypt: float

    def as_us(self) -> dict[str, float]:
        return {name: round(getattr(self, name) * 1e6, 2) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class EnvelopeOverhead:
    """`seal` and `open_delivery` against the primitives they are made of."""

    recipients: int
    seal_s: float
    seal_crypto_s: float
    open_s: float
    open_crypto_s: float

    def as_dict(self) -> dict[str, float]:
        return {
            "recipients": self.recipients,
            "seal_us": round(self.seal_s * 1e6, 1),
            "seal_crypto_us": round(self.seal_crypto_s * 1e6, 1),
            "seal_overhead_us": round((self.seal_s - self.seal_crypto_s) * 1e6, 1),
            "open_us": round(self.open_s * 1e6, 1),
            "open_crypto_us": round(self.open_crypto_s * 1e6, 1),
            "open_overhead_us": round((self.open_s - self.open_crypto_s) * 1e6, 1),
        }


@dataclass(frozen=True, slots=True)
class RotationCost:
    """One session-key rotation (forward secrecy): at every connection, and then once
    per rotation period (an hour by default); never per message."""

    #: Making the RSA-2048 key pair, which the client does off its event loop. The mean
    #: of several: the time to find primes varies from key to key.
    keygen_s: float
    #: The identity key signs the certificate.
    certify_s: float
    #: Checking it: the broker once, and every member once.
    check_s: float

    def as_dict(self) -> dict[str, float]:
        return {
            "keygen_ms": round(self.keygen_s * 1e3, 2),
            "certify_us": round(self.certify_s * 1e6, 1),
            "check_us": round(self.check_s * 1e6, 1),
        }


@dataclass(frozen=True, slots=True)
class Counts:
    """What one peer saw in a throughput phase (bare fan-out, broker replay)."""

    sent: int
    acked: int
    deliveries: int  # received inside the measuring window
    received: int  # received in total
    wire_bytes: int  # frame bytes of everything received


@dataclass
class Opened:
    """What one recipient saw in an end-to-end phase."""

    sent: int
    opened: int  # messages opened inside the measuring window
    latencies_us: list[int]  # open time minus due time, for messages due in the window
    problems: list[str]


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
    #: With --time-crypto: the same cryptography as it ran inside the peers, per
    #: message and per primitive (us), from a closed loop of its own.
    crypto_in_place_ms_per_msg: float = 0.0
    crypto_in_place_us: dict[str, float] = field(default_factory=dict)
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
    rotation: RotationCost
    rooms: list[RoomResult] = field(default_factory=list)
    notes: list[RoomNotes] = field(default_factory=list)


def percentile(values: list[int], pct: float) -> float:
    """Nearest rank of sorted `values`: the smallest with at least pct% at or below it."""
    if not values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(values)))
    return float(values[rank - 1])

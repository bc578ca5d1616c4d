"""The broker's settings: its timers, its memory budgets and the room it serves.

A value, read by the core (`broker.core`) and its parts (`broker.liveness`), and set by
whoever makes it (the shell's `zchat broker`, the benchmark, tests); it imports nothing
of the broker's.
"""

from __future__ import annotations

from dataclasses import dataclass

from zchat.envelope import DEFAULT_ROOM, is_valid_room


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    #: docs/PROTOCOL.md §3.8 says why 2 s and 10 s: an idle member costs the broker
    #: two messages per interval, and a timeout of five intervals rides out a stall.
    heartbeat_interval: float = 2.0
    heartbeat_timeout: float = 10.0
    #: A handshake not finished within this long is forgotten.
    handshake_timeout: float = 10.0
    #: A peer whose held messages do not move for this long is evicted.
    backlog_timeout: float = 10.0
    #: Bytes held for one connection beyond what its socket queue takes, before it is
    #: evicted as a reader that stopped. 8 MiB holds ~6,500 typical deliveries (1,280 B
    #: as counted): an honest burst fits, as it did in libzmq's old queue of 10,000
    #: messages, where the same count of 22 KB deliveries took 220 MB.
    max_held_bytes: int = 8 * 2**20
    #: Bytes held for all connections together: past this, the connection holding the
    #: most is evicted, so that many slow readers cannot add up to unbounded memory.
    max_held_total: int = 64 * 2**20
    #: The one room this broker serves: a HELLO for another is refused, and so is a
    #: certificate made for another (its room id, docs/SECURITY.md).
    room: str = DEFAULT_ROOM

    def __post_init__(self) -> None:
        if not is_valid_room(self.room):
            raise ValueError(f"invalid room name {self.room!r}: 1-64 printable ASCII characters")

"""The broker's settings: its timers, its memory budgets and how many rooms it holds.

A value, read by the core (`broker.core`) and its parts (`broker.liveness`), and set by
whoever makes it (the shell's `zchat broker`, the benchmark, tests); it imports nothing
of the broker's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Rooms one broker holds unless told otherwise (`zchat broker --max-rooms`). A room
#: costs the broker little beyond its members (under a kilobyte of tables), and members
#: and held bytes have bounds of their own, so this is no memory bound: it is how many
#: separate groups one process serves before a HELLO for another is refused with a
#: clear code instead of slowing every room down. The same scale figure as a room's
#: members (`MAX_ROOM`), ten times the hundred rooms `zchat bench --swarm` runs on one
#: broker; past it, rooms go to more brokers (docs/DEPLOY.md).
DEFAULT_MAX_ROOMS: Final = 1000


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    #: docs/PROTOCOL.md §3.8 says why 2.5 s and 10 s: an idle member costs the broker
    #: two messages per interval, and a beat may come 7.5 s late before it is given up.
    heartbeat_interval: float = 2.5
    heartbeat_timeout: float = 10.0
    #: A handshake not finished within this long is forgotten.
    handshake_timeout: float = 10.0
    #: A peer whose held messages do not move for this long is evicted.
    backlog_timeout: float = 10.0
    #: Bytes held for one connection beyond what its socket queue takes, before it is
    #: evicted as a reader that stopped. 8 MiB holds ~6,500 typical deliveries (1,280 B
    #: as counted): an honest burst fits, as it did in libzmq's old queue of 10,000
    #: messages, where the same count of 22 KB deliveries took 220 MB. It also holds the
    #: most a newcomer to a full room is told: a SNAPSHOT of 999 members at the largest
    #: sizes the parser allows (2.85 MB as counted) and, in a storm, JOINs of as many
    #: again (3.1 MB): 6 MB together (tests/test_room_of_a_thousand.py).
    max_held_bytes: int = 8 * 2**20
    #: Bytes held for all connections together: past this, the connection holding the
    #: most is evicted, so that many slow readers cannot add up to unbounded memory.
    #: Over twenty of the largest SNAPSHOTs of a full room (2.85 MB each) at once.
    max_held_total: int = 64 * 2**20
    #: The most rooms at once: a HELLO for a new one past it is refused TOO_MANY_ROOMS.
    max_rooms: int = DEFAULT_MAX_ROOMS

    def __post_init__(self) -> None:
        if self.max_rooms < 1:
            raise ValueError(f"max_rooms must be at least 1, not {self.max_rooms}")

"""What the broker's core hands out: the messages to send, and what it counted.

Values only, shared by the core (`broker.core`), its socket loop (`broker.server`) and
its metrics (`broker.metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from zchat.envelope import Header


class Outgoing(NamedTuple):
    """A message to send to one connection. A named tuple, not a frozen dataclass: a join
    storm of 1,000 makes half a million of them, and a tuple is made in half the time."""

    conn: bytes
    frames: list[bytes]
    #: For a DELIVER, the header of the envelope it carries: all a correction needs if
    #: the delivery is lost, kept so that the broker never parses its own output.
    header: Header | None = None


@dataclass
class Counters:
    peers: int = 0
    handshakes: int = 0
    refused: int = 0
    messages: int = 0
    deliveries: int = 0
    absent: int = 0
    dropped: int = 0  # messages dropped: held for a reader that stopped, or unroutable
    errors: int = 0  # malformed or out-of-order input
    evicted: int = 0
    foreign_key: int = 0  # messages dropped: another CURVE key than the session's
    held: int = 0  # messages the socket would not take at once, held by the broker
    #: Refused handshakes by REFUSE code (its name): `refused` split, for the metrics.
    refused_by_code: dict[str, int] = field(default_factory=dict)

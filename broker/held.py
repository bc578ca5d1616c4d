"""Messages the broker holds for connections whose socket queue is full: in order, in bytes.

libzmq queues a bounded number of *messages* per connection (`ROUTER_SEND_HWM`) and
cannot say how many bytes that is: 10,000 deliveries of 22 KB tokens are 220 MB. So the
broker's ROUTER queues only a few hundred messages per connection, and what does not fit
waits here, where every byte is counted, per connection and in total. The core
(`broker.core`) decides what happens when a budget is exceeded; this module only keeps
the books. No sockets, no clock of its own: `now` comes in as an argument.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

#: What a held message costs besides the bytes of its frames: a bytes object's header
#: and a list slot for each frame, and the message's own objects. Rounded up: the
#: budget must not undercount small messages (a HEARTBEAT is 7 bytes of frames).
FRAME_OVERHEAD: Final = 48
MESSAGE_OVERHEAD: Final = 160

T = TypeVar("T")


def held_size(frames: Sequence[bytes]) -> int:
    """What holding a message of these frames costs, in bytes."""
    return sum(map(len, frames)) + FRAME_OVERHEAD * len(frames) + MESSAGE_OVERHEAD


@dataclass(eq=False)
class _Queue(Generic[T]):
    #: When the queue began, or last moved: how long its connection has not read.
    since: float
    items: deque[tuple[T, int]] = field(default_factory=deque)
    nbytes: int = 0


class HeldQueues(Generic[T]):
    """One queue per connection, oldest message first, with its bytes and the total.

    Truthy while anything is held, so the socket loop's check costs nothing when
    every reader keeps up.
    """

    def __init__(self) -> None:
        #: Read-only outside this class: the socket loop checks `conn in by_conn` for
        #: every message it sends, and a dict's check costs no Python call.
        self.by_conn: dict[bytes, _Queue[T]] = {}
        self.total = 0
        #: Bytes dropped so far, ever: the loop gives memory back when this grows.
        self.dropped_bytes = 0

    def __bool__(self) -> bool:
        return bool(self.by_conn)

    def __contains__(self, conn: object) -> bool:
        return conn in self.by_conn

    def __iter__(self) -> Iterator[bytes]:
        """The connections with held messages (a copy: the caller may change them)."""
        return iter(list(self.by_conn))

    def bytes_for(self, conn: bytes) -> int:
        queue = self.by_conn.get(conn)
        return 0 if queue is None else queue.nbytes

    def push(self, conn: bytes, item: T, size: int, now: float) -> int:
        """Hold `item` behind what `conn` already has; return `conn`'s held bytes."""
        queue = self.by_conn.get(conn)
        if queue is None:
            queue = self.by_conn[conn] = _Queue(now)
        queue.items.append((item, size))
        queue.nbytes += size
        self.total += size
        return queue.nbytes

    def head(self, conn: bytes) -> T | None:
        """The oldest message held for `conn`, if any; it stays held until `pop`."""
        queue = self.by_conn.get(conn)
        return None if queue is None else queue.items[0][0]

    def pop(self, conn: bytes, now: float) -> None:
        """The oldest message left for the socket: `conn` is reading."""
        queue = self.by_conn[conn]
        _, size = queue.items.popleft()
        queue.nbytes -= size
        self.total -= size
        queue.since = now
        if not queue.items:
            del self.by_conn[conn]

    def drop(self, conn: bytes) -> list[T]:
        """Forget everything held for `conn`; return it, oldest first."""
        queue = self.by_conn.pop(conn, None)
        if queue is None:
            return []
        self.total -= queue.nbytes
        self.dropped_bytes += queue.nbytes
        return [item for item, _ in queue.items]

    def largest(self) -> bytes | None:
        """The connection holding the most bytes: the one furthest behind."""
        if not self.by_conn:
            return None
        return max(self.by_conn, key=lambda conn: self.by_conn[conn].nbytes)

    def stuck(self, now: float, timeout: float) -> list[bytes]:
        """Connections whose queue has not moved for longer than `timeout`."""
        return [conn for conn, q in self.by_conn.items() if now - q.since > timeout]

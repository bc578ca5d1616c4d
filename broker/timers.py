"""The broker's deadlines: a heap, so that a wake-up costs what is due, not one per member.

Each member has a few deadlines (silent too long; link quiet long enough for a
heartbeat; handshake unfinished). The old loop looked at every session on every
wake-up, so an idle room of 1,000 cost 1,000 checks each time a heartbeat arrived.
Here a deadline is one heap entry; `due(now)` pops only the entries whose time has
come, and the owner decides, from its own state, whether each still applies.

Deadlines are *lazy*: a member's last message does not move its silence deadline
(that would be a heap operation per message). When a deadline comes due the owner
looks at the member's real last-seen time and either acts or sets the deadline again
from there. So a busy member costs one heap entry per timeout, an idle one the same,
and nothing is ever scanned. `examined` counts every entry popped, for the test that
an idle wake-up does no work that grows with the room.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Deadlines(Generic[K]):
    """At most one deadline per key; `set` replaces it, `cancel` forgets it.

    A replaced or cancelled deadline stays in the heap until its time, and is skipped
    then: cheaper than finding it, and it costs one pop, once.
    """

    def __init__(self, granularity: float = 0.0) -> None:
        #: Deadlines are rounded up to a multiple of this (0: exact). A thousand members'
        #: heartbeats then fall due at a few instants, each one wake-up of the loop,
        #: instead of a thousand wake-ups spread over the interval.
        self.granularity = granularity
        self._heap: list[tuple[float, int, K]] = []
        self._when: dict[K, float] = {}
        #: Ties in time keep insertion order, and keys are never compared.
        self._order = itertools.count()
        #: Heap entries popped so far, live or stale: the work `due` has done.
        self.examined = 0

    def __len__(self) -> int:
        return len(self._when)

    def __contains__(self, key: object) -> bool:
        return key in self._when

    def set(self, key: K, when: float) -> None:
        grid = self.granularity
        if grid:
            # A hair below the multiple counts as on it: 0.1 / 0.025 is 4.000000000000001.
            when = math.ceil(when / grid - 1e-9) * grid
        self._when[key] = when
        heapq.heappush(self._heap, (when, next(self._order), key))

    def cancel(self, key: K) -> None:
        self._when.pop(key, None)

    def due(self, now: float) -> list[K]:
        """The keys whose deadline is at or before `now`, earliest first; they are cleared."""
        heap, when = self._heap, self._when
        fired: list[K] = []
        while heap and heap[0][0] <= now:
            at, _, key = heapq.heappop(heap)
            self.examined += 1
            if when.get(key) == at:
                del when[key]
                fired.append(key)
        return fired

    def next_at(self) -> float | None:
        """When the earliest live deadline falls (stale entries on top are dropped)."""
        heap, when = self._heap, self._when
        while heap and when.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

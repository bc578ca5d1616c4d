"""Who is still there: the broker's rules for silence, heartbeats and slow handshakes.

A part of the broker's core, composed, not inherited: it knows connections and times,
never sessions. The core tells it what happened (a handshake began, a member was listed,
something was sent); `due(now)` says which deadlines have come (`broker.timers`); for
each, the core hands over the one fact the rule needs (when that connection was last
heard) and gets a verdict back. When the verdict is "not yet", this part has already
set the deadline again; when it is "act", the core acts (evicts, beats, forgets).

Silence is judged on arrival: a message counts as a sign of life when the loop *reads*
it, and while input is left unread (`input_waiting`) a member's heartbeat may be in it,
so nobody is found silent then unless silent for twice the timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from zchat.broker.config import BrokerConfig
from zchat.broker.timers import Deadlines

#: Deadlines fall on a grid of this many steps per heartbeat interval: a deadline may
#: fall up to a quarter interval late, a heartbeat is still well inside the timeout, and
#: a whole room's deadlines share a few wake-ups.
TIMER_STEPS: Final = 4


class Deadline(IntEnum):
    """What a connection's deadline is for."""

    SILENCE = 1  # a member: evict if nothing arrived for the heartbeat timeout
    BEAT = 2  # a member: send a heartbeat if nothing was sent for an interval
    HANDSHAKE = 3  # a handshake: forget it if not finished in time


@dataclass
class Liveness:
    config: BrokerConfig
    #: Every member's deadlines, and handshakes', checked lazily.
    _deadlines: Deadlines[tuple[Deadline, bytes]] = field(init=False)
    #: When the broker last sent each member anything: a quiet link gets a heartbeat.
    _last_sent: dict[bytes, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._deadlines = Deadlines(self.config.heartbeat_interval / TIMER_STEPS)

    # --- what happened ----------------------------------------------------------------

    def handshake_began(self, conn: bytes, now: float) -> None:
        self._deadlines.set((Deadline.HANDSHAKE, conn), now + self.config.handshake_timeout)

    def listed(self, conn: bytes, now: float) -> None:
        """A member was listed on `conn` at `now` (it was just sent its WELCOME)."""
        cfg = self.config
        self._deadlines.set((Deadline.SILENCE, conn), now + cfg.heartbeat_timeout)
        self._deadlines.set((Deadline.BEAT, conn), now + cfg.heartbeat_interval)

    def unlisted(self, conn: bytes) -> None:
        self._last_sent.pop(conn, None)

    def sent(self, members: list[bytes], now: float) -> None:
        """The broker sent something to each of `members` at `now`: those links are not
        quiet, and need no heartbeat."""
        last = self._last_sent
        for conn in members:
            last[conn] = now

    # --- what is due ------------------------------------------------------------------

    def due(self, now: float) -> list[tuple[Deadline, bytes]]:
        return self._deadlines.due(now)

    def silent(self, conn: bytes, last_seen: float, now: float, input_waiting: bool) -> bool:
        """True if the member on `conn`, last heard at `last_seen`, is to be evicted."""
        timeout = self.config.heartbeat_timeout
        return self._over(Deadline.SILENCE, conn, last_seen, timeout, now, input_waiting)

    def handshake_over(
        self, conn: bytes, last_seen: float, now: float, input_waiting: bool
    ) -> bool:
        """True if the handshake on `conn`, last heard at `last_seen`, is to be forgotten
        (its PROOF did not come in time: it may wait in the unread input of a storm)."""
        timeout = self.config.handshake_timeout
        return self._over(Deadline.HANDSHAKE, conn, last_seen, timeout, now, input_waiting)

    def beat(self, conn: bytes, now: float) -> bool:
        """True if the member on `conn` is to get a heartbeat now: nothing was sent to it
        for an interval."""
        interval = self.config.heartbeat_interval
        last = self._last_sent.get(conn, -interval)
        if now - last < interval:
            self._deadlines.set((Deadline.BEAT, conn), last + interval)
            return False
        self._deadlines.set((Deadline.BEAT, conn), now + interval)
        return True

    def next_at(self) -> float | None:
        """When a deadline next falls (None: nothing is scheduled)."""
        return self._deadlines.next_at()

    @property
    def examined(self) -> int:
        """Deadlines looked at so far, due or stale: what `due` has cost, counted."""
        return self._deadlines.examined

    def _over(
        self,
        kind: Deadline,
        conn: bytes,
        last_seen: float,
        timeout: float,
        now: float,
        input_waiting: bool,
    ) -> bool:
        silent = now - last_seen
        if silent <= timeout:
            self._deadlines.set((kind, conn), last_seen + timeout)
            return False
        if input_waiting and silent <= 2 * timeout:
            self._deadlines.set((kind, conn), now + self.config.heartbeat_interval)
            return False
        return True

"""The connection to the broker as a state machine: its phases, the handshake's steps,
and every timer (heartbeats, silence, the handshake's backoff, retries after a refusal,
the answer to a new session key).

A part of the peer core (`peer.core`), sans I/O: it knows nothing of messages, keys or
the room. The core tells it what happened (`heard`, `hello_sent`, `proved`, ...) and
asks `tick` what time brings (`Due` values); the core does the rest.

The phases, and the one way into each::

    IDLE ------- start (a new socket) ------------------------> HANDSHAKING
    HANDSHAKING  KEY -> HELLO -> PROOF -> WELCOME -- SNAPSHOT --> READY
                 (a WELCOME we refuse: SPOILED, a new socket after the backoff)
    HANDSHAKING  REFUSE: final (REFUSED), or, when we were in the room before and the
                 refusal may pass (the old session may still be timing out), WAITING:
                 HELLO again after a backoff, until `rejoin_patience` runs out
    READY        silent for the timeout, EVICTED, a new session key not accepted (its
                 REKEY unanswered, or refused and tried again in vain) within the timeout
                 or MAX_REKEY_WAIT, whichever is shorter: IDLE (a new socket)
                 HELLO_FIRST: HANDSHAKING again on the same connection
    any          BYE or REPLACED: CLOSED

Timers: the configured ones (`PeerConfig`, 1 s and 5 s) from every `start` until a
WELCOME gives the broker's, so a reconnect never runs on what an earlier broker said.
Silence is judged on arrival: the loop reads what is waiting before it ticks, and a
tick that comes more than a timeout after the previous one means our own process was
stopped (SIGSTOP, a laptop lid, a long GC), so the broker is given a full timeout from
then rather than declared dead for our stall.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from zchat.peer.config import PeerConfig

#: Bounds on the timers a broker may impose on us in WELCOME.
MIN_TIMER: Final = 0.01
MAX_TIMER: Final = 3600.0
#: The longest a rotation waits for the broker to accept our new key (its REKEYED naming
#: us), from our first REKEY, through refusals and retries, whatever timeout its WELCOME
#: set (up to MAX_TIMER, an hour): then a new connection, whose HELLO carries a fresh key.
#: Our old key stays current while we wait, so this is what a broker that swallows or
#: refuses REKEYs adds to the forward-secrecy window (a rotation period and a grace
#: period, an hour and two minutes by default): half a minute, under 1% of it and a
#: quarter of the grace. An honest broker answers a REKEY at once, as it answers a
#: heartbeat; one that leaves it unanswered for three of its default timeouts (10 s) is
#: as good as gone, and a needless reconnect costs a handshake, nothing more.
MAX_REKEY_WAIT: Final = 30.0


class Phase(Enum):
    IDLE = "idle"  # no connection: the loop opens a new socket and calls start
    HANDSHAKING = "handshaking"
    READY = "ready"
    #: Refused on coming back into the room: HELLO again after a backoff.
    WAITING = "waiting"
    REFUSED = "refused"  # the broker said no, for good: the session ends
    CLOSED = "closed"


class Step(Enum):
    """Where a handshake is: what the broker may answer next."""

    KEY = "key"  # the loop is making the session key HELLO carries
    HELLO = "hello"  # HELLO sent: CHALLENGE or REFUSE next
    PROOF = "proof"  # PROOF sent: WELCOME or REFUSE next
    WELCOME = "welcome"  # welcomed: SNAPSHOT next
    SPOILED = "spoiled"  # a WELCOME we refused: a new connection after the backoff
    DONE = "done"  # not handshaking


class Due(Enum):
    """What a tick found due."""

    BEAT = "beat"  # send a HEARTBEAT
    SILENT = "silent"  # the broker fell silent while we were ready: a new socket
    UNANSWERED = "unanswered"  # no answer to our handshake: a new socket, backing off
    RETRY = "retry"  # refused on coming back: say HELLO again, same connection
    KEY_NOT_ACCEPTED = "key-not-accepted"  # our new session key, in time: a new socket


class Link:
    """The phase, the handshake's step and the timers of our connection."""

    def __init__(self, config: PeerConfig) -> None:
        self.config = config
        self.phase = Phase.IDLE
        self.step = Step.DONE
        #: The broker's timers, from its WELCOME; the configured ones until then.
        self.interval = config.heartbeat_interval
        self.timeout = config.heartbeat_timeout
        #: Welcomed into the room at least once in this run: a later handshake is a
        #: return, and a refusal of it may be retried.
        self.welcomed_once = False
        #: Ready on the current connection at some point: what the broker queued for us
        #: there (deliveries it acknowledged) is read even while we say HELLO again.
        self.ready_here = False
        #: When the broker was last heard; and when the silence we judge it by began,
        #: which is later if we were stopped since (see `tick`).
        self.last_heard = 0.0
        #: When we last heard a broker that went away (None while connected): from
        #: noticing the loss until the next welcome, which resends what it may have lost.
        self.lost_at: float | None = None
        self._silent_since = 0.0
        self._last_tick: float | None = None
        self._next_beat = 0.0
        self._backoff = config.reconnect_min
        #: When a spoiled handshake or a refused return says HELLO again.
        self._retry_at = 0.0
        #: When the broker first refused our return, and how often since, in this
        #: streak of refusals (until we are back in the room).
        self._refused_since: float | None = None
        self.refusals = 0
        #: A REKEY of ours waits for the broker's REKEYED (or its refusal).
        self._rekey_pending = False
        #: When this rotation's first REKEY went out, until the broker accepts one: its
        #: deadline (`rekey_wait`) runs from then, through refusals and retries.
        self._rotation_began: float | None = None
        #: No scheduled rotation before this (a refused REKEY is not retried at once).
        self.rotate_after = 0.0

    @property
    def in_room(self) -> bool:
        """Whether what the broker says of the room reaches us: ready, or saying HELLO
        again on a connection we were ready on (the broker may still deliver there)."""
        if self.phase is Phase.READY:
            return True
        return self.ready_here and self.phase in (Phase.HANDSHAKING, Phase.WAITING)

    @property
    def rekeying(self) -> bool:
        return self._rekey_pending

    @property
    def rekey_wait(self) -> float:
        """How long a rotation waits for the broker to accept our new key: a heartbeat
        timeout, but never longer than our own bound, which no broker sets
        (`MAX_REKEY_WAIT`)."""
        return min(self.timeout, MAX_REKEY_WAIT)

    # --- what happened ----------------------------------------------------------------

    def start(self, now: float, *, same_connection: bool) -> None:
        """A handshake begins: on a new connection, or again on this one."""
        self.phase, self.step = Phase.HANDSHAKING, Step.KEY
        self.interval = self.config.heartbeat_interval
        self.timeout = self.config.heartbeat_timeout
        self.ready_here = same_connection and self.ready_here
        self._no_rotation()
        self._silent_since = now
        self._last_tick = now

    def hello_sent(self, now: float) -> None:
        self.step = Step.HELLO
        self._silent_since = now  # the handshake's timer starts with the HELLO

    def proved(self) -> None:
        self.step = Step.PROOF

    def heard(self, now: float) -> None:
        """Any well-formed message from the broker: a sign of life."""
        self.last_heard = self._silent_since = now

    def welcomed(self, heartbeat_ms: int, timeout_ms: int) -> None:
        self.step = Step.WELCOME
        self.interval = _clamp(heartbeat_ms / 1000)
        self.timeout = _clamp(timeout_ms / 1000)

    def spoiled(self, now: float) -> None:
        """A WELCOME we refuse: connect again after the backoff (a hostile broker that
        keeps doing it makes us back off, not spin)."""
        self.step = Step.SPOILED
        self._retry_at = now + self._backoff
        self._back_off()

    def ready(self, now: float) -> float | None:
        """In the room. Returns, after a loss, since when the broker that went away may
        have lost what it acknowledged (a timeout and a second before we last heard it:
        the resend goes back that far); None otherwise."""
        self.phase, self.step = Phase.READY, Step.DONE
        self.welcomed_once = self.ready_here = True
        self._backoff = self.config.reconnect_min
        self._refused_since, self.refusals = None, 0
        self._next_beat = now + self.interval
        lost_at, self.lost_at = self.lost_at, None
        return None if lost_at is None else lost_at - self.timeout - 1.0

    def went_away(self) -> bool:
        """The broker went away or forgot us. True the first time until the next welcome
        (the loss is told once)."""
        if self.lost_at is not None:
            return False
        self.lost_at = self.last_heard
        return True

    def refused(self, now: float, *, may_pass: bool) -> bool:
        """The broker refused our HELLO. Returns True when we try again (WAITING): a
        return into the room, refused for something that may pass, within
        `rejoin_patience` of the first such refusal. Otherwise the refusal is final."""
        self.step = Step.DONE
        if may_pass and self.welcomed_once:
            since = now if self._refused_since is None else self._refused_since
            self._refused_since = since
            self.refusals += 1
            if now - since < self.config.rejoin_patience:
                self.phase = Phase.WAITING
                self._retry_at = now + self._backoff
                self._back_off()
                return True
        self.phase = Phase.REFUSED
        return False

    def lost(self) -> None:
        """The connection is gone (or will be): the loop opens a new socket."""
        self.phase, self.step = Phase.IDLE, Step.DONE
        self.ready_here = False
        self._no_rotation()

    def closed(self) -> None:
        self.phase, self.step = Phase.CLOSED, Step.DONE
        self._no_rotation()

    def rekey_sent(self, now: float) -> None:
        self._rekey_pending = True
        if self._rotation_began is None:
            self._rotation_began = now

    def rekey_answered(self) -> None:
        self._no_rotation()

    def rekey_refused(self, now: float) -> None:
        """The broker refused our new key: it is tried again after half the rotation's
        wait, so that one retry fits before the deadline, which stays where it was."""
        self._rekey_pending = False
        self.rotate_after = now + self.rekey_wait / 2

    # --- time ------------------------------------------------------------------------

    def rotation_due(self, now: float, since: float) -> bool:
        """Whether to make a new session key, ours being current `since`: on schedule,
        while ready, none waiting for its answer, and not just after a refused one."""
        if self.phase is not Phase.READY or self.rekeying or now < self.rotate_after:
            return False
        return now - since >= self.config.rotate_every

    def tick(self, now: float) -> list[Due]:
        """What is due at `now`."""
        if self._last_tick is not None and now - self._last_tick > self.timeout:
            # We were stopped, not the broker silent: what it sent meanwhile is read
            # from now on (the loop drained what had arrived), so it gets a full timeout.
            self._silent_since = max(self._silent_since, now)
            if self._rotation_began is not None:
                self._rotation_began = max(self._rotation_began, now)
        self._last_tick = now
        silent = now - self._silent_since
        match self.phase:
            case Phase.READY if silent > self.timeout:
                return [Due.SILENT]
            case Phase.READY if self._rotation_began is not None and (
                now - self._rotation_began > self.rekey_wait
            ):
                # A broker that swallows or refuses REKEYs must not keep our old key in
                # use: a fresh HELLO has a fresh key.
                return [Due.KEY_NOT_ACCEPTED]
            case Phase.READY if now >= self._next_beat:
                self._next_beat = now + self.interval
                return [Due.BEAT]
            case Phase.HANDSHAKING if self.step is Step.SPOILED and now >= self._retry_at:
                return [Due.UNANSWERED]
            case Phase.HANDSHAKING if silent > self.timeout + self._backoff:
                self._back_off()
                return [Due.UNANSWERED]
            case Phase.WAITING if now >= self._retry_at:
                return [Due.RETRY]
        return []

    def _no_rotation(self) -> None:
        self._rekey_pending, self._rotation_began = False, None

    def _back_off(self) -> None:
        self._backoff = min(self._backoff * 2, self.config.reconnect_max)


def _clamp(seconds: float) -> float:
    return min(max(seconds, MIN_TIMER), MAX_TIMER)

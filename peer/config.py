"""The peer's settings: its room, its timers, the open-room flag and the session-key
schedule.

A value, read by the core (`peer.core`) and set by whoever makes it (the client, the
shell's `zchat peer`, the benchmark, tests); it imports nothing of the peer's.
"""

from __future__ import annotations

from dataclasses import dataclass

from zchat.envelope import DEFAULT_ROOM
from zchat.peer.outbox import CORRECTION_WINDOW
from zchat.peer.session_keys import DEFAULT_KEY_GRACE, DEFAULT_ROTATE_EVERY


@dataclass(frozen=True, slots=True)
class PeerConfig:
    heartbeat_interval: float = 1.0  # until the broker's WELCOME says otherwise
    heartbeat_timeout: float = 5.0
    #: How long a message waits for a recipient who was away to come back.
    absent_grace: float = 30.0
    #: An open room: admit every key at first sight, a changed one too (still
    #: reported, never silent). For bots, the benchmark and load tests: the broker
    #: then decides who reads (README, "Admitting people").
    admit_all: bool = False
    reconnect_min: float = 0.1
    reconnect_max: float = 5.0
    #: How long we keep saying HELLO again, backing off, when the broker refuses our
    #: return into the room for something that may pass (our old session still timing
    #: out, a full room): three of its default heartbeat timeouts. Then the session ends.
    rejoin_patience: float = 30.0
    #: Seconds between our session-key rotations while connected (and one at every
    #: connection). See `peer.session_keys`.
    rotate_every: float = DEFAULT_ROTATE_EVERY
    #: Seconds a replaced session key of ours still opens what was sealed to it.
    key_grace: float = DEFAULT_KEY_GRACE
    #: Seconds the broker may still correct the delivery of a message delivered to
    #: everyone; then its plaintext is erased (`peer.outbox`).
    correction_window: float = CORRECTION_WINDOW
    #: The room to join (`zchat peer --room`, ZCHAT_ROOM): our certificates, messages
    #: and vouches are bound to it (its room id, with the broker's CURVE key).
    room: str = DEFAULT_ROOM

    @property
    def message_lifetime(self) -> float:
        """Seconds what we send is kept at most: the forward-secrecy window, a rotation
        period and a grace period (docs/SECURITY.md, claim 11)."""
        return self.rotate_every + self.key_grace

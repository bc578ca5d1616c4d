"""Replay and duplicate detection: a sliding window of sequence numbers per sender key.

Every sender numbers its messages with a strictly increasing sequence (see
`peer.client.initial_seq`); resends reuse the number. A recipient accepts each
(sender key, seq) once. The window is bounded, as IPsec's anti-replay window is: a
number older than the newest by more than WINDOW is refused too, so memory stays
bounded whatever an attacker replays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

WINDOW: Final = 65_536


@dataclass
class _Window:
    highest: int
    seen: set[int] = field(default_factory=set)


@dataclass
class ReplayGuard:
    window: int = WINDOW
    _senders: dict[bytes, _Window] = field(default_factory=dict)

    def is_new(self, sender_fingerprint: bytes, seq: int) -> bool:
        """True when (sender, seq) has not been accepted yet and is inside the window."""
        w = self._senders.get(sender_fingerprint)
        return w is None or (seq > w.highest - self.window and seq not in w.seen)

    def is_stale(self, sender_fingerprint: bytes, seq: int) -> bool:
        """True when `seq` is below the window: too old to tell from a replay."""
        w = self._senders.get(sender_fingerprint)
        return w is not None and seq <= w.highest - self.window

    def record(self, sender_fingerprint: bytes, seq: int) -> None:
        """Accept (sender, seq). Call only once the message proved genuine and opened:
        a delivery with a swapped wrapped key must not use up the number of the
        genuine resend that follows it."""
        w = self._senders.get(sender_fingerprint)
        if w is None:
            self._senders[sender_fingerprint] = _Window(seq, {seq})
            return
        w.seen.add(seq)
        if seq > w.highest:
            w.highest = seq
            if len(w.seen) > 2 * self.window:
                floor = w.highest - self.window
                w.seen = {s for s in w.seen if s > floor}

"""Replay and duplicate detection: a sliding window of sequence numbers per sender.

Every sender numbers its messages with a strictly increasing sequence (see
`peer.client.initial_seq`); resends reuse the number. A recipient accepts each
(sender, seq) once. The window is bounded, as IPsec's anti-replay window is (RFC 4303
§3.4.3): a number older than the newest by `WINDOW` or more is refused too, and the
numbers inside the window are one bit each in a fixed bitmap, so a window costs
`WINDOW / 8` bytes (8 KiB) whatever an attacker replays.

A *sender* is the pair (nickname, key fingerprint), not the key alone. Two peers may
run with one key under two nicknames (``alice`` and ``alice-bot``, or a broker that
admits both), and each numbers its own messages from its own clock: keyed by the key,
the one that started later would push the other's numbers below the window and its
genuine messages would be dropped as stale. The pair costs a replaying broker nothing:
the nickname is in the signed header, and the recipient looks the sender up by it, so
a message signed as ``alice`` is always checked against alice's window.

Windows of members who left are not dropped at once: `forget` moves them aside, and
the newest `MAX_DEPARTED` are kept. Otherwise a broker could announce that alice left,
announce her back, and replay everything she said. Only one window per nickname is
live; a new key for a nickname moves the old key's window aside too. So memory is at
most (members + `MAX_DEPARTED`) times 8 KiB, and a broker that invents more than
`MAX_DEPARTED` departures to push a real one out gains what a restart of the recipient
gives it anyway (docs/SECURITY.md, "Replay protection lives in the recipient's memory").
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from zchat.envelope import nick_key
from zchat.envelope.limits import MAX_ROOM

#: Sequence numbers a window spans, a multiple of 8: comfortably more than a sender's
#: outbox (`peer.outbox.MAX_OUTBOX`, 20,000), whose entries may all be resent at once
#: and arrive in any order.
WINDOW: Final = 65_536
#: Windows of members who left, kept so that they cannot be replayed by a leave and a
#: rejoin announced by the broker. A broker can announce every other member of a full
#: room gone at once (it evicts whom it likes), so a window for each: MAX_ROOM - 1 = 999
#: windows of 8 KiB, 8 MiB at most, as much as the live windows of a full room.
MAX_DEPARTED: Final = MAX_ROOM - 1


class _Window:
    """The newest number seen, and one bit for each of the `span` numbers up to it.

    Number `s` is bit ``s % span``: the bitmap is a ring, and moving `highest` forward
    clears the bits of the numbers that come into the window unseen.
    """

    __slots__ = ("bitmap", "highest")

    def __init__(self, span: int, seq: int) -> None:
        self.bitmap = bytearray(span // 8)
        self.highest = seq
        self._set(seq)

    @property
    def span(self) -> int:
        return len(self.bitmap) * 8

    def is_stale(self, seq: int) -> bool:
        return seq <= self.highest - self.span

    def is_new(self, seq: int) -> bool:
        return seq > self.highest or not (self.is_stale(seq) or self._has(seq))

    def record(self, seq: int) -> None:
        if seq > self.highest:
            self._clear(self.highest + 1, seq)
            self.highest = seq
        elif self.is_stale(seq):
            return  # its bit now stands for a newer number; the caller checked is_new
        self._set(seq)

    def _has(self, seq: int) -> bool:
        i = seq % self.span
        return bool(self.bitmap[i >> 3] >> (i & 7) & 1)

    def _set(self, seq: int) -> None:
        i = seq % self.span
        self.bitmap[i >> 3] |= 1 << (i & 7)

    def _clear(self, first: int, last: int) -> None:
        """Clear the bits of numbers `first` to `last`, inclusive."""
        count = last - first + 1
        if count >= self.span:
            self.bitmap[:] = bytes(len(self.bitmap))
            return
        start = first % self.span
        end = start + count
        if end <= self.span:
            self._clear_bits(start, end)
        else:  # the range wraps round the ring
            self._clear_bits(start, self.span)
            self._clear_bits(0, end - self.span)

    def _clear_bits(self, a: int, b: int) -> None:
        """Clear bits a to b - 1: whole bytes at once, at most 7 bits alone at each end."""
        while a < b and a & 7:
            self.bitmap[a >> 3] &= ~(1 << (a & 7)) & 0xFF
            a += 1
        while b > a and b & 7:
            b -= 1
            self.bitmap[b >> 3] &= ~(1 << (b & 7)) & 0xFF
        if a < b:
            self.bitmap[a >> 3 : b >> 3] = bytes((b - a) >> 3)


@dataclass
class ReplayGuard:
    window: int = WINDOW
    max_departed: int = MAX_DEPARTED
    #: nick_key -> (fingerprint, window): one live window per nickname.
    _live: dict[str, tuple[bytes, _Window]] = field(default_factory=dict)
    #: (nick_key, fingerprint) -> window, oldest departure first.
    _departed: OrderedDict[tuple[str, bytes], _Window] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        if self.window <= 0 or self.window % 8:
            raise ValueError("the window must be a positive multiple of 8")

    def is_new(self, nick: str, fingerprint: bytes, seq: int) -> bool:
        """True when (sender, seq) has not been accepted yet and is inside the window."""
        w = self._find(nick, fingerprint)
        return w is None or w.is_new(seq)

    def is_stale(self, nick: str, fingerprint: bytes, seq: int) -> bool:
        """True when `seq` is below the window: too old to tell from a replay."""
        w = self._find(nick, fingerprint)
        return w is not None and w.is_stale(seq)

    def record(self, nick: str, fingerprint: bytes, seq: int) -> None:
        """Accept (sender, seq). Call only once the message proved genuine and opened:
        a delivery with a swapped wrapped key must not use up the number of the
        genuine resend that follows it."""
        key = nick_key(nick)
        live = self._live.get(key)
        if live is not None and live[0] == fingerprint:
            live[1].record(seq)
            return
        if live is not None:  # the nickname's key changed: the old window steps aside
            self._set_aside(key, *live)
        w = self._departed.pop((key, fingerprint), None)
        if w is None:
            w = _Window(self.window, seq)
        else:
            w.record(seq)
        self._live[key] = (fingerprint, w)

    def forget(self, nick: str) -> None:
        """`nick` left the room: its window stops counting as live (see the docstring)."""
        key = nick_key(nick)
        live = self._live.pop(key, None)
        if live is not None:
            self._set_aside(key, *live)

    def bitmap_bytes(self) -> int:
        """Bytes held in bitmaps, live and departed: what memory the guard grows with."""
        windows = [*(w for _, w in self._live.values()), *self._departed.values()]
        return sum(len(w.bitmap) for w in windows)

    def _find(self, nick: str, fingerprint: bytes) -> _Window | None:
        key = nick_key(nick)
        live = self._live.get(key)
        if live is not None and live[0] == fingerprint:
            return live[1]
        return self._departed.get((key, fingerprint))

    def _set_aside(self, key: str, fingerprint: bytes, w: _Window) -> None:
        self._departed[(key, fingerprint)] = w
        self._departed.move_to_end((key, fingerprint))
        while len(self._departed) > self.max_departed:
            self._departed.popitem(last=False)

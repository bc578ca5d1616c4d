"""Messages we sent, kept until the broker acknowledged them and every recipient got them.

The outbox is the only copy of what the user typed, so a message leaves it only when
its fate is known: delivered to every recipient, or a recipient stayed away past the
grace period (then reported as undelivered to them). Resends reuse the very same
signed envelope, so recipients recognise duplicates by its sequence number; for a
recipient whose session key changed since, the core seals it again with the same id and
number (`peer.core`), and keeps that envelope here in its place.

The broker's acknowledgements are claims, checked against what we signed: an ACK may
only name recipients of that message (the core refuses any other, see `strangers`).

Old plaintext is never sealed again (docs/SECURITY.md, claim 11). Keeping what the
user typed is what lets a resend seal it to a recipient's *new* session key; kept for
long, it would let whoever steals an identity key later certify a session key of its
own and have the message sealed to that. So a message has three lives:

- **pending**: some recipient is waiting, or the broker has not answered. Its
  plaintext is kept, never longer than `lifetime` after it was sealed (the forward-
  secrecy window): then it is erased and whoever had not got it is reported.
- **delivered**: every recipient got it, by the broker's word. Kept for the
  `correction_window` only, in which the broker may still correct an acknowledgement
  (a delivery it could not queue, PROTOCOL.md §3.9) and in which a broker that
  crashed may have lost what it acknowledged (`reopen_since`).
- **settled**: the window passed. The plaintext is erased and only the id is kept, so
  that an ACK that would reopen it is refused and reported (`closed`), never obeyed.

Both windows are kept by two clocks. `now` is the monotonic clock, which runs the timers
and stops while the machine sleeps (a laptop's lid); `today_ms` is the date. A message
typed before eight hours of sleep must not be sealed again after it, to a key a thief
certified meanwhile, so a window has passed when either clock says so: the lifetime
from the message's own timestamp, the correction window from the date it was delivered.
Every call that may keep, reopen or settle a message takes the date (0: none known,
and only the monotonic clock counts).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from zchat.envelope import Envelope, MessageKind, nick_key
from zchat.peer.session_keys import DEFAULT_KEY_GRACE, DEFAULT_ROTATE_EVERY, CertifiedKey

#: How many messages may wait for acknowledgement before new ones are refused.
MAX_OUTBOX: Final = 20_000
#: How many delivered messages are remembered for a resend after a broker crash.
MAX_RECENT: Final = 20_000
#: Ids of settled messages remembered, to report an ACK that would reopen one.
MAX_CLOSED: Final = 4096
#: Seconds a message delivered to everyone may still be taken back by the broker: two
#: heartbeat timeouts and a backlog timeout of a broker with the default timers (10 s
#: each, PROTOCOL.md §3.8, §3.9): a correction comes within one of each of a delivery,
#: and a broker that crashed is noticed within one heartbeat timeout. After it, the
#: message is settled and its plaintext erased.
CORRECTION_WINDOW: Final = 30.0
#: Seconds a message's plaintext lives at most, by default: a rotation period and a
#: grace period (`peer.session_keys`), the forward-secrecy window docs/SECURITY.md states.
DEFAULT_LIFETIME: Final = DEFAULT_ROTATE_EVERY + DEFAULT_KEY_GRACE


@dataclass(eq=False)
class Entry:
    envelope: Envelope
    text: str
    acked: bool = False  # the broker answered at least once
    acked_at: float = 0.0  # when the broker last said it delivered to someone
    sent_at: float = 0.0
    #: When it was sealed (the monotonic clock): its plaintext lives `lifetime` from then.
    sealed_at: float = 0.0
    #: When every recipient had it (the monotonic clock): the correction window's start.
    delivered_at: float = 0.0
    #: The same by the date (milliseconds since the epoch; 0 when no date was known).
    delivered_ms: int = 0
    #: recipient (case-folded) -> nickname, for those not yet delivered to
    pending: dict[str, str] = field(default_factory=dict)
    #: recipient (case-folded) -> when the broker first said it was absent
    absent_since: dict[str, float] = field(default_factory=dict)
    #: recipients (case-folded) the broker said it delivered to, and not since taken back
    delivered: set[str] = field(default_factory=set)
    reported: bool = False  # an acknowledgement of it was reported already

    def strangers(self, nicks: tuple[str, ...]) -> tuple[str, ...]:
        """Those of `nicks` this message was not sealed for."""
        keys = {nick_key(r) for r in self.envelope.recipients}
        return tuple(n for n in nicks if nick_key(n) not in keys)

    def corrected_by(self, delivered: tuple[str, ...], absent: tuple[str, ...]) -> bool:
        """Whether an ACK is a correction: one recipient acknowledged as delivered was
        not, after all (the broker could not queue it, PROTOCOL.md §3.9)."""
        return not delivered and len(absent) == 1 and nick_key(absent[0]) in self.delivered

    #: recipient (case-folded) -> the session key `envelope` is wrapped to for it. A
    #: resend to someone whose key changed since is sealed again (`peer.core`).
    sealed_to: dict[str, CertifiedKey] = field(default_factory=dict)
    #: What was sealed when it is not `text`: the encoded vouches of a VOUCH message,
    #: kept so that a resend to a changed session key seals the same plaintext again.
    payload: bytes = b""
    #: The plaintext is gone (`erase`): the entry can never be sealed again.
    erased: bool = False

    @property
    def msg_id(self) -> bytes:
        return self.envelope.header.msg_id

    @property
    def quiet(self) -> bool:
        """Vouches are sent, resent and acknowledged as messages are, but never shown."""
        return self.envelope.header.kind is MessageKind.MEMBERSHIP

    def erase(self) -> None:
        """Let go of the plaintext and of the keys it was sealed to: nothing here can
        seal it again. (Python cannot wipe the bytes; docs/SECURITY.md says so.)"""
        self.text = ""
        self.payload = b""
        self.sealed_to = {}
        self.erased = True


@dataclass
class Outbox:
    #: Seconds a delivered message may still be corrected (see the module docstring).
    correction_window: float = CORRECTION_WINDOW
    #: Seconds a message's plaintext lives at most, pending or not.
    lifetime: float = DEFAULT_LIFETIME
    _entries: dict[bytes, Entry] = field(default_factory=dict)
    #: Delivered entries, in the order they were delivered, each for the correction
    #: window. A broker that crashes loses what it had queued for recipients but
    #: already acknowledged to us; these are resent after it comes back, and
    #: recipients drop whatever they did receive as duplicates. A later ACK may also
    #: correct an earlier one (a delivery the broker could not queue after all): then
    #: the entry is taken back from here.
    _recent: OrderedDict[bytes, Entry] = field(default_factory=OrderedDict)
    #: Ids of settled entries, whose plaintext is gone (`closed`).
    _closed: OrderedDict[bytes, None] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def add(self, envelope: Envelope, text: str, now: float) -> Entry:
        recipients = envelope.recipients
        pending = {nick_key(r): r for r in recipients}
        entry = Entry(envelope, text, sent_at=now, sealed_at=now, pending=pending)
        self._entries[entry.msg_id] = entry
        return entry

    def closed(self, msg_id: bytes) -> bool:
        """Whether `msg_id` is settled: delivered, its correction window passed, its
        plaintext erased. Nothing reopens it."""
        return msg_id in self._closed

    def get(self, msg_id: bytes) -> Entry | None:
        return self._entries.get(msg_id)

    def find(self, msg_id: bytes, today_ms: int = 0) -> Entry | None:
        """The entry for `msg_id`, still waiting or delivered recently; one delivered
        longer ago than the correction window by the date `today_ms` is settled now
        (the monotonic clock may have stood still: the machine slept)."""
        entry = self._entries.get(msg_id)
        if entry is not None:
            return entry
        entry = self._recent.get(msg_id)
        if entry is not None and self._window_passed(entry, today_ms):
            del self._recent[msg_id]
            self._close(entry)
            return None
        return entry

    def past_lifetime(self, entry: Entry, now: float, today_ms: int = 0) -> bool:
        """Whether `entry`'s plaintext has lived as long as it may, by either clock."""
        if now - entry.sealed_at > self.lifetime:
            return True
        age_ms = today_ms - entry.envelope.header.timestamp_ms
        return bool(today_ms) and age_ms > self.lifetime * 1000

    def lapse(self, entry: Entry) -> tuple[str, ...]:
        """Let `entry` go, its plaintext erased, for good (`past_lifetime`); returns
        whom it was still waiting for."""
        self._entries.pop(entry.msg_id, None)
        self._recent.pop(entry.msg_id, None)
        self._close(entry)
        return tuple(entry.pending.values())

    def _window_passed(self, entry: Entry, today_ms: int) -> bool:
        """Whether `entry`, delivered to everyone, is past its correction window by
        the date (the monotonic clock is `expire`'s to check)."""
        since_ms = today_ms - entry.delivered_ms
        return bool(today_ms and entry.delivered_ms) and since_ms > self.correction_window * 1000

    def acknowledge(
        self,
        msg_id: bytes,
        delivered: tuple[str, ...],
        absent: tuple[str, ...],
        now: float,
        today_ms: int = 0,
    ) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """Apply an ACK naming only recipients of `msg_id` (the caller checked).

        Returns what it says that is news, as (delivered, absent), or None when it says
        nothing new: a repeat, or an ACK for a settled message that is no correction.
        The first answer for a message also names, as absent, any recipient it left
        out: they are waited for, so none is left pending for ever.
        """
        entry = self._entries.get(msg_id)
        if entry is None:
            entry = self.find(msg_id, today_ms)
            if entry is None or not entry.corrected_by(delivered, absent):
                return None  # a repeat, or settled: settled stays settled
            del self._recent[msg_id]
            self._entries[msg_id] = entry  # someone did not get it after all
        correction = entry.corrected_by(delivered, absent)
        entry.acked = True
        if delivered:
            entry.acked_at = now
        recipients = {nick_key(n): n for n in entry.envelope.recipients}
        news_delivered = []
        for nick in delivered:
            key = nick_key(nick)
            if entry.pending.pop(key, None) is not None:
                entry.absent_since.pop(key, None)
                entry.delivered.add(key)
                news_delivered.append(nick)
        news_absent = []
        if correction:
            (nick,) = absent
            key = nick_key(nick)
            entry.delivered.discard(key)
            entry.pending[key] = recipients[key]
        for nick in absent:
            key = nick_key(nick)
            if key in entry.pending and key not in entry.absent_since:
                entry.absent_since[key] = now
                news_absent.append(nick)
        if not correction:
            # Left out of the answer: neither delivered nor absent. The broker leaves
            # out only the recipients a resend blanked, which the answer to the
            # resend that named them covers; waiting for them as absent is harmless
            # then, and saves them from a lying broker's silence.
            named = {nick_key(n) for n in (*delivered, *absent)}
            for key, nick in entry.pending.items():
                if key not in named and key not in entry.absent_since:
                    entry.absent_since[key] = now
                    if not entry.reported:
                        news_absent.append(nick)
        first, entry.reported = not entry.reported, True
        self._settle(entry, now, today_ms)
        if first or news_delivered or news_absent:
            return tuple(news_delivered), tuple(news_absent)
        return None

    def waiting_for(self, nick: str) -> list[Entry]:
        """Messages that `nick` missed while away, oldest first.

        Away as the broker said (absent in an ACK), or as we know it: missing since a
        broker restart, when a resend waits for the new session key of the return
        (`peer.core`); such an entry may not be acknowledged yet.
        """
        key = nick_key(nick)
        return [e for e in self._entries.values() if key in e.absent_since]

    def expire(
        self, now: float, grace: float, today_ms: int = 0
    ) -> list[tuple[Entry, tuple[str, ...]]]:
        """Give up on recipients away longer than `grace`, and on every recipient of a
        message older than `lifetime` (by either clock): (entry, nicks) for each. Settle
        what was delivered longer than `correction_window` ago."""
        expired = []
        for entry in list(self._entries.values()):
            if self.past_lifetime(entry, now, today_ms):
                # Its plaintext has lived as long as it may: whoever does not have it
                # by now never will from us.
                expired.append((entry, self.lapse(entry)))
                continue
            gone = [k for k, since in entry.absent_since.items() if now - since > grace]
            if gone:
                nicks = tuple(entry.pending.pop(k) for k in gone)
                for k in gone:
                    del entry.absent_since[k]
                expired.append((entry, nicks))
                if entry.pending or entry.acked:
                    self._settle(entry, now, today_ms)
                else:  # never sent to anyone, and nobody left to wait for (as below)
                    del self._entries[entry.msg_id]
                    entry.erase()
        while self._recent:  # in the order delivered: the oldest first
            entry = next(iter(self._recent.values()))
            waiting = now - entry.delivered_at <= self.correction_window
            if waiting and not self._window_passed(entry, today_ms):
                break
            del self._recent[entry.msg_id]
            self._close(entry)
        return expired

    def forget_recipient(
        self, nick: str, now: float, today_ms: int = 0
    ) -> list[tuple[Entry, tuple[str, ...]]]:
        """`nick` can no longer be sent to (its key changed): stop waiting for it.

        Unacknowledged entries too. They were sealed to the old key, which the new
        one cannot open, and they are resent only to trusted recipients: left here,
        `nick` would stay pending for good (never acknowledged, never expired) and
        nobody would learn that it never got the message. An unacknowledged entry
        left with nobody to wait for is dropped; a late ACK for it then finds nothing.
        """
        key = nick_key(nick)
        dropped: list[tuple[Entry, tuple[str, ...]]] = []
        for entry in list(self._entries.values()):
            if key not in entry.pending:
                continue
            dropped.append((entry, (entry.pending.pop(key),)))
            entry.absent_since.pop(key, None)
            if entry.pending or entry.acked:
                self._settle(entry, now, today_ms)
            else:
                del self._entries[entry.msg_id]
                entry.erase()
        return dropped

    def reopen_since(self, since: float, keep: Callable[[str], bool], today_ms: int = 0) -> None:
        """Wait again for every recipient the broker said it delivered to at `since`
        or later (those it acknowledged just before it crashed), if `keep(nick_key)`.

        The entries become unacknowledged again, so they are resent and tracked
        exactly as new ones are: absent recipients are waited for, and so on. Only
        what is still in its correction window can be: a message settled before is
        not resent (its plaintext is gone), and the others delivered are settled now.
        """
        recent = [
            e
            for e in self._recent.values()
            if e.acked_at >= since and not self._window_passed(e, today_ms)
        ]
        live = [e for e in self._entries.values() if e.acked and e.acked_at >= since]
        for entry in [*recent, *live]:
            for nick in entry.envelope.recipients:
                key = nick_key(nick)
                if key not in entry.pending and keep(key):
                    entry.pending[key] = nick
                    entry.delivered.discard(key)
            if entry.pending:
                entry.acked = False
                entry.absent_since.clear()
                self._recent.pop(entry.msg_id, None)
                self._entries[entry.msg_id] = entry
        for entry in self._recent.values():  # acknowledged by a broker that is gone
            self._close(entry)
        self._recent.clear()

    def unacked(self) -> list[Entry]:
        """Entries the broker has not answered yet, in the order they were sealed."""
        entries = [e for e in self._entries.values() if not e.acked]
        return sorted(entries, key=lambda e: e.envelope.header.seq)

    def drop(self, msg_id: bytes) -> Entry | None:
        """Let `msg_id` go (the broker refused it); its plaintext is erased."""
        entry = self._entries.pop(msg_id, None)
        if entry is not None:
            entry.erase()
        return entry

    def _settle(self, entry: Entry, now: float, today_ms: int) -> None:
        """Out of the outbox once answered and nobody waits: delivered to someone, it
        waits out the correction window in `_recent`; delivered to nobody, it is done."""
        if entry.acked and not entry.pending:
            self._entries.pop(entry.msg_id, None)
            # A correction window that would run past the plaintext's lifetime is
            # not given: the lifetime is the promise (docs/SECURITY.md).
            window_ends = now + self.correction_window
            window_ends_ms = today_ms + int(self.correction_window * 1000)
            if entry.acked_at and not (
                self.past_lifetime(entry, window_ends, window_ends_ms if today_ms else 0)
            ):
                entry.delivered_at, entry.delivered_ms = now, today_ms
                self._recent[entry.msg_id] = entry
                if len(self._recent) > MAX_RECENT:
                    self._close(self._recent.popitem(last=False)[1])
            else:
                self._close(entry)

    def _close(self, entry: Entry) -> None:
        """Settled for good: the plaintext goes, the id stays (`closed`)."""
        entry.erase()
        self._closed[entry.msg_id] = None
        while len(self._closed) > MAX_CLOSED:
            self._closed.popitem(last=False)

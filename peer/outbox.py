"""Messages we sent, kept until the broker acknowledged them and every recipient got them.

The outbox is the only copy of what the user typed, so a message leaves it only when
its fate is known: delivered to every recipient, or a recipient stayed away past the
grace period (then reported as undelivered to them). Resends reuse the very same
signed envelope, so recipients recognise duplicates by its sequence number.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from envelope import Envelope, nick_key

#: How many messages may wait for acknowledgement before new ones are refused.
MAX_OUTBOX: Final = 20_000


@dataclass(eq=False)
class Entry:
    envelope: Envelope
    text: str
    acked: bool = False  # the broker answered at least once
    sent_at: float = 0.0
    #: recipient (case-folded) -> nickname, for those not yet delivered to
    pending: dict[str, str] = field(default_factory=dict)
    #: recipient (case-folded) -> when the broker first said it was absent
    absent_since: dict[str, float] = field(default_factory=dict)

    @property
    def msg_id(self) -> bytes:
        return self.envelope.header.msg_id


@dataclass
class Outbox:
    _entries: dict[bytes, Entry] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def add(self, envelope: Envelope, text: str, now: float) -> Entry:
        recipients = envelope.header.recipients
        entry = Entry(envelope, text, sent_at=now, pending={nick_key(r): r for r in recipients})
        self._entries[entry.msg_id] = entry
        return entry

    def get(self, msg_id: bytes) -> Entry | None:
        return self._entries.get(msg_id)

    def acknowledge(
        self, msg_id: bytes, delivered: tuple[str, ...], absent: tuple[str, ...], now: float
    ) -> Entry | None:
        entry = self._entries.get(msg_id)
        if entry is None:
            return None
        entry.acked = True
        for nick in delivered:
            entry.pending.pop(nick_key(nick), None)
            entry.absent_since.pop(nick_key(nick), None)
        for nick in absent:
            if nick_key(nick) in entry.pending:
                entry.absent_since.setdefault(nick_key(nick), now)
        self._settle(entry)
        return entry

    def waiting_for(self, nick: str) -> list[Entry]:
        """Acknowledged messages that `nick` missed while away, oldest first."""
        key = nick_key(nick)
        return [e for e in self._entries.values() if e.acked and key in e.absent_since]

    def expire(self, now: float, grace: float) -> list[tuple[Entry, tuple[str, ...]]]:
        """Give up on recipients away longer than `grace`: (entry, nicks) for each."""
        expired = []
        for entry in list(self._entries.values()):
            gone = [k for k, since in entry.absent_since.items() if now - since > grace]
            if gone:
                nicks = tuple(entry.pending.pop(k) for k in gone)
                for k in gone:
                    del entry.absent_since[k]
                expired.append((entry, nicks))
                self._settle(entry)
        return expired

    def forget_recipient(self, nick: str) -> list[tuple[Entry, tuple[str, ...]]]:
        """`nick` can no longer be sent to (its key changed): stop waiting for it."""
        key = nick_key(nick)
        dropped: list[tuple[Entry, tuple[str, ...]]] = []
        for entry in list(self._entries.values()):
            if key in entry.pending and entry.acked:
                dropped.append((entry, (entry.pending.pop(key),)))
                entry.absent_since.pop(key, None)
                self._settle(entry)
        return dropped

    def unacked(self) -> list[Entry]:
        return [e for e in self._entries.values() if not e.acked]

    def drop(self, msg_id: bytes) -> Entry | None:
        return self._entries.pop(msg_id, None)

    def _settle(self, entry: Entry) -> None:
        if entry.acked and not entry.pending:
            self._entries.pop(entry.msg_id, None)

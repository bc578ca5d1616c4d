"""Messages held back from members whose key changed, until the user trusts the new key.

They arrive verified, but signed by a key we have not accepted, so they wait unread.
Whoever holds that key (a broker that substituted it, say) decides how many arrive,
so the store is bounded twice: per sender by count (`MAX_WITHHELD`), and over all
senders by bytes (`MAX_WITHHELD_BYTES`). Past either bound the oldest message goes,
and the caller is told which, so that the loss is shown rather than silent.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from zchat.envelope import Delivery

#: Messages held back per sender while its key is untrusted.
MAX_WITHHELD: Final = 100
#: Bytes held back over all senders: about 180 messages of the largest size. Enough
#: for a real member's backlog while someone checks a fingerprint; 40 hostile keys
#: sending 100 such messages each would otherwise hold 90 MB. Not derived from MAX_ROOM:
#: since protocol 3 a delivery is the same size in a room of 1,000 as of 2 (its own
#: leaf and a path of at most 10 hashes, no recipient list).
MAX_WITHHELD_BYTES: Final = 4 * 1024 * 1024
#: What one recipient name of a held header costs in memory once parsed (a string),
#: beyond its bytes on the wire: a direct message's header names up to 16 of them.
PARSED_NAME_BYTES: Final = 128


def held_size(delivery: Delivery) -> int:
    """What holding `delivery` costs, in bytes: its frames and its parsed header."""
    frames = sum(len(f) for f in delivery.frames())
    return frames + PARSED_NAME_BYTES * len(delivery.header.named)


@dataclass(frozen=True, slots=True)
class Dropped:
    """A held message let go to make room: `sender` is the nickname's key (folded)."""

    sender: str
    delivery: Delivery


@dataclass
class Withheld:
    """Held deliveries by sender (its case-folded nickname), oldest first."""

    max_per_sender: int = MAX_WITHHELD
    max_bytes: int = MAX_WITHHELD_BYTES
    _by_sender: dict[str, OrderedDict[bytes, Delivery]] = field(default_factory=dict)
    #: (sender, msg_id) -> size, in arrival order over all senders: whom to drop first.
    _order: OrderedDict[tuple[str, bytes], int] = field(default_factory=OrderedDict)
    _bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._order)

    def hold(self, sender: str, delivery: Delivery) -> tuple[bool, list[Dropped]]:
        """Hold `delivery`; (False, []) if that very message is held already.

        Otherwise (True, what was dropped to make room, oldest first). A message larger
        than the whole budget on its own is dropped at once, and so listed itself.
        """
        held = self._by_sender.setdefault(sender, OrderedDict())
        msg_id = delivery.header.msg_id
        if msg_id in held:
            return False, []  # a resend of a message held already is the same message
        size = held_size(delivery)
        held[msg_id] = delivery
        self._order[(sender, msg_id)] = size
        self._bytes += size
        dropped: list[Dropped] = []
        while len(held) > self.max_per_sender:
            dropped.append(self._drop(sender, next(iter(held))))
        while self._bytes > self.max_bytes:
            oldest_sender, oldest_id = next(iter(self._order))
            dropped.append(self._drop(oldest_sender, oldest_id))
        return True, dropped

    def release(self, sender: str) -> list[Delivery]:
        """Everything held from `sender`, oldest first; none of it is held any longer."""
        held = self._by_sender.pop(sender, OrderedDict())
        for msg_id in held:
            self._bytes -= self._order.pop((sender, msg_id))
        return list(held.values())

    def forget(self, sender: str) -> None:
        """`sender` left: what it sent will never be read."""
        self.release(sender)

    def _drop(self, sender: str, msg_id: bytes) -> Dropped:
        held = self._by_sender[sender]
        delivery = held.pop(msg_id)
        if not held:
            del self._by_sender[sender]
        self._bytes -= self._order.pop((sender, msg_id))
        return Dropped(sender, delivery)

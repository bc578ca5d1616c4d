"""What admission remembers besides the pins: held vouches, who was told what, who
arrived when, and our own signed vouches (`Gate`).

Every table here is bounded by the room's size (`MAX_ROOM`), so a broker that makes up
members by the thousand grows none of them past its bound.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from zchat.envelope import Identity, MembershipRecord, make_vouch, nick_key
from zchat.envelope.limits import MAX_ROOM

#: Vouches held from one voucher: one per nickname, at most this many.
MAX_HELD_PER_VOUCHER: Final = MAX_ROOM
#: Our own vouches, signed once and kept: a member's rejoin costs no new signature.
MAX_SIGNED: Final = 2 * MAX_ROOM
#: Who we remember a member knows of: everyone in a full room, and as many again
#: who came and went; the oldest are forgotten first.
MAX_TOLD_PER_MEMBER: Final = 2 * MAX_ROOM
#: Departures remembered, to know who arrived since a member left.
MAX_GONE: Final = 4 * MAX_ROOM


@dataclass(frozen=True, slots=True)
class Held:
    """A vouch checked on arrival that could not count yet: its voucher (`voucher_fp`)
    was not admitted, or the nickname it names was not here."""

    voucher_fp: bytes
    nick: str
    fingerprint: bytes


@dataclass
class Gate:
    """What admission remembers besides the pins: held vouches, what we told whom,
    who arrived when, and our own signed vouches."""

    #: voucher (case-folded) -> vouched nickname (case-folded) -> the held fact
    _held: dict[str, OrderedDict[str, Held]] = field(default_factory=dict)
    #: member (case-folded) -> the (member, key) we sent it vouches for while present
    _told: dict[str, OrderedDict[tuple[str, bytes], None]] = field(default_factory=dict)
    #: member (case-folded) -> the clock when it arrived admitted; 0 for those here
    #: when we came in
    _arrived: dict[str, int] = field(default_factory=dict)
    #: member (case-folded) -> the clock when it left
    _gone: OrderedDict[str, int] = field(default_factory=OrderedDict)
    _clock: int = 0
    _signed: OrderedDict[tuple[bytes, str, bytes, int], MembershipRecord] = field(
        default_factory=OrderedDict
    )

    # --- held vouches ----------------------------------------------------------------

    def hold(self, voucher: str, fact: Held) -> bool:
        """Keep `fact` from `voucher` for later; True unless it was held already."""
        held = self._held.setdefault(nick_key(voucher), OrderedDict())
        key = nick_key(fact.nick)
        if held.get(key) == fact:
            return False
        held[key] = fact
        held.move_to_end(key)
        while len(held) > MAX_HELD_PER_VOUCHER:
            held.popitem(last=False)
        return True

    def release_from(self, voucher: str, voucher_fp: bytes) -> list[Held]:
        """Every fact `voucher` sent while its key was `voucher_fp`, taken out."""
        held = self._held.pop(nick_key(voucher), OrderedDict())
        return [fact for fact in held.values() if fact.voucher_fp == voucher_fp]

    def held_for(self, nick: str) -> list[tuple[str, Held]]:
        """(voucher, fact) for every held fact naming `nick`, taken out."""
        key = nick_key(nick)
        found = []
        for voucher, held in self._held.items():
            fact = held.pop(key, None)
            if fact is not None:
                found.append((voucher, fact))
        return found

    def held_count(self) -> int:
        return sum(len(held) for held in self._held.values())

    # --- who was told what, who arrived when ----------------------------------------

    def told(self, member: str, subject: str, fp: bytes) -> bool:
        return (nick_key(subject), fp) in self._told.get(nick_key(member), ())

    def tell(self, member: str, subject: str, fp: bytes) -> None:
        told = self._told.setdefault(nick_key(member), OrderedDict())
        told[nick_key(subject), fp] = None
        told.move_to_end((nick_key(subject), fp))
        while len(told) > MAX_TOLD_PER_MEMBER:
            # Forgetting only costs a vouch sent again: the member drops what it knew.
            told.popitem(last=False)

    def told_count(self) -> int:
        return sum(len(told) for told in self._told.values())

    def arrive(self, member: str, *, at_start: bool = False) -> None:
        """`member` is here and admitted; `at_start` when it was here before us."""
        key = nick_key(member)
        if key not in self._arrived:
            if not at_start:
                self._clock += 1
            self._arrived[key] = 0 if at_start else self._clock

    def arrived_since_left(self, member: str, other: str) -> bool:
        """Whether `other` arrived after `member` last left (or, for a member we never
        saw leave, after we came in): it may never have heard of `member`."""
        since = self._gone.get(nick_key(member), 0)
        return self._arrived.get(nick_key(other), 0) > since

    def saw_leave(self, member: str) -> bool:
        """Whether we saw `member` leave (and remember it: the newest MAX_GONE)."""
        return nick_key(member) in self._gone

    def leave(self, member: str) -> None:
        """`member` left: forget what it was told and what it vouched for."""
        key = nick_key(member)
        self._told.pop(key, None)
        self._held.pop(key, None)
        self._arrived.pop(key, None)
        self._gone[key] = self._clock
        self._gone.move_to_end(key)
        while len(self._gone) > MAX_GONE:
            self._gone.popitem(last=False)

    # --- our own vouches ------------------------------------------------------------

    def signed(
        self, identity: Identity, *, room_id: bytes, nick: str, fingerprint: bytes, time_ms: int
    ) -> MembershipRecord:
        """Our vouch for `nick`'s key, signed once and then reused."""
        key = (room_id, nick, fingerprint, time_ms)
        vouch = self._signed.get(key)
        if vouch is None:
            vouch = make_vouch(
                identity, room_id=room_id, nick=nick, fingerprint=fingerprint, time_ms=time_ms
            )
            self._signed[key] = vouch
            while len(self._signed) > MAX_SIGNED:
                self._signed.popitem(last=False)
        return vouch

"""What admission remembers besides the pins: held vouches, who was told what, who
arrived when, the revocations heard, and our own signed records (`Gate`).

Every table here is bounded by the room's size (`MAX_ROOM`), so a broker that makes up
members by the thousand grows none of them past its bound. A bound per member is not
enough where members the broker makes up can each add to a table (held vouches): such a
table has a bound of its own, over all members.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from zchat.envelope import Identity, MembershipRecord, RecordType, make_record, nick_key
from zchat.envelope.limits import MAX_ROOM

#: Vouches held from one voucher: one per nickname, at most this many.
MAX_HELD_PER_VOUCHER: Final = MAX_ROOM
#: Vouches held from all vouchers together. Each held vouch is a whole signed record,
#: about 800 bytes: 4,000 of them are about 3 MiB, where 999 made-up vouchers at their
#: own cap would be a million, some 770 MiB. Past it, a vouch is not kept, and that is
#: said: the broker could as well have withheld it, and the user can still /admit.
MAX_HELD: Final = 4 * MAX_ROOM
#: Our own vouches, signed once and kept: a member's rejoin costs no new signature.
MAX_SIGNED: Final = 2 * MAX_ROOM
#: Who we remember a member knows of: everyone in a full room, and as many again
#: who came and went; the oldest are forgotten first.
MAX_TOLD_PER_MEMBER: Final = 2 * MAX_ROOM
#: Departures remembered, to know who arrived since a member left.
MAX_GONE: Final = 4 * MAX_ROOM
#: Revocations remembered (signer, nickname, key -> its time), the oldest forgotten
#: first: as many from members we admitted, and again from the others, kept apart (see
#: `Gate.revoke`); and the vouches that admitted members in this run.
MAX_REVOKED: Final = 2 * MAX_ROOM
MAX_VOUCHED: Final = 2 * MAX_ROOM


@dataclass(frozen=True, slots=True)
class Held:
    """A vouch checked on arrival that could not count yet: its voucher (`voucher_fp`)
    was not admitted, or the nickname it names was not here. The whole record is kept:
    when it is released, it is checked again exactly as a fresh one (`peer.admission`)."""

    voucher_fp: bytes
    record: MembershipRecord

    @property
    def nick(self) -> str:
        return self.record.nick

    @property
    def fingerprint(self) -> bytes:
        return self.record.subject_fingerprint


class Kept(Enum):
    """What became of a vouch offered to the held store (`Gate.hold`)."""

    NEW = "new"  # held from now on
    AGAIN = "again"  # held already: nothing changed
    FULL = "full"  # not held: the store is full (`MAX_HELD`)


#: Why a vouch that would have been held was not (`Kept.FULL`).
NOT_KEPT: Final = (
    "too many vouches wait already (from members you have not admitted, or for members"
    " not here): not kept"
)


@dataclass
class Gate:
    """What admission remembers besides the pins: held vouches, what we told whom,
    who arrived when, and our own signed vouches."""

    #: voucher (case-folded) -> vouched nickname (case-folded) -> the held fact
    _held: dict[str, OrderedDict[str, Held]] = field(default_factory=dict)
    #: member (case-folded) -> the (member, key) it knows of while present -> whether
    #: it knows from us (our vouch: it may have admitted that key on our word)
    _told: dict[str, OrderedDict[tuple[str, bytes], bool]] = field(default_factory=dict)
    #: member (case-folded) -> the clock when it arrived admitted; 0 for those here
    #: when we came in
    _arrived: dict[str, int] = field(default_factory=dict)
    #: member (case-folded) -> the clock when it left
    _gone: OrderedDict[str, int] = field(default_factory=OrderedDict)
    _clock: int = 0
    _signed: OrderedDict[tuple[RecordType, bytes, str, bytes, int], MembershipRecord] = field(
        default_factory=OrderedDict
    )
    #: (signer fingerprint, nickname case-folded, key) -> the newest revocation's time,
    #: from signers we admitted, and from the others
    _revoked: OrderedDict[tuple[bytes, str, bytes], int] = field(default_factory=OrderedDict)
    _revoked_by_others: OrderedDict[tuple[bytes, str, bytes], int] = field(
        default_factory=OrderedDict
    )
    #: (nickname case-folded, key) -> the time of the vouch that admitted it in this run
    _vouched: OrderedDict[tuple[str, bytes], int] = field(default_factory=OrderedDict)

    # --- held vouches ----------------------------------------------------------------

    def hold(self, voucher: str, fact: Held) -> Kept:
        """Keep `fact` from `voucher` for later, in the place of what it held for that
        nickname, unless the store is full."""
        held = self._held.get(nick_key(voucher))
        key = nick_key(fact.nick)
        if held is not None and held.get(key) == fact:
            return Kept.AGAIN
        if (held is None or key not in held) and self.held_count() >= MAX_HELD:
            return Kept.FULL
        held = self._held.setdefault(nick_key(voucher), OrderedDict())
        held[key] = fact
        held.move_to_end(key)
        while len(held) > MAX_HELD_PER_VOUCHER:
            held.popitem(last=False)
        return Kept.NEW

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

    def unhold(self, voucher: str, nick: str) -> None:
        """Let go of what `voucher` vouched for `nick`, held (it took that back)."""
        held = self._held.get(nick_key(voucher))
        if held is not None:
            held.pop(nick_key(nick), None)

    # --- revocations ------------------------------------------------------------------

    def revoke(self, record: MembershipRecord, *, admitted: bool) -> None:
        """The REVOKE `record`: its signer took back its vouch for that nickname's key,
        at its time; `admitted`: we admitted the signer (its sender, checked).

        Kept in one of two tables, by whether we admitted the signer: the broker may
        make up members who sign revocations by the thousand, and those must not push
        out the revocation of a member we admitted (an older vouch of its would count
        again).
        """
        table = self._revoked if admitted else self._revoked_by_others
        key = (record.signer_fingerprint, nick_key(record.nick), record.subject_fingerprint)
        table[key] = max(record.time_ms, table.pop(key, record.time_ms))
        while len(table) > MAX_REVOKED:
            table.popitem(last=False)

    def revoked_since(self, record: MembershipRecord) -> bool:
        """Whether the vouch `record` was taken back later (or at its very time) by its
        signer: only a vouch newer than the revocation counts."""
        key = (record.signer_fingerprint, nick_key(record.nick), record.subject_fingerprint)
        times = (table.get(key) for table in (self._revoked, self._revoked_by_others))
        return any(t is not None and t >= record.time_ms for t in times)

    def vouched(self, nick: str, fp: bytes, time_ms: int) -> None:
        """`nick`'s key `fp` was admitted in this run on a vouch made at `time_ms`."""
        key = (nick_key(nick), fp)
        self._vouched[key] = time_ms
        self._vouched.move_to_end(key)
        while len(self._vouched) > MAX_VOUCHED:
            self._vouched.popitem(last=False)

    def vouch_time(self, nick: str, fp: bytes) -> int:
        """The time of the vouch that admitted `nick`'s key `fp` in this run; 0 for one
        admitted in an earlier run (any revocation is newer)."""
        return self._vouched.get((nick_key(nick), fp), 0)

    def untell(self, subject: str, fp: bytes) -> list[str]:
        """Forget that anyone knows of `subject`'s key `fp` (its admission is gone): the
        members (case-folded) we had sent our vouch for it, who may have admitted it on
        our word."""
        entry = (nick_key(subject), fp)
        told = []
        for member, subjects in self._told.items():
            if entry in subjects and subjects.pop(entry):
                told.append(member)
        self._vouched.pop(entry, None)
        return told

    # --- who was told what, who arrived when ----------------------------------------

    def told(self, member: str, subject: str, fp: bytes) -> bool:
        return (nick_key(subject), fp) in self._told.get(nick_key(member), ())

    def tell(self, member: str, subject: str, fp: bytes, *, by_us: bool = True) -> None:
        """`member` knows of `subject`'s key `fp`: from our vouch (`by_us`), or its own."""
        told = self._told.setdefault(nick_key(member), OrderedDict())
        told[nick_key(subject), fp] = by_us or told.get((nick_key(subject), fp), False)
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

    # --- our own records ------------------------------------------------------------

    def signed(
        self,
        identity: Identity,
        *,
        room_id: bytes,
        nick: str,
        fingerprint: bytes,
        time_ms: int,
        record_type: RecordType = RecordType.VOUCH,
    ) -> MembershipRecord:
        """Our vouch for `nick`'s key (or its revocation), signed once and then reused."""
        key = (record_type, room_id, nick, fingerprint, time_ms)
        record = self._signed.get(key)
        if record is None:
            record = make_record(
                identity,
                record_type,
                room_id=room_id,
                nick=nick,
                fingerprint=fingerprint,
                time_ms=time_ms,
            )
            self._signed[key] = record
            while len(self._signed) > MAX_SIGNED:
                self._signed.popitem(last=False)
        return record

"""Admission: who may read what we seal, and the vouches that carry it across the room.

The broker says who is present; only members decide who may read. We seal room
messages, direct messages, resends and vouches only to members we admitted
(docs/PROTOCOL.md §4.5):

- **by fingerprint**: the user compared it and typed at least its first
  `MIN_PREFIX` characters (`/admit NICK FP`, or `/trust NICK FP` for a changed key);
- **by vouch**: a member we admitted (either way: vouches chain) sealed us a signed
  vouch for exactly that nickname and key, in this room;
- **in an open room** (`--admit-all`): at first sight. Such an admission is never
  stored, never vouched for, and vouches are not taken: an open room gates nothing.

So that one comparison admits a newcomer everywhere, we tell the room:

- when the user admits X by fingerprint, one VOUCH message for X to our other
  admitted members;
- when X is admitted (either way), our vouches for the members we admitted, sealed to
  X alone, at most `MAX_VOUCHES_PER_MESSAGE` a message;
- when an admitted member comes back after leaving (not a quiet reconnect), our
  vouches to them, and our vouch for them to the members who arrived since they left.

Each member is told of each other member at most once while present (`Gate.told`), so
nothing loops and a broker restart, which brings everyone back at once, costs nothing.
Per event we send at most one message to the room and one per 16 members to the one
member concerned: bounded by the room's size.

A vouch we cannot act on yet is *held*, as a checked fact (the signature is verified
on arrival): its voucher is not admitted yet (the newcomer's side of the flow: the
members' vouches arrive before the newcomer admits the one member it knows), or the
nickname it names is not here yet. Held facts are bounded per voucher and dropped when
the voucher leaves. Everything else that admits nobody (a bad signature, another
voucher, another room, another key, another nickname) is reported, never silent.

This module keeps the state and makes the checks; `peer.core` seals and sends.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from zchat.envelope import Identity, Vouch, format_fingerprint, make_vouch, nick_key
from zchat.envelope.limits import MAX_ROOM
from zchat.peer.errors import FingerprintMismatch

#: The fewest fingerprint characters /admit and /trust accept: 8 of base32, 40 bits.
#: Enough that no one finds a key matching what a user compared by chance or by
#: grinding keys for a day, and short enough to read out and type.
MIN_PREFIX: Final = 8
#: Vouches held from one voucher: one per nickname, at most this many.
MAX_HELD_PER_VOUCHER: Final = MAX_ROOM
#: Our own vouches, signed once and kept: a member's rejoin costs no new signature.
MAX_SIGNED: Final = 2 * MAX_ROOM
#: Departures remembered, to know who arrived since a member left.
MAX_GONE: Final = 4 * MAX_ROOM


def admit_command(command: str, nick: str, fp: bytes) -> str:
    """The exact command that accepts `nick`'s key `fp`: its first two groups."""
    return f"/{command} {nick} {' '.join(format_fingerprint(fp).split(' ')[:2])}"


def check_fingerprint(nick: str, typed: str, fp: bytes, *, command: str = "admit") -> None:
    """Raise FingerprintMismatch unless `typed` is what the user was shown of `fp`.

    At least `MIN_PREFIX` characters of its base32 form (`format_fingerprint`), from
    the start; spaces and case do not matter. A prefix of another key (the one the
    user compared, before it changed again) is refused with the key there is now.
    """
    shown = format_fingerprint(fp)
    whole = shown.replace(" ", "")
    given = "".join(typed.split()).upper()
    command_line = admit_command(command, nick, fp)
    how = f"compare it with {nick} (in person, by phone), then type {command_line}"
    if not given:
        raise FingerprintMismatch(f"{nick}'s fingerprint is {shown}; {how}")
    if len(given) < MIN_PREFIX:
        raise FingerprintMismatch(
            f"give at least {MIN_PREFIX} characters of {nick}'s fingerprint: nothing changed"
        )
    if not whole.startswith(given):
        raise FingerprintMismatch(
            f"{nick}'s key is {shown}, which does not start with what you typed: "
            f"nothing changed; {how}"
        )


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
    _told: dict[str, set[tuple[str, bytes]]] = field(default_factory=dict)
    #: member (case-folded) -> the clock when it arrived admitted; 0 for those here
    #: when we came in
    _arrived: dict[str, int] = field(default_factory=dict)
    #: member (case-folded) -> the clock when it left
    _gone: OrderedDict[str, int] = field(default_factory=OrderedDict)
    _clock: int = 0
    _signed: OrderedDict[tuple[str, str, bytes, int], Vouch] = field(default_factory=OrderedDict)

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
        self._told.setdefault(nick_key(member), set()).add((nick_key(subject), fp))

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
        self, identity: Identity, *, room: str, nick: str, fingerprint: bytes, time_ms: int
    ) -> Vouch:
        """Our vouch for `nick`'s key, signed once and then reused."""
        key = (room, nick, fingerprint, time_ms)
        vouch = self._signed.get(key)
        if vouch is None:
            vouch = make_vouch(
                identity, room=room, nick=nick, fingerprint=fingerprint, time_ms=time_ms
            )
            self._signed[key] = vouch
            while len(self._signed) > MAX_SIGNED:
                self._signed.popitem(last=False)
        return vouch

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
  X alone, at most `MAX_RECORDS_PER_MESSAGE` a message;
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

This module keeps the state (`Gate`) and the rules (`AdmissionMixin`, the part of
`peer.core.PeerCore` that admits); the core seals and sends.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from zchat.envelope import (
    BadRecord,
    EnvelopeError,
    Identity,
    MembershipRecord,
    RecordType,
    check_record,
    format_fingerprint,
    make_vouch,
    nick_key,
    parse_records,
)
from zchat.envelope.limits import MAX_ROOM
from zchat.peer import events as ev
from zchat.peer.errors import FingerprintMismatch
from zchat.peer.pins import Admission, How, Pins

if TYPE_CHECKING:  # the core imports this module: its types, for the checker only
    from zchat.peer.core import Contact, PeerConfig

#: The fewest fingerprint characters /admit and /trust accept: 8 of base32, 40 bits.
#: Enough that no one finds a key matching what a user compared by chance or by
#: grinding keys for a day, and short enough to read out and type.
MIN_PREFIX: Final = 8
#: Vouches held from one voucher: one per nickname, at most this many.
MAX_HELD_PER_VOUCHER: Final = MAX_ROOM
#: Our own vouches, signed once and kept: a member's rejoin costs no new signature.
MAX_SIGNED: Final = 2 * MAX_ROOM
#: Who we remember a member knows of: everyone in a full room, and as many again
#: who came and went; the oldest are forgotten first.
MAX_TOLD_PER_MEMBER: Final = 2 * MAX_ROOM
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


class AdmissionMixin:
    """The admission rules of `peer.core.PeerCore`, which inherits them: who is
    admitted when a member appears, what a VOUCH message does, whom we tell what.

    Kept apart from the core's protocol handling so that the rules read in one place
    (docs/PROTOCOL.md §4.5); they work on the core's directory and pins, and ask the
    core to seal (`_seal_vouches`).
    """

    if TYPE_CHECKING:  # provided by PeerCore
        nick: str
        identity: Identity
        room_id: bytes
        config: PeerConfig
        members: dict[str, Contact]
        _missing: dict[str, tuple[Contact, float]]
        pins: Pins
        gate: Gate
        date: Callable[[], float]
        _events: list[ev.Event]
        _pins_changed: bool
        _pins_full_said: bool
        _welcomed_once: bool

        def _problem(self, code: str, message: str) -> None: ...

        def _remember_certificate(self, member: Contact) -> None: ...

        def _seal_vouches(
            self, vouches: list[MembershipRecord], recipients: list[Contact], now: float
        ) -> None: ...

    def _arrived(self, member: Contact, now: float, *, announce: bool, already_here: bool) -> None:
        """A member appeared in the directory: admitted, waiting, or vouched for already."""
        if member.trust is ev.Trust.CHANGED:
            return  # the key-change warning says what to do
        if member.admission is None:
            for voucher, fact in self.gate.held_for(member.nick):
                self._weigh(voucher, fact, now)  # vouches that came before the member
        if member.admission is None:
            if announce:
                command = admit_command("admit", member.nick, member.fingerprint)
                self._events.append(
                    ev.AdmitNeeded(member.nick, member.fingerprint, already_here, command)
                )
            return
        if not member.vouches_count:
            return
        at_start = already_here and not self._welcomed_once
        self.gate.arrive(member.nick, at_start=at_start)
        if announce and not already_here and self.gate.saw_leave(member.nick):
            # Back after leaving while we were here: what we admitted meanwhile, to them;
            # them, to those who arrived while they were away. Only what changed while
            # they were away: a broker announcing every member we ever admitted must not
            # make us sign a vouch for each pair of them (quadratic in the room).
            self._share_with(member, now, since_left=True)
            others = [
                r
                for r in self._readers()
                if r is not member and self.gate.arrived_since_left(member.nick, r.nick)
            ]
            self._vouch_to(member, others, now)

    def _grant(self, member: Contact, admission: Admission, now: float) -> None:
        """Admit `member`, record it, spread the word, and act on what it vouched for."""
        work = [(member, admission)]
        while work:
            m, granted = work.pop(0)
            if m.vouches_count and granted.how is not How.YOU:
                continue  # admitted already: nothing to do, nothing to send (no loops)
            m.admission = granted
            self._remember_certificate(m)
            if not self.pins.admit(m.nick, m.fingerprint, granted, seen_ms=self._date_ms()):
                self._pins_full()
            self._pins_changed = True
            self._events.append(ev.Admitted(m.nick, m.fingerprint, granted.how.value, granted.by))
            self.gate.arrive(m.nick)
            if granted.how is How.YOU:
                self._vouch_to(m, [r for r in self._readers() if r is not m], now)
            self._share_with(m, now)
            # What it vouched for while we had not admitted it counts now.
            for fact in self.gate.release_from(m.nick, m.fingerprint):
                target = self._weigh_target(m, fact)
                if target is not None:
                    work.append((target, Admission(How.VOUCH, m.nick, self._date_ms())))

    def _take_vouches(self, sender: Contact, plaintext: bytes, now: float) -> None:
        """A VOUCH message from `sender` (its envelope verified and opened)."""
        if self.config.admit_all:
            return  # an open room admits everyone already, and vouches for nobody
        try:
            records = parse_records(plaintext)
        except EnvelopeError as exc:
            self._events.append(ev.VouchRejected(sender.nick, (), f"unreadable vouches: {exc}"))
            return
        held: list[str] = []
        seen: set[str] = set()
        for vouch in records:
            # Each record on its own: one unreadable, or of a kind not acted on here,
            # is reported, and the others still count.
            if isinstance(vouch, EnvelopeError):
                self._events.append(ev.VouchRejected(sender.nick, (), f"unreadable: {vouch}"))
                continue
            if vouch.type is not RecordType.VOUCH:
                reason = "revocations are not acted on by this zchat"
                self._events.append(ev.VouchRejected(sender.nick, (vouch.nick,), reason))
                continue
            if nick_key(vouch.nick) in seen:
                continue  # one vouch a nickname and message: a repeat costs no signature check
            seen.add(nick_key(vouch.nick))
            reason = self._refusal(sender, vouch)
            if reason:
                self._events.append(ev.VouchRejected(sender.nick, (vouch.nick,), reason))
                continue
            if nick_key(vouch.nick) == nick_key(self.nick):
                continue  # a vouch for us, with our key: nothing to do
            # Whoever vouches for a member knows of it: we need not tell them. Only
            # for members here with that key: a vouch for anyone else must not grow
            # what we remember (a made-up member's vouches for made-up names).
            here = self.members.get(nick_key(vouch.nick))
            if here is not None and here.fingerprint == vouch.subject_fingerprint:
                self.gate.tell(sender.nick, vouch.nick, vouch.subject_fingerprint)
            fact = Held(sender.fingerprint, vouch.nick, vouch.subject_fingerprint)
            if not sender.vouches_count:
                target = self.members.get(nick_key(vouch.nick))
                if target is not None and target.vouches_count:
                    continue  # admitted already: it would change nothing later either
                if self.gate.hold(sender.nick, fact):
                    held.append(vouch.nick)
                continue
            self._weigh(sender.nick, fact, now)
        if held:
            reason = f"you have not admitted {sender.nick}"
            self._events.append(ev.VouchRejected(sender.nick, tuple(held), reason, held=True))

    def _refusal(self, sender: Contact, vouch: MembershipRecord) -> str:
        """Why `vouch` from `sender` can never count, or "" when it may."""
        try:
            check_record(
                vouch,
                room_id=self.room_id,
                signer_key=sender.public_key,
                signer_fingerprint=sender.fingerprint,
            )
        except BadRecord as exc:
            return str(exc)
        if nick_key(vouch.nick) == nick_key(self.nick):
            if vouch.subject_fingerprint != self.identity.fingerprint:
                return "it vouches for another key under your nickname"
            return ""
        target = self.members.get(nick_key(vouch.nick))
        if target is None:
            # Not here: a newcomer the JOIN of whom is still on its way, or that key
            # announced under another nickname (a vouch replayed for someone else).
            for other in self.members.values():
                if other.fingerprint == vouch.subject_fingerprint:
                    return f"it names {vouch.nick}, but that key is here as {other.nick}"
            return ""
        if target.fingerprint != vouch.subject_fingerprint:
            return f"it is for another key than the one {target.nick} has here"
        if target.trust is ev.Trust.CHANGED:
            return (
                f"{target.nick}'s key changed: only you can accept a new key"
                f" ({admit_command('trust', target.nick, target.fingerprint)})"
            )
        return ""

    def _weigh(self, voucher_nick: str, fact: Held, now: float) -> None:
        """Act on a checked vouch from an admitted voucher, or keep it for later."""
        voucher = self.members.get(nick_key(voucher_nick))
        if voucher is None or voucher.fingerprint != fact.voucher_fp:
            return  # its voucher left or changed key: the vouch goes with it
        if not voucher.vouches_count:
            self.gate.hold(voucher.nick, fact)
            return
        target = self._weigh_target(voucher, fact)
        if target is not None:
            self._grant(target, Admission(How.VOUCH, voucher.nick, self._date_ms()), now)

    def _weigh_target(self, voucher: Contact, fact: Held) -> Contact | None:
        """The member an admitted voucher's vouch admits now, if any; held if not here."""
        target = self.members.get(nick_key(fact.nick))
        if target is None:
            self.gate.hold(voucher.nick, fact)  # counts when they arrive
            return None
        if target.fingerprint != fact.fingerprint:
            reason = f"it is for another key than the one {target.nick} has here"
            self._events.append(ev.VouchRejected(voucher.nick, (fact.nick,), reason))
            return None
        if target.trust is ev.Trust.CHANGED or target.vouches_count:
            return None
        return target

    def _readers(self) -> list[Contact]:
        """Who may read what we seal for the room: admitted, key unchanged. Members
        missing since a broker restart too: they are most likely reconnecting, and
        the outbox delivers when they are back."""
        present = [*self.members.values(), *(m for m, _ in self._missing.values())]
        return [m for m in present if m.may_read]

    def _share_with(self, member: Contact, now: float, *, since_left: bool = False) -> None:
        """Send `member` our vouches for the members we admitted, not told before (with
        `since_left`, only those who arrived after `member` last left)."""
        subjects = [
            m
            for m in self._readers()
            if m.vouches_count
            and nick_key(m.nick) != nick_key(member.nick)
            and not self.gate.told(member.nick, m.nick, m.fingerprint)
            and (not since_left or self.gate.arrived_since_left(member.nick, m.nick))
        ]
        for m in subjects:
            self.gate.tell(member.nick, m.nick, m.fingerprint)
        self._seal_vouches([self._my_vouch(m) for m in subjects], [member], now)

    def _vouch_to(self, subject: Contact, recipients: list[Contact], now: float) -> None:
        """Send our vouch for `subject` to those of `recipients` not told of it yet."""
        if not subject.vouches_count:
            return
        told = [
            r for r in recipients if not self.gate.told(r.nick, subject.nick, subject.fingerprint)
        ]
        for r in told:
            self.gate.tell(r.nick, subject.nick, subject.fingerprint)
        if told:
            self._seal_vouches([self._my_vouch(subject)], told, now)

    def _my_vouch(self, member: Contact) -> MembershipRecord:
        assert member.admission is not None
        return self.gate.signed(
            self.identity,
            room_id=self.room_id,
            nick=member.nick,
            fingerprint=member.fingerprint,
            time_ms=member.admission.at_ms,
        )

    def _pins_full(self) -> None:
        if not self._pins_full_said:
            self._pins_full_said = True
            self._problem(
                "pins",
                "the pins file is full of admitted keys: new ones hold for this session only"
                " ('zchat keys forget NICK' makes room)",
            )

    def _date_ms(self) -> int:
        return max(0, int(self.date() * 1000))

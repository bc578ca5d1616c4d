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

This module keeps the rules (`Admission`, a part of the core); what they remember
besides the pins is `peer.gate.Gate`. Admission decides `Contact.admission` and nothing
else of the room: each method takes a read-only view of it (`RoomView`) and returns, in
order, what the core is to do (`Effect`): events to show, vouches to seal and to whom,
admissions to store in the pins. It never seals, sends or touches the pins itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from zchat.envelope import (
    BadRecord,
    EnvelopeError,
    Identity,
    MembershipRecord,
    RecordType,
    check_record,
    nick_key,
    parse_records,
)
from zchat.peer import events as ev
from zchat.peer.contact import Contact
from zchat.peer.fingerprints import admit_command
from zchat.peer.gate import Gate, Held

# `pins.Admission` is the record of one admission (how, by whom, when); here it is a
# grant, so that `Admission` can name the part.
from zchat.peer.pins import Admission as Grant
from zchat.peer.pins import How, Pin


class RoomView(Protocol):
    """What admission sees of the room (the core is one): read, never written."""

    @property
    def nick(self) -> str:
        """Our own nickname."""

    @property
    def identity(self) -> Identity:
        """Our identity: it signs our vouches."""

    @property
    def room_id(self) -> bytes:
        """Our room's id (`envelope.room.room_id`): a vouch is bound to it."""

    def member(self, nick: str) -> Contact | None:
        """The member present under `nick`, if any."""

    def present(self) -> Iterable[Contact]:
        """Every member present."""

    def readers(self) -> list[Contact]:
        """Who may read what we seal for the room (`peer.directory`)."""

    def date_ms(self) -> int:
        """Today's date, in milliseconds since the epoch: admissions carry it."""


@dataclass(frozen=True, slots=True)
class SealVouches:
    """Seal `vouches` to `recipients`, as messages of their own (`peer.sending`)."""

    vouches: tuple[MembershipRecord, ...]
    recipients: tuple[Contact, ...]


@dataclass(frozen=True, slots=True)
class Record:
    """`member` was admitted as `grant` says: store it in the pins, and remember how
    new its session key is (`peer.directory`)."""

    member: Contact
    grant: Grant


#: What admission asks of the core, in the order the core is to do it.
Effect = ev.Event | SealVouches | Record


@dataclass
class Admission:
    """The admission rules: who is admitted when a member appears, what a VOUCH message
    does, whom we tell what (docs/PROTOCOL.md §4.5).

    Owns the gate and the open-room flag. The core calls `on_sight` and `arrived` for
    each member listed, `grant` when the user admits one, `take_vouches` for each VOUCH
    message opened, and `left` when a member goes; and applies what they return.
    """

    #: An open room (`--admit-all`): every key at first sight, and no vouches.
    open_room: bool = False
    gate: Gate = field(default_factory=Gate)

    def on_sight(
        self, member: Contact, record: Pin | None, known: Contact | None, date_ms: int
    ) -> None:
        """How `member`, just listed, is admitted from the start, if at all: by its pin
        (`record`), as we knew it this session (`known`), or by the open room."""
        if known is not None and known.public_der != member.public_der:
            self.gate.leave(member.nick)  # another key: what we told the old one is not known
        if record is not None and record.fingerprint == member.fingerprint and record.admitted:
            member.admission = record.admission  # a returning member: admitted at once
        elif (
            known is not None
            and known.fingerprint == member.fingerprint
            and known.may_read
            and member.trust is not ev.Trust.CHANGED
        ):
            member.admission = known.admission  # admitted this session (the pins were full)
        elif self.open_room and member.trust is not ev.Trust.CHANGED:
            member.admission = Grant(How.OPEN, "", date_ms)

    def left(self, nick: str) -> None:
        """`nick` left: what it was told and what it vouched for go with it."""
        self.gate.leave(nick)

    def arrived(
        self,
        room: RoomView,
        member: Contact,
        *,
        announce: bool,
        already_here: bool,
        first_snapshot: bool,
    ) -> list[Effect]:
        """A member appeared in the directory: admitted, waiting, or vouched for already.

        `first_snapshot`: it is listed in the first snapshot of this run, so it was here
        before us.
        """
        out: list[Effect] = []
        if member.trust is ev.Trust.CHANGED:
            return out  # the key-change warning says what to do
        if member.admission is None:
            for voucher, fact in self.gate.held_for(member.nick):
                self._weigh(room, voucher, fact, out)  # vouches that came before the member
        if member.admission is None:
            if announce:
                command = admit_command("admit", member.nick, member.fingerprint)
                out.append(ev.AdmitNeeded(member.nick, member.fingerprint, already_here, command))
            return out
        if not member.vouches_admit:
            return out
        at_start = already_here and first_snapshot
        self.gate.arrive(member.nick, at_start=at_start)
        if announce and not already_here and self.gate.saw_leave(member.nick):
            # Back after leaving while we were here: what we admitted meanwhile, to them;
            # them, to those who arrived while they were away. Only what changed while
            # they were away: a broker announcing every member we ever admitted must not
            # make us sign a vouch for each pair of them (quadratic in the room).
            self._share_with(room, member, out, since_left=True)
            others = [
                r
                for r in room.readers()
                if r is not member and self.gate.arrived_since_left(member.nick, r.nick)
            ]
            self._vouch_to(room, member, others, out)
        return out

    def grant(self, room: RoomView, member: Contact, grant: Grant) -> list[Effect]:
        """Admit `member`, record it, spread the word, and act on what it vouched for."""
        out: list[Effect] = []
        self._grant(room, member, grant, out)
        return out

    def _grant(self, room: RoomView, member: Contact, grant: Grant, out: list[Effect]) -> None:
        work = [(member, grant)]
        while work:
            m, granted = work.pop(0)
            if m.vouches_admit and granted.how is not How.YOU:
                continue  # admitted already: nothing to do, nothing to send (no loops)
            m.admission = granted
            out.append(Record(m, granted))
            out.append(ev.Admitted(m.nick, m.fingerprint, granted.how.value, granted.by))
            self.gate.arrive(m.nick)
            if granted.how is How.YOU:
                self._vouch_to(room, m, [r for r in room.readers() if r is not m], out)
            self._share_with(room, m, out)
            # What it vouched for while we had not admitted it counts now.
            for fact in self.gate.release_from(m.nick, m.fingerprint):
                target = self._weigh_target(room, m, fact, out)
                if target is not None:
                    work.append((target, Grant(How.VOUCH, m.nick, room.date_ms())))

    def take_vouches(self, room: RoomView, sender: Contact, plaintext: bytes) -> list[Effect]:
        """A VOUCH message from `sender` (its envelope verified and opened)."""
        out: list[Effect] = []
        if self.open_room:
            return out  # an open room admits everyone already, and vouches for nobody
        try:
            records = parse_records(plaintext)
        except EnvelopeError as exc:
            out.append(ev.VouchRejected(sender.nick, (), f"unreadable vouches: {exc}"))
            return out
        held: list[str] = []
        seen: set[str] = set()
        for vouch in records:
            # Each record on its own: one unreadable, or of a kind not acted on here,
            # is reported, and the others still count.
            if isinstance(vouch, EnvelopeError):
                out.append(ev.VouchRejected(sender.nick, (), f"unreadable: {vouch}"))
                continue
            if vouch.type is not RecordType.VOUCH:
                reason = "revocations are not acted on by this zchat"
                out.append(ev.VouchRejected(sender.nick, (vouch.nick,), reason))
                continue
            if nick_key(vouch.nick) in seen:
                continue  # one vouch a nickname and message: a repeat costs no signature check
            seen.add(nick_key(vouch.nick))
            reason = self._refusal(room, sender, vouch)
            if reason:
                out.append(ev.VouchRejected(sender.nick, (vouch.nick,), reason))
                continue
            if nick_key(vouch.nick) == nick_key(room.nick):
                continue  # a vouch for us, with our key: nothing to do
            # Whoever vouches for a member knows of it: we need not tell them. Only
            # for members here with that key: a vouch for anyone else must not grow
            # what we remember (a made-up member's vouches for made-up names).
            here = room.member(vouch.nick)
            if here is not None and here.fingerprint == vouch.subject_fingerprint:
                self.gate.tell(sender.nick, vouch.nick, vouch.subject_fingerprint)
            fact = Held(sender.fingerprint, vouch.nick, vouch.subject_fingerprint)
            if not sender.vouches_admit:
                target = room.member(vouch.nick)
                if target is not None and target.vouches_admit:
                    continue  # admitted already: it would change nothing later either
                if self.gate.hold(sender.nick, fact):
                    held.append(vouch.nick)
                continue
            self._weigh(room, sender.nick, fact, out)
        if held:
            reason = f"you have not admitted {sender.nick}"
            out.append(ev.VouchRejected(sender.nick, tuple(held), reason, held=True))
        return out

    def _refusal(self, room: RoomView, sender: Contact, vouch: MembershipRecord) -> str:
        """Why `vouch` from `sender` can never count, or "" when it may."""
        try:
            check_record(
                vouch,
                room_id=room.room_id,
                signer_key=sender.public_key,
                signer_fingerprint=sender.fingerprint,
            )
        except BadRecord as exc:
            return str(exc)
        if nick_key(vouch.nick) == nick_key(room.nick):
            if vouch.subject_fingerprint != room.identity.fingerprint:
                return "it vouches for another key under your nickname"
            return ""
        target = room.member(vouch.nick)
        if target is None:
            # Not here: a newcomer the JOIN of whom is still on its way, or that key
            # announced under another nickname (a vouch replayed for someone else).
            for other in room.present():
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

    def _weigh(self, room: RoomView, voucher_nick: str, fact: Held, out: list[Effect]) -> None:
        """Act on a checked vouch from an admitted voucher, or keep it for later."""
        voucher = room.member(voucher_nick)
        if voucher is None or voucher.fingerprint != fact.voucher_fp:
            return  # its voucher left or changed key: the vouch goes with it
        if not voucher.vouches_admit:
            self.gate.hold(voucher.nick, fact)
            return
        target = self._weigh_target(room, voucher, fact, out)
        if target is not None:
            self._grant(room, target, Grant(How.VOUCH, voucher.nick, room.date_ms()), out)

    def _weigh_target(
        self, room: RoomView, voucher: Contact, fact: Held, out: list[Effect]
    ) -> Contact | None:
        """The member an admitted voucher's vouch admits now, if any; held if not here."""
        target = room.member(fact.nick)
        if target is None:
            self.gate.hold(voucher.nick, fact)  # counts when they arrive
            return None
        if target.fingerprint != fact.fingerprint:
            reason = f"it is for another key than the one {target.nick} has here"
            out.append(ev.VouchRejected(voucher.nick, (fact.nick,), reason))
            return None
        if target.trust is ev.Trust.CHANGED or target.vouches_admit:
            return None
        return target

    def _share_with(
        self, room: RoomView, member: Contact, out: list[Effect], *, since_left: bool = False
    ) -> None:
        """Send `member` our vouches for the members we admitted, not told before (with
        `since_left`, only those who arrived after `member` last left)."""
        subjects = [
            m
            for m in room.readers()
            if m.vouches_admit
            and nick_key(m.nick) != nick_key(member.nick)
            and not self.gate.told(member.nick, m.nick, m.fingerprint)
            and (not since_left or self.gate.arrived_since_left(member.nick, m.nick))
        ]
        for m in subjects:
            self.gate.tell(member.nick, m.nick, m.fingerprint)
        vouches = tuple(self._my_vouch(room, m) for m in subjects)
        if vouches:
            out.append(SealVouches(vouches, (member,)))

    def _vouch_to(
        self, room: RoomView, subject: Contact, recipients: list[Contact], out: list[Effect]
    ) -> None:
        """Send our vouch for `subject` to those of `recipients` not told of it yet."""
        if not subject.vouches_admit:
            return
        untold = [
            r for r in recipients if not self.gate.told(r.nick, subject.nick, subject.fingerprint)
        ]
        for r in untold:
            self.gate.tell(r.nick, subject.nick, subject.fingerprint)
        if untold:
            out.append(SealVouches((self._my_vouch(room, subject),), tuple(untold)))

    def _my_vouch(self, room: RoomView, member: Contact) -> MembershipRecord:
        assert member.admission is not None
        return self.gate.signed(
            room.identity,
            room_id=room.room_id,
            nick=member.nick,
            fingerprint=member.fingerprint,
            time_ms=member.admission.at_ms,
        )

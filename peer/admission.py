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

A vouch we cannot act on yet is *held*: its voucher is not admitted yet (the
newcomer's side of the flow: the members' vouches arrive before the newcomer admits the
one member it knows), or the nickname it names is not here yet. It is checked on
arrival and kept whole; when it is released it is checked again exactly as a fresh one
would be (the room, the voucher's key and the member's key as they are then, and the
time: no revocation since, no tombstone), since the room may have moved on meanwhile.
Held vouches are bounded per voucher and in all (`peer.gate.MAX_HELD`: past it, one is not
kept, and that is said), and dropped when the voucher leaves. Everything
else that admits nobody (a bad signature, another voucher, another room, another key,
another nickname, a vouch its signer took back, a key the user forgot) is reported,
never silent.

Revocation (docs/PROTOCOL.md §4.5): the user's `/revoke NICK` (or `zchat keys forget`)
drops NICK at once, and we send a signed REVOKE to the members we admitted. A member
that admitted NICK only on the revoker's vouch (newer than that vouch) drops NICK too,
and passes its own revocation on to those it had told of NICK; a member that compared
NICK itself, or admitted it on someone else's word, keeps its decision and is told.
Whoever was admitted only on the word of a member so dropped goes with it: trust that
came from a key taken back is taken back (`_drop`). A later vouch, newer than the
revocation, admits again; a vouch never admits a key the user forgot (a tombstone).

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
from zchat.peer.gate import NOT_KEPT, Gate, Held, Kept

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

    def listed(self, nick: str) -> Contact | None:
        """The member present under `nick`, or missing since a broker restart."""

    def present(self) -> Iterable[Contact]:
        """Every member present."""

    def readers(self) -> list[Contact]:
        """Who may read what we seal for the room (`peer.directory`)."""

    def date_ms(self) -> int:
        """Today's date, in milliseconds since the epoch: admissions carry it."""

    def pin(self, nick: str) -> Pin | None:
        """The pin for `nick`, if any: how its key was admitted, maybe in an earlier run."""

    def pinned(self) -> Iterable[Pin]:
        """Every pin."""

    def forgotten(self, nick: str, fingerprint: bytes) -> bool:
        """Whether the user forgot the key `fingerprint` (a tombstone, `peer.pins`), as
        `nick`'s or under another name: no vouch admits it again."""


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


@dataclass(frozen=True, slots=True)
class Drop:
    """`nick`'s key `fingerprint` is admitted no more: take the admission out of its
    pin, and stop sealing to it at once (what waits for it in the outbox goes)."""

    nick: str
    fingerprint: bytes


#: What admission asks of the core, in the order the core is to do it.
Effect = ev.Event | SealVouches | Record | Drop


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

    def _grant(
        self,
        room: RoomView,
        member: Contact,
        grant: Grant,
        out: list[Effect],
        vouch: MembershipRecord | None = None,
    ) -> None:
        """Admit `member` as `grant` says (on `vouch`, for a grant by vouch), and act on
        what it vouched for while we had not admitted it."""
        work = [(member, grant, vouch)]
        while work:
            m, granted, on = work.pop(0)
            if m.vouches_admit and granted.how is not How.YOU:
                continue  # admitted already: nothing to do, nothing to send (no loops)
            m.admission = granted
            if on is not None:
                self.gate.vouched(m.nick, m.fingerprint, on.time_ms)
            out.append(Record(m, granted))
            out.append(ev.Admitted(m.nick, m.fingerprint, granted.how.value, granted.by))
            self.gate.arrive(m.nick)
            if granted.how is How.YOU:
                self._vouch_to(room, m, [r for r in room.readers() if r is not m], out)
            # What it vouched for while we had not admitted it counts now, if it still
            # passes every check a fresh vouch must; and it tells us what it knows of,
            # before we share what we know with it.
            released = [
                (target, fact)
                for fact in self.gate.release_from(m.nick, m.fingerprint)
                if (target := self._released(room, m, fact, out)) is not None
            ]
            self._share_with(room, m, out)
            for target, fact in released:
                grant_on = Grant(How.VOUCH, m.nick, room.date_ms())
                work.append((target, grant_on, fact.record))

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
        full: list[str] = []  # not held: the held store is full
        seen: set[tuple[RecordType, str]] = set()
        for vouch in records:
            # Each record on its own: one unreadable, or of a kind not acted on here,
            # is reported, and the others still count.
            if isinstance(vouch, EnvelopeError):
                out.append(ev.VouchRejected(sender.nick, (), f"unreadable: {vouch}"))
                continue
            if (vouch.type, nick_key(vouch.nick)) in seen:
                continue  # one record a kind, nickname and message: a repeat costs nothing
            seen.add((vouch.type, nick_key(vouch.nick)))
            if vouch.type is RecordType.REVOKE:
                self._take_revoke(room, sender, vouch, out)
                continue
            reason = self._refusal(room, sender, vouch)
            if reason:
                out.append(ev.VouchRejected(sender.nick, (vouch.nick,), reason))
                continue
            if nick_key(vouch.nick) == nick_key(room.nick):
                continue  # a vouch for us, with our key: nothing to do
            if sender.vouches_admit:
                self._knows(room, sender, vouch)
            fact = Held(sender.fingerprint, vouch)
            if not sender.vouches_admit:
                target = room.member(vouch.nick)
                if target is not None and target.vouches_admit:
                    continue  # admitted already: it would change nothing later either
                kept = self.gate.hold(sender.nick, fact)
                if kept is Kept.NEW:
                    held.append(vouch.nick)
                elif kept is Kept.FULL:
                    full.append(vouch.nick)
                continue
            target = self._weigh_target(room, sender, fact, out)  # checked just above
            if target is not None:
                grant = Grant(How.VOUCH, sender.nick, room.date_ms())
                self._grant(room, target, grant, out, vouch)
        if held:
            reason = f"you have not admitted {sender.nick}"
            out.append(ev.VouchRejected(sender.nick, tuple(held), reason, held=True))
        if full:
            out.append(ev.VouchRejected(sender.nick, tuple(full), NOT_KEPT))
        return out

    # --- revocation ---------------------------------------------------------------------

    def revoke(self, room: RoomView, nick: str, fingerprint: bytes) -> list[Effect]:
        """The user takes back `nick`'s key `fingerprint` (/revoke, `zchat keys forget`):
        it reads nothing more from us, and the members we admitted are told (a signed
        REVOKE), so that those who admitted it on our word drop it too."""
        out: list[Effect] = []
        member = room.listed(nick)
        if member is not None and member.fingerprint != fingerprint:
            member = None  # another key under that name now: it keeps its own standing
        pin = _pin_of(room, nick, fingerprint)
        admission = member.admission if member is not None else pin.admission if pin else None
        if admission is None or admission.how is How.OPEN:
            # Never admitted (nor vouched for by us): nothing to take back from anyone;
            # the tombstone the caller writes keeps any vouch from admitting it.
            out.append(ev.Revoked(nick, fingerprint, room.nick, dropped=False))
            return out
        self._drop(room, nick, fingerprint, room.nick, out, tell_everyone=True)
        return out

    def _take_revoke(
        self, room: RoomView, sender: Contact, record: MembershipRecord, out: list[Effect]
    ) -> None:
        """A REVOKE from `sender`: drop its subject if we admitted it only on `sender`'s
        word, given before the revocation; else say so, and keep our own decision."""
        forged = _not_signed_by(room, sender, record)
        if forged:
            out.append(ev.VouchRejected(sender.nick, (record.nick,), forged))
            return
        # No vouch of its, as old as this or older, counts any more: not one held,
        # not one that comes later (reordered by the broker, or resent).
        self.gate.revoke(record, admitted=sender.vouches_admit)
        self.gate.unhold(sender.nick, record.nick)
        if not sender.vouches_admit or nick_key(record.nick) == nick_key(room.nick):
            # Not admitted: nothing was admitted on its word (what it vouched for is
            # held, and goes with this). About us: we know who we are.
            return
        nick, fp = record.nick, record.subject_fingerprint
        member = room.listed(nick)
        if member is not None and member.fingerprint == fp:
            admission = member.admission if member.vouches_admit else None
        else:
            pin = _pin_of(room, nick, fp)
            admission = pin.admission if pin is not None and pin.admitted else None
        if admission is None:
            return  # not admitted here: nothing to take back (and nothing to say)
        if not (
            admission.on_word_of(sender.nick) and self.gate.vouch_time(nick, fp) < record.time_ms
        ):
            out.append(ev.Revoked(nick, fp, sender.nick, dropped=False))
            return
        self._drop(room, nick, fp, sender.nick, out)

    def _drop(
        self,
        room: RoomView,
        nick: str,
        fingerprint: bytes,
        by: str,
        out: list[Effect],
        *,
        tell_everyone: bool = False,
    ) -> None:
        """`nick`'s key is admitted no more, on `by`'s word; nor is anyone we admitted
        only on its word, and so on. Each one we drop, we revoke in turn to those we had
        told of it (with `tell_everyone`, the first to every member we admitted)."""
        work = [(nick, fingerprint, "")]
        done: set[tuple[str, bytes]] = set()
        while work:
            n, fp, via = work.pop(0)
            if (nick_key(n), fp) in done:
                continue
            done.add((nick_key(n), fp))
            member = room.listed(n)
            if member is not None and member.fingerprint != fp:
                member = None
            pin = _pin_of(room, n, fp)
            admission = member.admission if member is not None else pin.admission if pin else None
            if admission is None:
                continue
            name = member.nick if member is not None else pin.nick if pin is not None else n
            if member is not None:
                member.admission = None
            out.append(Drop(name, fp))
            out.append(ev.Revoked(name, fp, by, dropped=True, via=via))
            told = self.gate.untell(name, fp)
            if tell_everyone and not via:
                recipients = [r for r in room.readers() if nick_key(r.nick) != nick_key(name)]
            else:
                recipients = [r for r in room.readers() if nick_key(r.nick) in told]
            if recipients:
                # Newer than our vouch for it, which carried the admission's date.
                time_ms = max(room.date_ms(), admission.at_ms + 1)
                revoke = self.gate.signed(
                    room.identity,
                    room_id=room.room_id,
                    nick=name,
                    fingerprint=fp,
                    time_ms=time_ms,
                    record_type=RecordType.REVOKE,
                )
                out.append(SealVouches((revoke,), tuple(recipients)))
            # Whoever we admitted only on its word goes with it.
            for other in room.readers():
                if other.admission is not None and other.admission.on_word_of(name):
                    work.append((other.nick, other.fingerprint, name))
            for other_pin in room.pinned():
                by_it = other_pin.admission is not None and other_pin.admission.on_word_of(name)
                if by_it and room.listed(other_pin.nick) is None:
                    work.append((other_pin.nick, other_pin.fingerprint, name))

    def _refusal(self, room: RoomView, sender: Contact, vouch: MembershipRecord) -> str:
        """Why `vouch` from `sender` can never count, or "" when it may."""
        forged = _not_signed_by(room, sender, vouch)
        if forged:
            return forged
        if self.gate.revoked_since(vouch):
            return f"{sender.nick} took it back later"
        if room.forgotten(vouch.nick, vouch.subject_fingerprint):
            return (
                "you took back the admission of that key: only your own comparison"
                f" admits it again (/fingerprint {vouch.nick}, then /admit)"
            )
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
                f"{target.nick}'s key changed: only you can accept a new key, after"
                f" comparing it (/fingerprint {target.nick}, then /trust {target.nick})"
            )
        return ""

    def _weigh(self, room: RoomView, voucher_nick: str, fact: Held, out: list[Effect]) -> None:
        """Act on a checked vouch from an admitted voucher, or keep it for later."""
        voucher = room.member(voucher_nick)
        if voucher is None or voucher.fingerprint != fact.voucher_fp:
            return  # its voucher left or changed key: the vouch goes with it
        if not voucher.vouches_admit:
            self._hold(voucher.nick, fact, out)
            return
        target = self._released(room, voucher, fact, out)
        if target is not None:
            grant = Grant(How.VOUCH, voucher.nick, room.date_ms())
            self._grant(room, target, grant, out, fact.record)

    def _released(
        self, room: RoomView, voucher: Contact, fact: Held, out: list[Effect]
    ) -> Contact | None:
        """A held vouch from `voucher`, now admitted, checked again as a fresh one
        (`_refusal`: the room, the voucher's key and the member's as they are now, the
        time) before it counts; the member it admits, if any."""
        reason = self._refusal(room, voucher, fact.record)
        if reason:
            out.append(ev.VouchRejected(voucher.nick, (fact.nick,), reason))
            return None
        self._knows(room, voucher, fact.record)
        return self._weigh_target(room, voucher, fact, out)

    def _knows(self, room: RoomView, voucher: Contact, vouch: MembershipRecord) -> None:
        """Whoever vouches for a member knows of it: we need not tell them. Only for a
        voucher we admitted (we vouch to nobody else) and a member here with that key, so
        that members the broker makes up, vouching for each other or for made-up names,
        grow nothing."""
        here = room.member(vouch.nick)
        if here is not None and here.fingerprint == vouch.subject_fingerprint:
            self.gate.tell(voucher.nick, vouch.nick, vouch.subject_fingerprint, by_us=False)

    def _weigh_target(
        self, room: RoomView, voucher: Contact, fact: Held, out: list[Effect]
    ) -> Contact | None:
        """The member an admitted voucher's vouch admits now, if any; held if not here."""
        target = room.member(fact.nick)
        if target is None:
            self._hold(voucher.nick, fact, out)  # counts when they arrive
            return None
        if target.fingerprint != fact.fingerprint:
            reason = f"it is for another key than the one {target.nick} has here"
            out.append(ev.VouchRejected(voucher.nick, (fact.nick,), reason))
            return None
        if target.trust is ev.Trust.CHANGED or target.vouches_admit:
            return None
        return target

    def _hold(self, voucher_nick: str, fact: Held, out: list[Effect]) -> None:
        """Keep `fact` for later; say so if the held store is full."""
        if self.gate.hold(voucher_nick, fact) is Kept.FULL:
            out.append(ev.VouchRejected(voucher_nick, (fact.nick,), NOT_KEPT))

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


def _not_signed_by(room: RoomView, sender: Contact, record: MembershipRecord) -> str:
    """Why `record` is not `sender`'s, for our room (`check_record`), or "" when it is."""
    try:
        check_record(
            record,
            room_id=room.room_id,
            signer_key=sender.public_key,
            signer_fingerprint=sender.fingerprint,
        )
    except BadRecord as exc:
        return str(exc)
    return ""


def _pin_of(room: RoomView, nick: str, fingerprint: bytes) -> Pin | None:
    """`nick`'s pin, if it is for the key `fingerprint`."""
    pin = room.pin(nick)
    return pin if pin is not None and pin.fingerprint == fingerprint else None

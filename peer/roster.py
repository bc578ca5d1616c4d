"""The room as we see it, end to end: who is in it, and what we exchange with them.

The core (`peer.core`) keeps the connection to the broker: the phases, the handshake,
the heartbeats. What the broker says of the room (a snapshot, a join, a leave, a
delivery, an acknowledgement) and what the user does in it (a message, /admit) it hands
to the roster, which returns what came of it (`Output`): envelopes to send and events
to show. The roster knows nothing of the core.

It is made of parts that know nothing of each other, and joins them up:

- `peer.directory`: who is here or missing, their session keys, the room limit;
- `peer.pinning`: their identity keys, trusted on first use (`Trust`);
- `peer.admission`: who may read what we seal, and the vouches that say so;
- `peer.inbox`: what they send us, checked, held back or opened;
- `peer.sending`: what we seal for them, kept until acknowledged and resent.

A member goes one way (`_drop`), whatever the reason: the broker said it left, it
stayed missing too long, or it was let go to make room.

Dates: only `send_text` and `note_date` carry one (`wall`); checks of a certificate's
dates elsewhere use the last such date moved on by the monotonic clock, which the
certificates' five minutes of clock tolerance more than cover; or the calendar's date
(`date`) when it is later: the monotonic clock stops while the machine sleeps, and the
outbox's windows are promises about the date (`peer.outbox`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from zchat.envelope import (
    BadPublicKey,
    Delivery,
    Envelope,
    Identity,
    MembershipRecord,
    MessageKind,
    SessionKey,
    fingerprint,
    load_public_key,
    nick_key,
)
from zchat.peer import events as ev
from zchat.peer.admission import Admission, Drop, Effect, Record, SealVouches
from zchat.peer.contact import Contact
from zchat.peer.directory import Directory
from zchat.peer.errors import NotAdmitted, UnknownRecipient
from zchat.peer.events import ProblemCode as P
from zchat.peer.fingerprints import check_fingerprint
from zchat.peer.inbox import Inbox, Opened
from zchat.peer.outbox import Entry, Outbox
from zchat.peer.pinning import PinChanges, Pinning
from zchat.peer.pins import Admission as Grant
from zchat.peer.pins import How, Pin, Pins, Tombstone
from zchat.peer.sending import Resent, Sending
from zchat.wire import protocol as p


@dataclass
class Output:
    """What a call came to: envelopes to send (when connected; the outbox keeps them
    for the resend after the next welcome otherwise), and events to show."""

    envelopes: list[Envelope] = field(default_factory=list)
    events: list[ev.Event] = field(default_factory=list)


class Roster:
    """The members of the room, their keys, and what we send them and they us."""

    def __init__(
        self,
        nick: str,
        identity: Identity,
        pins: Pins,
        *,
        room: str,
        room_id: bytes,
        open_room: bool,
        seq: int,
        random: Callable[[int], bytes],
        date: Callable[[], float],
        outbox: Outbox | None = None,
    ) -> None:
        #: Our nickname, as the broker knows it (its WELCOME gives it).
        self.nick = nick
        #: The room we asked for, and its id (`envelope.room.room_id`): certificates,
        #: messages and vouches are bound to it, ours and the members' alike.
        self.room = room
        self.room_id = room_id
        self.identity = identity
        self.date = date
        self.pinning = Pinning(pins)
        self.directory = Directory()
        self.admission = Admission(open_room=open_room)
        self.sending = Sending(
            identity, seq, random, room_id, Outbox() if outbox is None else outbox
        )
        self.inbox = Inbox()
        #: The date minus the monotonic clock, as of the last call that gave both.
        self._wall_offset: float | None = None
        self._output = Output()

    # --- what admission sees of the room (peer.admission.RoomView) -----------------

    def member(self, nick: str) -> Contact | None:
        return self.directory.get(nick)

    def listed(self, nick: str) -> Contact | None:
        return self.directory.listed(nick)

    def present(self) -> Iterable[Contact]:
        return self.directory.members.values()

    def readers(self) -> list[Contact]:
        return self.directory.readers()

    def date_ms(self) -> int:
        return max(0, int(self.date() * 1000))

    def pin(self, nick: str) -> Pin | None:
        return self.pinning.pins.record(nick)

    def pinned(self) -> Iterable[Pin]:
        return self.pinning.pins.items()

    def forgotten(self, nick: str, fingerprint: bytes) -> bool:
        return self.pinning.pins.tombstone(fingerprint) is not None

    # --- dates and pins --------------------------------------------------------------

    def note_date(self, now: float, wall: float) -> None:
        """The date is `wall` at monotonic `now` (see the module's docstring)."""
        self._wall_offset = wall - now

    def expire_pins(self) -> None:
        self.pinning.expire(self.date_ms())

    def take_pins(self) -> PinChanges | None:
        return self.pinning.take()

    def pending_acks(self) -> list[Entry]:
        return self.sending.pending_acks()

    # --- what the broker says of the room ----------------------------------------------

    def snapshot(self, members: tuple[p.Member, ...], now: float, *, first: bool) -> Output:
        """The broker lists who is here as we arrive; `first`: for the first time in
        this run (those listed were here before us)."""
        previous = self.directory.relist()
        refused = 0
        for wire in members:
            key = nick_key(wire.nick)
            if key == nick_key(self.nick):
                continue  # a lying broker listing us: ignore
            if not self.directory.fits(key):
                refused += 1  # checked before any work for the member (loading its key)
                continue
            missing = self.directory.back(key)
            known = previous.get(key) or missing
            new = known is None or known.public_der != wire.public_der
            self._list(wire, now, announce=new, already_here=True, known=known, first=first)
        # Members we knew who are not back yet (after a broker restart everyone
        # reconnects at once): wait a little before saying they left.
        for member in self.directory.relisted(previous, now):
            self._drop(member.nick, member, "room-full")
        if refused:
            self._room_full(count=refused)
        return self._flush()

    def join(self, wire: p.Member, now: float) -> Output:
        key = nick_key(wire.nick)
        if key == nick_key(self.nick):
            return self._flush()
        missing = self.directory.back(key)
        if missing is None and key not in self.directory.members:
            fits, shed = self.directory.make_room()
            for gone in shed:
                self._drop(gone.nick, gone, "room-full")
            if not fits:
                self._room_full(nick=wire.nick)
                return self._flush()
        quiet = missing is not None and missing.public_der == wire.public_der
        known = self.directory.members.get(key) or missing
        member = self._list(wire, now, announce=not quiet, known=known, first=False)
        if member is not None and member.may_read:
            self._resent(self.sending.resend_to(member, self.directory, now, self._date_at(now)))
        return self._flush()

    def leave(self, nick: str, reason: str) -> Output:
        self._drop(nick, self.directory.remove(nick), reason)
        return self._flush()

    def rekeyed(self, nick: str, cert: bytes, now: float) -> Output:
        """A member's new session key. It may be back on a new connection (a same-key
        takeover: no LEAVE, no JOIN), and what the broker could not deliver to the old
        one waits for it: resent now, to the new key."""
        member = self.directory.get(nick)
        if member is None:
            self._problem(ev.Problem(P.UNEXPECTED, nick, context="Rekeyed"))
        else:
            self._take_certificate(member, cert, self._date_at(now), known=member)
            if member.may_read:
                date_ms = self._date_at(now)
                self._resent(self.sending.resend_to(member, self.directory, now, date_ms))
        return self._flush()

    def deliver(
        self, deliveries: Sequence[Delivery], now: float, keys: tuple[SessionKey, ...]
    ) -> Output:
        """Deliveries read in one go, to open with our session keys `keys`, in one pass
        (`Inbox.deliver`); a MEMBERSHIP message in a pass of its own, after those
        before it: its vouches may admit the senders of those after it."""
        batch: list[tuple[Delivery, Contact]] = []
        for delivery in deliveries:
            member = self.directory.get(delivery.header.sender)
            if member is not None and delivery.header.kind is not MessageKind.MEMBERSHIP:
                batch.append((delivery, member))
                continue
            self._open(batch, keys, now)
            batch = []
            if member is None:
                self._problem(ev.Problem(P.UNKNOWN_SENDER, delivery.header.sender))
            else:
                self._open([(delivery, member)], keys, now)
        self._open(batch, keys, now)
        return self._flush()

    def acknowledge(
        self, msg_id: bytes, delivered: tuple[str, ...], absent: tuple[str, ...], now: float
    ) -> Output:
        self._output.events += self.sending.acknowledge(
            msg_id, delivered, absent, now, self._today(now)
        )
        return self._flush()

    def refused(self, msg_id: bytes) -> Output:
        self._output.events += self.sending.refused(msg_id)
        return self._flush()

    def resend(self, now: float, *, lost_since: float | None) -> Output:
        """After a welcome: everything not yet acknowledged, then what others missed.

        After a reconnect (`lost_since`: when the broker that went away may have lost
        what it acknowledged), also what the broker acknowledged from then on: a
        broker acknowledges a delivery when it queues it, and a crash loses its
        queues. Recipients drop the copies they already have by sequence number.
        """
        if lost_since is not None:
            self.sending.outbox.reopen_since(lost_since, self.directory.sendable, self._today(now))
        date_ms = self._date_at(now)
        self._resent(self.sending.resend_unacked(self.directory, now, date_ms))
        for member in self.directory.members.values():
            if member.may_read:
                self._resent(self.sending.resend_to(member, self.directory, now, date_ms))
        return self._flush()

    def tick(self, now: float, *, absent_grace: float, missing_wait: float) -> Output:
        """Give up on recipients away past `absent_grace`, and on members missing since
        a broker restart for longer than `missing_wait`."""
        self._output.events += self.sending.expire(now, absent_grace, self._today(now))
        for member in self.directory.expire_missing(now, missing_wait):
            self._drop(member.nick, member, "timeout")
        return self._flush()

    # --- what the user does -----------------------------------------------------------

    def send_text(
        self, text: str, now: float, to: list[str] | None, *, wall: float
    ) -> tuple[bytes, Output]:
        """Seal `text` for the room's readers, or the nicknames in `to`, as of `wall`;
        its id, and what came of it. Raises a PeerError saying why it cannot."""
        raw = self.sending.check_text(text)
        self.note_date(now, wall)
        recipients = self.directory.addressees(to)
        direct = to is not None
        entry, unsealable = self.sending.seal_text(
            raw,
            text,
            sender_nick=self.nick,
            recipients=recipients,
            direct=direct,
            wall=wall,
            now=now,
        )
        envelope = entry.envelope
        self._output.events.append(ev.Sent(entry.msg_id, text, envelope.recipients, direct))
        if unsealable:
            self._output.events.append(ev.Unsealed(entry.msg_id, unsealable))
        self._output.envelopes.append(envelope)
        return entry.msg_id, self._flush()

    def admit(
        self, nick: str, typed: str, now: float, keys: tuple[SessionKey, ...], *, command: str
    ) -> Output:
        """The user admits `nick`, having compared `typed` with its fingerprint (see
        `PeerCore.admit`); `keys` open what its changed key signed, held back."""
        member = self.directory.get(nick)
        if member is None:
            raise UnknownRecipient(f"{nick} is not in the room")
        check_fingerprint(member.nick, typed, member.fingerprint, command=command)
        if member.may_read and member.admission is not None and member.admission.how is How.YOU:
            self._output.events.append(ev.Notice(f"{member.nick} is already admitted (by you)"))
            return self._flush()
        held: list[Delivery] = []
        if member.trust is ev.Trust.CHANGED:
            held = self._accept_key(member)
        grant = Grant(How.YOU, self.nick, self.date_ms())
        self._apply(self.admission.grant(self, member, grant), now)
        for delivery in held:  # one by one: each may be a MEMBERSHIP message
            (opened,) = self.inbox.open([(delivery, member)], me=self.nick, keys=keys)
            self._opened(opened, member, now)
        return self._flush()

    def revoke(self, nick: str, now: float) -> Output:
        """The user takes back `nick`'s admission (/revoke): nothing more is sealed to
        it, its pin goes and a tombstone stays, and the members we admitted are told.
        Raises UnknownRecipient (no such member, no pin) or NotAdmitted (an open room)."""
        if self.admission.open_room:
            raise NotAdmitted(
                "this is an open room (--admit-all): every key reads, so /revoke cannot stop"
                f" {nick} reading"
            )
        member = self.directory.listed(nick)
        pin = self.pinning.pins.record(nick)
        if member is None and pin is None:
            raise UnknownRecipient(f"{nick} is not in the room, and you have no pin for them")
        # The key the user trusted: the pinned one, when the broker now announces
        # another under that name (which nobody admits anyway).
        changed = member is not None and member.trust is ev.Trust.CHANGED
        target = pin if member is None or (changed and pin is not None) else member
        assert target is not None
        self._forget(Tombstone(target.nick, target.fingerprint, self.date_ms()), now)
        return self._flush()

    def forgotten_elsewhere(self, tombstones: tuple[Tombstone, ...], now: float) -> Output:
        """The pins file holds `tombstones` (another process wrote them: `zchat keys
        forget`): for each one new to us, as the user's own /revoke."""
        for tomb in self.pinning.buried(tombstones):
            self._forget(tomb, now, written=True)
        return self._flush()

    def _forget(self, tomb: Tombstone, now: float, *, written: bool = False) -> None:
        """Take back the admission `tomb` names (unless the user compared that key again
        since), and keep the tombstone (`written`: it is in the pins already)."""
        member = self.directory.listed(tomb.nick)
        admission = member.admission if member is not None else None
        again = (
            written
            and member is not None
            and member.fingerprint == tomb.fingerprint
            and admission is not None
            and admission.how is How.YOU
            and admission.at_ms >= tomb.at_ms
        )
        if again:  # compared again since it was forgotten: the user's later word stands
            self.pinning.pins.bury(tomb)
            return
        self._apply(self.admission.revoke(self, tomb.nick, tomb.fingerprint), now)
        self.pinning.forget(tomb.nick, tomb.fingerprint, tomb.at_ms, written=written)

    # --- joining the parts up --------------------------------------------------------

    def _list(
        self,
        wire: p.Member,
        now: float,
        *,
        announce: bool,
        already_here: bool = False,
        known: Contact | None,
        first: bool,
    ) -> Contact | None:
        """Add a member to the directory, checking its key against our pin.

        (Into the directory: who may read is `member.admission`, which admission decides
        from the pin, from `known` (how we listed them until now), or the open room;
        later by /admit and vouches.)
        """
        try:
            key = load_public_key(wire.public_der)
        except BadPublicKey as exc:
            self._problem(ev.Problem(P.BAD_KEY, wire.nick, detail=str(exc)))
            return None
        fp = fingerprint(wire.public_der)
        trust, record = self.pinning.sight(wire.nick, fp, self.date_ms())
        if trust is ev.Trust.NEW:
            self._output.events += self.pinning.pin(wire.nick, fp, self.date_ms())
        member = Contact(wire.nick, key, wire.public_der, fp, trust)
        self.admission.on_sight(member, record, known, self.date_ms())
        self.directory.add(member)
        # `announce` is False for a member we already list with this very key (back
        # after a reconnect): it was warned about then, and a warning repeated at
        # every reconnect would teach people to skim it.
        if trust is ev.Trust.CHANGED and announce:
            assert record is not None
            self._output.events.append(ev.KeyChanged(wire.nick, record.fingerprint, fp))
            self._output.events += self.sending.forget_recipient(wire.nick, now, self._today(now))
            if self.admission.open_room:
                # For this session only, when the pin is one a user admitted: a bot run
                # with --admit-all from the user's identity directory must not write the
                # broker's key over the user's comparison (the file is shared).
                self._accept_key(member, save=not record.admitted)
                member.admission = Grant(How.OPEN, "", self.date_ms())
        if announce:
            self._output.events.append(ev.Joined(wire.nick, fp, member.trust, already_here))
        # The session key first: what admission sends (vouches) is sealed to it.
        self._take_certificate(member, wire.certificate, self._date_at(now), known=known)
        arrived = self.admission.arrived(
            self, member, announce=announce, already_here=already_here, first_snapshot=first
        )
        self._apply(arrived, now)
        return member

    def _accept_key(self, member: Contact, *, save: bool = True) -> list[Delivery]:
        """Pin a changed key (in the file too, if `save`); return the messages held back
        that it signed, to open."""
        self._output.events += self.pinning.pin(
            member.nick, member.fingerprint, self.date_ms(), save=save
        )
        member.trust = ev.Trust.PINNED
        if member.announced:  # its session key can be checked against the new pin now
            self._take_certificate(member, member.announced, None, known=None)
        held = self.inbox.release(member)
        texts = sum(1 for d in held if d.header.kind is not MessageKind.MEMBERSHIP)
        self._output.events.append(ev.Trusted(member.nick, member.fingerprint, texts))
        return held

    def _take_certificate(
        self, member: Contact, raw: bytes, date_ms: int | None, *, known: Contact | None
    ) -> None:
        pinned = self.pinning.pins.get(member.nick)
        refused = self.directory.take_certificate(
            member, raw, date_ms, room_id=self.room_id, pinned=pinned, known=known
        )
        if refused:
            self._problem(ev.Problem(P.BAD_CERTIFICATE, member.nick, detail=refused))

    def _drop(self, nick: str, member: Contact | None, reason: str) -> None:
        """The one way a member goes (it left, timed out, or was let go to make room):
        what it sent that we held back, its replay window and what admission knew of
        it go too. `member` is the contact the directory let go, None if it had none."""
        self.inbox.forget(nick)
        self.admission.left(nick)
        if member is not None:
            self._output.events.append(ev.Left(member.nick, reason))

    def _room_full(self, *, nick: str = "", count: int = 0) -> None:
        """Members announced past the room limit were ignored: `count` in a snapshot,
        or `nick` joining. Said once until someone leaves (`Directory.report_full`)."""
        if self.directory.report_full():
            self._problem(ev.Problem(P.ROOM_FULL, nick, count=count))

    def _open(
        self, batch: list[tuple[Delivery, Contact]], keys: tuple[SessionKey, ...], now: float
    ) -> None:
        opened = self.inbox.deliver(batch, me=self.nick, room_id=self.room_id, keys=keys)
        for (_, member), result in zip(batch, opened, strict=True):
            self._opened(result, member, now)

    def _opened(self, opened: Opened, member: Contact, now: float) -> None:
        self._output.events += opened.events
        if opened.vouches is not None:
            self._apply(self.admission.take_vouches(self, member, opened.vouches), now)

    def _apply(self, effects: list[Effect], now: float) -> None:
        """Do what admission asked, in its order."""
        for effect in effects:
            match effect:
                case SealVouches(vouches, recipients):
                    self._seal_vouches(vouches, recipients, now)
                case Record(member, grant):
                    self.directory.remember_certificate(member)
                    self._output.events += self.pinning.admitted(
                        member.nick, member.fingerprint, grant, self.date_ms()
                    )
                case Drop(nick, fingerprint):
                    self.pinning.unadmitted(nick, fingerprint)
                    self._output.events += self.sending.forget_recipient(
                        nick, now, self._today(now)
                    )
                case _:
                    self._output.events.append(effect)

    def _seal_vouches(
        self, vouches: tuple[MembershipRecord, ...], recipients: tuple[Contact, ...], now: float
    ) -> None:
        self._output.envelopes += self.sending.seal_vouches(
            vouches, recipients, sender_nick=self.nick, date=self.date(), now=now
        )

    def _resent(self, resent: Resent) -> None:
        self._output.envelopes += resent.envelopes
        self._output.events += resent.events

    def _date_at(self, now: float) -> int | None:
        """The date at monotonic `now`: the last one we were given moved on by the
        monotonic clock, or the calendar's if that is later (the machine slept); None
        before either is known."""
        today = self.date_ms()
        if self._wall_offset is None:
            return today or None
        return max(int((now + self._wall_offset) * 1000), today)

    def _today(self, now: float) -> int:
        """`_date_at`, 0 when no date is known (the outbox then counts on the
        monotonic clock alone)."""
        return self._date_at(now) or 0

    def _problem(self, problem: ev.Problem) -> None:
        self._output.events.append(problem)

    def _flush(self) -> Output:
        output, self._output = self._output, Output()
        return output

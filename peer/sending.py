"""Sealing what we send, and sending it again: messages and vouches, each kept in the
outbox until the broker acknowledged it and every recipient got it.

A part of the peer core (`peer.core`): it owns the outbox and the sequence numbers, and
returns the envelopes to send; the core sends them. One function decides whom we can
seal to and with which key (`sealable`), for text, vouches and resends alike: only a
session key whose certificate is valid at the date of sealing, never an identity key
(forward secrecy), and nobody without one (yet).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from zchat.envelope import (
    Envelope,
    Identity,
    MembershipRecord,
    MessageKind,
    Recipient,
    encode_records,
    nick_key,
    reseal,
    seal,
)
from zchat.envelope.limits import (
    KEY_ID_BYTES,
    MAX_RECORDS_PER_MESSAGE,
    MAX_TEXT_BYTES,
    MSG_ID_BYTES,
)
from zchat.peer import events as ev
from zchat.peer.contact import Contact
from zchat.peer.errors import CannotSeal, MessageTooLong, NoSessionKey, NotText, OutboxFull
from zchat.peer.outbox import MAX_OUTBOX, Entry, Outbox
from zchat.peer.session_keys import CertifiedKey


def sealable(
    candidates: Iterable[tuple[str, CertifiedKey | None]], date_ms: int | None
) -> dict[str, CertifiedKey]:
    """Which of `candidates` (nickname, session key or None) we may seal to at
    `date_ms`, and to which key: those whose key's certificate is valid then. With no
    date yet (None), every key we hold; the order of `candidates` is kept."""
    return {
        nick: key
        for nick, key in candidates
        if key is not None and (date_ms is None or key.usable(date_ms))
    }


def _wrapped_to(keys: dict[str, CertifiedKey]) -> list[Recipient]:
    return [key.recipient(nick) for nick, key in keys.items()]


def _by_key(keys: dict[str, CertifiedKey]) -> dict[str, CertifiedKey]:
    """`keys` by case-folded nickname, as an outbox entry keeps them."""
    return {nick_key(nick): key for nick, key in keys.items()}


class Listing(Protocol):
    """What a resend needs to know of the room (`peer.directory.Directory` is one)."""

    def listed(self, nick: str) -> Contact | None:
        """The member present under `nick`, or missing since a broker restart."""

    def is_missing(self, nick: str) -> bool:
        """Whether `nick` is missing since a broker restart, and not back yet."""

    def sendable(self, key: str) -> bool:
        """Whether a resend may go to `key` (case-folded)."""


@dataclass
class Resent:
    """What resending came to: envelopes to send (each for only some of its
    recipients already), and events to show."""

    envelopes: list[Envelope] = field(default_factory=list)
    events: list[ev.Event] = field(default_factory=list)


@dataclass
class Sending:
    """Our sealing: the outbox, the sequence numbers, and what goes out again."""

    identity: Identity
    #: The next sequence number to seal with.
    seq: int
    #: Where message ids come from (see `peer.core.PeerCore.random`).
    random: Callable[[int], bytes]
    #: Our room's id (`envelope.room.room_id`): everything we seal is bound to it.
    room_id: bytes
    #: What we sent, kept while pending and for the correction window (`peer.outbox`).
    outbox: Outbox = field(default_factory=Outbox)

    def check_text(self, text: str) -> bytes:
        """`text` as UTF-8, if it may be sent; else raise NotText, MessageTooLong or
        OutboxFull, saying why."""
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            # Standard input decodes stray bytes to lone surrogates (surrogateescape),
            # which UTF-8 cannot carry: refuse the line rather than crash the session.
            raise NotText(
                f"the text holds bytes that are not UTF-8 (at character {exc.start + 1}): not sent"
            ) from exc
        if len(raw) > MAX_TEXT_BYTES:
            raise MessageTooLong(
                f"message is {len(raw):,} bytes; the limit is {MAX_TEXT_BYTES:,}: not sent"
            )
        if len(self.outbox) >= MAX_OUTBOX:
            raise OutboxFull("too many messages are waiting for the broker: not sent")
        return raw

    def seal_text(
        self,
        raw: bytes,
        text: str,
        *,
        sender_nick: str,
        recipients: list[Contact],
        direct: bool,
        wall: float,
        now: float,
    ) -> tuple[Entry, tuple[str, ...]]:
        """Seal `text` (`raw` is its UTF-8) to `recipients` as of the date `wall`, and
        keep it in the outbox; returns its entry and whom it could not be sealed to.

        Raises NoSessionKey when a direct message cannot be sealed to everyone it names,
        or a room message to anyone; CannotSeal when the envelope cannot be made.
        """
        # Sealed only to session keys whose certificate is valid now, not when it came.
        keys = sealable(((m.nick, m.session) for m in recipients), int(wall * 1000))
        unsealable = tuple(m.nick for m in recipients if m.nick not in keys)
        if unsealable and (direct or len(unsealable) == len(recipients)):
            raise NoSessionKey(
                f"{', '.join(unsealable)} cannot be written to yet (no current key from them):"
                " message not sent"
            )
        kind = MessageKind.DIRECT if direct else MessageKind.ROOM
        try:
            envelope = self._seal(raw, sender_nick, keys, kind, wall)
        except ValueError as exc:
            # Unreachable while the directory keeps the room limit; should that ever
            # break, the user reads why and the session (with its outbox) goes on.
            raise CannotSeal(f"the message cannot be sealed: {exc}: not sent") from exc
        entry = self.outbox.add(envelope, text, now)
        entry.sealed_to = _by_key(keys)
        return entry, unsealable

    def seal_vouches(
        self,
        vouches: tuple[MembershipRecord, ...],
        recipients: tuple[Contact, ...],
        *,
        sender_nick: str,
        date: float,
        now: float,
    ) -> list[Envelope]:
        """Seal `vouches` to `recipients`, `MAX_RECORDS_PER_MESSAGE` a message.

        Like a message: its own sequence number, kept in the outbox and resent until
        acknowledged; unlike one, never shown, and its acknowledgement is no event.
        """
        keys = sealable(((m.nick, m.session) for m in recipients), int(date * 1000))
        if not vouches or not keys:
            return []
        envelopes = []
        for i in range(0, len(vouches), MAX_RECORDS_PER_MESSAGE):
            payload = encode_records(list(vouches[i : i + MAX_RECORDS_PER_MESSAGE]))
            envelope = self._seal(payload, sender_nick, keys, MessageKind.MEMBERSHIP, date)
            if len(self.outbox) < MAX_OUTBOX:  # a full outbox holds what people typed
                entry = self.outbox.add(envelope, "", now)
                entry.sealed_to = _by_key(keys)
                entry.payload = payload
            envelopes.append(envelope)
        return envelopes

    def _seal(
        self,
        payload: bytes,
        sender_nick: str,
        keys: dict[str, CertifiedKey],
        kind: MessageKind,
        date: float,
    ) -> Envelope:
        """`payload` sealed to `keys` as of `date`, under our next sequence number and
        a new random id; the number is used up only once the envelope is made."""
        envelope = seal(
            payload,
            sender=self.identity,
            sender_nick=sender_nick,
            room_id=self.room_id,
            recipients=_wrapped_to(keys),
            seq=self.seq,
            kind=kind,
            now=date,
            msg_id=self.random(MSG_ID_BYTES),
        )
        self.seq += 1
        return envelope

    # --- what the broker says, and what time does --------------------------------------

    def acknowledge(
        self,
        msg_id: bytes,
        delivered: tuple[str, ...],
        absent: tuple[str, ...],
        now: float,
        today_ms: int = 0,
    ) -> list[ev.Event]:
        """The broker's ACK for `msg_id`, at `now` and the date `today_ms`: what it is
        news of, or why it is not believed."""
        entry = self.outbox.find(msg_id, today_ms)
        if entry is None:
            if absent and self.outbox.closed(msg_id):
                # Settled stays settled: reopening it would have us seal its plaintext
                # (which is gone) to whatever key the member holds now.
                return [ev.Problem(ev.ProblemCode.BAD_ACK, nicks=absent, context="settled")]
            return []  # a repeat, or given up on: nothing to change
        strangers = entry.strangers((*delivered, *absent))
        if strangers:
            # The signed recipient list says otherwise: a lie, or a broken broker.
            # Believe none of it, so that it settles nothing.
            return [ev.Problem(ev.ProblemCode.BAD_ACK, nicks=strangers)]
        news = self.outbox.acknowledge(msg_id, delivered, absent, now, today_ms)
        if news is not None and not entry.quiet:
            return [ev.Acked(msg_id, *news)]
        return []

    def refused(self, msg_id: bytes) -> list[ev.Event]:
        """The broker refused to route `msg_id` (an ERROR about it): it is let go."""
        entry = self.outbox.drop(msg_id)
        if entry is not None and not entry.quiet:
            return [ev.Undelivered(msg_id, entry.envelope.recipients)]
        return []

    def expire(self, now: float, grace: float, today_ms: int = 0) -> list[ev.Event]:
        """Give up on recipients away for longer than `grace`, and on messages past
        their lifetime (`Outbox.expire`: by either clock)."""
        return [
            ev.Undelivered(entry.msg_id, nicks)
            for entry, nicks in self.outbox.expire(now, grace, today_ms)
            if not entry.quiet
        ]

    def forget_recipient(self, nick: str, now: float, today_ms: int = 0) -> list[ev.Event]:
        """`nick` may read no more (its key changed, or its admission was taken back):
        nothing waits for it any more (`Outbox.forget_recipient`)."""
        return [
            ev.Undelivered(entry.msg_id, nicks)
            for entry, nicks in self.outbox.forget_recipient(nick, now, today_ms)
            if not entry.quiet
        ]

    def pending_acks(self) -> list[Entry]:
        """What people typed that the broker has not acknowledged yet (not vouches)."""
        return [entry for entry in self.outbox.unacked() if not entry.quiet]

    # --- resends ---------------------------------------------------------------------

    def resend_unacked(self, room: Listing, now: float, date_ms: int | None) -> Resent:
        """Everything the broker has not acknowledged, to whoever may still get it."""
        resent = Resent()
        for entry in self.outbox.unacked():
            keep = {n for k, n in entry.pending.items() if room.sendable(k)}
            if keep:
                entry.sent_at = now
                self._resend_entry(entry, keep, room, now, date_ms, resent)
        return resent

    def resend_to(self, member: Contact, room: Listing, now: float, date_ms: int | None) -> Resent:
        """What `member` missed while away."""
        resent = Resent()
        key = nick_key(member.nick)
        for entry in self.outbox.waiting_for(member.nick):
            # Resending an earlier entry may have given up on the member everywhere
            # (no valid session key): then there is nothing left to send it here.
            spelled = entry.pending.get(key)
            if spelled is None:
                continue
            entry.absent_since.pop(key, None)
            self._resend_entry(entry, {spelled}, room, now, date_ms, resent)
        return resent

    def _resend_entry(
        self,
        entry: Entry,
        keep: set[str],
        room: Listing,
        now: float,
        date_ms: int | None,
        resent: Resent,
    ) -> None:
        """Send `entry` again to `keep` (nicknames as its header spells them).

        The very same envelope while every one of them still has the session key it
        was wrapped to; otherwise sealed again, each recipient wrapped to the newest
        valid key we know for it (`_resend_key`), with the same id and number. Who has
        no valid key at all is given up on, as after a key change.

        Someone missing since a broker restart is not sent to: they come back with a
        new session key (every connection makes one), which the resend must wait for.
        They count as absent, so their JOIN brings the resend (`resend_to`).
        """
        if entry.erased:
            return  # its plaintext is gone: nothing can go out again (never reached)
        if self.outbox.past_lifetime(entry, now, date_ms or 0):
            # The date says its window passed though the monotonic clock does not (the
            # machine slept): it goes now, unsent, before anything can seal it again.
            missed = self.outbox.lapse(entry)
            if missed and not entry.quiet:
                resent.events.append(ev.Undelivered(entry.msg_id, missed))
            return
        for nick in list(keep):
            if room.is_missing(nick):
                keep.discard(nick)
                entry.absent_since.setdefault(nick_key(nick), now)
        envelope = entry.envelope
        # Never to a key certified after the message's time and its lifetime: by then
        # its plaintext should be gone, and such a key is one a thief of the member's
        # identity key could have made (docs/SECURITY.md, claim 11).
        newest_ms = envelope.header.timestamp_ms + int(self.outbox.lifetime * 1000)
        candidates = (
            (n, key if key is None or key.created_ms <= newest_ms else None)
            for n, key in ((n, _resend_key(entry, n, room)) for n in envelope.recipients)
        )
        targets = sealable(candidates, date_ms)
        for nick in keep - targets.keys():
            for dropped, nicks in self.outbox.forget_recipient(nick, now, date_ms or 0):
                resent.events.append(ev.Undelivered(dropped.msg_id, nicks))
        keep = {n for n in keep if nick_key(n) in entry.pending}
        if not keep:
            return
        for nick in keep:  # sent to again: absent only if the broker says so once more
            entry.absent_since.pop(nick_key(nick), None)
        stale = any(
            not wrapped or targets[nick].fingerprint[:KEY_ID_BYTES] != key_id
            for nick, key_id, wrapped in zip(
                envelope.recipients, envelope.key_ids, envelope.wrapped_keys, strict=True
            )
            if nick in keep
        )
        if stale:
            envelope = reseal(
                envelope,
                entry.payload or entry.text.encode("utf-8"),
                sender=self.identity,
                recipients=_wrapped_to(targets),
            )
            entry.envelope = envelope
            entry.sealed_to = _by_key(targets)
        # Awaiting an answer again (only now that something goes out): should this
        # resend be lost with the broker, the resend after the next welcome covers it,
        # and `exit` waits for it.
        entry.acked = False
        resent.envelopes.append(envelope.only_for(keep))


def _resend_key(entry: Entry, nick: str, room: Listing) -> CertifiedKey | None:
    """The session key a resend of `entry` to `nick` is wrapped to, if any: its current
    key if we list it (present, or missing since a broker restart) and its key did not
    change; else, for someone who left, the key the message was sealed to."""
    contact = room.listed(nick)
    if contact is not None:
        return contact.session if contact.trust is not ev.Trust.CHANGED else None
    return entry.sealed_to.get(nick_key(nick))

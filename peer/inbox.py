"""What the broker delivers to us, opened: the signature checked, messages signed by a
changed key held back, replays dropped, then decrypted with our session keys.

A part of the peer core (`peer.core`): it owns the replay guard (`peer.replay`) and the
messages held back (`peer.withheld`), and returns what a delivery came to (`Opened`);
the core shows it, and hands the records in a MEMBERSHIP message to admission.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from zchat.envelope import (
    Delivery,
    EnvelopeError,
    MessageKind,
    NotForMe,
    SessionKey,
    UnknownSessionKey,
    WrongRoom,
    decrypt_verified_many,
    nick_key,
    verify_delivery,
)
from zchat.peer import events as ev
from zchat.peer.contact import Contact
from zchat.peer.replay import ReplayGuard
from zchat.peer.withheld import Withheld


@dataclass
class Opened:
    """What a delivery came to: events to show and, for a MEMBERSHIP message, its plaintext
    for admission (`peer.admission`)."""

    events: list[ev.Event] = field(default_factory=list)
    vouches: bytes | None = None


@dataclass
class Inbox:
    """Deliveries opened, held back or refused; replays remembered per sender."""

    replay: ReplayGuard = field(default_factory=ReplayGuard)
    withheld: Withheld = field(default_factory=Withheld)

    def deliver(
        self,
        batch: Sequence[tuple[Delivery, Contact]],
        *,
        me: str,
        room_id: bytes,
        keys: tuple[SessionKey, ...],
    ) -> list[Opened]:
        """Deliveries read in one go, each from `member` (as its header names it); `me` is
        our nickname, `room_id` our room's id and `keys` our session keys. What each
        came to, in order.

        One pass over the batch: every signature is checked first, then the message
        keys of those to open are unwrapped, then their tokens decrypted
        (`envelope.decrypt_verified_many`): each primitive over the whole batch, which
        keeps its code in the CPU's caches. What the batch opens, and the order of its
        events, are those of one delivery at a time (the caller keeps a MEMBERSHIP
        message to a batch of its own: its vouches may admit senders of later ones).
        """
        opened = [Opened() for _ in batch]
        to_open: list[int] = []
        for i, (delivery, member) in enumerate(batch):
            if self._check(delivery, member, opened[i], me=me, room_id=room_id):
                to_open.append(i)
        results = self.open([batch[i] for i in to_open], me=me, keys=keys)
        for i, result in zip(to_open, results, strict=True):
            opened[i] = result
        return opened

    def _check(
        self, delivery: Delivery, member: Contact, opened: Opened, *, me: str, room_id: bytes
    ) -> bool:
        """Whether to open `delivery` now: its signature verified, of a kind we know,
        and its sender's key trusted (else it is held back). `opened` gets the events."""
        header = delivery.header
        try:
            verify_delivery(
                delivery,
                me=me,
                room_id=room_id,
                sender_key=member.public_key,
                sender_fingerprint=member.fingerprint,
            )
        except NotForMe:
            opened.events.append(ev.Problem(ev.ProblemCode.NOT_FOR_ME, member.nick))
            return False
        except WrongRoom:
            opened.events.append(ev.Problem(ev.ProblemCode.WRONG_ROOM, member.nick))
            return False
        except EnvelopeError as exc:
            opened.events.append(
                ev.Problem(ev.ProblemCode.BAD_SIGNATURE, member.nick, detail=str(exc))
            )
            return False
        if not isinstance(header.kind, MessageKind):
            # Verified like any envelope, then dropped: a kind of a later zchat.
            unknown = ev.Problem(ev.ProblemCode.UNKNOWN_KIND, member.nick, detail=str(header.kind))
            opened.events.append(unknown)
            return False
        if member.trust is ev.Trust.CHANGED:
            # A resend of a message already held is the same message: report it once.
            added, dropped = self.withheld.hold(nick_key(member.nick), delivery)
            if added and header.kind is not MessageKind.MEMBERSHIP:  # no message to hold
                opened.events.append(ev.Untrusted(member.nick, member.fingerprint, header.msg_id))
            for lost in dropped:
                opened.events.append(
                    ev.Problem(ev.ProblemCode.HELD_BACK_DROPPED, lost.delivery.header.sender)
                )
            return False
        return True

    def open(
        self, batch: Sequence[tuple[Delivery, Contact]], *, me: str, keys: tuple[SessionKey, ...]
    ) -> list[Opened]:
        """Verified deliveries, each from `member`, whose key we trust: decrypted, unless
        a replay or a duplicate. What each came to, in order."""
        opened = [Opened() for _ in batch]
        fresh: list[int] = []
        for i, (delivery, member) in enumerate(batch):
            seq = delivery.header.seq
            if self.replay.is_new(member.nick, member.fingerprint, seq):
                fresh.append(i)
            elif self.replay.is_stale(member.nick, member.fingerprint, seq):
                # Older than the whole window: not one of our resends, which are
                # always recent. A replay, or the sender's clock went back.
                opened[i].events.append(ev.Problem(ev.ProblemCode.STALE, member.nick))
            # else a duplicate (a resend): silent, it was shown once
        deliveries = [batch[i][0] for i in fresh]
        results = decrypt_verified_many(deliveries, me=me, keys=keys)
        for i, result in zip(fresh, results, strict=True):
            delivery, member = batch[i]
            # Asked again, as one at a time would have: the same message twice in one
            # batch is opened once, and one a later one in the batch pushed out of the
            # window is stale.
            seq = delivery.header.seq
            if self.replay.is_new(member.nick, member.fingerprint, seq):
                self._opened(delivery, member, result, opened[i])
            elif self.replay.is_stale(member.nick, member.fingerprint, seq):
                opened[i].events.append(ev.Problem(ev.ProblemCode.STALE, member.nick))
        return opened

    def _opened(
        self, delivery: Delivery, member: Contact, result: bytes | EnvelopeError, opened: Opened
    ) -> None:
        """What decrypting `delivery` came to (`result`): recorded against replays and
        shown, or said to be unreadable."""
        header = delivery.header
        if isinstance(result, UnknownSessionKey):
            # Sealed to a key of ours past its grace: late, or replayed from a
            # recording. Nothing to open it with, and nothing to show.
            opened.events.append(ev.Expired(member.nick, header.msg_id))
            return
        text = _text(result, header.kind)
        if text is None or isinstance(result, EnvelopeError):
            opened.events.append(ev.Problem(ev.ProblemCode.CANNOT_DECRYPT, member.nick))
            return
        self.replay.record(member.nick, member.fingerprint, header.seq)
        if header.kind is MessageKind.MEMBERSHIP:
            opened.vouches = result  # never shown as text
            return
        opened.events.append(
            ev.MessageReceived(
                member.nick,
                text,
                header.msg_id,
                header.timestamp_ms,
                header.kind is MessageKind.DIRECT,
                header.named,
                admitted=member.may_read,
            )
        )

    def release(self, member: Contact) -> list[Delivery]:
        """`member`'s changed key is trusted now: what it signed, held back, to open.

        Only what the key being trusted signed: if the key changed again meanwhile (or
        back to the pin), messages held under another key stay unread.
        """
        return [
            d
            for d in self.withheld.release(nick_key(member.nick))
            if d.header.sender_fingerprint == member.fingerprint
        ]

    def forget(self, nick: str) -> None:
        """`nick` left: what it sent held back will never be read, and its replay
        window stops counting as live."""
        self.withheld.forget(nick_key(nick))
        self.replay.forget(nick)


def _text(result: bytes | EnvelopeError, kind: MessageKind | int) -> str | None:
    """The text a plaintext shows ("" for a MEMBERSHIP message, never shown as text);
    None when there is none: it could not be decrypted, or is not UTF-8."""
    if isinstance(result, EnvelopeError):
        return None
    if kind is MessageKind.MEMBERSHIP:
        return ""
    try:
        return result.decode("utf-8")
    except UnicodeDecodeError:
        return None

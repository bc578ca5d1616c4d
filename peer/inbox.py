"""What the broker delivers to us, opened: the signature checked, messages signed by a
changed key held back, replays dropped, then decrypted with our session keys.

A part of the peer core (`peer.core`): it owns the replay guard (`peer.replay`) and the
messages held back (`peer.withheld`), and returns what a delivery came to (`Opened`);
the core shows it, and hands the records in a MEMBERSHIP message to admission.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zchat.envelope import (
    Delivery,
    EnvelopeError,
    MessageKind,
    NotForMe,
    SessionKey,
    UnknownSessionKey,
    WrongRoom,
    decrypt_verified,
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
        delivery: Delivery,
        member: Contact,
        *,
        me: str,
        room_id: bytes,
        keys: tuple[SessionKey, ...],
    ) -> Opened:
        """A delivery from `member` (as its header names it); `me` is our nickname,
        `room_id` our room's id and `keys` our session keys."""
        header = delivery.header
        opened = Opened()
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
            return opened
        except WrongRoom:
            opened.events.append(ev.Problem(ev.ProblemCode.WRONG_ROOM, member.nick))
            return opened
        except EnvelopeError as exc:
            opened.events.append(
                ev.Problem(ev.ProblemCode.BAD_SIGNATURE, member.nick, detail=str(exc))
            )
            return opened
        if not isinstance(header.kind, MessageKind):
            # Verified like any envelope, then dropped: a kind of a later zchat.
            unknown = ev.Problem(ev.ProblemCode.UNKNOWN_KIND, member.nick, detail=str(header.kind))
            opened.events.append(unknown)
            return opened
        if member.trust is ev.Trust.CHANGED:
            # A resend of a message already held is the same message: report it once.
            added, dropped = self.withheld.hold(nick_key(member.nick), delivery)
            if added and header.kind is not MessageKind.MEMBERSHIP:  # no message to hold
                opened.events.append(ev.Untrusted(member.nick, member.fingerprint, header.msg_id))
            for lost in dropped:
                opened.events.append(
                    ev.Problem(ev.ProblemCode.HELD_BACK_DROPPED, lost.delivery.header.sender)
                )
            return opened
        return self.open(delivery, member, me=me, keys=keys)

    def open(
        self, delivery: Delivery, member: Contact, *, me: str, keys: tuple[SessionKey, ...]
    ) -> Opened:
        """A verified delivery from `member`, whose key we trust: decrypted, unless it
        is a replay or a duplicate."""
        header = delivery.header
        opened = Opened()
        if not self.replay.is_new(member.nick, member.fingerprint, header.seq):
            if self.replay.is_stale(member.nick, member.fingerprint, header.seq):
                # Older than the whole window: not one of our resends, which are
                # always recent. A replay, or the sender's clock went back.
                opened.events.append(ev.Problem(ev.ProblemCode.STALE, member.nick))
            return opened  # a duplicate (a resend) is silent: it was shown once
        try:
            plaintext = decrypt_verified(delivery, me=me, keys=keys)
            text = "" if header.kind is MessageKind.MEMBERSHIP else plaintext.decode("utf-8")
        except UnknownSessionKey:
            # Sealed to a key of ours past its grace: late, or replayed from a
            # recording. Nothing to open it with, and nothing to show.
            opened.events.append(ev.Expired(member.nick, header.msg_id))
            return opened
        except (EnvelopeError, UnicodeDecodeError):
            opened.events.append(ev.Problem(ev.ProblemCode.CANNOT_DECRYPT, member.nick))
            return opened
        self.replay.record(member.nick, member.fingerprint, header.seq)
        if header.kind is MessageKind.MEMBERSHIP:
            opened.vouches = plaintext  # never shown as text
            return opened
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
        return opened

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

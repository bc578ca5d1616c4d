"""The directory of members: who is here, who is missing since a broker restart, the
session key we seal to for each, and the room limit.

A part of the peer core (`peer.core`), which feeds it what the broker announces. It
knows nothing of the core: its methods take what they need and return what happened
(the contacts let go, the problems to report), and the core does the rest. A member
leaves the directory only through `remove`, `shed_missing` and `expire_missing`, and
the core then drops it the one way it drops anyone (`PeerCore._drop`).

Two tables, so that someone the broker forgot (a broker restart) is waited for a
while rather than said to have left: `members` (present) and `missing` (since when).
They never share a key. Together they hold at most `MAX_OTHERS`: a room message is
addressed to both, and a header names at most `MAX_ROOM` recipients, us included.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from zchat.envelope import BadCertificate, nick_key
from zchat.envelope.limits import MAX_ROOM
from zchat.peer import events as ev
from zchat.peer.contact import Contact
from zchat.peer.errors import NobodyHere, NotAdmitted, UnknownRecipient, UntrustedRecipient
from zchat.peer.fingerprints import MIN_PREFIX
from zchat.peer.session_keys import announced_key

#: Other members we keep in the directory: a room holds MAX_ROOM, ourselves included,
#: so an envelope to everyone never names more recipients than a header can.
MAX_OTHERS: Final = MAX_ROOM - 1
#: Names whose newest certificate time is remembered; past this the oldest is forgotten.
#: Four full rooms of names, as many as the pins store (`peer.pins.MAX_PINS`): a room's
#: members, and those who left and may come back.
MAX_NEWEST_CERTIFICATES: Final = 4096
#: Members named when a room message finds nobody admitted; the rest are counted.
NAMED_WAITING: Final = 5


@dataclass
class Directory:
    """The members present and missing, their session keys, and the room limit."""

    #: Members present (case-folded nickname -> contact).
    members: dict[str, Contact] = field(default_factory=dict)
    #: Members we knew who are not back since the broker forgot them (a restart), and
    #: when we noticed: most likely they are reconnecting.
    missing: dict[str, tuple[Contact, float]] = field(default_factory=dict)
    #: (nick, identity fingerprint) -> creation time of the newest certificate accepted
    #: in this run; kept when the member leaves, so no leave-and-join rolls a key back.
    _newest_certificate: OrderedDict[tuple[str, bytes], int] = field(default_factory=OrderedDict)
    _full_reported: bool = False  # said that the room is full, until there is room again

    # --- who is here -----------------------------------------------------------------

    def get(self, nick: str) -> Contact | None:
        """The member present under `nick`, if any."""
        return self.members.get(nick_key(nick))

    def listed(self, nick: str) -> Contact | None:
        """The member present under `nick`, or missing since a broker restart."""
        key = nick_key(nick)
        missing = self.missing.get(key)
        return self.members.get(key) or (missing[0] if missing else None)

    def is_missing(self, nick: str) -> bool:
        """Whether `nick` is missing since a broker restart, and not back yet."""
        key = nick_key(nick)
        return key in self.missing and key not in self.members

    def sendable(self, key: str) -> bool:
        """Whether a resend may go to `key` (case-folded): it may read, or is not here
        (the broker decides then: it waits for them or says they are absent)."""
        member = self.members.get(key)
        return member is None or member.may_read

    def add(self, member: Contact) -> None:
        self.members[nick_key(member.nick)] = member

    def readers(self) -> list[Contact]:
        """Who may read what we seal for the room: admitted, key unchanged. Members
        missing since a broker restart too: they are most likely reconnecting, and
        the outbox delivers when they are back."""
        present = [*self.members.values(), *(m for m, _ in self.missing.values())]
        return [m for m in present if m.may_read]

    def addressees(self, to: list[str] | None) -> list[Contact]:
        """Whom a message is sealed for: the room's readers, or the nicknames in `to`.

        Raises NobodyHere, UnknownRecipient, UntrustedRecipient or NotAdmitted, saying
        what to do instead.
        """
        if to is None:
            members = self.readers()
            if not members:
                waiting = [
                    m.nick
                    for m in self.members.values()
                    if m.admission is None and m.trust is not ev.Trust.CHANGED
                ]
                if waiting:
                    waiting.sort(key=nick_key)
                    more = (
                        f" and {len(waiting) - NAMED_WAITING} more"
                        if len(waiting) > NAMED_WAITING
                        else ""
                    )
                    named = ", ".join(waiting[:NAMED_WAITING]) + more
                    raise NobodyHere(
                        f"nobody here is admitted yet ({named}): message not sent; compare"
                        " fingerprints with someone you know (/who shows them), then"
                        " /admit NICK FINGERPRINT"
                    )
                raise NobodyHere("nobody else is here (or trusted): message not sent")
            return members
        chosen: dict[str, Contact] = {}
        for nick in to:
            member = self.get(nick)
            if member is None:
                raise UnknownRecipient(f"{nick} is not in the room: message not sent")
            if member.trust is ev.Trust.CHANGED:
                raise UntrustedRecipient(
                    f"{member.nick}'s key changed; check it and /trust {member.nick} first"
                )
            if not member.may_read:
                # No fingerprint here, not even its start: an error is no place to
                # copy one from (peer.fingerprints).
                raise NotAdmitted(
                    f"{member.nick} is not admitted: nothing is sent to them until you compare"
                    f" fingerprints out of band (/fingerprint {member.nick}) and type"
                    f" /admit {member.nick} with at least its first {MIN_PREFIX} characters"
                )
            chosen[nick_key(nick)] = member
        if not chosen:
            raise UnknownRecipient("no recipient given")
        return list(chosen.values())

    # --- a snapshot lists everyone again ---------------------------------------------

    def relist(self) -> dict[str, Contact]:
        """A snapshot begins: empty the directory; returns the members it held, for
        the snapshot to find again (`known`)."""
        previous, self.members = self.members, {}
        self._full_reported = False
        return previous

    def back(self, key: str) -> Contact | None:
        """`key` (case-folded) is listed again: the contact it had while missing, if it
        was missing (it is no longer)."""
        missing = self.missing.pop(key, None)
        return missing[0] if missing else None

    def fits(self, key: str) -> bool:
        """Whether a snapshot may list `key` (case-folded): within the room limit."""
        return key in self.members or len(self.members) < MAX_OTHERS

    def relisted(self, previous: dict[str, Contact], now: float) -> list[Contact]:
        """The snapshot is in: those of `previous` not back are missing from `now`.
        Returns the missing let go to keep within the room limit."""
        for key, member in previous.items():
            if key not in self.members:
                self.missing[key] = (member, now)
        # Members present win over members missing: those gone longest are let go.
        return self.shed_missing(MAX_OTHERS)

    # --- members leave ---------------------------------------------------------------

    def remove(self, nick: str) -> Contact | None:
        """`nick` left (the broker said so): the member it was, if present."""
        member = self.members.pop(nick_key(nick), None)
        if member is not None:
            self._full_reported = False  # there is room again
        return member

    def make_room(self) -> tuple[bool, list[Contact]]:
        """Whether one more member fits, letting the longest-missing member go if need
        be; and the members let go.

        Members present and members missing since a broker restart count alike: a room
        message is addressed to both, and must name at most MAX_ROOM - 1 recipients.
        """
        shed = self.shed_missing(MAX_OTHERS - 1)
        return len(self.members) + len(self.missing) < MAX_OTHERS, shed

    def shed_missing(self, limit: int) -> list[Contact]:
        """Stop waiting for missing members, longest gone first, until at most `limit`
        members are present and missing together; returns them."""
        shed = []
        while self.missing and len(self.members) + len(self.missing) > limit:
            key = min(self.missing, key=lambda k: self.missing[k][1])
            member, _ = self.missing.pop(key)
            self._full_reported = False
            shed.append(member)
        return shed

    def expire_missing(self, now: float, wait: float) -> list[Contact]:
        """Stop waiting for members missing longer than `wait`; returns them."""
        expired = []
        for key, (member, since) in list(self.missing.items()):
            if now - since > wait:
                del self.missing[key]
                if key not in self.members:
                    self._full_reported = False
                    expired.append(member)
        return expired

    def report_full(self) -> bool:
        """Whether to say that announced members were ignored: once, until someone
        leaves, so that a flood of joins does not become a flood of lines."""
        if self._full_reported:
            return False
        self._full_reported = True
        return True

    # --- session keys ----------------------------------------------------------------

    def take_certificate(
        self,
        member: Contact,
        raw: bytes,
        date_ms: int | None,
        *,
        room_id: bytes,
        pinned: bytes | None,
        known: Contact | None = None,
    ) -> str:
        """Check the certificate announced for `member`: its session key if it is valid
        and for our room (`room_id`).

        `pinned` is the fingerprint pinned for the member's nickname; `known` is how we
        knew the member before, if at all. A certificate we refuse changes nothing, as
        any junk announcement: the member keeps the session key we had for it, if any
        (a broker that wanted us to keep sealing to it need only not pass the new one
        on). Refused too: a certificate older than the one we have, a rollback to a key
        the member dropped.

        Returns why it was refused when that is worth saying (the member may read), or "".
        """
        member.announced = raw
        if member.trust is ev.Trust.CHANGED or pinned != member.fingerprint:
            member.session = None  # checked against the new key if and when it is trusted
            return ""
        same_key = known is not None and known.public_der == member.public_der
        previous = known.session if known is not None and same_key else None
        newest = (nick_key(member.nick), member.fingerprint)
        try:
            member.session = announced_key(
                raw,
                nick=member.nick,
                identity_key=member.public_key,
                identity_fingerprint=member.fingerprint,
                room_id=room_id,
                date_ms=date_ms,
                previous=previous,
                not_before_ms=self._newest_certificate.get(newest, 0),
            )
            self.remember_certificate(member)
        except BadCertificate as exc:
            member.session = previous
            if not member.may_read:
                # Nothing would be sealed to them anyway; a broker that floods the room
                # with made-up members must not flood the screen too. Sending to them
                # once admitted says there is no valid key (NoSessionKey, Unsealed).
                return ""
            return str(exc)
        return ""

    def remember_certificate(self, member: Contact) -> None:
        """Remember how new `member`'s session key is, so no leave and join rolls it back.

        Only for members who may read: nothing is sealed to anyone else, and a broker
        that invents members must not be able to push a real member's record out.
        Called too when a member is admitted, for the key it has then.
        """
        if member.session is None or not member.may_read:
            return
        newest = (nick_key(member.nick), member.fingerprint)
        known = self._newest_certificate.get(newest, 0)
        self._newest_certificate[newest] = max(known, member.session.created_ms)
        self._newest_certificate.move_to_end(newest)
        while len(self._newest_certificate) > MAX_NEWEST_CERTIFICATES:
            self._newest_certificate.popitem(last=False)

"""What the peer library tells its front ends. Every front end renders these.

Strings inside events come from the network and are *not* sanitised here: each front
end escapes them for its medium (terminal, JSON) with `peer.sanitize`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Trust(Enum):
    """How far a member's key is trusted, as ssh's known_hosts would say it."""

    NEW = "new"  # first sight: pinned just now
    PINNED = "pinned"  # matches the pin
    CHANGED = "changed"  # differs from the pin: nothing is sent to it until /trust


@dataclass(frozen=True, slots=True)
class Ready:
    nick: str
    peers: tuple[str, ...]
    reconnected: bool = False


@dataclass(frozen=True, slots=True)
class Joined:
    nick: str
    fingerprint: bytes
    trust: Trust
    already_here: bool = False  # listed in the room snapshot when we arrived


@dataclass(frozen=True, slots=True)
class KeyChanged:
    nick: str
    old: bytes
    new: bytes


@dataclass(frozen=True, slots=True)
class Trusted:
    nick: str
    fingerprint: bytes
    released: int  # messages held back while the key was untrusted, now shown


@dataclass(frozen=True, slots=True)
class Left:
    nick: str
    reason: str


@dataclass(frozen=True, slots=True)
class MessageReceived:
    sender: str
    text: str
    msg_id: bytes
    timestamp_ms: int
    direct: bool
    recipients: tuple[str, ...]
    #: False when we have not admitted the sender: the message is signed by the key
    #: the broker announced for them, which neither we nor a member we admitted vouched for.
    admitted: bool = True


@dataclass(frozen=True, slots=True)
class Untrusted:
    """A message signed by a key that differs from the sender's pin: held back."""

    sender: str
    fingerprint: bytes
    msg_id: bytes


@dataclass(frozen=True, slots=True)
class Sent:
    """Our own message, sealed and queued; `Acked` follows once the broker took it."""

    msg_id: bytes
    text: str
    recipients: tuple[str, ...]
    direct: bool


@dataclass(frozen=True, slots=True)
class Acked:
    msg_id: bytes
    delivered: tuple[str, ...]
    absent: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Undelivered:
    """Recipients a message never reached: they stayed away past the grace period."""

    msg_id: bytes
    nicks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Refused:
    """The broker refused our handshake, for good: the session ends. `code` is a
    `wire.protocol.RefuseCode` name (``code-N`` for one this version does not know).

    `broker_version`: the broker speaks another protocol version, this one (its
    version refusal, `wire.protocol.VersionRefusal`); 0 otherwise."""

    code: str
    reason: str
    broker_version: int = 0
    #: Refused on coming back into the room (after a reconnect), after trying again
    #: for a while when the refusal could pass: not a nickname to change and retry.
    rejoining: bool = False


class ProblemCode(str, Enum):
    """Every `code` of an ``error`` event in the ``--json`` contract (README, "Scripted
    peers"): a `Problem`'s, a refusal's (`Refused`, the broker's `RefuseCode` names) and
    `TRANSPORT_FAILED`. A `str`, so that a code compares equal to its text."""

    # What the broker sent, or announced, that we could not use.
    MALFORMED = "malformed"
    UNEXPECTED = "unexpected"
    BAD_KEY = "bad-key"
    BAD_CERTIFICATE = "bad-certificate"
    ROOM_FULL = "room-full"
    UNKNOWN_SENDER = "unknown-sender"
    NOT_FOR_ME = "not-for-me"
    WRONG_ROOM = "wrong-room"  # genuine, but signed for another room
    BAD_SIGNATURE = "bad-signature"
    UNKNOWN_KIND = "unknown-kind"  # verified, but of a kind this zchat does not know
    HELD_BACK_DROPPED = "held-back-dropped"
    STALE = "stale"
    CANNOT_DECRYPT = "cannot-decrypt"
    BAD_ACK = "bad-ack"
    FORGED_SENDER = "forged-sender"  # the broker's ERROR: it says we forged a sender
    #: The broker refused our return into the room (after a reconnect) for something
    #: that may pass: we try again for a while; what is typed meanwhile waits.
    REJOIN_REFUSED = "rejoin-refused"
    # Here, on our side.
    PINS = "pins"
    INTERNAL = "internal"
    # What the user typed.
    USAGE = "usage"
    UNKNOWN_NICK = "unknown-nick"
    FINGERPRINT_MISMATCH = "fingerprint-mismatch"
    NOT_SENT = "not-sent"
    # The broker refused our handshake (`Refused`).
    NICK_TAKEN = "nick-taken"
    NICK_INVALID = "nick-invalid"
    UNSUPPORTED_VERSION = "unsupported-version"
    BAD_PROOF = "bad-proof"
    NOT_AUTHORIZED = "not-authorized"
    KEY_IN_USE = "key-in-use"
    TOO_MANY_ROOMS = "too-many-rooms"
    ROOM_INVALID = "room-invalid"
    # The connection cannot work (`TransportFailed`).
    TRANSPORT_FAILED = "transport-failed"


@dataclass(frozen=True, slots=True)
class Problem:
    """Something went wrong with one message or announcement; the chat goes on.

    The facts, never words: `peer.render.problem_text` words them, for every front end.
    """

    code: ProblemCode
    #: The member it is about, or the nickname the user gave.
    nick: str = ""
    #: What another layer said, verbatim: an error's text, the broker's reason, a hint.
    detail: str = ""
    #: Where it came from, when the code alone does not say: the broker's message
    #: ("Welcome", "Rekeyed", "Error"; "Welcome room": a WELCOME into another room than
    #: we asked for; "settled": an ACK that would reopen a settled message), or what
    #: the client was doing ("session key").
    context: str = ""
    #: Everyone else it names.
    nicks: tuple[str, ...] = ()
    #: How many, when it counts something (members announced past the room limit).
    count: int = 0


@dataclass(frozen=True, slots=True)
class Disconnected:
    reason: str
    #: True when the session is over (our nickname logged in elsewhere): no reconnect.
    final: bool = False


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The connection to the broker cannot work, so the client stopped trying.

    Final, unlike `Disconnected`: libzmq would retry forever in silence, but a broker
    whose CURVE key is not the one we were given (or that speaks another security
    mechanism) will never let us in. Comes from the client's socket monitor, never
    from the network's words.
    """

    reason: str
    hint: str = ""


@dataclass(frozen=True, slots=True)
class WhoEntry:
    nick: str
    fingerprint: bytes
    trust: Trust
    #: How we admitted them: "you", "vouch" (by `by`), "open", or "" (not admitted).
    admission: str = ""
    by: str = ""


@dataclass(frozen=True, slots=True)
class Who:
    """The answer to /who: ourselves first, then everyone present."""

    me: WhoEntry
    members: tuple[WhoEntry, ...]


@dataclass(frozen=True, slots=True)
class FingerprintShown:
    """The answer to /fingerprint."""

    nick: str
    fingerprint: bytes
    mine: bool


@dataclass(frozen=True, slots=True)
class Notice:
    """Local information for the user (help, hints); never from the network."""

    text: str


# --- issue 12: admission -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdmitNeeded:
    """Someone is here whom we have not admitted: they receive nothing from us until
    the user compares fingerprints and runs `command` (or a member we admitted vouches)."""

    nick: str
    fingerprint: bytes
    already_here: bool  # listed in the room snapshot when we arrived
    command: str  # what to type once the fingerprint matches: "/admit NICK 7CM5 TFYE"


@dataclass(frozen=True, slots=True)
class Admitted:
    """A member may read what we send from now on."""

    nick: str
    fingerprint: bytes
    how: str  # "you" (fingerprint compared) or "vouch"
    by: str  # the voucher's nickname, or ours for "you"


@dataclass(frozen=True, slots=True)
class VouchRejected:
    """A member's vouches that admitted nobody.

    `held`: they come from a member we have not admitted; they are kept, and count once
    we admit that member. Otherwise they were refused for good (`reason`): a bad
    signature, another voucher, another room, another key or another nickname.
    """

    voucher: str
    nicks: tuple[str, ...]  # whom they named
    reason: str
    held: bool = False


@dataclass(frozen=True, slots=True)
class Revoked:
    """`by` took back the admission of `nick`'s key (a REVOKE record, or the user's own
    /revoke or `zchat keys forget`, when `by` is us).

    `dropped`: we admitted that key only on `by`'s word (or `via`'s, a member admitted
    only on `by`'s word whose own vouches go with it), so it reads nothing more from
    us. Otherwise we admitted it ourselves (or on someone else's word), and it still
    reads: the user decides (/revoke).
    """

    nick: str
    fingerprint: bytes
    by: str
    dropped: bool
    via: str = ""


# --- issue 13: forward secrecy (session keys) ---------------------------------------


@dataclass(frozen=True, slots=True)
class Expired:
    """A message sealed to a session key of ours that we dropped: never shown.

    It came after the key's grace period: held up for long, or replayed from a
    recording (after a restart, every key of the last run is gone).
    """

    sender: str
    msg_id: bytes


@dataclass(frozen=True, slots=True)
class Unsealed:
    """Members our message was not sealed to: they have no valid session key (yet)."""

    msg_id: bytes
    nicks: tuple[str, ...]


Event = (
    Ready
    | Joined
    | KeyChanged
    | Trusted
    | Left
    | MessageReceived
    | Untrusted
    | Sent
    | Acked
    | Undelivered
    | Refused
    | Problem
    | Disconnected
    | TransportFailed
    | Who
    | FingerprintShown
    | Notice
    | AdmitNeeded
    | Admitted
    | VouchRejected
    | Revoked
    | Expired
    | Unsealed
)

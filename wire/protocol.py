"""The broker protocol: every message between a peer and the broker, as frames.

Pure: no sockets. Each message is a frozen dataclass; `encode` turns one into frames
and `parse_from_peer` / `parse_from_broker` turn frames back, raising ProtocolError on
anything else. Every message starts with the same two frames (as in ZeroMQ RFC 7)::

    frame 0   PROTOCOL_TAG   b"ZCHAT3": protocol name and version
    frame 1   command        one byte, a Command
    frame 2.. body           per command, below and in docs/PROTOCOL.md

The dialog::

    peer -> HELLO nick, public key, certificate, room   (any time; starts or restarts one)
    peer <- CHALLENGE nonce               or REFUSE code, reason
    peer -> PROOF signature(nonce ...)    (zchat.envelope.proof signs it)
    peer <- WELCOME nick, timers, room    then SNAPSHOT of the room   (or REFUSE)
    others <- JOIN nick, public key, certificate   (REKEYED nick, certificate: back again)
    peer -> SEND envelope, recipients     ->  each recipient <- DELIVER its leaf and path
    peer <- ACK id, delivered, absent
    both -> HEARTBEAT                     (every interval; silence means gone)
    peer -> REKEY certificate             ->  others <- REKEYED nick, certificate
    peer -> BYE                           ->  others <- LEAVE nick, reason

One message keeps its layout in every version, so that peers and brokers of two
versions can tell each other so: the version refusal (`VersionRefusal`), REFUSE
UNSUPPORTED_VERSION tagged with the version it answers. Codes (REFUSE, ERROR, LEAVE)
and command bytes a later version may add parse as raw ints, never as junk: the
receiver decides what an unknown one means (docs/PROTOCOL.md §5.9).

The certificate (`zchat.envelope.SessionCertificate`) is the peer's session key, which
every message to it is wrapped to, signed by its identity key for the room of the
HELLO; a peer makes a new one at every HELLO and on a schedule (REKEY), so that a
stolen identity key opens nothing recorded (forward secrecy, docs/SECURITY.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from zchat.envelope import (
    Delivery,
    Envelope,
    EnvelopeError,
    is_valid_nick,
    is_valid_room,
    nick_key,
)
from zchat.envelope.header import peek_msg_id
from zchat.envelope.limits import (
    DELIVERY_FRAMES,
    MAX_CERT_BYTES,
    MAX_ENVELOPE_FRAMES,
    MAX_PUBLIC_KEY_DER,
    MAX_ROOM,
    MAX_RSA_BYTES,
    MSG_ID_BYTES,
    NICK_MAX_LEN,
)

# The room a peer asks for unless told another (`zchat peer --room`): re-exported
# (PEP 484's `as` form) from `envelope.room`, where room ids are made.
from zchat.envelope.room import DEFAULT_ROOM as DEFAULT_ROOM  # noqa: PLC0414
from zchat.wire.errors import ProtocolError, UnsupportedProtocol

# The registries, re-exported (PEP 484's `as` form): every user of the protocol reads
# them as `protocol.Command`, `protocol.RefuseCode`, ...
from zchat.wire.registries import MAX_TAG_BYTES as MAX_TAG_BYTES  # noqa: PLC0414
from zchat.wire.registries import PROTOCOL_TAG as PROTOCOL_TAG  # noqa: PLC0414
from zchat.wire.registries import PROTOCOL_VERSION as PROTOCOL_VERSION  # noqa: PLC0414
from zchat.wire.registries import TAG_FAMILY as TAG_FAMILY  # noqa: PLC0414
from zchat.wire.registries import Command as Command  # noqa: PLC0414
from zchat.wire.registries import ErrorCode as ErrorCode  # noqa: PLC0414
from zchat.wire.registries import LeaveReason as LeaveReason  # noqa: PLC0414
from zchat.wire.registries import RefuseCode as RefuseCode  # noqa: PLC0414
from zchat.wire.registries import code_of, is_foreign_tag

CHALLENGE_BYTES: Final = 32
#: Reasons in REFUSE and ERROR are for people, and short.
MAX_REASON_BYTES: Final = 200
#: SNAPSHOT: three frames (nick, key, certificate) per member: the others in a full
#: room are MAX_ROOM - 1, and one spare costs nothing (3,000 frames). 999 members are
#: 2.7 MB at most at the sizes `_member` allows, about 0.95 MB with 2048-bit keys.
MEMBER_FRAMES: Final = 3
MAX_SNAPSHOT_FRAMES: Final = MEMBER_FRAMES * MAX_ROOM
#: The most frames any legal message has, tag and command included.
MAX_MESSAGE_FRAMES: Final = 2 + max(MAX_ENVELOPE_FRAMES, MAX_SNAPSHOT_FRAMES)


# --- messages a peer sends -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    nick: bytes  # raw: the broker answers an invalid nickname with REFUSE, not silence
    public_der: bytes
    certificate: bytes  # raw too: the broker answers a bad one with REFUSE
    #: The room to join, raw as well. The certificate is bound to it (its room id).
    room: bytes


@dataclass(frozen=True, slots=True)
class Proof:
    signature: bytes


@dataclass(frozen=True, slots=True)
class Send:
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Rekey:
    """Our new session key: the broker checks the certificate, then tells the others."""

    certificate: bytes


@dataclass(frozen=True, slots=True)
class Heartbeat:
    pass


@dataclass(frozen=True, slots=True)
class Bye:
    pass


# --- messages the broker sends -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    nonce: bytes


@dataclass(frozen=True, slots=True)
class Welcome:
    nick: str
    heartbeat_ms: int
    timeout_ms: int
    #: The room the peer is in: the one its HELLO asked for.
    room: str = DEFAULT_ROOM


@dataclass(frozen=True, slots=True)
class Refuse:
    #: A RefuseCode, or the raw number of a code this version does not know.
    code: RefuseCode | int
    reason: str


@dataclass(frozen=True, slots=True)
class VersionRefusal:
    """REFUSE UNSUPPORTED_VERSION in the one layout that no version changes::

        frame 0   the tag of the version it answers: "ZCHAT" and decimal digits
        frame 1   0x13 (REFUSE)
        frame 2   0x03 (UNSUPPORTED_VERSION)
        frame 3   reason, UTF-8, at most MAX_REASON_BYTES

    The broker answers a message of another version with it, tagged with that
    message's own tag, so that a peer of that version reads it as its own REFUSE. A
    peer reads a message tagged with another version's tag only as this: the broker
    speaks `version`.
    """

    tag: bytes
    reason: str

    @property
    def version(self) -> int:
        return int(self.tag[len(TAG_FAMILY) :])


@dataclass(frozen=True, slots=True)
class Member:
    nick: str
    public_der: bytes
    #: The session-key certificate as the broker has it: raw, for the peer to check
    #: against its pin. Empty means none: such a member is never sealed to.
    certificate: bytes = b""


@dataclass(frozen=True, slots=True)
class Snapshot:
    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class Join:
    member: Member


@dataclass(frozen=True, slots=True)
class Rekeyed:
    """A member present already has a new session key (it rotated, or came back)."""

    nick: str
    certificate: bytes


@dataclass(frozen=True, slots=True)
class Leave:
    nick: str
    #: A LeaveReason, or the raw number of a reason this version does not know.
    reason: LeaveReason | int


@dataclass(frozen=True, slots=True)
class Deliver:
    delivery: Delivery


@dataclass(frozen=True, slots=True)
class Ack:
    msg_id: bytes
    delivered: tuple[str, ...]
    absent: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Error:
    #: An ErrorCode, or the raw number of a code this version does not know.
    code: ErrorCode | int
    reason: str
    msg_id: bytes = b""  # the message the error is about, when there is one


@dataclass(frozen=True, slots=True)
class UnknownCommand:
    """A message whose command byte this version does not know (a later version's).
    Not junk: a broker answers it ERROR MALFORMED on a session, a peer drops it and
    reports it; its body is not read."""

    command: int


PeerMessage = Hello | Proof | Send | Heartbeat | Bye | Rekey | UnknownCommand
BrokerMessage = (
    Challenge
    | Welcome
    | Refuse
    | VersionRefusal
    | Snapshot
    | Join
    | Leave
    | Deliver
    | Ack
    | Error
    | Heartbeat
    | Rekeyed
    | UnknownCommand
)
Message = PeerMessage | BrokerMessage


# --- encoding ------------------------------------------------------------------------


def encode(msg: Message) -> list[bytes]:
    """The frames of `msg`, protocol tag and command included."""
    match msg:
        case VersionRefusal(tag, reason):  # tagged with the version it answers
            return [tag, _REFUSE_BYTE, bytes([RefuseCode.UNSUPPORTED_VERSION]), _reason(reason)]
        case UnknownCommand(command):  # what a later version may send, for tests
            return [PROTOCOL_TAG, bytes([command])]
        case Hello(nick, der, cert, room):
            body = [nick, der, cert, room]
        case Proof(signature):
            body = [signature]
        case Send(envelope):
            body = envelope.frames()
        case Rekey(cert):
            body = [cert]
        case Heartbeat() | Bye():
            body = []
        case Challenge(nonce):
            body = [nonce]
        case Welcome(nick, hb, timeout, room):
            body = [nick.encode(), hb.to_bytes(4, "big"), timeout.to_bytes(4, "big"), room.encode()]
        case Refuse(code, reason) | Error(code, reason, b""):
            body = [bytes([code]), _reason(reason)]
        case Error(code, reason, msg_id):
            body = [bytes([code]), _reason(reason), msg_id]
        case Snapshot(members):
            return snapshot_frames(member_frames(m) for m in members)
        case Join(member):
            return join_frames(member_frames(member))
        case Rekeyed(nick, cert):
            body = [nick.encode(), cert]
        case Leave(nick, reason):
            body = [nick.encode(), bytes([reason])]
        case Deliver(delivery):
            body = delivery.frames()
        case Ack(msg_id, delivered, absent):
            body = [msg_id, _nick_list(delivered), _nick_list(absent)]
    return [PROTOCOL_TAG, bytes([_COMMANDS[type(msg)]]), *body]


def deliver_frames(envelope: Envelope, index: int) -> list[bytes]:
    """DELIVER for the index-th recipient without building intermediate objects.

    The broker's hot path: existing byte strings, the leaf's index and the path cut
    from the tree the SEND's parser built.
    """
    return [PROTOCOL_TAG, _DELIVER_BYTE, *envelope.delivery_frames(index)]


def member_frames(member: Member) -> tuple[bytes, bytes, bytes]:
    """A member as SNAPSHOT and JOIN carry it: nickname, identity key, certificate."""
    return (member.nick.encode(), member.public_der, member.certificate)


def snapshot_frames(members: Iterable[Sequence[bytes]]) -> list[bytes]:
    """SNAPSHOT from each member's frames (`member_frames`), with no `Member` objects:
    in a join storm the broker sends one per newcomer, each listing everyone."""
    return [PROTOCOL_TAG, _SNAPSHOT_BYTE, *itertools.chain.from_iterable(members)]


def join_frames(member: Sequence[bytes]) -> list[bytes]:
    """JOIN from a member's frames (`member_frames`)."""
    return [PROTOCOL_TAG, _JOIN_BYTE, *member]


def _reason(text: str) -> bytes:
    return text.encode()[:MAX_REASON_BYTES]


def _nick_list(nicks: Sequence[str]) -> bytes:
    # Nicknames never contain a comma, so a comma-joined list is unambiguous.
    return ",".join(nicks).encode()


_COMMANDS: Final[dict[type, Command]] = {
    Hello: Command.HELLO,
    Proof: Command.PROOF,
    Send: Command.SEND,
    Heartbeat: Command.HEARTBEAT,
    Bye: Command.BYE,
    Rekey: Command.REKEY,
    Challenge: Command.CHALLENGE,
    Welcome: Command.WELCOME,
    Refuse: Command.REFUSE,
    Snapshot: Command.SNAPSHOT,
    Join: Command.JOIN,
    Leave: Command.LEAVE,
    Deliver: Command.DELIVER,
    Ack: Command.ACK,
    Error: Command.ERROR,
    Rekeyed: Command.REKEYED,
}
_DELIVER_BYTE: Final = bytes([Command.DELIVER])
_SNAPSHOT_BYTE: Final = bytes([Command.SNAPSHOT])
_JOIN_BYTE: Final = bytes([Command.JOIN])
_REFUSE_BYTE: Final = bytes([Command.REFUSE])
#: A version refusal's frames: tag, command, code and reason.
_VERSION_REFUSAL_FRAMES: Final = 4


# --- parsing -------------------------------------------------------------------------


def parse_from_peer(frames: Sequence[bytes]) -> PeerMessage:
    """Parse what a peer sent. Anything but a valid peer message raises ProtocolError:
    UnsupportedProtocol for another version's tag (the broker answers it whatever the
    rest), with the SEND's msg_id for an envelope whose header could be read that far."""
    if frames and is_foreign_tag(frames[0]):
        raise UnsupportedProtocol(bytes(frames[0]))
    command, body = _split(frames)
    if not isinstance(command, Command):
        return UnknownCommand(command)
    try:
        match command:
            case Command.HELLO:
                nick, der, cert, room = _exact(body, 4)
                # No size checks here: an over-long nickname, key, certificate or room
                # is still a HELLO, and the broker answers it with a refusal that says why.
                return Hello(nick, der, cert, room)
            case Command.PROOF:
                (signature,) = _exact(body, 1)
                _limit(signature, MAX_RSA_BYTES, "signature")
                return Proof(signature)
            case Command.SEND:
                try:
                    return Send(Envelope.parse(body))
                except EnvelopeError as exc:
                    msg_id = peek_msg_id(bytes(body[0])) if body else b""
                    raise ProtocolError(str(exc), msg_id=msg_id) from exc
            case Command.HEARTBEAT:
                _exact(body, 0)
                return Heartbeat()
            case Command.REKEY:
                (cert,) = _exact(body, 1)
                _limit(cert, MAX_CERT_BYTES, "certificate")
                return Rekey(cert)
            case Command.BYE:
                _exact(body, 0)
                return Bye()
    except EnvelopeError as exc:
        raise ProtocolError(str(exc)) from exc
    raise ProtocolError(f"{command.name} is not a peer command")


def parse_from_broker(frames: Sequence[bytes]) -> BrokerMessage:
    """Parse what the broker sent. The broker may lie or be hostile: parse as strictly.

    A message tagged with another version's tag is read only as a `VersionRefusal`;
    anything else so tagged is junk."""
    if frames and is_foreign_tag(frames[0]):
        return _version_refusal(frames)
    command, body = _split(frames)
    if not isinstance(command, Command):
        return UnknownCommand(command)
    try:
        match command:
            case Command.CHALLENGE:
                (nonce,) = _exact(body, 1)
                if len(nonce) != CHALLENGE_BYTES:
                    raise ProtocolError("challenge has the wrong size")
                return Challenge(nonce)
            case Command.WELCOME:
                nick, hb, timeout, room = _exact(body, 4)
                if len(hb) != 4 or len(timeout) != 4:
                    raise ProtocolError("bad timer fields")
                return Welcome(
                    _nick(nick),
                    int.from_bytes(hb, "big"),
                    int.from_bytes(timeout, "big"),
                    _room(room),
                )
            case Command.REFUSE:
                code, reason = _exact(body, 2)
                return Refuse(code_of(RefuseCode, code), _text(reason))
            case Command.SNAPSHOT:
                if len(body) % MEMBER_FRAMES or len(body) > MAX_SNAPSHOT_FRAMES:
                    raise ProtocolError("bad snapshot frame count")
                members = tuple(
                    _member(*body[i : i + MEMBER_FRAMES])
                    for i in range(0, len(body), MEMBER_FRAMES)
                )
                if len({nick_key(m.nick) for m in members}) != len(members):
                    raise ProtocolError("duplicate nickname in snapshot")
                return Snapshot(members)
            case Command.JOIN:
                return Join(_member(*_exact(body, MEMBER_FRAMES)))
            case Command.REKEYED:
                nick, cert = _exact(body, 2)
                _limit(cert, MAX_CERT_BYTES, "certificate")
                return Rekeyed(_nick(nick), cert)
            case Command.LEAVE:
                nick, reason = _exact(body, 2)
                return Leave(_nick(nick), code_of(LeaveReason, reason))
            case Command.DELIVER:
                if len(body) != DELIVERY_FRAMES:
                    raise ProtocolError("bad delivery frame count")
                return Deliver(Delivery.parse(body))
            case Command.ACK:
                msg_id, delivered, absent = _exact(body, 3)
                if len(msg_id) != MSG_ID_BYTES:
                    raise ProtocolError("bad message id")
                return Ack(bytes(msg_id), _nicks(delivered), _nicks(absent))
            case Command.HEARTBEAT:
                _exact(body, 0)
                return Heartbeat()
            case Command.ERROR:
                if len(body) not in (2, 3):
                    raise ProtocolError("bad error frame count")
                msg_id = bytes(body[2]) if len(body) == 3 else b""
                if msg_id and len(msg_id) != MSG_ID_BYTES:
                    raise ProtocolError("bad message id")
                return Error(code_of(ErrorCode, body[0]), _text(body[1]), msg_id)
    except EnvelopeError as exc:
        raise ProtocolError(str(exc)) from exc
    raise ProtocolError(f"{command.name} is not a broker command")


def _version_refusal(frames: Sequence[bytes]) -> VersionRefusal:
    """Another version's message, read as the one layout no version changes."""
    if (
        len(frames) != _VERSION_REFUSAL_FRAMES
        or frames[1] != _REFUSE_BYTE
        or frames[2] != bytes([RefuseCode.UNSUPPORTED_VERSION])
    ):
        raise ProtocolError("a message of another protocol version that is no version refusal")
    return VersionRefusal(bytes(frames[0]), _text(frames[3]))


def _split(frames: Sequence[bytes]) -> tuple[Command | int, Sequence[bytes]]:
    if len(frames) < 2:
        raise ProtocolError("too few frames")
    if len(frames) > MAX_MESSAGE_FRAMES:
        raise ProtocolError("too many frames")
    if bytes(frames[0]) != PROTOCOL_TAG:
        raise ProtocolError("not a zchat message")
    return code_of(Command, frames[1]), frames[2:]


def _exact(body: Sequence[bytes], n: int) -> list[bytes]:
    if len(body) != n:
        raise ProtocolError(f"expected {n} body frames, got {len(body)}")
    return [bytes(f) for f in body]


def _limit(value: bytes, limit: int, what: str) -> None:
    if len(value) > limit:
        raise ProtocolError(f"{what} too large")


def _text(raw: bytes) -> str:
    # Reasons are shown to people: decode leniently here, sanitise at display time.
    return bytes(raw[:MAX_REASON_BYTES]).decode("utf-8", "replace")


def _nick(raw: bytes) -> str:
    if len(raw) > NICK_MAX_LEN:  # before decoding up to 64 KiB
        raise ProtocolError("invalid nickname")
    text = bytes(raw).decode("ascii", "replace")
    if not is_valid_nick(text):
        raise ProtocolError("invalid nickname")
    return text


def _room(raw: bytes) -> str:
    text = bytes(raw).decode("ascii", "replace")
    if not is_valid_room(text):
        raise ProtocolError("invalid room name")
    return text


def _nicks(raw: bytes) -> tuple[str, ...]:
    if not raw:
        return ()
    if bytes(raw).count(b",") >= MAX_ROOM:  # counted before a list is made of them
        raise ProtocolError("too many nicknames")
    parts = bytes(raw).split(b",")
    return tuple(_nick(p) for p in parts)


def _member(nick: bytes, der: bytes, cert: bytes) -> Member:
    _limit(der, MAX_PUBLIC_KEY_DER, "public key")
    _limit(cert, MAX_CERT_BYTES, "certificate")
    return Member(_nick(nick), bytes(der), bytes(cert))

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

The certificate (`zchat.envelope.SessionCertificate`) is the peer's session key, which
every message to it is wrapped to, signed by its identity key for the room of the
HELLO; a peer makes a new one at every HELLO and on a schedule (REKEY), so that a
stolen identity key opens nothing recorded (forward secrecy, docs/SECURITY.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, TypeVar

from zchat.envelope import (
    Delivery,
    Envelope,
    EnvelopeError,
    is_valid_nick,
    is_valid_room,
    nick_key,
)
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

# The room a peer asks for unless told another (`zchat peer --room`), and the one a
# broker serves unless told another (`zchat broker --room`): re-exported (PEP 484's
# `as` form) from `envelope.room`, where room ids are made.
from zchat.envelope.room import DEFAULT_ROOM as DEFAULT_ROOM  # noqa: PLC0414
from zchat.wire.errors import ProtocolError, UnsupportedProtocol

_E = TypeVar("_E", bound=IntEnum)

PROTOCOL_TAG: Final = b"ZCHAT3"
_TAG_FAMILY: Final = b"ZCHAT"

CHALLENGE_BYTES: Final = 32
#: Reasons in REFUSE and ERROR are for people, and short.
MAX_REASON_BYTES: Final = 200
#: SNAPSHOT: three frames (nick, key, certificate) per member: the others in a full
#: room are MAX_ROOM - 1, and one spare costs nothing (3,000 frames, about 2.3 MB).
MEMBER_FRAMES: Final = 3
MAX_SNAPSHOT_FRAMES: Final = MEMBER_FRAMES * MAX_ROOM
#: The most frames any legal message has, tag and command included.
MAX_MESSAGE_FRAMES: Final = 2 + max(MAX_ENVELOPE_FRAMES, MAX_SNAPSHOT_FRAMES)


class Command(IntEnum):
    # peer -> broker
    HELLO = 0x01
    PROOF = 0x02
    SEND = 0x03
    HEARTBEAT = 0x04  # both ways
    BYE = 0x05
    REKEY = 0x06  # a new session key (forward secrecy)
    # broker -> peer
    CHALLENGE = 0x11
    WELCOME = 0x12
    REFUSE = 0x13
    SNAPSHOT = 0x14
    JOIN = 0x15
    LEAVE = 0x16
    DELIVER = 0x17
    ACK = 0x18
    ERROR = 0x19
    REKEYED = 0x1A  # a member's new session key


class RefuseCode(IntEnum):
    """Why a handshake was refused. The peer may retry with another nickname."""

    NICK_TAKEN = 1
    NICK_INVALID = 2
    UNSUPPORTED_VERSION = 3
    BAD_PROOF = 4
    BAD_KEY = 5
    ROOM_FULL = 6
    NOT_AUTHORIZED = 7  # CURVE: this transport key may not use this nickname
    KEY_IN_USE = 8  # this key already holds another nickname in the room
    BAD_CERTIFICATE = 9  # the session-key certificate is not this nickname's, key's, room's
    #: No room for this room: this broker serves one room, and the HELLO asked for
    #: another (a broker of many rooms will send it when it holds as many as it may).
    TOO_MANY_ROOMS = 10
    ROOM_INVALID = 11  # the room name is not 1-64 printable ASCII characters


class ErrorCode(IntEnum):
    """Problems with one message of an established (or missing) session."""

    HELLO_FIRST = 1  # no session on this connection: say HELLO again
    MALFORMED = 2
    FORGED_SENDER = 3  # the header names someone else as the sender
    REPLACED = 4  # the same nickname and key logged in on another connection
    EVICTED = 5
    BAD_CERTIFICATE = 6  # a REKEY whose certificate is not this session's: not relayed


class LeaveReason(IntEnum):
    BYE = 1
    TIMEOUT = 2
    BACKLOG = 4  # it stopped reading (3 is retired: never reuse a wire value)


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
    code: RefuseCode
    reason: str


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
    reason: LeaveReason


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
    code: ErrorCode
    reason: str
    msg_id: bytes = b""  # the message the error is about, when there is one


PeerMessage = Hello | Proof | Send | Heartbeat | Bye | Rekey
BrokerMessage = (
    Challenge
    | Welcome
    | Refuse
    | Snapshot
    | Join
    | Leave
    | Deliver
    | Ack
    | Error
    | Heartbeat
    | Rekeyed
)
Message = PeerMessage | BrokerMessage


# --- encoding ------------------------------------------------------------------------


def encode(msg: Message) -> list[bytes]:
    """The frames of `msg`, protocol tag and command included."""
    match msg:
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
            body = [part for m in members for part in _member_frames(m)]
        case Join(member):
            body = _member_frames(member)
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


def _member_frames(member: Member) -> list[bytes]:
    return [member.nick.encode(), member.public_der, member.certificate]


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


# --- parsing -------------------------------------------------------------------------


def parse_from_peer(frames: Sequence[bytes]) -> PeerMessage:
    """Parse what a peer sent. Anything but a valid peer message raises ProtocolError."""
    command, body = _split(frames)
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
                return Send(Envelope.parse(body))
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
    """Parse what the broker sent. The broker may lie or be hostile: parse as strictly."""
    command, body = _split(frames)
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
                return Refuse(_enum(RefuseCode, code), _text(reason))
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
                return Leave(_nick(nick), _enum(LeaveReason, reason))
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
                return Error(_enum(ErrorCode, body[0]), _text(body[1]), msg_id)
    except EnvelopeError as exc:
        raise ProtocolError(str(exc)) from exc
    raise ProtocolError(f"{command.name} is not a broker command")


def _split(frames: Sequence[bytes]) -> tuple[Command, Sequence[bytes]]:
    if len(frames) < 2:
        raise ProtocolError("too few frames")
    if len(frames) > MAX_MESSAGE_FRAMES:
        raise ProtocolError("too many frames")
    tag = bytes(frames[0])
    if tag != PROTOCOL_TAG:
        if tag.startswith(_TAG_FAMILY):
            # Cut short: the reason goes into the broker's log, and a tag frame may be
            # up to 64 KiB long.
            raise UnsupportedProtocol(f"unsupported protocol {tag[:16]!r}")
        raise ProtocolError("not a zchat message")
    command = frames[1]
    if len(command) != 1:
        raise ProtocolError("bad command frame")
    return _enum(Command, command), frames[2:]


def _exact(body: Sequence[bytes], n: int) -> list[bytes]:
    if len(body) != n:
        raise ProtocolError(f"expected {n} body frames, got {len(body)}")
    return [bytes(f) for f in body]


def _limit(value: bytes, limit: int, what: str) -> None:
    if len(value) > limit:
        raise ProtocolError(f"{what} too large")


def _enum(kind: type[_E], raw: bytes) -> _E:
    if len(raw) != 1:
        raise ProtocolError(f"bad {kind.__name__} field")
    try:
        return kind(raw[0])
    except ValueError:
        raise ProtocolError(f"unknown {kind.__name__} {raw[0]}") from None


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

"""Who is where: the broker's sessions, its rooms, and the rules that need a room's tables.

A room is named by its peers (HELLO), never by the broker: it comes into being with its
first member and is forgotten when it has neither members nor messages held for them
(`broker.held`). Nicknames and keys are unique in a room, not across rooms: "alice" in
"ops" and "alice" in "general" are two members who never hear of each other, and one
key may be a member of several rooms. Nothing of a room's reaches another: every table
a message is routed, announced or counted by is the room's own (`Room`).

A room's name is known only to those who were told it: no message lists rooms, and
no log line names one. The broker holds at most `max_rooms` (`zchat broker
--max-rooms`); a HELLO for another is refused TOO_MANY_ROOMS.

Pure bookkeeping, as `broker.held` is: no sends, no clock. The core (`broker.core`)
decides, and tells this module what changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa

from zchat.broker.hello import Refusal
from zchat.envelope import nick_key
from zchat.envelope.limits import MAX_ROOM
from zchat.wire import protocol as p


@dataclass(eq=False)
class Session:
    """A connection's member, or its handshake: who it says it is, and where."""

    conn: bytes
    nick: str
    public_der: bytes
    public_key: rsa.RSAPublicKey
    fingerprint: bytes
    nonce: bytes
    last_seen: float
    #: The room its HELLO named, and that room's id (its certificate names it).
    room: str
    room_id: bytes
    #: The session-key certificate (encoded) as the peer gave it, checked, and when it
    #: was made: a REKEY must bring a newer one.
    certificate: bytes = b""
    certificate_created_ms: int = 0
    transport_key: bytes | None = None  # the CURVE key that said HELLO, if any
    #: This member as SNAPSHOT and JOIN carry it, made once per certificate: a join
    #: storm of 1,000 lists every member in 1,000 SNAPSHOTs.
    _frames: tuple[bytes, bytes, bytes] | None = field(default=None, init=False, repr=False)

    def member_frames(self) -> tuple[bytes, bytes, bytes]:
        """Nickname, identity key and certificate, as `wire.protocol.member_frames`."""
        frames = self._frames
        if frames is None or frames[2] is not self.certificate:  # a REKEY replaced it
            frames = self._frames = (self.nick.encode(), self.public_der, self.certificate)
        return frames


@dataclass(eq=False)
class Room:
    """One room's members: by case-folded nickname (in the order they were listed),
    and by key fingerprint (a key holds one nickname in a room at a time)."""

    name: str
    id: bytes
    by_nick: dict[str, Session] = field(default_factory=dict)
    by_key: dict[bytes, Session] = field(default_factory=dict)
    #: Connections with messages held since they were members here: the room lasts
    #: until those are sent or dropped, so that its bounds still count them.
    holding: set[bytes] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.by_nick)

    @property
    def vacant(self) -> bool:
        return not self.by_nick and not self.holding

    def member(self, nick: str) -> Session | None:
        """The member listed under `nick`, compared case-insensitively."""
        return self.by_nick.get(nick_key(nick))

    def refusal(self, newcomer: Session, current: Session | None) -> Refusal | None:
        """Why `newcomer` may not be listed here, or None: its nickname held by another
        key, its key holding another nickname, or the room full. `current` is the
        session listed on the newcomer's connection, if any: it gives its place up.

        Checked at HELLO, to answer at once, and again at PROOF: other handshakes may
        have finished in between.
        """
        nick, conn = newcomer.nick, newcomer.conn
        holder = self.member(nick)
        if holder is not None:
            if holder.fingerprint != newcomer.fingerprint:
                return Refusal(p.RefuseCode.NICK_TAKEN, f"{nick} is taken")
            return None  # the same key back: it takes its own place
        owner = self.by_key.get(newcomer.fingerprint)
        if owner is not None and owner.conn != conn:
            # One key, one member: recipients keep their replay windows by key, and a
            # second name would let one member's messages pass for another's. A member
            # may still change its name on its own connection. The other name is not
            # given: a HELLO proves nothing yet, and anyone may send a public key.
            reason = "this key is in the room under another nickname"
            return Refusal(p.RefuseCode.KEY_IN_USE, reason)
        leaving = 1 if current is not None and self.listed(current) else 0
        if len(self.by_nick) - leaving >= MAX_ROOM:
            return Refusal(p.RefuseCode.ROOM_FULL, "the room is full")
        return None

    def listed(self, session: Session) -> bool:
        """Whether `session` is the member under its nickname here."""
        return self.by_nick.get(nick_key(session.nick)) is session

    def enter(self, session: Session) -> None:
        """List `session`, in the place of whoever held its nickname or its key."""
        self.by_nick[nick_key(session.nick)] = session
        self.by_key[session.fingerprint] = session

    def leave(self, session: Session) -> bool:
        """Unlist `session`; True if it was the member under its nickname."""
        if self.by_key.get(session.fingerprint) is session:
            del self.by_key[session.fingerprint]
        if not self.listed(session):
            return False
        del self.by_nick[nick_key(session.nick)]
        return True


class Rooms:
    """Every room by name, at most `max_rooms` of them, and which room each
    connection's held messages count in."""

    def __init__(self, max_rooms: int) -> None:
        self.max_rooms = max_rooms
        self._rooms: dict[str, Room] = {}
        self._held_in: dict[bytes, Room] = {}

    def __len__(self) -> int:
        return len(self._rooms)

    def __iter__(self) -> Iterator[Room]:
        return iter(list(self._rooms.values()))

    def get(self, name: str) -> Room | None:
        return self._rooms.get(name)

    def refusal(self, name: str, current: Session | None) -> Refusal | None:
        """TOO_MANY_ROOMS if room `name` does not exist and may not be made: as many
        exist as may. `current`, the session listed on the asking connection, counts
        as gone if its leaving would empty its own room (it changes rooms)."""
        if name in self._rooms:
            return None
        frees = 0
        if current is not None:
            own = self._rooms.get(current.room)
            if own is not None and own.listed(current) and len(own) == 1 and not own.holding:
                frees = 1
        if len(self._rooms) - frees >= self.max_rooms:
            # The room's name is not given back, nor any other: none is listed anywhere.
            return Refusal(p.RefuseCode.TOO_MANY_ROOMS, "this broker holds as many rooms as it may")
        return None

    def open(self, name: str, room_id: bytes) -> Room:
        """Room `name`, made now if it does not exist (the caller checked `refusal`)."""
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = Room(name, room_id)
        return room

    def close_if_vacant(self, room: Room) -> None:
        if room.vacant and self._rooms.get(room.name) is room:
            del self._rooms[room.name]

    def holding(self, conn: bytes, room: Room) -> None:
        """Messages are held for `conn` from now, while a member of `room`."""
        self._held_in[conn] = room
        room.holding.add(conn)

    def released(self, conn: bytes) -> None:
        """Nothing is held for `conn` any more: sent, or dropped."""
        room = self._held_in.pop(conn, None)
        if room is not None:
            room.holding.discard(conn)
            self.close_if_vacant(room)

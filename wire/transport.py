"""ZeroMQ helpers shared by the broker and the peer: bounded receive, socket limits.

`zmq.ZMQError` is translated to `TransportError` here, at the boundary.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Final, cast

import zmq

from zchat.envelope.limits import MAX_FRAME_BYTES
from zchat.wire.protocol import MAX_MESSAGE_FRAMES

#: Messages queued per connection before the socket reports "full". Deep enough for
#: bursts; shallow enough that a stalled peer is noticed and costs bounded memory.
#: A full room's join storm is 1,000 messages to a peer (a SNAPSHOT and 999 JOINs).
SEND_HWM: Final = 10_000
RECV_HWM: Final = 10_000
#: The broker's ROUTER queues far fewer messages per connection, because libzmq counts
#: messages and cannot say how many bytes it holds: 10,000 messages of a 22 KB token
#: are 220 MB. 256 deliveries of at most 32 KiB are 8 MiB; beyond that the broker holds
#: messages itself, counted in bytes (`broker.held`, PROTOCOL.md §3.9). Not lower:
#: libzmq learns what a reader took only every HWM/2 messages, so with 64 an honest
#: room of 5 already spilled 9% of its deliveries into the slower held path; with 256,
#: `make bench` holds none, up to rooms of 50. In a full room's join storm a member is
#: sent up to 999 JOINs: 256 wait here and the rest are held and counted (3.1 MB at
#: most, under the broker's 8 MiB per connection; tests/test_room_of_a_thousand.py).
ROUTER_SEND_HWM: Final = 256
#: And it reads ahead at most this many messages per connection: a sender faster than
#: the broker waits in its own queue (TCP pushes back), not in the broker's memory.
ROUTER_RECV_HWM: Final = 64
#: Linger on close: long enough to flush a goodbye, never forever (the default is
#: infinite, which hangs a peer that exits while the broker is down).
LINGER_MS: Final = 200


class TransportError(Exception):
    """A socket could not be set up (bad endpoint, address in use, ...)."""


def configure(sock: zmq.Socket[bytes]) -> None:
    """Limits every zchat socket gets, broker or peer."""
    # libzmq disconnects a sender of any *frame* over this size before the frame
    # reaches Python; it does not bound the number of frames, which `recv_bounded` does.
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
    sock.setsockopt(zmq.SNDHWM, SEND_HWM)
    sock.setsockopt(zmq.RCVHWM, RECV_HWM)
    sock.setsockopt(zmq.LINGER, LINGER_MS)


#: A ROUTER prepends a routing-id frame; one frame more than that is always illegal.
_RECV_LIMIT = MAX_MESSAGE_FRAMES + 2


#: Plain ints: pyzmq's `send_multipart` ORs enum flags for every frame, which costs
#: more than libzmq's send itself (`make bench` profile: a third of the broker's time).
#: Measured again for issue 21 (pyzmq 27, a ROUTER to an inproc DEALER, frames still
#: through pyzmq's Python `send`): a JOIN of 5 frames costs 4-6 us through `send_nowait`
#: and 9-15 us through one `send_multipart` call; a DELIVER of 6 frames 5.5 us against
#: 15-21 us. So one call per message stays this function, a frame per libzmq call under it.
_MORE_NOWAIT: Final = int(zmq.SNDMORE | zmq.NOBLOCK)
_NOWAIT: Final = int(zmq.NOBLOCK)
_EVENTS: Final = int(zmq.EVENTS)
_POLLIN: Final = int(zmq.POLLIN)
#: The compiled `send` under pyzmq's Python one (`zmq.Socket.send` only adds DRAFT
#: routing-id and group arguments, which zchat does not use, then calls this). Called
#: directly it costs half as much a frame: a DELIVER of 8 frames 4.4-5.0 us against
#: 8.5-11 us, and a broker sends one per recipient.
_send_frame: Final = zmq.backend.Socket.send


def send_nowait(
    sock: zmq.Socket[bytes], frames: Sequence[bytes], routing_id: bytes | None = None
) -> None:
    """`send_multipart([routing_id, *frames], NOBLOCK)`, frame by frame as pyzmq does it.

    `routing_id` is the connection a ROUTER sends to (no list is built to prepend it).
    libzmq decides at the first frame whether the message can be queued, so zmq.Again
    (and a ROUTER's EHOSTUNREACH) come from there, before anything is sent.
    """
    send = _send_frame
    if routing_id is not None:
        send(sock, routing_id, _MORE_NOWAIT)
    for frame in frames[:-1]:
        send(sock, frame, _MORE_NOWAIT)
    send(sock, frames[-1], _NOWAIT)


def recv_bounded(sock: zmq.Socket[bytes], limit: int = _RECV_LIMIT) -> list[bytes]:
    """Receive one multipart message without blocking, keeping at most `limit` frames.

    The rest of an over-long message is read and thrown away frame by frame, so a
    message of 200,000 tiny frames costs no list of 200,000 objects; the parser then
    sees `limit` frames, more than any legal message (with its routing id), and
    refuses it.
    Raises zmq.Again when nothing is waiting.
    """
    return _message(sock, _recv_frame(sock, _NOWAIT), limit)


def recv_bounded_with_user(
    sock: zmq.Socket[bytes], limit: int = _RECV_LIMIT
) -> tuple[list[bytes], bytes | None]:
    """`recv_bounded`, plus the ZAP "User-Id" of the connection the message came on.

    With CURVE and our ZAP handler that is the client's Z85 public key. Metadata hangs
    on libzmq's message objects, and every frame of a message carries the same: the
    first frame's is read. Returns None as the user id when there is none (no ZAP
    handler answered for this connection).
    """
    first = _recv_frame(sock, _NOWAIT)
    try:
        value = first.get("User-Id")
    except zmq.ZMQError:  # EINVAL: no such property on this connection
        value = None
    user = value.encode("ascii", "replace") if isinstance(value, str) else None
    return _message(sock, first, limit), user


def _recv_frame(sock: zmq.Socket[bytes], flags: int = 0) -> zmq.Frame:
    """One frame as libzmq's message object: whether more follow is a field of it, where
    asking the socket (`RCVMORE`) is a call into libzmq a frame. A SEND to a full room
    is a thousand frames; read so, each costs 1.3 us instead of 1.7-3.3."""
    return sock.recv(flags, copy=False)


def _message(sock: zmq.Socket[bytes], first: zmq.Frame, limit: int) -> list[bytes]:
    """The message `first` begins: its frames, every one past `limit` read and dropped."""
    frames = [first.bytes]
    frame = first
    while frame.more:
        frame = _recv_frame(sock)
        if len(frames) < limit:
            frames.append(frame.bytes)
    return frames


def readable(sock: zmq.Socket[bytes]) -> bool:
    """Whether a message waits on `sock`: libzmq's own word (EVENTS), which the socket's
    FD only hints at (a send or a recv can take its signal)."""
    return bool(cast(int, sock.get(_EVENTS)) & _POLLIN)


def watch(sock: zmq.Socket[bytes], events: int) -> zmq.Socket[bytes]:
    """A PAIR socket that receives `sock`'s monitor events, and can never stall libzmq.

    libzmq's I/O thread sends each monitor event with a blocking send. Through
    `Socket.get_monitor_socket` the inproc pipe holds 2,000 events; once it is full
    and nobody reads it (a client left open after its loop ended), that thread blocks
    for good, and with it every socket of the context (libzmq issue 3575; found as a
    test suite whose in-process clients all stopped hearing their broker). Our side
    of the pipe has no limit (RCVHWM 0), so an unread monitor costs a few bytes per
    event instead. Stop it with `unwatch` before closing either socket.
    """
    endpoint = f"inproc://zchat.monitor.{next(_MONITORS)}"
    sock.monitor(endpoint, events)
    monitor: zmq.Socket[bytes] = sock.context.socket(zmq.PAIR)
    monitor.setsockopt(zmq.RCVHWM, 0)  # set before connecting: inproc takes it then
    monitor.setsockopt(zmq.LINGER, 0)
    monitor.connect(endpoint)
    return monitor


def unwatch(sock: zmq.Socket[bytes], monitor: zmq.Socket[bytes]) -> None:
    """Stop `sock`'s monitor first, then close our end: the other order can leave the
    I/O thread sending an event to a pipe nobody will ever read."""
    sock.disable_monitor()
    monitor.close(linger=0)


_MONITORS = itertools.count()


def bind_all(sock: zmq.Socket[bytes], endpoints: list[str]) -> list[str]:
    """Bind to every endpoint; return what each resolved to (``*`` ports filled in)."""
    bound = []
    for endpoint in endpoints:
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise TransportError(f"cannot listen on {endpoint}: {exc.strerror}") from exc
        bound.append(sock.getsockopt_string(zmq.LAST_ENDPOINT))
    return bound

"""The ZeroMQ ceiling: a bare ROUTER and its DEALER peers, with no protocol logic.

    python -m zchat.bench.bare ENDPOINT ROOM

runs a bare ROUTER that fans every message out to the other members of the room and
answers the sender with a short acknowledgement: the broker's traffic pattern and
frame sizes, with no parsing, no checks and no state. `run_bare_peer` is the matching
DEALER side, run by the same worker processes that later run the real peers.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import zmq

from zchat.bench.clock import sleep_until
from zchat.bench.results import Counts
from zchat.envelope.limits import HASH_BYTES, KEY_ID_BYTES, LEAF_INDEX_BYTES
from zchat.wire import protocol as p

#: The bare router's acknowledgement: protocol tag and the ACK command, nothing else.
BARE_ACK = bytes([p.Command.ACK])
#: What a bare peer sends first so the router learns its routing id, and the answer.
BARE_HELLO = b"hi"
BARE_WELCOME = b"ok"


def run_bare_router(endpoint: str, room: int) -> None:
    """Fan each message out to every other member; never returns (the parent kills it).

    A message is the SEND shape, `tag | command | header | signature | token |
    recipients | key...`; member j of the others gets `tag | command | header |
    signature | token | leaf | path | key j`, the DELIVER shape, with a leaf and a path
    of the sizes a real one has (the first leaf's, and ceil(log2 n) hashes). No frame
    is parsed or checked: this is the most a Python ROUTER loop can route, the ceiling
    for the broker's socket loop.
    """
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    sock.bind(endpoint)
    members: list[bytes] = []
    while len(members) < room:
        ident, *_ = sock.recv_multipart()
        if ident not in members:
            members.append(ident)
        sock.send_multipart([ident, BARE_WELCOME])
    others = {m: [o for o in members if o != m] for m in members}
    tag, deliver = p.PROTOCOL_TAG, bytes([p.Command.DELIVER])
    path = bytes(HASH_BYTES * (room - 2).bit_length())  # for the room - 1 recipients
    send = sock.send
    while True:
        frames = _recv(sock, 0)
        sender = frames[0]
        if len(frames) < 8:
            sock.send_multipart([sender, BARE_WELCOME])  # a late hello
            continue
        header, signature, token, recipients = frames[3:7]
        leaf = bytes(LEAF_INDEX_BYTES) + recipients[: 1 + recipients[0] + KEY_ID_BYTES]
        for target, key in zip(others[sender], frames[7:], strict=False):
            for frame in (target, tag, deliver, header, signature, token, leaf, path):
                send(frame, _MORE)
            send(key, 0)
        send(sender, _MORE)
        send(tag, _MORE)
        send(BARE_ACK, 0)


#: The fastest way pyzmq has to move frames (see `broker.server._send_nowait`): one
#: `send` per frame with plain int flags, and `recv` while RCVMORE says so.
_MORE = int(zmq.SNDMORE)
_RCVMORE = int(zmq.RCVMORE)


def _recv(sock: zmq.Socket[bytes], flags: int) -> list[bytes]:
    frames = [sock.recv(flags)]
    while sock.get(_RCVMORE):
        frames.append(sock.recv())
    return frames


def connect_bare_peer(endpoint: str, ident: bytes, timeout: float) -> zmq.Socket[bytes]:
    """A DEALER connected to the bare router, which has answered our hello."""
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, ident)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    sock.connect(endpoint)
    sock.send(BARE_HELLO)
    if not sock.poll(int(timeout * 1000)):
        sock.close()
        raise TimeoutError(f"no answer from the bare router at {endpoint}")
    sock.recv()
    return sock


def run_bare_peer(
    sock: zmq.Socket[bytes],
    frames: Sequence[bytes],
    *,
    start_ns: int,
    measure_ns: int,
    end_ns: int,
    window: int,
    drain_s: float,
) -> Counts:
    """Send `frames` with `window` in flight until `end_ns`; count what arrives.

    Deliveries that arrive between `measure_ns` (after the warm-up) and `end_ns` are
    the measurement. After `end_ns` the loop only drains, for at most `drain_s`.
    """
    sent = acked = deliveries = received = wire = 0
    sleep_until(start_ns)
    drain_until = end_ns + int(drain_s * 1e9)
    last_input = time.monotonic_ns()
    while True:
        now = time.monotonic_ns()
        sending = now < end_ns
        if not sending and (
            now >= drain_until or (acked >= sent and now - last_input > 100_000_000)
        ):
            break
        while sending and sent - acked < window:
            for frame in frames[:-1]:
                sock.send(frame, _MORE)
            sock.send(frames[-1], 0)
            sent += 1
        if not sock.poll(10):
            continue
        while True:
            try:
                msg = _recv(sock, zmq.NOBLOCK)
            except zmq.Again:
                break
            now = time.monotonic_ns()
            last_input = now
            if msg[1] == BARE_ACK:
                acked += 1
                continue
            received += 1
            wire += sum(len(f) for f in msg)
            if measure_ns <= now < end_ns:
                deliveries += 1
    return Counts(sent, acked, deliveries, received, wire)


if __name__ == "__main__":
    run_bare_router(sys.argv[1], int(sys.argv[2]))

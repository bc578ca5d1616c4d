"""The two ceilings zchat is measured against: the raw cryptography and bare ZeroMQ.

Crypto: each primitive zchat uses is timed on its own, with the exact parameters of
`envelope._primitives` (private on purpose for applications; the benchmark must time
the very same calls). From those timings, `crypto_ceiling` says how many messages per
second a room could carry if every core did nothing but cryptography.

ZeroMQ: `python -m zchat.bench.ceilings ENDPOINT ROOM` runs a bare ROUTER that fans every
message out to the other members of the room and answers the sender with a short
acknowledgement: the broker's traffic pattern and frame sizes, with no parsing, no
checks and no state. `run_bare_peer` is the matching DEALER side, run by the same
worker processes that later run the real peers.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import zmq

from zchat.envelope import Delivery, Identity, Recipient, open_delivery, seal
from zchat.envelope import _primitives as prim
from zchat.wire import protocol as p

#: The bare router's acknowledgement: protocol tag and the ACK command, nothing else.
BARE_ACK = bytes([p.Command.ACK])
#: What a bare peer sends first so the router learns its routing id, and the answer.
BARE_HELLO = b"hi"
BARE_WELCOME = b"ok"


# --- cryptography ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CryptoTimings:
    """Seconds per operation, each the fastest of several timed batches."""

    sign: float
    verify: float
    wrap: float
    unwrap: float
    encrypt: float
    decrypt: float

    def as_us(self) -> dict[str, float]:
        return {name: round(getattr(self, name) * 1e6, 2) for name in self.__slots__}


def _per_op(
    ops: dict[str, Callable[[], object]], iterations: dict[str, int], batches: int
) -> dict[str, float]:
    """Seconds per call of each op: the fastest of `batches` timed batches.

    The batches of different ops take turns, so a neighbour that steals the CPU for a
    while slows one batch of each rather than every batch of one op; and the fastest
    batch is the best estimate of what the machine can do when nothing else runs,
    which is what a ceiling is about.
    """
    best = dict.fromkeys(ops, float("inf"))
    for fn in ops.values():
        fn()  # warm caches and lazy initialisation outside the timing
    for _ in range(batches):
        for name, fn in ops.items():
            n = iterations[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / n)
    return best


def time_crypto(identity: Identity, payload: bytes, *, scale: float = 1.0) -> CryptoTimings:
    """Time each primitive on `payload`-sized messages. `scale` < 1 for a quick run."""
    msg_id = bytes(16)
    key = prim.new_message_key()
    now = int(time.time())
    token = prim.encrypt(key, payload, now)
    header = bytes(120)  # a typical header length; hashing it is all signing does with it
    signature = prim.sign(identity.private_key, header, token)
    wrapped = prim.wrap(identity.public_key, key, msg_id, identity.fingerprint, "bob")
    private, public = identity.private_key, identity.public_key
    ops: dict[str, Callable[[], object]] = {
        "sign": lambda: prim.sign(private, header, token),
        "verify": lambda: prim.verify(public, signature, header, token),
        "wrap": lambda: prim.wrap(public, key, msg_id, identity.fingerprint, "bob"),
        "unwrap": lambda: prim.unwrap(private, wrapped, msg_id, identity.fingerprint, "bob"),
        "encrypt": lambda: prim.encrypt(key, payload, now),
        "decrypt": lambda: prim.decrypt(key, token),
    }
    # About 10 ms per batch and op: short enough to often fall between disturbances.
    base = {"sign": 30, "verify": 400, "wrap": 400, "unwrap": 30, "encrypt": 1000, "decrypt": 1000}
    iterations = {name: max(2, int(n * scale)) for name, n in base.items()}
    return CryptoTimings(**_per_op(ops, iterations, batches=max(3, int(9 * scale))))


def crypto_seconds_per_message(t: CryptoTimings, room: int) -> float:
    """CPU seconds of cryptography one room message costs, summed over all processes.

    In a room of n peers a message goes to the n - 1 others:

        sender:           sign + encrypt + (n - 1) * wrap
        each recipient:   verify + unwrap + decrypt          (n - 1 of them)
    """
    others = room - 1
    return t.sign + t.encrypt + others * (t.wrap + t.verify + t.unwrap + t.decrypt)


def crypto_ceiling(t: CryptoTimings, room: int, cores: int) -> float:
    """Messages per second if `cores` cores did nothing but this cryptography.

    Different messages (and the recipients of one message) are independent work that
    spreads over the cores, so the ceiling is cores / crypto_seconds_per_message.
    """
    return cores / crypto_seconds_per_message(t, room)


@dataclass(frozen=True, slots=True)
class EnvelopeOverhead:
    """`seal` and `open_delivery` against the primitives they are made of."""

    recipients: int
    seal_s: float
    seal_crypto_s: float
    open_s: float
    open_crypto_s: float

    def as_dict(self) -> dict[str, float]:
        return {
            "recipients": self.recipients,
            "seal_us": round(self.seal_s * 1e6, 1),
            "seal_crypto_us": round(self.seal_crypto_s * 1e6, 1),
            "seal_overhead_us": round((self.seal_s - self.seal_crypto_s) * 1e6, 1),
            "open_us": round(self.open_s * 1e6, 1),
            "open_crypto_us": round(self.open_crypto_s * 1e6, 1),
            "open_overhead_us": round((self.open_s - self.open_crypto_s) * 1e6, 1),
        }


def envelope_overhead(
    sender: Identity,
    recipient: Identity,
    payload: bytes,
    timings: CryptoTimings,
    *,
    recipients: int = 10,
    scale: float = 1.0,
) -> EnvelopeOverhead:
    """Time sealing for `recipients` recipients and opening one delivery.

    Their cost beyond `timings` is the envelope code itself (header, frames, checks).
    """
    nicks = [f"r{i}" for i in range(recipients)]
    keys = [recipient.public_key] * recipients
    group = [Recipient(nick, key) for nick, key in zip(nicks, keys, strict=True)]

    def do_seal() -> object:
        return seal(payload, sender=sender, sender_nick="sender", recipients=group, seq=1)

    envelope = seal(payload, sender=sender, sender_nick="sender", recipients=group, seq=1)
    delivery: Delivery = envelope.delivery_for(0)
    fp = sender.fingerprint

    def do_open() -> object:
        return open_delivery(
            delivery,
            me="r0",
            identity=recipient,
            sender_key=sender.public_key,
            sender_fingerprint=fp,
        )

    iterations = {"seal": max(2, int(15 * scale)), "open": max(2, int(30 * scale))}
    best = _per_op({"seal": do_seal, "open": do_open}, iterations, max(3, int(9 * scale)))
    t = timings
    return EnvelopeOverhead(
        recipients=recipients,
        seal_s=best["seal"],
        seal_crypto_s=t.sign + t.encrypt + recipients * t.wrap,
        open_s=best["open"],
        open_crypto_s=t.verify + t.unwrap + t.decrypt,
    )


# --- bare ZeroMQ ----------------------------------------------------------------------


def run_bare_router(endpoint: str, room: int) -> None:
    """Fan each message out to every other member; never returns (the parent kills it).

    A message is the SEND shape, `tag | command | header | signature | token | key...`;
    member j of the others gets `tag | command | header | signature | token | key j`,
    the DELIVER shape. No frame is parsed or checked: this is the most a Python
    ROUTER loop can route, the ceiling for the broker's socket loop.
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
    send = sock.send
    while True:
        frames = _recv(sock, 0)
        sender = frames[0]
        if len(frames) < 7:
            sock.send_multipart([sender, BARE_WELCOME])  # a late hello
            continue
        header, signature, token = frames[3:6]
        for target, key in zip(others[sender], frames[6:], strict=False):
            for frame in (target, tag, deliver, header, signature, token):
                send(frame, _MORE)
            send(key, 0)
        send(sender, _MORE)
        send(tag, _MORE)
        send(BARE_ACK, 0)


#: The fastest way pyzmq has to move frames (see `wire.transport.send_nowait`): one
#: `send` per frame with plain int flags, and `recv` while RCVMORE says so.
_MORE = int(zmq.SNDMORE)
_RCVMORE = int(zmq.RCVMORE)


def _recv(sock: zmq.Socket[bytes], flags: int) -> list[bytes]:
    frames = [sock.recv(flags)]
    while sock.get(_RCVMORE):
        frames.append(sock.recv())
    return frames


@dataclass(frozen=True, slots=True)
class Counts:
    """What one peer saw in a throughput phase."""

    sent: int
    acked: int
    deliveries: int  # received inside the measuring window
    received: int  # received in total
    wire_bytes: int  # frame bytes of everything received


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


def sleep_until(deadline_ns: int) -> None:
    """Sleep until `deadline_ns` on the `time.monotonic_ns` clock; return at once if past."""
    delay = (deadline_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


if __name__ == "__main__":
    run_bare_router(sys.argv[1], int(sys.argv[2]))

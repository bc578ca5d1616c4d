"""The cryptography ceiling: each primitive zchat uses, timed on its own.

The parameters are exactly those of `envelope._primitives` (private on purpose for
applications; the benchmark must time the very same calls). From those timings,
`crypto_ceiling` says how many messages per second a room could carry if every core
did nothing but cryptography, and `envelope_overhead` how much `seal` and
`open_delivery` cost beyond the primitives they are made of. `time_rotation` times a
session-key rotation, which is paid per connection and per rotation period, not per
message: a message's cryptography is the same whether its keys are wrapped to session
keys or to identity keys (both RSA-2048).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from zchat.bench.results import CryptoTimings, EnvelopeOverhead, RotationCost
from zchat.envelope import (
    Delivery,
    Envelope,
    Identity,
    Recipient,
    certify,
    generate_session_key,
    open_delivery,
    room_id,
    seal,
    verify_certificate,
)
from zchat.envelope import _primitives as prim

#: What the timed certificates and envelopes are bound to: any room costs the same.
_ROOM_ID = room_id("bench")


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
    fp = identity.fingerprint  # stands for the recipient's session key: same size, same cost
    wrapped = prim.wrap(identity.public_key, key, msg_id, fp, "bob", fp)
    private, public = identity.private_key, identity.public_key
    ops: dict[str, Callable[[], object]] = {
        "sign": lambda: prim.sign(private, header, token),
        "verify": lambda: prim.verify(public, signature, header, token),
        "wrap": lambda: prim.wrap(public, key, msg_id, fp, "bob", fp),
        "unwrap": lambda: prim.unwrap(private, wrapped, msg_id, fp, "bob", fp),
        "encrypt": lambda: prim.encrypt(key, payload, now),
        "decrypt": lambda: prim.decrypt(key, token),
    }
    # About 10 ms per batch and op: short enough to often fall between disturbances.
    base = {"sign": 30, "verify": 400, "wrap": 400, "unwrap": 30, "encrypt": 1000, "decrypt": 1000}
    iterations = {name: max(2, int(n * scale)) for name, n in base.items()}
    return CryptoTimings(**_per_op(ops, iterations, batches=max(3, int(9 * scale))))


def time_rotation(identity: Identity, *, scale: float = 1.0) -> RotationCost:
    """Time one session-key rotation: make the key, certify it, check the certificate."""
    keys = max(3, int(12 * scale))
    start = time.perf_counter()
    for _ in range(keys):
        session = generate_session_key()
    keygen = (time.perf_counter() - start) / keys
    created = int(time.time() * 1000)
    cert = certify(
        identity, "bench", session, room_id=_ROOM_ID, created_ms=created, lifetime_ms=3_600_000
    )
    ops: dict[str, Callable[[], object]] = {
        "certify": lambda: certify(
            identity, "bench", session, room_id=_ROOM_ID, created_ms=created, lifetime_ms=3_600_000
        ),
        "check": lambda: verify_certificate(
            cert,
            nick="bench",
            identity_key=identity.public_key,
            identity_fingerprint=identity.fingerprint,
            room_id=_ROOM_ID,
        ),
    }
    iterations = {"certify": max(2, int(30 * scale)), "check": max(2, int(300 * scale))}
    best = _per_op(ops, iterations, batches=max(3, int(9 * scale)))
    return RotationCost(keygen, best["certify"], best["check"])


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
    # The recipient's identity key stands for its session key: the same size, the same cost.
    keys = [recipient.public_key] * recipients
    group = [Recipient(nick, key) for nick, key in zip(nicks, keys, strict=True)]

    def do_seal() -> object:
        return seal(
            payload,
            sender=sender,
            sender_nick="sender",
            room_id=_ROOM_ID,
            recipients=group,
            seq=1,
        )

    envelope = do_seal()
    assert isinstance(envelope, Envelope)
    delivery: Delivery = envelope.delivery_for(0)
    fp = sender.fingerprint

    def do_open() -> object:
        return open_delivery(
            delivery,
            me="r0",
            room_id=_ROOM_ID,
            keys=(recipient,),
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

"""The cheapest attack on a fingerprint comparison, run for real at a short length.

An attacker (a hostile broker) wants a key whose fingerprint starts the way the
victim's does, so that a user who compares only that start admits the attacker. It
need not generate RSA keys: it fixes one large prime P once and varies a small prime
q. N = P*q is a 2048-bit modulus that zchat accepts (e = 65537, canonical DER), the
attacker knows its private key, and in the DER only the modulus bytes change, so a
candidate costs one multiplication and one SHA-256 (from a midstate over the bytes
before the modulus). docs/SECURITY.md prices 40 and 80 bits at the rate measured
here; `python -m tests.test_fingerprint_grinding` measures it again.

The test grinds 15 bits (three base32 characters, tens of thousands of candidates),
shows that the key it finds is accepted by `load_public_key`, signs as a working key,
matches the victim's start, and that /admit refuses it at the length that applies now.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.room import ready_core
from zchat.envelope import Identity, fingerprint, format_fingerprint, load_public_key
from zchat.envelope.keys import public_der
from zchat.peer.errors import FingerprintMismatch
from zchat.peer.fingerprints import MIN_PREFIX
from zchat.wire import protocol as p

VECTORS = Path(__file__).parent / "vectors"

#: A 2016-bit prime (`openssl prime -generate -bits 2016`): the attacker's fixed P.
P = int(
    "DD2EBDDE6756EED3FD0285264C27BA4D7679C6E8A98CB2CBDF8D56F33870FBE013098AA98AEB16AF"
    "7421294FB4577F7DFFAE6EDA2ED7921F777048DDA3C0E1D6263E4A209651B63F96D57739E046EE58"
    "C94EA9CA231E6DE8C8CB98B35417819414E51EB0F161A6D341ABEC97F28A156296ADE7B3BCE3A9B6"
    "71497B3DF6F95CAB8B6D50BB94DD87E24739B16AA6C63AEC14ED6E394BC9023C476A2F7810D2F930"
    "4642FFE157F0832FBC659D0A3126EE355040BD17AABB47C69A9EF1283FB0024E2C3B65521A64A2A5"
    "F234A229C95DE8FA954EAAA74BEB33611511ED30B126F06628D250ED7C43E80E0FD8A26D9C51797F"
    "8EF516F752201464CB9EFA95",
    16,
)
E = 65537
BITS = 2048
#: The smallest q that makes P*q a 2048-bit modulus.
Q_MIN = -(-(1 << (BITS - 1)) // P)
#: Bits ground in the test: three base32 characters.
GROUND_BITS = 15
#: Numbers sieved for prime q: about 190,000 primes, six times what 15 bits take on
#: average.
WINDOW = 1 << 22


def der_of(n: int) -> bytes:
    return public_der(rsa.RSAPublicNumbers(E, n).public_key())


def template() -> tuple[bytes, bytes]:
    """The DER of every P*q around Q_MIN, split around the 256 modulus bytes."""
    n = P * Q_MIN
    der = der_of(n)
    body = n.to_bytes(BITS // 8, "big")
    at = der.index(body)
    return der[:at], der[at + len(body) :]


def primes_from(start: int, width: int) -> Iterator[int]:
    """The primes in [start, start + width), by a sieve of that window."""
    sieve = bytearray([1]) * width
    for d in range(2, math.isqrt(start + width) + 1):
        first = max(d * d, -(-start // d) * d)
        sieve[first - start :: d] = bytes(len(range(first - start, width, d)))
    return (start + i for i in range(width) if sieve[i])


def prefix_bits(digest: bytes, bits: int) -> int:
    return int.from_bytes(digest[:4], "big") >> (32 - bits)


def grind(target: bytes, bits: int) -> tuple[int, int]:
    """(q, candidates tried): the first prime q whose P*q has a fingerprint starting
    with the same `bits` as `target`, each candidate one multiplication and one SHA-256."""
    before, after = template()
    midstate = hashlib.sha256(before)
    want = prefix_bits(target, bits)
    for tried, q in enumerate(primes_from(Q_MIN, WINDOW), 1):
        h = midstate.copy()
        h.update((P * q).to_bytes(BITS // 8, "big") + after)
        if prefix_bits(h.digest(), bits) == want and math.gcd(E, (P - 1) * (q - 1)) == 1:
            return q, tried
    raise AssertionError("the window held no match")


def private_key(q: int) -> rsa.RSAPrivateKey:
    """The attacker's private key for P*q: it knows both factors."""
    phi = (P - 1) * (q - 1)
    d = pow(E, -1, phi)
    numbers = rsa.RSAPrivateNumbers(
        p=P,
        q=q,
        d=d,
        dmp1=d % (P - 1),
        dmq1=d % (q - 1),
        iqmp=pow(q, -1, P),
        public_numbers=rsa.RSAPublicNumbers(E, P * q),
    )
    return numbers.private_key()  # OpenSSL's own checks pass: P and q are prime


def victim() -> Identity:
    key = serialization.load_pem_private_key((VECTORS / "bob.pem").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return Identity(key)


def test_a_prefix_ground_the_p_times_q_way_is_refused_at_the_length_that_applies_now(
    alice: Identity,
) -> None:
    bob = victim()
    q, tried = grind(bob.fingerprint, GROUND_BITS)
    assert tried < WINDOW
    forged = private_key(q)
    der = public_der(forged.public_key())
    # zchat takes it as any member's key: 2048 bits, e = 65537, canonical DER...
    key = load_public_key(der)
    assert (key.key_size, key.public_numbers().e) == (BITS, E)
    # ...whose private half the attacker holds: it signs, and the signature verifies.
    signature = forged.sign(
        b"hello", padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256()
    )
    key.verify(signature, b"hello", padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    # Its fingerprint starts as bob's does, for as many characters as were ground.
    shown, real = format_fingerprint(fingerprint(der)), format_fingerprint(bob.fingerprint)
    assert shown[:3] == real[:3]
    assert shown != real

    # The broker announces it as bob's. alice compares with bob out of band, as she must.
    core = ready_core("alice", alice, [p.Member("bob", der)])
    with pytest.raises(FingerprintMismatch, match="give at least 16 characters"):
        core.admit("bob", real[:3], 0.0)  # what was ground is too short to be taken
    with pytest.raises(FingerprintMismatch, match="not the start of the key bob has here") as no:
        core.admit("bob", real[:19], 0.0)  # the 16 characters bob reads out
    assert shown[:4] not in str(no.value)
    assert real[:4] not in str(no.value)
    assert not core.members["bob"].may_read
    assert MIN_PREFIX * 5 == 80  # base32: five bits a character


def candidate_rate(seconds: float = 2.0) -> float:
    """Candidates a second on one core, ground as `grind` does (for docs/SECURITY.md)."""
    before, after = template()
    midstate = hashlib.sha256(before)
    q, tried, end = Q_MIN | 1, 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        for _ in range(10_000):
            h = midstate.copy()
            h.update((P * q).to_bytes(BITS // 8, "big") + after)
            h.digest()
            q += 2
        tried += 10_000
    return tried / (time.perf_counter() - start)


if __name__ == "__main__":
    rate = candidate_rate(10.0)
    year = 365.25 * 86400
    print(f"{rate:,.0f} candidates/s on one core")
    for bits in (40, 60, 80):
        secs = 2**bits / rate
        print(f"{bits} bits: {secs / 86400:,.1f} core-days = {secs / year:.3g} core-years")

"""A room of MAX_ROOM (1,000) members: the counts and bytes every limit is derived from.

Counts and bytes, never time. A thousand members need a thousand RSA keys (the broker
refuses one key under two nicknames), and making them takes a minute; so they are
made from the primes of a few keys of the pool, every pair of primes a modulus of its
own. Such keys are worthless against anyone who compares them, and real to the broker:
each signs its certificate and its proof, and the broker checks both.
"""

from __future__ import annotations

import itertools
import math

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.keys import KeyPool
from tests.support.room import hello, seeded
from zchat.broker import server
from zchat.broker.config import BrokerConfig
from zchat.broker.core import Broker
from zchat.broker.held import held_size
from zchat.envelope import Identity
from zchat.envelope.limits import (
    MAX_CERT_BYTES,
    MAX_PUBLIC_KEY_DER,
    MAX_ROOM,
    NICK_MAX_LEN,
    RSA_PUBLIC_EXPONENT,
)
from zchat.envelope.proof import sign_proof
from zchat.peer import directory, pins, replay
from zchat.wire import protocol as p
from zchat.wire.errors import ProtocolError

pytestmark = pytest.mark.slow  # a thousand certificates and proofs: a few seconds


def _identities(keys: KeyPool, n: int) -> list[Identity]:
    """`n` distinct 2048-bit identities, from the primes of the pool's first keys."""
    primes: list[int] = []
    made: list[Identity] = []
    for k in itertools.count():
        numbers = keys.get(k).private_key.private_numbers()
        primes += [numbers.p, numbers.q]
        if math.comb(len(primes), 2) >= 2 * n:
            break
    for a, b in itertools.combinations(primes, 2):
        if len(made) == n:
            break
        if (a * b).bit_length() == 2048:
            made.append(_identity(a, b))
    assert len(made) == n
    return made


def _identity(a: int, b: int) -> Identity:
    e = RSA_PUBLIC_EXPONENT
    d = pow(e, -1, (a - 1) * (b - 1))
    numbers = rsa.RSAPrivateNumbers(
        a,
        b,
        d,
        rsa.rsa_crt_dmp1(d, a),
        rsa.rsa_crt_dmq1(d, b),
        rsa.rsa_crt_iqmp(a, b),
        rsa.RSAPublicNumbers(e, a * b),
    )
    return Identity(numbers.private_key(unsafe_skip_rsa_key_validation=True))


def _join(broker: Broker, i: int, ident: Identity) -> list[p.BrokerMessage]:
    """Member `i` says HELLO and proves its key; what the broker answered it."""
    conn = b"m%04d" % i
    first = broker.handle(conn, p.encode(hello(conn, ident)), 0.0)
    challenge = p.parse_from_broker(first[-1].frames)
    if not isinstance(challenge, p.Challenge):
        return [challenge]
    proof = sign_proof(ident.private_key, challenge.nonce, conn, ident.public_der)
    out = broker.handle(conn, p.encode(p.Proof(proof)), 0.0)
    mine = [o.frames for o in out if o.conn == conn]
    return [p.parse_from_broker(f) for f in mine]


def test_a_room_holds_a_thousand_and_the_next_is_refused_room_full(keys: KeyPool) -> None:
    people = _identities(keys, MAX_ROOM + 1)
    broker = Broker(random=seeded(0))
    snapshot_frames: list[bytes] = []
    for i, ident in enumerate(people[:MAX_ROOM]):
        conn = b"m%04d" % i
        first = broker.handle(conn, p.encode(hello(conn, ident)), 0.0)
        challenge = p.parse_from_broker(first[-1].frames)
        assert isinstance(challenge, p.Challenge), challenge
        proof = sign_proof(ident.private_key, challenge.nonce, conn, ident.public_der)
        out = broker.handle(conn, p.encode(p.Proof(proof)), 0.0)
        snapshot_frames = next(
            o.frames for o in out if o.conn == conn and o.frames[1] == bytes([p.Command.SNAPSHOT])
        )
        if i % 100 == 99:
            broker.tick(0.0)  # the batch's joins are announced (and dropped here)
    assert len(broker.nicks) == MAX_ROOM
    # The last one in was welcomed with the 999 others, in a message that parses...
    snapshot = p.parse_from_broker(snapshot_frames)
    assert isinstance(snapshot, p.Snapshot)
    assert len(snapshot.members) == MAX_ROOM - 1
    # ...and fits one connection's held-bytes budget with room to spare (~1 MB).
    assert held_size(snapshot_frames) < BrokerConfig().max_held_bytes // 4
    # The 1,001st is refused at its HELLO, and the room stays as it was.
    (refusal,) = _join(broker, MAX_ROOM, people[MAX_ROOM])
    assert isinstance(refusal, p.Refuse)
    assert refusal.code is p.RefuseCode.ROOM_FULL
    assert len(broker.nicks) == MAX_ROOM


def _largest_member(i: int) -> p.Member:
    """A member at the largest every limit allows: 32-character nickname, 1,024 bytes
    of key, a certificate of MAX_CERT_BYTES (the parser checks sizes, not contents)."""
    return p.Member(f"{i:0{NICK_MAX_LEN}d}", bytes(MAX_PUBLIC_KEY_DER), bytes(MAX_CERT_BYTES))


def test_the_largest_welcome_and_storm_of_a_full_room_fit_one_connections_budget() -> None:
    # A newcomer to a full room is told of the 999 others, in its SNAPSHOT or in JOINs
    # as they come during a storm: at worst all of one and all of the other.
    others = [_largest_member(i) for i in range(MAX_ROOM - 1)]
    snapshot = p.encode(p.Snapshot(tuple(others)))
    joins = [p.encode(p.Join(m)) for m in others]
    worst = held_size(snapshot) + sum(held_size(j) for j in joins)
    assert worst < BrokerConfig().max_held_bytes  # 6.0 MB of 8 MiB
    assert p.parse_from_broker(snapshot) == p.Snapshot(tuple(others))
    # And the total budget holds several such connections at once.
    assert BrokerConfig().max_held_total >= 10 * held_size(snapshot)


def test_a_snapshot_of_more_than_a_room_does_not_parse() -> None:
    members = tuple(_largest_member(i) for i in range(MAX_ROOM + 1))
    frames = p.encode(p.Snapshot(members))
    with pytest.raises(ProtocolError):
        p.parse_from_broker(frames)


def test_every_count_the_room_bounds_is_at_least_a_full_room() -> None:
    others = MAX_ROOM - 1
    assert others <= replay.MAX_DEPARTED  # every other member may leave at once
    assert others == directory.MAX_OTHERS
    assert directory.MAX_NEWEST_CERTIFICATES >= MAX_ROOM
    assert pins.MAX_PINS >= MAX_ROOM  # a full room pinned, with room for turnover
    # The broker reads ahead a full room's storm: a HELLO, a PROOF and a heartbeat each.
    assert server._INBOX_MESSAGES >= 3 * MAX_ROOM

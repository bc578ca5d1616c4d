"""A flooding peer for fault tests, run as its own process:

    python -m tests.flood ENDPOINT NICK TARGET COUNT

It handshakes honestly, then sends COUNT envelopes addressed to TARGET as fast as the
broker takes them. The envelopes carry a junk signature: the broker never checks
signatures (it cannot), and the target rejects them cheaply, so the flood costs
routing work only. Prints "done SECONDS" when all are sent.
"""

from __future__ import annotations

import os
import sys
import time

import zmq

from tests.support.room import hello, unsigned_envelope
from zchat.envelope import generate_identity
from zchat.envelope.proof import sign_proof
from zchat.wire import protocol as p
from zchat.wire.transport import configure


def main() -> None:
    endpoint, nick, target, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    identity = generate_identity()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    configure(sock)
    sock.connect(endpoint)
    sock.send_multipart(p.encode(hello(nick.encode(), identity, time.time())))
    challenge = p.parse_from_broker(sock.recv_multipart())
    assert isinstance(challenge, p.Challenge), challenge
    proof = sign_proof(identity.private_key, challenge.nonce, nick.encode(), identity.public_der)
    sock.send_multipart(p.encode(p.Proof(proof)))
    while not isinstance(p.parse_from_broker(sock.recv_multipart()), p.Snapshot):
        pass
    token = b"gAAAAA" + os.urandom(150)
    messages = []
    for seq in range(count):
        env = unsigned_envelope(
            nick,
            identity.fingerprint,
            [(target, os.urandom(8))],
            seq=seq,
            msg_id=os.urandom(16),
            timestamp_ms=int(time.time() * 1000),
            signature=os.urandom(256),
            token=token,
            wrapped=os.urandom(256),
        )
        messages.append(p.encode(p.Send(env)))
    print("ready", flush=True)
    start = time.monotonic()
    for frames in messages:
        while True:
            try:
                sock.send_multipart(frames, zmq.NOBLOCK)
                break
            except zmq.Again:
                time.sleep(0.001)
            while sock.poll(0):
                sock.recv_multipart()  # acks: keep our own receive queue short
        while sock.poll(0):
            sock.recv_multipart()
    print(f"done {time.monotonic() - start:.3f}", flush=True)
    sock.close(linger=2000)


if __name__ == "__main__":
    main()

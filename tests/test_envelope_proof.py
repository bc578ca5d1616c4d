"""The proof of key: its bytes as docs/PROTOCOL.md §3.4 writes them, and what it binds."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from zchat.envelope import Identity, sign_proof, verify_proof
from zchat.envelope import _primitives as prim
from zchat.envelope.proof import PROOF_CONTEXT, proof_bytes

NONCE = bytes(range(32))


#: Two CURVE public keys as Z85 text, as libzmq's socket options take them.
BROKER_KEY = b"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
PEER_KEY = b"Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"


def test_the_signed_input_is_laid_out_as_the_protocol_document_says(alice: Identity) -> None:
    signed = proof_bytes(NONCE, b"alice", alice.public_der)
    assert PROOF_CONTEXT == b"zchat/3 hello proof\x00"
    assert signed == PROOF_CONTEXT + NONCE + b"\x05alice" + b"\x00" + b"\x00" + alice.public_der
    # §3.4: 20 + 32 + 1 + n + 1 + b + 1 + t + d, which is 354 bytes for "alice", an
    # RSA-2048 key and no CURVE (b = t = 0), and 434 with CURVE (b = t = 40).
    assert len(signed) == 354
    curve = proof_bytes(
        NONCE, b"alice", alice.public_der, broker_key=BROKER_KEY, transport_key=PEER_KEY
    )
    assert (
        curve
        == b"".join([PROOF_CONTEXT, NONCE, b"\x05alice", b"\x28", BROKER_KEY, b"\x28", PEER_KEY])
        + alice.public_der
    )
    assert len(curve) == 434


@pytest.mark.parametrize(
    ("broker_key", "transport_key"),
    [
        (b"", b""),  # signed without CURVE, checked by a CURVE broker
        (PEER_KEY, PEER_KEY),  # another broker's key: a proof relayed from elsewhere
        (BROKER_KEY, BROKER_KEY),  # another transport key: the relay's own connection
        (PEER_KEY, BROKER_KEY),  # the two swapped
    ],
)
def test_a_proof_is_bound_to_the_broker_key_and_the_transport_key_it_was_made_on(
    alice: Identity, broker_key: bytes, transport_key: bytes
) -> None:
    keys = {"broker_key": BROKER_KEY, "transport_key": PEER_KEY}
    signature = sign_proof(alice.private_key, NONCE, b"alice", alice.public_der, **keys)
    assert verify_proof(alice.public_key, signature, NONCE, b"alice", alice.public_der, **keys)
    assert not verify_proof(
        alice.public_key,
        signature,
        NONCE,
        b"alice",
        alice.public_der,
        broker_key=broker_key,
        transport_key=transport_key,
    )


def test_a_curve_key_that_is_not_40_characters_never_verifies(alice: Identity) -> None:
    signature = sign_proof(alice.private_key, NONCE, b"alice", alice.public_der)
    assert not verify_proof(
        alice.public_key, signature, NONCE, b"alice", alice.public_der, transport_key=b"short"
    )
    with pytest.raises(ValueError, match="40 Z85 characters"):
        sign_proof(alice.private_key, NONCE, b"alice", alice.public_der, broker_key=b"x" * 32)


def test_a_proof_verifies_with_the_documented_pss_parameters(alice: Identity) -> None:
    # Written out here rather than imported, so a change of padding in the library
    # cannot pass unnoticed: this is what another implementation would check.
    signature = sign_proof(alice.private_key, NONCE, b"alice", alice.public_der)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    alice.public_key.verify(
        signature, proof_bytes(NONCE, b"alice", alice.public_der), pss, hashes.SHA256()
    )
    assert verify_proof(alice.public_key, signature, NONCE, b"alice", alice.public_der)


@pytest.mark.parametrize(
    ("nonce", "nick", "key_of"),
    [
        (bytes(32), b"alice", "alice"),  # another challenge
        (NONCE, b"alicf", "alice"),  # another nickname
        (NONCE, b"alice", "bob"),  # another key in the HELLO
    ],
)
def test_a_proof_does_not_verify_for_another_hello(
    alice: Identity, bob: Identity, nonce: bytes, nick: bytes, key_of: str
) -> None:
    signature = sign_proof(alice.private_key, NONCE, b"alice", alice.public_der)
    der = {"alice": alice.public_der, "bob": bob.public_der}[key_of]
    assert not verify_proof(alice.public_key, signature, nonce, nick, der)


def test_a_proof_made_by_another_key_does_not_verify(alice: Identity, bob: Identity) -> None:
    signature = sign_proof(bob.private_key, NONCE, b"alice", alice.public_der)
    assert not verify_proof(alice.public_key, signature, NONCE, b"alice", alice.public_der)


def test_no_signed_input_can_be_taken_for_another_kind() -> None:
    # Each kind of signed or wrapped input starts with its own context, and no context
    # is a prefix of another, so a proof can never pass for an envelope signature.
    contexts = [
        prim.SIGNATURE_CONTEXT,
        prim.WRAP_CONTEXT,
        PROOF_CONTEXT,
        prim.CERT_CONTEXT,
        prim.MEMBERSHIP_CONTEXT,
        prim.ROOM_CONTEXT,
    ]
    for a in contexts:
        assert a.endswith(b"\x00")
        for b in contexts:
            if a is not b:
                assert not b.startswith(a)

"""Known answers for the broker protocol: the proof of key and every message, frame by frame.

The vectors (tests/vectors/proof_v3.json, peer_messages_v3.json, broker_messages_v3.json,
written by tests/vectors/vector_messages.py) are what docs/PROTOCOL.md §3.2 and §3.4
write out. Both directions: each message built from its fields encodes to the stored
frames, and the stored frames parse back to that message. Values of a later version
(an unknown command byte, REFUSE, ERROR or LEAVE code) parse as their numbers.

And one rule for the directory as a whole: every vector file is read by some test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.vectors import VECTORS, identity, unhex, vector
from zchat.envelope import (
    Delivery,
    Envelope,
    SessionCertificate,
    room_id,
    verify_certificate,
    verify_proof,
)
from zchat.envelope.proof import PROOF_CONTEXT, proof_bytes
from zchat.wire import protocol as p

TESTS = Path(__file__).parent


def entries(name: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = vector(name)["messages"]
    return messages


def send_body() -> list[bytes]:
    return unhex(vector("envelope_v3.json")["send"])


# --- proof_v3.json ----------------------------------------------------------------------


@pytest.mark.parametrize("case", vector("proof_v3.json")["cases"], ids=lambda c: c["desc"][:20])
def test_the_proof_input_is_built_from_its_parts_as_the_vector_says(case: dict[str, Any]) -> None:
    nonce, der = bytes.fromhex(case["nonce"]), bytes.fromhex(case["public_der"])
    broker_key, transport_key = case["broker_key"].encode(), case["transport_key"].encode()
    signed = proof_bytes(
        nonce, case["nick"].encode(), der, broker_key=broker_key, transport_key=transport_key
    )
    assert signed.hex() == case["signed"]
    # The layout of §3.4, written out here a second way.
    nick = case["nick"].encode()
    assert signed == b"".join(
        [
            b"zchat/3 hello proof\x00",
            nonce,
            bytes([len(nick)]) + nick,
            bytes([len(broker_key)]) + broker_key,
            bytes([len(transport_key)]) + transport_key,
            der,
        ]
    )
    assert signed.startswith(PROOF_CONTEXT)


@pytest.mark.parametrize("case", vector("proof_v3.json")["cases"], ids=lambda c: c["desc"][:20])
def test_the_stored_proof_verifies_and_binds_both_curve_keys(case: dict[str, Any]) -> None:
    bob = identity("bob")
    nonce = bytes.fromhex(case["nonce"])
    keys = {
        "broker_key": case["broker_key"].encode(),
        "transport_key": case["transport_key"].encode(),
    }
    signature = bytes.fromhex(case["signature"])
    assert verify_proof(bob.public_key, signature, nonce, b"bob", bob.public_der, **keys)
    # Another nonce, nickname, or either CURVE key: it verifies no more.
    assert not verify_proof(bob.public_key, signature, bytes(32), b"bob", bob.public_der, **keys)
    assert not verify_proof(bob.public_key, signature, nonce, b"Bob", bob.public_der, **keys)
    other = b"0" * 40 if not keys["broker_key"] else b""
    assert not verify_proof(
        bob.public_key, signature, nonce, b"bob", bob.public_der,
        broker_key=other, transport_key=keys["transport_key"],
    )  # fmt: skip


# --- peer_messages_v3.json, broker_messages_v3.json -------------------------------------


def _member(fields: dict[str, str]) -> p.Member:
    return p.Member(
        fields["nick"], bytes.fromhex(fields["public_der"]), bytes.fromhex(fields["certificate"])
    )


def _delivery(reference: str) -> Delivery:
    index = int(reference.rsplit("[", 1)[1].rstrip("]"))
    return Delivery.parse(unhex(vector("envelope_v3.json")["deliveries"][index]))


def built(name: str, f: dict[str, Any]) -> p.Message:
    """The message a vector entry describes, built from its fields alone."""
    match name.split(" (", maxsplit=1)[0]:
        case "HELLO":
            der, cert = bytes.fromhex(f["public_der"]), bytes.fromhex(f["certificate"])
            return p.Hello(f["nick"].encode(), der, cert, f["room"].encode())
        case "PROOF":
            return p.Proof(bytes.fromhex(f["signature"]))
        case "SEND":
            return p.Send(Envelope.parse(send_body()))
        case "HEARTBEAT":
            return p.Heartbeat()
        case "BYE":
            return p.Bye()
        case "REKEY":
            return p.Rekey(bytes.fromhex(f["certificate"]))
        case "CHALLENGE":
            return p.Challenge(bytes.fromhex(f["nonce"]))
        case "WELCOME":
            return p.Welcome(f["nick"], f["heartbeat_ms"], f["timeout_ms"], f["room"])
        case "REFUSE":
            return p.Refuse(p.RefuseCode(f["code"]), f["reason"])
        case "version refusal":
            return p.VersionRefusal(f["tag"].encode(), f["reason"])
        case "SNAPSHOT":
            return p.Snapshot(tuple(_member(m) for m in f["members"]))
        case "JOIN":
            return p.Join(_member(f["member"]))
        case "LEAVE":
            return p.Leave(f["nick"], p.LeaveReason(f["reason"]))
        case "DELIVER":
            return p.Deliver(_delivery(f["delivery"]))
        case "ACK":
            return p.Ack(bytes.fromhex(f["msg_id"]), tuple(f["delivered"]), tuple(f["absent"]))
        case "ERROR":
            return p.Error(p.ErrorCode(f["code"]), f["reason"], bytes.fromhex(f["msg_id"]))
        case "REKEYED":
            return p.Rekeyed(f["nick"], bytes.fromhex(f["certificate"]))
    raise AssertionError(f"no builder for {name}")


def _known(name: str) -> list[dict[str, Any]]:
    return [m for m in entries(name) if "parses_as" not in m]


def _later(name: str) -> list[dict[str, Any]]:
    return [m for m in entries(name) if "parses_as" in m]


@pytest.mark.parametrize("entry", _known("peer_messages_v3.json"), ids=lambda m: m["name"])
def test_each_peer_message_encodes_to_the_stored_frames_and_parses_back(
    entry: dict[str, Any],
) -> None:
    msg = built(entry["name"], entry["fields"])
    assert [f.hex() for f in p.encode(msg)] == entry["frames"]
    assert p.parse_from_peer(unhex(entry["frames"])) == msg


@pytest.mark.parametrize("entry", _known("broker_messages_v3.json"), ids=lambda m: m["name"])
def test_each_broker_message_encodes_to_the_stored_frames_and_parses_back(
    entry: dict[str, Any],
) -> None:
    msg = built(entry["name"], entry["fields"])
    assert [f.hex() for f in p.encode(msg)] == entry["frames"]
    assert p.parse_from_broker(unhex(entry["frames"])) == msg


def test_every_command_is_in_the_vectors_once_at_least() -> None:
    peer = {bytes.fromhex(m["frames"][1])[0] for m in _known("peer_messages_v3.json")}
    broker = {bytes.fromhex(m["frames"][1])[0] for m in _known("broker_messages_v3.json")}
    assert peer | broker == set(p.Command)
    assert p.Command.HEARTBEAT in peer & broker


def test_the_stored_send_and_delivers_are_the_envelope_vectors_bytes() -> None:
    (send,) = [m for m in entries("peer_messages_v3.json") if m["name"] == "SEND"]
    assert send["frames"][0] == p.PROTOCOL_TAG.hex()
    assert send["frames"][2:] == vector("envelope_v3.json")["send"]
    delivers = [m for m in entries("broker_messages_v3.json") if m["name"] == "DELIVER"]
    assert [m["frames"][2:] for m in delivers] == vector("envelope_v3.json")["deliveries"]


def test_the_stored_certificates_are_genuine_for_the_room() -> None:
    # HELLO's, REKEY's and the SNAPSHOT's certificates are their identity keys' own.
    rid = room_id("general", b"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7")
    (snapshot,) = [m for m in entries("broker_messages_v3.json") if m["name"] == "SNAPSHOT"]
    (rekey,) = [m for m in entries("peer_messages_v3.json") if m["name"] == "REKEY"]
    certified = [(m["nick"], m["certificate"]) for m in snapshot["fields"]["members"]]
    certified.append(("bob", rekey["fields"]["certificate"]))
    for nick, raw in certified:
        cert = SessionCertificate.parse(bytes.fromhex(raw))
        who = identity(nick)
        verify_certificate(
            cert,
            nick=nick,
            identity_key=who.public_key,
            identity_fingerprint=who.fingerprint,
            room_id=rid,
        )


@pytest.mark.parametrize("entry", _later("peer_messages_v3.json"), ids=lambda m: m["name"])
def test_a_later_versions_command_from_a_peer_parses_as_its_number(entry: dict[str, Any]) -> None:
    assert p.parse_from_peer(unhex(entry["frames"])) == p.UnknownCommand(
        entry["parses_as"]["command"]
    )


@pytest.mark.parametrize("entry", _later("broker_messages_v3.json"), ids=lambda m: m["name"])
def test_a_later_versions_values_from_a_broker_parse_as_their_numbers(
    entry: dict[str, Any],
) -> None:
    parsed = p.parse_from_broker(unhex(entry["frames"]))
    want = entry["parses_as"]
    match parsed:
        case p.UnknownCommand(command):
            assert command == want["command"]
        case p.Refuse(code, reason):
            assert (code, reason) == (want["code"], want["reason"])
            assert not isinstance(code, p.RefuseCode)
        case p.Error(code, reason, msg_id):
            assert (code, reason, msg_id.hex()) == (want["code"], want["reason"], want["msg_id"])
            assert not isinstance(code, p.ErrorCode)
        case p.Leave(nick, reason):
            assert (nick, reason) == (want["nick"], want["reason"])
            assert not isinstance(reason, p.LeaveReason)
        case p.VersionRefusal(tag, reason):
            assert (tag.decode(), reason, parsed.version) == (
                want["tag"],
                want["reason"],
                want["version"],
            )
        case _:
            raise AssertionError(f"{entry['name']} parsed as {parsed!r}")


# --- the directory as a whole ----------------------------------------------------------


def test_every_vector_file_is_read_by_a_test() -> None:
    sources = "".join(path.read_text() for path in TESTS.glob("test_*.py"))
    for path in VECTORS.glob("*.json"):
        # By name, or (for the versioned ones) by the f-string that names them.
        stem = path.stem.rsplit("_v", 1)[0]
        assert path.name in sources or f'"{stem}_v{{' in sources, f"no test reads {path.name}"

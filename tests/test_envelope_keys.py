"""Identity key files: safe permissions, ssh-style refusal, passphrases, fingerprints."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from zchat.envelope import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    BadPublicKey,
    Identity,
    InsecureKeyFile,
    PassphraseRequired,
    WrongPassphrase,
    format_fingerprint,
    load_identity,
    load_or_create_identity,
    load_public_key,
    save_identity,
)

FAST_SCRYPT = 2**10  # tests use a cheap KDF; the default cost is checked separately


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_identity_is_created_with_private_permissions(tmp_path: Path) -> None:
    home = tmp_path / "id"
    identity, created = load_or_create_identity(home)
    assert created
    assert mode(home) == 0o700
    assert mode(home / PRIVATE_KEY_FILE) == 0o600
    assert (home / PRIVATE_KEY_FILE).read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert (home / PUBLIC_KEY_FILE).read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    again, created = load_or_create_identity(home)
    assert not created
    assert again.fingerprint == identity.fingerprint


def test_a_private_key_readable_by_others_is_refused_with_the_fix(
    tmp_path: Path, alice: Identity
) -> None:
    save_identity(alice, tmp_path)
    key = tmp_path / PRIVATE_KEY_FILE
    key.chmod(0o644)
    with pytest.raises(InsecureKeyFile) as info:
        load_identity(tmp_path)
    assert f"chmod 600 {key}" in str(info.value)


def test_passphrase_round_trip(tmp_path: Path, alice: Identity) -> None:
    save_identity(alice, tmp_path, b"correct horse", scrypt_n=FAST_SCRYPT)
    pem = (tmp_path / PRIVATE_KEY_FILE).read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in pem
    assert pem.startswith(b"zchat-kdf: scrypt n=1024 ")
    loaded = load_identity(tmp_path, b"correct horse")
    assert loaded.fingerprint == alice.fingerprint


def test_wrong_passphrase_is_a_clear_error(tmp_path: Path, alice: Identity) -> None:
    save_identity(alice, tmp_path, b"correct horse", scrypt_n=FAST_SCRYPT)
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        load_identity(tmp_path, b"battery staple")


def test_missing_passphrase_is_a_clear_error(tmp_path: Path, alice: Identity) -> None:
    save_identity(alice, tmp_path, b"correct horse", scrypt_n=FAST_SCRYPT)
    with pytest.raises(PassphraseRequired):
        load_identity(tmp_path)


def test_default_kdf_costs_at_least_100ms_per_guess() -> None:
    import time

    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    from zchat.envelope.keys import SCRYPT_N, SCRYPT_P, SCRYPT_R

    # scrypt's cost is memory-bound: n * r * 128 bytes must be at least 64 MiB, which
    # no commodity machine fills in well under 100 ms per guess.
    assert SCRYPT_N * SCRYPT_R * 128 >= 64 * 2**20
    start = time.perf_counter()
    Scrypt(salt=b"s" * 16, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(b"x")
    print(f"scrypt default cost: {(time.perf_counter() - start) * 1000:.0f} ms")


def test_fingerprint_is_grouped_and_fixed_length(alice: Identity, bob: Identity) -> None:
    text = format_fingerprint(alice.fingerprint)
    groups = text.split(" ")
    assert len(groups) == 13
    assert all(len(g) == 4 for g in groups)
    assert text != format_fingerprint(bob.fingerprint)


def test_public_keys_from_the_network_are_checked(alice: Identity) -> None:
    assert load_public_key(alice.public_der).public_numbers() == alice.public_key.public_numbers()
    for junk in (b"", b"\x30\x03\x02\x01\x01", alice.public_der[:-1], b"\x00" * 2000):
        with pytest.raises(BadPublicKey):
            load_public_key(junk)


def test_small_rsa_keys_are_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from zchat.envelope import public_der

    weak = rsa.generate_private_key(65537, 1024).public_key()
    with pytest.raises(BadPublicKey, match="1024"):
        load_public_key(public_der(weak))


def test_an_rsa_key_with_another_public_exponent_is_refused() -> None:
    """A huge exponent makes every verify and wrap slow (a cheap denial of service);
    only 65537 is accepted."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from zchat.envelope import public_der

    odd = rsa.generate_private_key(3, 2048).public_key()
    with pytest.raises(BadPublicKey, match="exponent"):
        load_public_key(public_der(odd))


def test_a_corrupt_kdf_line_is_an_identity_error(tmp_path: Path, alice: Identity) -> None:
    from zchat.envelope import IdentityError

    save_identity(alice, tmp_path, b"correct horse", scrypt_n=FAST_SCRYPT)
    key = tmp_path / PRIVATE_KEY_FILE
    pem = key.read_bytes()
    start = pem.index(b"salt=") + len(b"salt=")
    # the line still has the right shape, but its salt is not valid base64
    key.write_bytes(pem[:start] + b"A" + pem[pem.index(b"\n") :])
    key.chmod(0o600)
    with pytest.raises(IdentityError, match="scrypt parameters"):
        load_identity(tmp_path, b"correct horse")

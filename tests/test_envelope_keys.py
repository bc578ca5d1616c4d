"""Identity key files: safe permissions, ssh-style refusal, passphrases, fingerprints."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zchat.envelope import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    BadPublicKey,
    Identity,
    IdentityError,
    InsecureKeyFile,
    MalformedKeyFile,
    PassphraseRequired,
    WrongPassphrase,
    format_fingerprint,
    load_identity,
    load_or_create_identity,
    load_public_key,
    save_identity,
)
from zchat.envelope.keys import (
    MAX_KEY_FILE_BYTES,
    MAX_SCRYPT_MEMORY,
    MAX_SCRYPT_N,
    MAX_SCRYPT_P,
    MAX_SCRYPT_R,
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    scrypt_problem,
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


@pytest.mark.parametrize("loose", [0o777, 0o770, 0o702])
def test_an_identity_directory_others_can_write_in_is_refused_with_the_fix(
    tmp_path: Path, alice: Identity, loose: int
) -> None:
    """Whoever can write in the directory can put another key (and other pins) in it."""
    home = tmp_path / "alice"
    save_identity(alice, home)
    home.chmod(loose)
    with pytest.raises(IdentityError) as info:
        load_identity(home)
    assert str(info.value) == (
        f"identity directory {home} is writable by others (mode {loose:04o}); "
        f"fix it with: chmod go-w {home}"
    )
    home.chmod(0o755)  # readable by others is ssh's rule too: no secret in the listing
    assert load_identity(home).fingerprint == alice.fingerprint


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


def numbers_key(bits: int, exponent: int = 65537) -> bytes:
    """The DER of an RSA public key with a modulus of exactly `bits` bits (not a product
    of two primes: only the public checks are tried, and no key need be generated)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from zchat.envelope import public_der

    modulus = (1 << (bits - 1)) | (0xC5A3 << 8) | 1
    return public_der(rsa.RSAPublicNumbers(exponent, modulus).public_key())


@pytest.mark.parametrize("bits", [2047, 2049, 2056, 3064, 4095, 4104])
def test_only_the_three_key_sizes_are_accepted(bits: int) -> None:
    with pytest.raises(BadPublicKey, match=f"size {bits}"):
        load_public_key(numbers_key(bits))


@pytest.mark.parametrize("bits", [2048, 3072, 4096])
def test_each_of_the_three_key_sizes_is_accepted(bits: int) -> None:
    assert load_public_key(numbers_key(bits)).key_size == bits


@pytest.mark.parametrize("exponent", [3, 17, 65539, 2**65 + 1])
def test_any_public_exponent_but_65537_is_refused(exponent: int) -> None:
    with pytest.raises(BadPublicKey, match="exponent"):
        load_public_key(numbers_key(2048, exponent))


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


# --- a bad key file is an identity error, never a traceback or an exhausted machine ------


def write_key_file(home: Path, data: bytes) -> Path:
    home.mkdir(mode=0o700, exist_ok=True)
    key = home / PRIVATE_KEY_FILE
    key.write_bytes(data)
    key.chmod(0o600)
    return key


def kdf_line(
    n: object, r: object = 8, p: object = 1, salt: str = "c2FsdHNhbHRzYWx0c2FsdA=="
) -> bytes:
    return f"zchat-kdf: scrypt n={n} r={r} p={p} salt={salt}\n".encode()


def encrypted_pem(alice: Identity, tmp_path: Path) -> bytes:
    """The PEM block of a passphrase-protected key, without its zchat-kdf line."""
    save_identity(alice, tmp_path / "real", b"correct horse", scrypt_n=FAST_SCRYPT)
    pem = (tmp_path / "real" / PRIVATE_KEY_FILE).read_bytes()
    return pem[pem.index(b"\n") + 1 :]


def test_a_scrypt_n_of_5000_digits_is_an_identity_error_not_a_traceback(
    tmp_path: Path, alice: Identity
) -> None:
    write_key_file(tmp_path / "id", kdf_line("9" * 5000) + encrypted_pem(alice, tmp_path))
    with pytest.raises(MalformedKeyFile, match="zchat-kdf line"):
        load_identity(tmp_path / "id", b"correct horse")


@pytest.mark.parametrize(
    ("n", "r", "p", "named"),
    [
        (4_194_304, 8, 1, "n=4194304"),  # 4 GiB: a MemoryError before
        (2**20, 8, 1, "1,024 MiB"),  # each bound alone would let this one through
        (2**21, 1, 1, "n=2097152"),
        (1000, 8, 1, "power of two"),
        (1, 8, 1, "power of two"),
        (2**10, 17, 1, "r=17"),
        (2**10, 0, 1, "r=0"),
        (2**10, 8, 5, "p=5"),
        (2**10, 8, 0, "p=0"),
        (2**16, 1, 1, "below 2^16"),  # RFC 7914's n < 2^(16 r): a MemoryError before
    ],
)
def test_scrypt_parameters_beyond_the_bounds_are_refused_before_any_work(
    tmp_path: Path, alice: Identity, n: int, r: int, p: int, named: str
) -> None:
    write_key_file(tmp_path / "id", kdf_line(n, r, p) + encrypted_pem(alice, tmp_path))
    with pytest.raises(MalformedKeyFile, match="scrypt parameters") as info:
        load_identity(tmp_path / "id", b"correct horse")
    assert named in str(info.value)


def test_the_bounds_leave_headroom_above_what_zchat_writes(alice: Identity) -> None:
    assert scrypt_problem(SCRYPT_N, SCRYPT_R, SCRYPT_P) == ""
    assert scrypt_problem(SCRYPT_N * 4, SCRYPT_R, SCRYPT_P) == ""
    assert scrypt_problem(SCRYPT_N, SCRYPT_R * 2, MAX_SCRYPT_P) == ""
    assert 128 * MAX_SCRYPT_N * MAX_SCRYPT_R > MAX_SCRYPT_MEMORY  # memory has its own bound
    with pytest.raises(ValueError, match="would refuse"):
        save_identity(alice, Path("/nonexistent"), b"pw", scrypt_n=2**21)


def ed25519_pem(oid_tail: bytes = b"\x70") -> bytes:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    der = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    der = der.replace(b"\x06\x03\x2b\x65\x70", b"\x06\x03\x2b\x65" + oid_tail)
    body = base64.encodebytes(der)
    return b"-----BEGIN PRIVATE KEY-----\n" + body + b"-----END PRIVATE KEY-----\n"


def rsa_pem(bits: int, exponent: int = 65537) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(exponent, bits).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (lambda: b"", "not a PEM private key"),
        (lambda: b"\xff\xfe junk \x00" * 50, "not a PEM private key"),
        (lambda: b"zchat-kdf: argon2 t=3\n", "zchat-kdf line"),
        (lambda: kdf_line(1024, salt="not*base64"), "zchat-kdf line"),
        (lambda: kdf_line(1024, salt="QUJ"), "salt is not base64"),
        (ed25519_pem, "not an RSA private key"),
        (lambda: ed25519_pem(b"\x7f"), "of a kind zchat cannot read"),  # UnsupportedAlgorithm
        (lambda: rsa_pem(1024), "peers refuse"),
        (lambda: rsa_pem(2048, 3), "peers refuse"),
        (lambda: b"x" * (MAX_KEY_FILE_BYTES + 1), "larger than"),
    ],
    ids=[
        "empty",
        "binary-junk",
        "another-kdf",
        "bad-salt-characters",
        "bad-salt-padding",
        "ed25519",
        "unknown-algorithm",
        "rsa-1024",
        "rsa-e3",
        "oversized",
    ],
)
def test_every_way_a_key_file_can_be_wrong_is_an_identity_error_that_says_what(
    tmp_path: Path, content: Callable[[], bytes], named: str
) -> None:
    write_key_file(tmp_path, content())
    with pytest.raises(MalformedKeyFile) as info:
        load_identity(tmp_path, b"correct horse")
    assert named in str(info.value)
    assert str(tmp_path / PRIVATE_KEY_FILE) in str(info.value)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda n, r, p, rest: kdf_line(n, r, p) + rest,
            st.one_of(st.integers(-3, 2**23), st.sampled_from(["", "0x10", "1e9", "9" * 60])),
            st.integers(-2, 40),
            st.integers(-2, 40),
            st.binary(max_size=200),
        ),
    )
)
def test_arbitrary_key_files_only_raise_identity_errors(tmp_path: Path, data: bytes) -> None:
    # Parameters that pass the bounds run scrypt for real; in practice the examples
    # that get that far have a small n, and the rest is refused before any work.
    write_key_file(tmp_path, data)
    with pytest.raises(IdentityError):
        load_identity(tmp_path, b"correct horse")


# --- the file itself: ours, in place, not a link ---------------------------------------


def test_a_private_key_behind_a_symbolic_link_is_refused(tmp_path: Path, alice: Identity) -> None:
    save_identity(alice, tmp_path / "real")
    home = tmp_path / "id"
    home.mkdir(mode=0o700)
    (home / PRIVATE_KEY_FILE).symlink_to(tmp_path / "real" / PRIVATE_KEY_FILE)
    with pytest.raises(InsecureKeyFile, match="symbolic link"):
        load_identity(home)


@pytest.mark.timeout(10)
def test_a_fifo_in_place_of_the_private_key_is_refused_without_waiting(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / PRIVATE_KEY_FILE, 0o600)
    with pytest.raises(InsecureKeyFile, match="not a regular file"):
        load_identity(tmp_path)


def test_a_private_key_owned_by_someone_else_is_refused(
    tmp_path: Path, alice: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_identity(alice, tmp_path)
    owner = (tmp_path / PRIVATE_KEY_FILE).stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)  # as if another user ran zchat
    with pytest.raises(InsecureKeyFile, match=f"belongs to another user \\(uid {owner}"):
        load_identity(tmp_path)

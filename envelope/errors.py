"""The exceptions `envelope` raises. The whole tree::

    EnvelopeError
     ├── MalformedEnvelope     bytes that do not parse: frame count, sizes, encodings
     │    ├── UnsupportedVersion   a version byte this code does not speak
     │    └── UnknownRecordType    a membership record of a type this code does not know
     ├── BadPublicKey          a public key that does not load or is not acceptable
     ├── BadSignature          the sender's signature does not verify
     ├── BadCertificate        a session-key certificate that must not be sealed to
     ├── BadRecord             a membership record that counts for nothing: forged,
     │                         misdirected, another room
     ├── WrongRoom             a genuine message signed for another room than ours
     ├── NotForMe              a genuine message whose signed recipients do not name us
     ├── UnknownSessionKey     sealed to a session key we no longer hold (expired)
     ├── DecryptionFailed      unwrap or decrypt failed (deliberately opaque)
     └── IdentityError         key files on disk (also: cannot be read at all)
          ├── InsecureKeyFile      a private key others could read or replace
          ├── MalformedKeyFile     a private key file that does not parse, or asks too much
          ├── PassphraseRequired   the key is encrypted and no passphrase was given
          └── WrongPassphrase      the passphrase does not open the key

`ValueError` is raised only for caller misuse (a bad argument), never for input that
came from the network.
"""

from pathlib import Path


class EnvelopeError(Exception):
    """Base class of every error the envelope layer raises on bad input."""


class MalformedEnvelope(EnvelopeError):
    """The frames do not form a well-formed envelope or delivery."""


class UnsupportedVersion(MalformedEnvelope):
    """A header, certificate or record of a version this code does not speak.

    `what` says which ("envelope", "certificate", "record"). Reported, never fatal:
    the one thing is dropped, and everything else goes on.
    """

    def __init__(self, version: int, what: str = "envelope") -> None:
        super().__init__(f"unsupported {what} version {version}")
        self.version = version
        self.what = what


class UnknownRecordType(MalformedEnvelope):
    """A membership record of a type this code does not know: skipped and reported."""

    def __init__(self, record_type: int) -> None:
        super().__init__(f"unknown membership record type {record_type}")
        self.record_type = record_type


class BadPublicKey(EnvelopeError):
    """A public key that is not an acceptable RSA key (wrong type, size or encoding)."""


class BadSignature(EnvelopeError):
    """The signature does not verify under the sender's key: forged or tampered."""


class BadCertificate(EnvelopeError):
    """A session-key certificate that is forged, expired, or not from the pinned identity.

    Nothing is ever sealed to the session key such a certificate names.
    """


class BadRecord(EnvelopeError):
    """A membership record (vouch or revocation) that counts for nothing: a bad
    signature, another signer than its sender, or another room."""


class WrongRoom(EnvelopeError):
    """A correctly signed message for another room than ours.

    Not a forgery, but never shown: a broker that delivers it is mixing rooms (the
    same member in two rooms, with one key, signs for both). Reported as a problem.
    """


class NotForMe(EnvelopeError):
    """A correctly signed message whose recipients (our leaf) do not name us.

    Kept apart from the other errors: it is not an attack on us, but it is what a
    genuine direct message forwarded to a third party looks like.
    """


class UnknownSessionKey(EnvelopeError):
    """The delivery names a session key of ours that we no longer hold.

    Kept apart from DecryptionFailed: the key id is in the signed cleartext header, so
    saying so reveals nothing. It is what a message looks like that arrives after its
    key was retired (too late, or replayed from a recording after a restart).
    """


class DecryptionFailed(EnvelopeError):
    """The wrapped key or the token did not decrypt.

    One opaque error for every cause, as Fernet's `InvalidToken`, so that no failure
    mode can serve as an oracle.
    """


class IdentityError(EnvelopeError):
    """A problem with the key files in the identity directory."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class InsecureKeyFile(IdentityError):
    """Someone else could read or replace the private key file: group or others have
    permissions on it, another user owns it, or it is a symbolic link or no regular
    file. Refused, as ssh refuses one. `problem` says which, with the fix."""

    def __init__(self, path: Path, problem: str, mode: int | None = None) -> None:
        super().__init__(f"private key {path} {problem}", path)
        self.mode = mode


class MalformedKeyFile(IdentityError):
    """The private key file does not parse, holds no acceptable RSA key, or asks for
    scrypt parameters beyond the bounds (which would exhaust memory or time)."""


class PassphraseRequired(IdentityError):
    """The private key is encrypted at rest and no passphrase was given."""


class WrongPassphrase(IdentityError):
    """The passphrase does not decrypt the private key."""

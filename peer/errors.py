"""Errors the peer library raises to its front ends::

PeerError
 ├── MessageTooLong      the text is over the size limit (nothing is truncated)
 ├── NotText             the text holds undecodable input (stray bytes, not UTF-8)
 ├── UnknownRecipient    /msg to someone who is not in the room
 ├── UntrustedRecipient  /msg to someone whose key changed and is not yet trusted
 ├── NobodyHere          a room message with nobody else in the room (or nobody admitted)
 ├── NoSessionKey        /msg to someone with no valid session key to seal to
 ├── OutboxFull          too many messages wait for acknowledgement
 ├── NotAdmitted         /msg to someone we have not admitted (issue 12)
 ├── FingerprintMismatch /admit or /trust with a fingerprint that is not the key's (issue 12)
 ├── CannotSeal          the message cannot be sealed for these recipients (too many)
 └── NicknameUnavailable a nickname that cannot be had from here (another zchat uses it)
"""


class PeerError(Exception):
    """A request the peer library cannot carry out; the message says why, for people."""


class MessageTooLong(PeerError):
    pass


class NotText(PeerError):
    pass


class UnknownRecipient(PeerError):
    pass


class UntrustedRecipient(PeerError):
    pass


class NobodyHere(PeerError):
    pass


class OutboxFull(PeerError):
    pass


class NoSessionKey(PeerError):
    pass


class CannotSeal(PeerError):
    pass


# --- issue 12: admission -------------------------------------------------------------


class NotAdmitted(PeerError):
    pass


class FingerprintMismatch(PeerError):
    pass


class NicknameUnavailable(PeerError):
    """Raised by the shell's client factory: another zchat on this machine has this
    nickname (and its identity) already. The terminal UI asks for another."""

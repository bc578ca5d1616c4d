"""A member of the room as we see them: their key, checked against our pin.

Not `wire.protocol.Member`, which is only what the broker claims (a nickname and a
key); a contact is what we made of that claim. The directory (`peer.directory`) keeps
them, admission (`peer.admission`) decides `admission`, and the core the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

from zchat.peer import events as ev
from zchat.peer.pins import Admission, How
from zchat.peer.session_keys import CertifiedKey


@dataclass
class Contact:
    """Someone in the room as we see them: their key, checked against our pin."""

    nick: str
    public_key: rsa.RSAPublicKey
    public_der: bytes
    fingerprint: bytes
    trust: ev.Trust
    #: How we admitted them; None: not admitted, so nothing is sealed to them.
    admission: Admission | None = None

    #: The session key we seal to: its certificate verified under the pin. None while
    #: there is no valid one, and then nothing is sealed to this member.
    session: CertifiedKey | None = None
    #: The certificate as last announced, to check once more if the key is trusted later.
    announced: bytes = b""

    @property
    def may_read(self) -> bool:
        return self.admission is not None and self.trust is not ev.Trust.CHANGED

    @property
    def vouches_admit(self) -> bool:
        """Whether their vouches admit: we admitted them ourselves or by a vouch."""
        return self.may_read and self.admission is not None and self.admission.how is not How.OPEN

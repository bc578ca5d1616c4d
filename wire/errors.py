"""Errors of the broker protocol layer::

ProtocolError            frames from the other side that break the protocol
 └── UnsupportedProtocol     a zchat protocol tag of another version
"""


class ProtocolError(Exception):
    """The other side sent frames that are not a valid protocol message."""

    def __init__(self, message: str, *, msg_id: bytes = b"") -> None:
        super().__init__(message)
        #: The id of the SEND this is about, when its header could be read that far:
        #: the broker names it in ERROR MALFORMED, so the sender knows which message.
        self.msg_id = msg_id


class UnsupportedProtocol(ProtocolError):
    """A zchat protocol tag of a version this code does not speak (``ZCHAT`` and
    digits); `tag` is that tag, which the version refusal is tagged with."""

    def __init__(self, tag: bytes) -> None:
        super().__init__(f"unsupported protocol {tag!r}")
        self.tag = tag

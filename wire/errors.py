"""Errors of the broker protocol layer::

ProtocolError            frames from the other side that break the protocol
 └── UnsupportedProtocol     a zchat protocol tag of another version
"""


class ProtocolError(Exception):
    """The other side sent frames that are not a valid protocol message."""


class UnsupportedProtocol(ProtocolError):
    """A zchat protocol tag of a version this code does not speak."""

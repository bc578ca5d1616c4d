"""What the broker and the peer speak to each other: the protocol, its limits on a
socket, and CURVE transport keys. Both sides import this; neither imports the other.

- `protocol`: every message as a frozen dataclass, with `encode` and strict parsers.
- `transport`: socket options and the bounded receive both sides use.
- `curve`: CurveZMQ key files and the broker key a peer is given.
- `errors`: the protocol errors, drawn as a tree.
"""

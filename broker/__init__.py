"""The zchat broker: it relays sealed envelopes among the members of each room its
peers name, and keeps the rooms apart.

It never holds a message key and never sees a plaintext. It checks at HELLO that a peer
holds the key it names (the proof of key), keeps the list of members, and hands each
recipient its own delivery of an envelope.

- `core`: the protocol logic, sans I/O: (identity, frames, now) in, what to send to whom out.
- `rooms`: who is where: sessions, rooms, and the rules that need a room's tables.
- `server`: the socket loop around the core: poll, receive, hand over, send.
"""

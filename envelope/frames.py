"""Envelopes and deliveries as ZeroMQ frames, with strict parsers beside the encoders.

An envelope, as the sender hands it to the broker (the body of a SEND)::

    header | signature | token | recipients | wrapped key 0 | ... | wrapped key n-1

`recipients` is every recipient's leaf (`envelope.recipients`), concatenated; the
header signs the Merkle tree head over them (`envelope.merkle`). The i-th wrapped key
belongs to leaf i. The signature covers header and token only, never the wrapped
keys, so the broker can cut the envelope into *deliveries* that carry one wrapped key
each (the body of a DELIVER)::

    header | signature | token | leaf (u16 index || leaf data) | path | wrapped key

`path` is the leaf's audit path, its hashes concatenated: at most ceil(log2 n) of them.
A recipient recomputes the tree head from leaf and path and compares it with the
signed header's, so its leaf (its nickname and key id) is as good as signed, and a
delivery stays the same size whether the room holds ten members or a thousand.

A wrapped key may be empty in an envelope: the sender asks the broker not to deliver
to that recipient (used to resend a message only to those who missed it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from zchat.envelope.errors import MalformedEnvelope
from zchat.envelope.header import Header, MessageKind
from zchat.envelope.limits import (
    DELIVERY_FRAMES,
    ENVELOPE_FIXED_FRAMES,
    MAX_ENVELOPE_FRAMES,
    MAX_HEADER_BYTES,
    MAX_PATH_BYTES,
    MAX_RECIPIENTS_BYTES,
    MAX_RSA_BYTES,
    MAX_TOKEN_BYTES,
    MIN_RSA_BYTES,
)
from zchat.envelope.merkle import MerkleTree, leaf_hash, root_from_path, split_path
from zchat.envelope.recipients import (
    Leaf,
    leaf_frame,
    leaves_problem,
    parse_leaf_frame,
    parse_leaves,
)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one recipient receives: the envelope with only its own leaf and wrapped key.

    Parsing checks that the leaf is in the tree the header signs (but not the
    signature, nor whether the leaf is ours: `envelope.sealing.verify_delivery`).
    """

    header: Header
    header_bytes: bytes
    signature: bytes
    token: bytes
    index: int
    leaf: Leaf
    #: The leaf frame as it travels (index || leaf data) and the audit path, raw.
    leaf_bytes: bytes
    path: bytes
    wrapped_key: bytes

    def frames(self) -> list[bytes]:
        return [
            self.header_bytes,
            self.signature,
            self.token,
            self.leaf_bytes,
            self.path,
            self.wrapped_key,
        ]

    @classmethod
    def parse(cls, frames: Sequence[bytes]) -> Delivery:
        if len(frames) != DELIVERY_FRAMES:
            raise MalformedEnvelope(f"a delivery has {DELIVERY_FRAMES} frames, got {len(frames)}")
        header_bytes, signature, token, leaf_bytes, path, wrapped = (bytes(f) for f in frames)
        _check_common(header_bytes, signature, token)
        _check_rsa_length(wrapped, "wrapped key")
        hashes = split_path(path) if len(path) <= MAX_PATH_BYTES else None
        if hashes is None:
            raise MalformedEnvelope("path size out of range")
        index, leaf, data = parse_leaf_frame(leaf_bytes)
        header = Header.parse(header_bytes)
        if root_from_path(index, header.count, leaf_hash(data), hashes) != header.root:
            raise MalformedEnvelope("the leaf is not in the tree the header signs")
        if header.named and header.named[index] != leaf.nick:
            raise MalformedEnvelope("the leaf is not the recipient the header names")
        return cls(header, header_bytes, signature, token, index, leaf, leaf_bytes, path, wrapped)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A sealed message for several recipients, as the sender sends it.

    Built by `envelope.sealing.seal` or parsed from a SEND; either way the leaves and
    the tree over them agree with the header (`tree` is kept, so that the broker
    hashes once per message and cuts every recipient's path from it).
    """

    header: Header
    header_bytes: bytes
    signature: bytes
    token: bytes
    leaves: tuple[Leaf, ...]
    #: Each leaf's encoding, in order: the tree's leaf data, and what DELIVER carries.
    leaf_data: tuple[bytes, ...]
    wrapped_keys: tuple[bytes, ...]
    tree: MerkleTree = field(compare=False, repr=False)

    @property
    def recipients(self) -> tuple[str, ...]:
        """Every recipient's nickname, as the sender spelled it, in leaf order."""
        return tuple(leaf.nick for leaf in self.leaves)

    @property
    def key_ids(self) -> tuple[bytes, ...]:
        """Which session key each recipient's message key is wrapped to, in leaf order."""
        return tuple(leaf.key_id for leaf in self.leaves)

    def frames(self) -> list[bytes]:
        recipients = b"".join(self.leaf_data)
        return [self.header_bytes, self.signature, self.token, recipients, *self.wrapped_keys]

    def delivery_frames(self, index: int) -> list[bytes]:
        """The body of the DELIVER to recipient `index`: the broker's hot path, so
        nothing is parsed or checked again, and the path is slices of the tree."""
        return [
            self.header_bytes,
            self.signature,
            self.token,
            leaf_frame(index, self.leaf_data[index]),
            self.tree.path(index),
            self.wrapped_keys[index],
        ]

    def delivery_for(self, index: int) -> Delivery:
        header_bytes, signature, token, leaf, path, wrapped = self.delivery_frames(index)
        return Delivery(
            self.header,
            header_bytes,
            signature,
            token,
            index,
            self.leaves[index],
            leaf,
            path,
            wrapped,
        )

    def only_for(self, recipients: set[str]) -> Envelope:
        """The same signed envelope, with the wrapped keys of everyone else blanked."""
        keys = tuple(
            wrapped if leaf.nick in recipients else b""
            for leaf, wrapped in zip(self.leaves, self.wrapped_keys, strict=True)
        )
        return Envelope(
            self.header,
            self.header_bytes,
            self.signature,
            self.token,
            self.leaves,
            self.leaf_data,
            keys,
            self.tree,
        )

    @classmethod
    def parse(cls, frames: Sequence[bytes]) -> Envelope:
        # Count first: a message of 200,000 frames is refused before anything is copied.
        if not ENVELOPE_FIXED_FRAMES < len(frames) <= MAX_ENVELOPE_FRAMES:
            raise MalformedEnvelope("wrong number of frames for an envelope")
        header_bytes, signature, token, recipients = (
            bytes(f) for f in frames[:ENVELOPE_FIXED_FRAMES]
        )
        _check_common(header_bytes, signature, token)
        if len(recipients) > MAX_RECIPIENTS_BYTES:
            raise MalformedEnvelope("recipients frame too large")
        wrapped = tuple(bytes(f) for f in frames[ENVELOPE_FIXED_FRAMES:])
        for key in wrapped:
            if key:
                _check_rsa_length(key, "wrapped key")
        header = Header.parse(header_bytes)
        if len(wrapped) != header.count:
            raise MalformedEnvelope("one wrapped key per recipient is required")
        leaves, data = parse_leaves(recipients, header.count)
        problem = leaves_problem(leaves, header.sender)
        if problem:
            raise MalformedEnvelope(problem)
        if header.kind == MessageKind.DIRECT and header.named != tuple(x.nick for x in leaves):
            raise MalformedEnvelope("a direct message names its recipients as its leaves do")
        tree = MerkleTree(data)
        if tree.root != header.root:
            raise MalformedEnvelope("the recipients are not those the header signs")
        return cls(header, header_bytes, signature, token, leaves, data, wrapped, tree)


def _check_common(header: bytes, signature: bytes, token: bytes) -> None:
    if len(header) > MAX_HEADER_BYTES:
        raise MalformedEnvelope("header too large")
    _check_rsa_length(signature, "signature")
    if not 0 < len(token) <= MAX_TOKEN_BYTES:
        raise MalformedEnvelope("token size out of range")


def _check_rsa_length(value: bytes, what: str) -> None:
    if not MIN_RSA_BYTES <= len(value) <= MAX_RSA_BYTES:
        raise MalformedEnvelope(f"{what} size out of range")

"""The Merkle tree over a message's recipients: RFC 9162 §2.1 with SHA-256, unchanged.

The header signs the tree head over every recipient's leaf; a delivery carries one
leaf and its audit path, so what a recipient receives no longer grows with the room
(docs/PROTOCOL.md §2.6). The tree is Certificate Transparency's (RFC 9162 §2.1.1,
the same as RFC 6962 §2.1), so a second implementation may use any CT library::

    MTH({})       = SHA-256()                              (no message has 0 recipients)
    MTH({d0})     = SHA-256(0x00 || d0)                     a leaf hash
    MTH(D[n])     = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))
                    k = the largest power of two smaller than n

    PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])     if m < k      (RFC 9162 §2.1.3.1)
                  = PATH(m - k, D[k:n]) : MTH(D[0:k])  if m >= k
    PATH(0, {d0}) = {}

The 0x00 and 0x01 prefixes keep a leaf from passing for a node (second preimages).
A path lists the hashes from the leaf's sibling up to the root's child; on the wire it
is their concatenation. `root_from_path` is RFC 9162 §2.1.3.2's verification, step
for step.

`MerkleTree` builds the tree bottom-up, one level at a time: neighbours are paired and
an odd last node is lifted unchanged to the next level, which gives exactly the RFC's
tree (its left subtrees are the perfect ones). Each level is kept as one byte string,
so the broker hashes once per SEND and each recipient's path is a few slices of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from zchat.envelope.limits import HASH_BYTES

_LEAF = b"\x00"
_NODE = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """MTH of the one-leaf tree {data}: SHA-256(0x00 || data)."""
    return hashlib.sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """An inner node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE + left + right).digest()


class MerkleTree:
    """The tree over `leaves` (leaf data, in order): its head and every audit path."""

    __slots__ = ("_levels", "_paths", "size")

    def __init__(self, leaves: Iterable[bytes]) -> None:
        level = b"".join(leaf_hash(d) for d in leaves)
        self.size = len(level) // HASH_BYTES
        levels = [level]
        while len(level) > HASH_BYTES:
            pairs = len(level) // (2 * HASH_BYTES)
            # left || right already lie side by side in the level: one slice a node.
            joined = b"".join(
                hashlib.sha256(
                    _NODE + level[2 * HASH_BYTES * i : 2 * HASH_BYTES * (i + 1)]
                ).digest()
                for i in range(pairs)
            )
            level = joined + level[2 * HASH_BYTES * pairs :]  # an odd last node goes up as is
            levels.append(level)
        self._levels = levels
        self._paths: list[bytes] | None = None

    @property
    def root(self) -> bytes:
        """The tree head, MTH(D[n]); SHA-256 of nothing for the empty tree."""
        if self.size == 0:
            return hashlib.sha256(b"").digest()
        return self._levels[-1]

    def path(self, index: int) -> bytes:
        """The audit path of leaf `index`, its hashes concatenated (leaf side first)."""
        if not 0 <= index < self.size:
            raise ValueError(f"leaf {index} is not in a tree of {self.size}")
        if self._paths is None:
            self._paths = self._all_paths()
        return self._paths[index]

    def _all_paths(self) -> list[bytes]:
        """Every leaf's audit path, concatenated, made top down in one pass.

        The broker cuts a path for every recipient of a SEND. Leaves under one node
        share the path above it, so each node's path is its sibling's hash followed by
        its parent's path: one slice and one join a node, 2N in all, where cutting each
        leaf's path alone is a Python loop over log N levels, N log N steps.
        """
        above = [b""]  # the path of the head: nothing
        for level in reversed(self._levels[:-1]):
            count = len(level) // HASH_BYTES
            paths = []
            for node in range(count):
                sibling = node ^ 1
                if sibling < count:
                    at = sibling * HASH_BYTES
                    paths.append(level[at : at + HASH_BYTES] + above[node >> 1])
                else:  # the odd last node was lifted as is: no sibling at this level
                    paths.append(above[node >> 1])
            above = paths
        return above

    def path_hashes(self, index: int) -> list[bytes]:
        """The audit path of leaf `index` (RFC 9162 §2.1.3.1), leaf side first."""
        hashes = split_path(self.path(index))
        assert hashes is not None, "a path is whole hashes"
        return hashes


def tree_head(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of the leaf data `leaves`."""
    return MerkleTree(leaves).root


def split_path(raw: bytes) -> list[bytes] | None:
    """The hashes of a path as it travels (concatenated), or None if it cannot be one."""
    if len(raw) % HASH_BYTES:
        return None
    return [raw[i : i + HASH_BYTES] for i in range(0, len(raw), HASH_BYTES)]


def root_from_path(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes | None:
    """The tree head that `path` proves leaf hash `leaf` is leaf `index` of, in a tree of
    `size`; None when no tree of that size has such a path (RFC 9162 §2.1.3.2).

    The caller compares the result with the head it trusts (the signed header's).
    """
    if not 0 <= index < size:
        return None
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0 or len(p) != HASH_BYTES:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    index: int, size: int, leaf_data: bytes, path: Sequence[bytes], root: bytes
) -> bool:
    """Whether `path` proves `leaf_data` is leaf `index` of the `size`-leaf tree `root`."""
    return root_from_path(index, size, leaf_hash(leaf_data), path) == root

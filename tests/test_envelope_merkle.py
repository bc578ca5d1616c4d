"""The recipients' Merkle tree is RFC 9162's: known answers, and a reference by the book.

The known answers are Certificate Transparency's own test data (RFC 6962 §2.1 defines the
same tree as RFC 9162 §2.1): the reference implementation's eight leaves and their roots,
its hasher vectors, its inclusion proofs, and the golden roots of larger trees, as
transparency-dev/merkle publishes them (testonly/constants.go, rfc6962/rfc6962_test.go,
proof/verify_test.go, testonly/reference_test.go, compact/range_test.go). The reference
below is the RFC's recursive definition, written out as it reads, against which every
tree of 1 to 70 leaves and every path in it is checked.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from zchat.envelope.merkle import (
    MerkleTree,
    leaf_hash,
    node_hash,
    root_from_path,
    split_path,
    tree_head,
    verify_inclusion,
)

#: testonly.LeafInputs(): the CT reference implementation's leaves.
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
#: testonly.RootHashes(): MTH of the first n of LEAVES, n = 0..8.
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
#: TestRefInclusionProof: (index, size, the audit path), leaf side first.
PATHS = [
    (0, 1, []),
    (0, 2, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"]),
    (1, 2, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
#: TestGetRootHashGolden: leaf i is the two bytes (i & 0xff, i >> 8); roots in base64.
GOLDEN = {
    10: "VjWMPSYNtCuCNlF/RLnQy6HcwSk6CIipfxm+hettA+4=",
    15: "j4SulYmocFuxdeyp12xXCIgK6PekBcxzAIj4zbQzNEI=",
    16: "c+4Uc6BCMOZf/v3NZK1kqTUJe+bBoFtOhP+P3SayKRE=",
    100: "dUh9hYH88p0CMoHkdr1wC2szbhcLAXOejWpINIooKUY=",
    255: "SmdsuKUqiod3RX2jyF2M6JnbdE4QuTwwipfAowI4/i0=",
}


# --- the reference: RFC 9162 §2.1.1 and §2.1.3.1, as written -------------------------


def _split(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = _split(n)
    return hashlib.sha256(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:])).digest()


def ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_mth(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_mth(leaves[:k])]


# --- known answers ----------------------------------------------------------------------


def test_the_hasher_gives_the_rfc_6962_known_answers() -> None:
    assert leaf_hash(b"").hex() == ROOTS[1]
    assert leaf_hash(b"L123456").hex() == (
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert node_hash(b"N123", b"N456").hex() == (
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


@pytest.mark.parametrize("n", range(9))
def test_tree_heads_are_the_reference_implementations(n: int) -> None:
    assert tree_head(LEAVES[:n]).hex() == ROOTS[n]
    assert MerkleTree(LEAVES[:n]).size == n


@pytest.mark.parametrize(("index", "size", "path"), PATHS)
def test_audit_paths_are_the_reference_implementations(
    index: int, size: int, path: list[str]
) -> None:
    tree = MerkleTree(LEAVES[:size])
    assert [h.hex() for h in tree.path_hashes(index)] == path
    assert tree.path(index) == b"".join(bytes.fromhex(h) for h in path)
    hashes = [bytes.fromhex(h) for h in path]
    assert verify_inclusion(index, size, LEAVES[index], hashes, bytes.fromhex(ROOTS[size]))


@pytest.mark.parametrize(("size", "root"), GOLDEN.items())
def test_larger_trees_have_the_golden_roots(size: int, root: str) -> None:
    leaves = [bytes([i & 0xFF, i >> 8]) for i in range(size)]
    assert base64.b64encode(tree_head(leaves)).decode() == root


# --- against the reference, every tree up to 70 leaves --------------------------------


@pytest.mark.parametrize("n", range(1, 71))
def test_every_tree_and_path_up_to_70_leaves_matches_the_reference(n: int) -> None:
    leaves = [b"leaf %d" % i for i in range(n)]
    tree = MerkleTree(leaves)
    root = ref_mth(leaves)
    assert tree.root == root
    for m in range(n):
        path = ref_path(m, leaves)
        assert tree.path_hashes(m) == path
        assert tree.path(m) == b"".join(path)  # as cut for the wire, all at once
        assert root_from_path(m, n, leaf_hash(leaves[m]), path) == root
        assert len(path) <= (n - 1).bit_length()  # ceil(log2 n)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 9, 31, 33, 70])
def test_every_corruption_of_a_path_fails(n: int) -> None:
    """The corruptions transparency-dev's verify_test.go tries, for every leaf."""
    leaves = [b"leaf %d" % i for i in range(n)]
    tree = MerkleTree(leaves)
    for m in range(n):
        path = tree.path_hashes(m)
        leaf = leaves[m]
        assert verify_inclusion(m, n, leaf, path, tree.root)
        wrong: list[tuple[int, int, bytes, list[bytes]]] = [
            (m - 1, n, leaf, path),
            (m + 1, n, leaf, path),
            (m ^ 2, n, leaf, path),
            (m, n * 2, leaf, path),
            (m, n // 2, leaf, path),
            (m, n, b"WrongLeaf", path),
            (m, n, leaf, [*path, tree.root]),
            (m, n, leaf, [tree.root, *path]),
            (m, n, leaf, [*path, b""]),
        ]
        if path:
            wrong.append((m, n, leaf, path[:-1]))
            wrong.append((m, n, leaf, [path[0], b"\xab" * 32, *path[1:]]))
        for i in range(len(path)):
            flipped = [*path]
            flipped[i] = bytes([path[i][0] ^ 8]) + path[i][1:]
            wrong.append((m, n, leaf, flipped))
        for index, size, data, bad in wrong:
            if (index, size, data, bad) == (m, n, leaf, path):
                continue  # m ^ 2 can be m's own index in a tree that small: no corruption
            assert not verify_inclusion(index, size, data, bad, tree.root), (index, size)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (2, 1), (-1, 4)])
def test_a_leaf_outside_the_tree_has_no_path(index: int, size: int) -> None:
    assert root_from_path(index, size, leaf_hash(b"x"), []) is None
    if size:
        with pytest.raises(ValueError, match="not in a tree"):
            MerkleTree([b"x"] * size).path(index)


def test_a_path_on_the_wire_is_its_hashes_concatenated() -> None:
    tree = MerkleTree(LEAVES)
    assert split_path(tree.path(5)) == tree.path_hashes(5)
    assert split_path(b"") == []
    assert split_path(b"\x00" * 33) is None


def test_a_leaf_cannot_pass_for_a_node() -> None:
    """The 0x00/0x01 prefixes: two leaves' hashes, given as one leaf, are not the node."""
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    assert tree_head([b"a", b"b"]) == node_hash(left, right)
    assert tree_head([left + right]) != node_hash(left, right)

"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and an incremental frontier.

Pure Python, no Django: the audit log stores one 32-byte record hash per leaf,
and checkpoints commit to the Merkle tree head over those leaves.

Leaves are raw bytes ("leaf data"); ``leaf_hash`` applies the 0x00 domain
separation prefix, ``node_hash`` the 0x01 prefix, so a leaf can never be
confused with an interior node (second-preimage protection, RFC 6962 §2.1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

HASH_SIZE = 32

# MTH({}) = SHA-256() per RFC 6962 §2.1.
EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

LeafHashGetter = Callable[[int], bytes]


def leaf_hash(data: bytes) -> bytes:
    """Return SHA-256(0x00 || data)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split_point(n: int) -> int:
    """Largest power of two strictly less than ``n`` (requires n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves, computed bottom-up in O(n).

    Pairing neighbours level by level and promoting an odd last node unchanged
    yields exactly the RFC 6962 left-complete tree, without recursion.
    """
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        paired = [
            node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def tree_root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over raw leaf data (RFC 6962 §2.1)."""
    return root_from_leaf_hashes([leaf_hash(leaf) for leaf in leaves])


def _subtree_root(get_leaf_hash: LeafHashGetter, start: int, end: int) -> bytes:
    """MTH of leaves [start, end), fetching leaf hashes through the callback."""
    return root_from_leaf_hashes([get_leaf_hash(i) for i in range(start, end)])


class CompactRange:
    """Incremental Merkle tree state over leaves [0, size).

    Keeps only the roots of the perfect subtrees matching the set bits of
    ``size`` (largest first), so a checkpoint can be extended from a stored
    frontier without re-reading old leaves. Memory is O(log n), an append costs
    amortised O(1) hashes.
    """

    __slots__ = ("_frontier", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._frontier: list[bytes] = []

    @property
    def size(self) -> int:
        return self._size

    @property
    def frontier(self) -> tuple[bytes, ...]:
        return tuple(self._frontier)

    def append(self, leaf_data: bytes) -> None:
        """Append one leaf given its raw data."""
        self._push(hashlib.sha256(_LEAF_PREFIX + leaf_data).digest())

    def append_leaf_hash(self, hashed_leaf: bytes) -> None:
        """Append one leaf given its leaf hash (already 0x00-prefixed)."""
        if len(hashed_leaf) != HASH_SIZE:
            raise ValueError("leaf hash must be 32 bytes")
        self._push(hashed_leaf)

    def _push(self, node: bytes) -> None:
        # Hot path (millions of calls): hashing is inlined on purpose.
        frontier = self._frontier
        # Each trailing 1 bit of size is a perfect subtree the new leaf completes.
        bits = self._size
        while bits & 1:
            node = hashlib.sha256(_NODE_PREFIX + frontier.pop() + node).digest()
            bits >>= 1
        frontier.append(node)
        self._size += 1

    def root(self) -> bytes:
        """MTH of all appended leaves; equals ``tree_root`` over the same leaves."""
        if not self._frontier:
            return EMPTY_ROOT
        node = self._frontier[-1]
        for left in reversed(self._frontier[:-1]):
            node = node_hash(left, node)
        return node

    def to_json(self) -> dict[str, Any]:
        """JSON-safe state: ints and lowercase hex strings only."""
        return {"size": self._size, "frontier": [h.hex() for h in self._frontier]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CompactRange:
        """Rebuild from ``to_json`` output, validating shape strictly.

        Raises TypeError or ValueError on malformed state.
        """
        if not isinstance(data, dict):
            raise TypeError("compact range state must be an object")
        size = data.get("size")
        frontier = data.get("frontier")
        # bool is an int subclass; reject it so True never means size 1.
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError("size must be a non-negative integer")
        if not isinstance(frontier, list):
            raise TypeError("frontier must be a list")
        if len(frontier) != size.bit_count():
            raise ValueError("frontier length does not match size")
        hashes = []
        for item in frontier:
            if not isinstance(item, str) or len(item) != 2 * HASH_SIZE:
                raise ValueError("frontier entries must be 64-char hex strings")
            try:
                hashes.append(bytes.fromhex(item))
            except ValueError as exc:
                raise ValueError(
                    "frontier entries must be 64-char hex strings"
                ) from exc
        state = cls()
        state._size = size
        state._frontier = hashes
        return state

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._frontier == other._frontier

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"


def inclusion_proof(
    index: int, size: int, get_leaf_hash: LeafHashGetter
) -> list[bytes]:
    """Audit path PATH(index, D[size]) per RFC 6962 §2.1.1, leaf-side first.

    Total hashing work is O(size): the sibling subtrees along the path
    partition the tree.
    """
    if not 0 <= index < size:
        raise ValueError(f"index {index} out of range for tree size {size}")
    # Walk down from the root, recording the sibling subtree at each split.
    siblings: list[bytes] = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = _split_point(hi - lo)
        if m < k:
            siblings.append(_subtree_root(get_leaf_hash, lo + k, hi))
            hi = lo + k
        else:
            siblings.append(_subtree_root(get_leaf_hash, lo, lo + k))
            lo, m = lo + k, m - k
    siblings.reverse()
    return siblings


def inclusion_proof_from_hashes(
    index: int, leaf_hashes: Sequence[bytes]
) -> list[bytes]:
    """``inclusion_proof`` for a tree whose leaf hashes are all in memory."""
    return inclusion_proof(index, len(leaf_hashes), leaf_hashes.__getitem__)


def _valid_hashes(*hashes: bytes) -> bool:
    return all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in hashes)


def verify_inclusion_hash(
    hashed_leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2 inclusion verification, starting from a leaf hash."""
    if not 0 <= index < size:
        return False
    if not _valid_hashes(hashed_leaf, root, *proof):
        return False
    fn, sn = index, size - 1
    r = hashed_leaf
    for p in proof:
        if sn == 0:
            return False  # proof longer than the path
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # Skip levels where this node is a right-edge node with no sibling.
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_inclusion(
    leaf_data: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """True iff ``leaf_data`` is leaf ``index`` of the tree (``size``, ``root``)."""
    return verify_inclusion_hash(leaf_hash(leaf_data), index, size, proof, root)


def consistency_proof(
    old_size: int, new_size: int, get_leaf_hash: LeafHashGetter
) -> list[bytes]:
    """PROOF(old_size, D[new_size]) per RFC 6962 §2.1.2.

    Empty when old_size is 0 or equal to new_size (nothing to prove).
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"invalid consistency range {old_size} -> {new_size}")
    if old_size == 0 or old_size == new_size:
        return []
    # Iterative SUBPROOF: nodes are collected root-side first, then reversed.
    nodes: list[bytes] = []
    lo, hi, m = 0, new_size, old_size
    whole_old_tree = True  # the "b" flag of SUBPROOF
    while m != hi - lo:
        k = _split_point(hi - lo)
        if m <= k:
            nodes.append(_subtree_root(get_leaf_hash, lo + k, hi))
            hi = lo + k
        else:
            nodes.append(_subtree_root(get_leaf_hash, lo, lo + k))
            lo, m = lo + k, m - k
            whole_old_tree = False
    if not whole_old_tree:
        nodes.append(_subtree_root(get_leaf_hash, lo, hi))
    nodes.reverse()
    return nodes


def consistency_proof_from_hashes(
    old_size: int, leaf_hashes: Sequence[bytes]
) -> list[bytes]:
    """``consistency_proof`` to the tree made of all of ``leaf_hashes``."""
    return consistency_proof(old_size, len(leaf_hashes), leaf_hashes.__getitem__)


def verify_consistency(
    old_size: int,
    new_size: int,
    proof: Sequence[bytes],
    old_root: bytes,
    new_root: bytes,
) -> bool:
    """RFC 9162 §2.1.4.2: True iff the new tree extends the old one."""
    if not 0 <= old_size <= new_size:
        return False
    if not _valid_hashes(old_root, new_root, *proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        # Every tree extends the empty tree; there is nothing to prove.
        return not proof
    if not proof:
        return False
    path = list(proof)
    # A perfect old tree is itself a node of the new tree, so it is implicit.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root

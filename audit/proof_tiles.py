"""Merkle node roots for serving proofs fast on a large log (issue 15).

A proof needs the roots of O(log n) ranges of leaves that together cover the
whole tree: computed from the leaves, that is a pass over every record hash
per proof (seconds at a million records). But the roots of the *perfect,
aligned* subtrees never change once their leaves exist, because the chain is
append-only. So each server process keeps them, in the manner of tlog
"tiles": the root of every complete tile of 2^height leaves and of every
perfect subtree above. A proof then reads at most two partial tiles of leaf
hashes (the leaf's own and the log's right edge) and a few dozen cached nodes.

The cache trusts the database no further than the database deserves: before
each use it re-reads the record hash of the newest leaf it covers. Re-chaining
the log (what an attacker who rewrites history must do, triggers dropped)
changes every record hash from the edit on, that one included, so the cache
is emptied and the proofs are computed again from what the table now holds;
and then they fail against the checkpoints signed before (`audit verify`
names the edited record).

Memory: about two nodes a tile of 64 leaves (a million records: some 31,000
nodes, a few MB a process). bench/proof_bench.py measures it
(docs/PERFORMANCE.md).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from django.db import connection

from audit.merkle import CompactRange, leaf_hash, node_hash

TILE_HEIGHT = 6  # 64 leaves a tile


class ChainGap(Exception):
    """The table has no record for a seq the tree needs: run `audit verify`."""


def _leaf_hashes(lo: int, hi: int) -> list[bytes]:
    """Leaf hashes of leaves [lo, hi) (seq lo+1..hi), one range query."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT seq, record_hash FROM audit_auditrecord WHERE seq > %s AND seq <= %s ORDER BY seq", [lo, hi]
        )
        rows = cursor.fetchall()
    if len(rows) != hi - lo or (rows and (rows[0][0] != lo + 1 or rows[-1][0] != hi)):
        raise ChainGap(f"the chain has a gap between {lo + 1} and {hi}")
    return [leaf_hash(bytes.fromhex(h)) for _, h in rows]


def _record_hash_at(seq: int) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT record_hash FROM audit_auditrecord WHERE seq = %s", [seq])
        row = cursor.fetchone()
    return row[0] if row else None


class TileCache:
    """Roots of perfect subtrees of height >= `height` over leaves [0, tiles * 2^height)."""

    def __init__(self, height: int = TILE_HEIGHT) -> None:
        self.height = height
        self.tile = 1 << height
        self._lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._tiles = 0  # complete tiles covered, from leaf 0
        self._anchor: str | None = None  # record hash of the newest leaf covered

    @property
    def tiles(self) -> int:
        return self._tiles

    def _check_anchor(self) -> None:
        if self._tiles and _record_hash_at(self._tiles * self.tile) != self._anchor:
            self._clear()  # the table changed under the cache: it holds nothing we can trust

    def _extend(self, tiles: int, batch_tiles: int = 64) -> None:
        """Cover complete tiles up to `tiles`, reading their leaves once."""
        while self._tiles < tiles:
            upto = min(tiles, self._tiles + batch_tiles)
            lo, hi = self._tiles * self.tile, upto * self.tile
            leaves = _leaf_hashes(lo, hi)
            for t in range(self._tiles, upto):
                tree = CompactRange()
                for leaf in leaves[(t - self._tiles) * self.tile : (t - self._tiles + 1) * self.tile]:
                    tree.append_leaf_hash(leaf)
                self._add(self.height, t, tree.root())
            with connection.cursor() as cursor:
                cursor.execute("SELECT record_hash FROM audit_auditrecord WHERE seq = %s", [hi])
                self._anchor = cursor.fetchone()[0]
            self._tiles = upto

    def _add(self, height: int, index: int, root: bytes) -> None:
        # A right child completes its parent: climb while it does.
        self._nodes[(height, index)] = root
        while index & 1:
            root = node_hash(self._nodes[(height, index - 1)], root)
            height, index = height + 1, index >> 1
            self._nodes[(height, index)] = root

    def range_roots(self, ranges: Sequence[tuple[int, int]], size: int) -> list[bytes]:
        """The RFC 6962 roots of leaf ranges [lo, hi) of a tree of `size` leaves.

        Every range must be a node of that tree (as the ranges of inclusion
        and consistency proofs are): it starts aligned, so it is its perfect
        subtrees, largest first, folded right to left."""
        with self._lock:
            self._check_anchor()
            self._extend(size // self.tile)
            partial: dict[int, list[bytes]] = {}  # tile -> its leaf hashes, read once a request

            def perfect(height: int, start: int) -> bytes:
                if height >= self.height:
                    return self._nodes[(height, start >> height)]
                t = start // self.tile
                if t not in partial:
                    partial[t] = _leaf_hashes(t * self.tile, min((t + 1) * self.tile, size))
                leaves = partial[t][start - t * self.tile : start - t * self.tile + (1 << height)]
                tree = CompactRange()
                for leaf in leaves:
                    tree.append_leaf_hash(leaf)
                return tree.root()

            roots = []
            for lo, hi in ranges:
                parts = []
                while lo < hi:
                    align = (lo & -lo).bit_length() - 1 if lo else 64
                    height = min(align, (hi - lo).bit_length() - 1)
                    parts.append(perfect(height, lo))
                    lo += 1 << height
                root = parts[-1]
                for left in reversed(parts[:-1]):
                    root = node_hash(left, root)
                roots.append(root)
            return roots


_cache = TileCache()


def range_roots(ranges: Sequence[tuple[int, int]], size: int) -> list[bytes]:
    """The process's cache (one per server process, shared by its threads)."""
    return _cache.range_roots(ranges, size)

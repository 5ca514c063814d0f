"""Tests for audit.merkle against a naive RFC 6962 reference and published vectors."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    consistency_proof_from_hashes,
    inclusion_proof,
    inclusion_proof_from_hashes,
    leaf_hash,
    node_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
    verify_inclusion_hash,
)

# --- Naive reference, transcribed directly from RFC 6962 §2.1 (recursive, slow). ---


def _ref_k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(data: list[bytes]) -> bytes:
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = _ref_k(n)
    return hashlib.sha256(b"\x01" + ref_mth(data[:k]) + ref_mth(data[k:])).digest()


def ref_path(m: int, data: list[bytes]) -> list[bytes]:
    n = len(data)
    if n == 1:
        return []
    k = _ref_k(n)
    if m < k:
        return [*ref_path(m, data[:k]), ref_mth(data[k:])]
    return [*ref_path(m - k, data[k:]), ref_mth(data[:k])]


def ref_subproof(m: int, data: list[bytes], b: bool) -> list[bytes]:
    n = len(data)
    if m == n:
        return [] if b else [ref_mth(data)]
    k = _ref_k(n)
    if m <= k:
        return [*ref_subproof(m, data[:k], b), ref_mth(data[k:])]
    return [*ref_subproof(m - k, data[k:], False), ref_mth(data[:k])]


def ref_consistency(m: int, data: list[bytes]) -> list[bytes]:
    return ref_subproof(m, data, True)


def make_leaves(n: int, seed: int = 0) -> list[bytes]:
    """Leaves shaped like ours: 32-byte sha256 record hashes."""
    return [hashlib.sha256(f"record-{seed}-{i}".encode()).digest() for i in range(n)]


# --- Vectors from transparency-dev/merkle ---
# testonly/constants.go (leaves, roots) and proof/verify_test.go (proofs).

TD_LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]

# TD_ROOTS[n] = MTH of the first n leaves.
TD_ROOTS = [
    bytes.fromhex(h)
    for h in [
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
]

TD_LEAF_HASHES = [
    bytes.fromhex(h)
    for h in [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ]
]

# (0-based index, tree size, expected audit path). Upstream lists 1-based leaf numbers.
TD_INCLUSION = [
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
    (0, 1, []),
]

TD_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

SOME_HASH = bytes.fromhex(
    "abacaba000000000000000000000000000000000000000000060061e00123456"
)


# --- Basic hashing. ---


def test_empty_root_and_prefixes() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert tree_root([]) == EMPTY_ROOT
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    a, b = b"a" * 32, b"b" * 32
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert node_hash(a, b) != node_hash(b, a)


def test_published_leaf_hashes_and_roots() -> None:
    assert [leaf_hash(leaf) for leaf in TD_LEAVES] == TD_LEAF_HASHES
    for n, expected in enumerate(TD_ROOTS):
        assert tree_root(TD_LEAVES[:n]) == expected
        assert ref_mth(TD_LEAVES[:n]) == expected


def test_tree_root_matches_reference_for_small_sizes() -> None:
    leaves = make_leaves(70)
    for n in range(71):
        assert tree_root(leaves[:n]) == ref_mth(leaves[:n]), n


@pytest.mark.parametrize("n", [127, 128, 129, 1000, 1023, 1024, 1025, 4097])
def test_tree_root_matches_reference_for_bigger_sizes(n: int) -> None:
    leaves = make_leaves(n, seed=n)
    assert tree_root(leaves) == ref_mth(leaves)


# --- CompactRange. ---


def test_compact_range_root_at_every_size() -> None:
    leaves = make_leaves(300)
    cr = CompactRange()
    assert cr.size == 0
    assert cr.root() == EMPTY_ROOT
    for n, leaf in enumerate(leaves, start=1):
        cr.append(leaf)
        assert cr.size == n
        assert len(cr.frontier) == n.bit_count()
        assert cr.root() == tree_root(leaves[:n]), n


def test_compact_range_published_roots() -> None:
    cr = CompactRange()
    for n, leaf in enumerate(TD_LEAVES, start=1):
        cr.append(leaf)
        assert cr.root() == TD_ROOTS[n]


def test_compact_range_json_round_trip_and_continue() -> None:
    leaves = make_leaves(200)
    for cut in [0, 1, 2, 3, 7, 8, 63, 64, 65, 150]:
        cr = CompactRange()
        for leaf in leaves[:cut]:
            cr.append(leaf)
        # Through real JSON text to prove the state is plain ints and strings.
        state = json.loads(json.dumps(cr.to_json()))
        assert set(state) == {"size", "frontier"}
        assert isinstance(state["size"], int)
        assert all(isinstance(h, str) for h in state["frontier"])
        restored = CompactRange.from_json(state)
        assert restored == cr
        assert restored.size == cut
        assert restored.root() == tree_root(leaves[:cut])
        for leaf in leaves[cut:]:
            restored.append(leaf)
        assert restored.root() == tree_root(leaves)


@pytest.mark.parametrize(
    "state",
    [
        None,
        [],
        {"size": -1, "frontier": []},
        {"size": 1.0, "frontier": ["00" * 32]},
        {"size": True, "frontier": ["00" * 32]},
        {"size": "1", "frontier": ["00" * 32]},
        {"size": 1, "frontier": []},
        {"size": 3, "frontier": ["00" * 32]},
        {"size": 1, "frontier": ["00" * 31]},
        {"size": 1, "frontier": ["zz" * 32]},
        {"size": 1, "frontier": [b"\x00" * 32]},
        {"size": 1, "frontier": "00" * 32},
        {"frontier": []},
    ],
)
def test_compact_range_from_json_rejects_bad_state(state: object) -> None:
    with pytest.raises((TypeError, ValueError), match=r"must|does not match"):
        CompactRange.from_json(state)  # type: ignore[arg-type]


def test_compact_range_rejects_bad_leaf_hash() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        CompactRange().append_leaf_hash(b"short")


# --- Inclusion proofs. ---


def test_published_inclusion_proofs() -> None:
    for index, size, expected_hex in TD_INCLUSION:
        expected = [bytes.fromhex(h) for h in expected_hex]
        hashes = TD_LEAF_HASHES[:size]
        assert inclusion_proof_from_hashes(index, hashes) == expected
        assert inclusion_proof(index, size, hashes.__getitem__) == expected
        assert verify_inclusion(TD_LEAVES[index], index, size, expected, TD_ROOTS[size])


def _corrupt_inclusion_probes(
    index: int, size: int, proof: list[bytes], root: bytes
) -> list[tuple[int, int, list[bytes], bytes]]:
    """Variants that must all fail, mirroring transparency-dev's probe list."""
    probes = [
        (index - 1, size, proof, root),
        (index + 1, size, proof, root),
        (index ^ 2, size, proof, root),
        (index, size * 2, proof, root),
        (index, size // 2, proof, root),
        (index, size, proof, EMPTY_ROOT),
        (index, size, proof, SOME_HASH),
        (index, size, [*proof, b""], root),
        (index, size, [*proof, root], root),
        (index, size, [b"", *proof], root),
        (index, size, [root, *proof], root),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([proof[i][0] ^ 8]) + proof[i][1:]
        probes.append((index, size, flipped, root))
    if proof:
        probes.append((index, size, proof[:-1], root))
    if len(proof) > 1:
        probes.append((index, size, [proof[0], SOME_HASH, *proof[1:]], root))
    return probes


def test_inclusion_proofs_all_indices_small_sizes() -> None:
    leaves = make_leaves(70)
    hashes = [leaf_hash(leaf) for leaf in leaves]
    for size in range(1, 71):
        root = ref_mth(leaves[:size])
        for index in range(size):
            proof = inclusion_proof_from_hashes(index, hashes[:size])
            assert proof == ref_path(index, leaves[:size]), (index, size)
            assert verify_inclusion(leaves[index], index, size, proof, root)
            assert not verify_inclusion(b"wrong leaf", index, size, proof, root)
            for bad_index, bad_size, bad_proof, bad_root in _corrupt_inclusion_probes(
                index, size, proof, root
            ):
                assert not verify_inclusion(
                    leaves[index], bad_index, bad_size, bad_proof, bad_root
                ), (index, size, bad_index, bad_size)


@pytest.mark.parametrize("size", [1000, 1024, 1025, 4097])
def test_inclusion_proofs_bigger_sizes(size: int) -> None:
    leaves = make_leaves(size, seed=size)
    hashes = [leaf_hash(leaf) for leaf in leaves]
    root = ref_mth(leaves)
    rng = random.Random(size)
    for index in [0, 1, size // 2, size - 2, size - 1, *rng.sample(range(size), 10)]:
        proof = inclusion_proof_from_hashes(index, hashes)
        assert proof == ref_path(index, leaves)
        assert verify_inclusion(leaves[index], index, size, proof, root)
        assert not verify_inclusion(
            leaves[index], (index + 1) % size, size, proof, root
        )
        assert not verify_inclusion(
            leaves[(index + 1) % size], index, size, proof, root
        )
        assert not verify_inclusion(leaves[index], index, size, proof, SOME_HASH)


def test_inclusion_proof_rejects_out_of_range() -> None:
    hashes = [leaf_hash(b"a")]
    for index, size in [(0, 0), (1, 1), (-1, 1)]:
        with pytest.raises(ValueError, match="out of range"):
            inclusion_proof(index, size, hashes.__getitem__)


def test_verify_inclusion_edge_cases() -> None:
    data = b"data"
    single = leaf_hash(data)
    assert verify_inclusion(data, 0, 1, [], single)
    assert not verify_inclusion(data, 0, 1, [], b"")
    assert not verify_inclusion_hash(b"", 0, 1, [], single)
    for index, size in [(0, 0), (1, 0), (2, 1), (-1, 1)]:
        assert not verify_inclusion_hash(SOME_HASH, index, size, [], EMPTY_ROOT)
        assert not verify_inclusion_hash(SOME_HASH, index, size, [], SOME_HASH)


def test_inclusion_proof_uses_getter_for_needed_range_only() -> None:
    hashes = [leaf_hash(leaf) for leaf in make_leaves(100)]
    requested: list[int] = []

    def getter(i: int) -> bytes:
        requested.append(i)
        return hashes[i]

    proof = inclusion_proof(37, 60, getter)
    assert proof == inclusion_proof_from_hashes(37, hashes[:60])
    assert max(requested) < 60
    assert 37 not in requested  # the proven leaf itself is never needed


# --- Consistency proofs. ---


def test_published_consistency_proofs() -> None:
    for old, new, expected_hex in TD_CONSISTENCY:
        expected = [bytes.fromhex(h) for h in expected_hex]
        assert consistency_proof_from_hashes(old, TD_LEAF_HASHES[:new]) == expected
        assert verify_consistency(old, new, expected, TD_ROOTS[old], TD_ROOTS[new])


def test_consistency_proofs_all_pairs_small_sizes() -> None:
    leaves = make_leaves(40)
    hashes = [leaf_hash(leaf) for leaf in leaves]
    roots = [ref_mth(leaves[:n]) for n in range(41)]
    for new in range(41):
        for old in range(new + 1):
            proof = consistency_proof(old, new, hashes.__getitem__)
            if 0 < old < new:
                assert proof == ref_consistency(old, leaves[:new]), (old, new)
            else:
                assert proof == []
            assert verify_consistency(old, new, proof, roots[old], roots[new]), (
                old,
                new,
            )
            if 0 < old < new:
                assert not verify_consistency(old, new, proof, SOME_HASH, roots[new])
                assert not verify_consistency(old, new, proof, roots[old], SOME_HASH)
                assert not verify_consistency(old, new, proof, roots[new], roots[old])
                assert not verify_consistency(old, new, [], roots[old], roots[new])
                assert not verify_consistency(
                    old, new, proof[:-1], roots[old], roots[new]
                )
                assert not verify_consistency(
                    old, new, [*proof, SOME_HASH], roots[old], roots[new]
                )
                assert not verify_consistency(
                    old, new, [SOME_HASH, *proof], roots[old], roots[new]
                )
                for i in range(len(proof)):
                    flipped = list(proof)
                    flipped[i] = bytes([proof[i][0] ^ 16]) + proof[i][1:]
                    assert not verify_consistency(
                        old, new, flipped, roots[old], roots[new]
                    )
                for other in range(1, 41):
                    if other != old:
                        assert not verify_consistency(
                            other, new, proof, roots[old], roots[new]
                        )


def test_verify_consistency_trivial_cases() -> None:
    a, b = TD_ROOTS[1], TD_ROOTS[2]
    assert verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    assert not verify_consistency(0, 0, [], EMPTY_ROOT, a)
    assert verify_consistency(0, 1, [], EMPTY_ROOT, a)
    assert not verify_consistency(0, 1, [EMPTY_ROOT], EMPTY_ROOT, a)
    assert verify_consistency(1, 1, [], a, a)
    assert not verify_consistency(1, 1, [], a, b)
    assert not verify_consistency(1, 1, [EMPTY_ROOT], a, a)
    assert not verify_consistency(1, 0, [], a, b)
    assert not verify_consistency(2, 1, [], b, a)
    assert not verify_consistency(1, 2, [], a, b)
    hashes = [leaf_hash(b"x")] * 3
    with pytest.raises(ValueError, match="invalid consistency range"):
        consistency_proof(3, 2, hashes.__getitem__)
    with pytest.raises(ValueError, match="invalid consistency range"):
        consistency_proof(-1, 2, hashes.__getitem__)


# --- Scale: a million leaves must stay cheap. ---


def test_million_leaves_compact_range_and_proofs() -> None:
    # No timing assertion (CI speed varies); an accidental O(n log n) per-append
    # or O(n^2) proof would make this test hang instead of taking seconds.
    size, old = 1_000_000, 999_000
    hashes = [leaf_hash(i.to_bytes(32, "big")) for i in range(size)]
    cr = CompactRange()
    for i, hashed in enumerate(hashes):
        if i == old:
            old_state = cr.to_json()
        cr.append_leaf_hash(hashed)
    root = cr.root()
    old_root = CompactRange.from_json(old_state).root()

    index = 765_432
    proof = inclusion_proof_from_hashes(index, hashes)
    assert len(proof) == 20
    assert verify_inclusion(index.to_bytes(32, "big"), index, size, proof, root)
    assert not verify_inclusion(index.to_bytes(32, "big"), index, size, proof, old_root)

    cproof = consistency_proof_from_hashes(old, hashes)
    assert verify_consistency(old, size, cproof, old_root, root)
    assert not verify_consistency(old, size, cproof, root, old_root)

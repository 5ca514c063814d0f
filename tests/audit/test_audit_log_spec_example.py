"""docs/AUDIT_LOG_SPEC.md's worked example, recomputed from the code: the
document an independent verifier is written from must stay true."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from audit import signed_note
from audit.merkle import inclusion_proof_from_hashes, leaf_hash, tree_root, verify_inclusion
from audit.records import record_hash
from veritta_site.canonical import canonical_json

DOC = (Path(__file__).resolve().parents[2] / "docs" / "AUDIT_LOG_SPEC.md").read_text()


def _example_record() -> dict:
    line = next(line for line in DOC.splitlines() if line.startswith('{"action":"process"'))
    return json.loads(line)


def test_example_record_is_canonical_and_its_hash_is_as_documented():
    record = _example_record()
    line = next(line for line in DOC.splitlines() if line.startswith('{"action":"process"'))
    assert canonical_json(record).decode() == line
    assert record_hash(record) == record["record_hash"] == "a4999b91552d28166dad36430374e649f3ffb9934ee3fd11c9d7d23e7ac8b5c5"


def test_example_tree_proof_and_checkpoint_are_as_documented():
    leaves = [bytes.fromhex(_example_record()["record_hash"]), b"\x11" * 32, b"\x22" * 32]
    root = tree_root(leaves)
    assert root.hex() in DOC
    proof = inclusion_proof_from_hashes(0, [leaf_hash(leaf) for leaf in leaves])
    assert all(h.hex() in DOC for h in proof) and verify_inclusion(leaves[0], 0, 3, proof, root)
    seed = base64.b64decode("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
    note = signed_note.sign_note(signed_note.checkpoint_body("veritta.local/audit", 3, root), "veritta.local/audit", seed)
    assert note in DOC.replace("```\n", "")
    vkey = signed_note.vkey("veritta.local/audit", signed_note.public_key_from_seed(seed))
    assert vkey in DOC
    assert signed_note.verify_note(note, vkey)
    assert re.search(r"verifier key is `" + re.escape(vkey), DOC)

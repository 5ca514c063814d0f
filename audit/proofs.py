"""Inclusion proofs: a request's records are in the log a checkpoint signed.

`audit prove TRACE_ID` writes a JSON document that `audit check-proof` (or
any RFC 9162 verifier, see docs/AUDIT_LOG_SPEC.md) checks with no database:
the signed checkpoint note, and for each record its leaf index and audit path.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.models import Q

from audit import signed_note
from audit.merkle import CompactRange, leaf_hash, verify_inclusion_hash
from audit.models import AuditIntake, AuditRecord, Checkpoint
from audit.records import entry_hash, record_hash
from audit.selectors import audit_rows_stream


class ProofError(Exception):
    pass


def path_ranges(index: int, start: int, end: int) -> list[tuple[int, int]]:
    """The leaf ranges whose Merkle roots make up PATH(index) in D[start:end]
    (RFC 6962 §2.1.1), leaf side first."""
    if end - start <= 1:
        return []
    split = 1 << ((end - start - 1).bit_length() - 1)  # largest power of two < n
    if index < start + split:
        return [*path_ranges(index, start, start + split), (start + split, end)]
    return [*path_ranges(index, start + split, end), (start, start + split)]


def _inclusion_proofs(indexes: list[int], size: int) -> list[list[bytes]]:
    """Audit paths of several leaves in one streaming pass over the log.

    Each path node is the root of a range of leaves; a CompactRange per range
    folds the leaves as they stream by, so memory is O(log n) per proof
    whatever the size of the log (a million records: a few MB)."""
    ranges = [sorted(path_ranges(i, 0, size)) for i in indexes]
    trees = [[CompactRange() for _ in proof] for proof in ranges]
    cursor = [0] * len(ranges)  # per proof: the range the next leaf may fall in
    seq = 0
    for row in audit_rows_stream(upto=size):
        seq += 1
        if row["seq"] != seq:
            raise ProofError(f"the chain has a gap at {seq}: run `audit verify`")
        leaf = leaf_hash(bytes.fromhex(row["record_hash"]))
        for p, proof in enumerate(ranges):
            while cursor[p] < len(proof) and proof[cursor[p]][1] <= seq - 1:
                cursor[p] += 1
            if cursor[p] < len(proof) and proof[cursor[p]][0] <= seq - 1:
                trees[p][cursor[p]].append_leaf_hash(leaf)
    if seq != size:
        raise ProofError(f"the chain ends at {seq}, before the checkpoint's {size}: run `audit verify`")
    roots = [{r: t.root() for r, t in zip(proof, tree, strict=True)} for proof, tree in zip(ranges, trees, strict=True)]
    return [[roots[p][r] for r in path_ranges(i, 0, size)] for p, i in enumerate(indexes)]


def trace_inclusion_proof(*, trace_id: str, vkey: str | None) -> dict[str, Any]:
    rows = AuditRecord.objects.filter(trace_id=trace_id).order_by("seq").values_list("seq", "record_hash", "body")
    if not rows:
        raise ProofError(f"no audit records for trace {trace_id}")
    return {"trace_id": trace_id, **_proof_document(list(rows), vkey)}


def entry_inclusion_proof(*, entry_hash: str, record_hash: str | None = None, vkey: str | None) -> dict[str, Any]:
    """The proof for a receipt: by its entry hash (a promise: the record was
    still in the intake when its request was answered), or by its record hash
    when it has one (a record sequenced at once keeps no entry hash column).
    Each item carries the record's body, so a checker recomputes both hashes
    and refuses a record whose entry hash is not the one asked for."""
    lookup = Q(entry_hash=entry_hash) | Q(record_hash=record_hash) if record_hash else Q(entry_hash=entry_hash)
    rows = list(AuditRecord.objects.filter(lookup).order_by("seq").values_list("seq", "record_hash", "body"))
    if not rows:
        waiting = AuditIntake.objects.filter(entry_hash=entry_hash).values_list("queued_at", flat=True).first()
        if waiting is not None:
            raise ProofError(f"entry {entry_hash} is still in the intake (committed {waiting.isoformat()}): try again")
        raise ProofError(f"no audit record has entry hash {entry_hash}")
    trace_id = json.loads(rows[0][2])["trace_id"]
    return {"trace_id": trace_id, "entry_hash": entry_hash, **_proof_document(rows, vkey)}


def _proof_document(rows: list[tuple[int, str, str]], vkey: str | None) -> dict[str, Any]:
    newest = rows[-1][0]
    checkpoint = Checkpoint.objects.filter(tree_size__gte=newest).order_by("tree_size").first()
    if checkpoint is None:
        raise ProofError(f"no checkpoint covers seq {newest} yet: run `python manage.py audit checkpoint`")
    return {"checkpoint": checkpoint.note, "vkey": vkey, "records": proof_items(rows, checkpoint.tree_size)}


def proof_items(rows: list[tuple[int, str, str]], tree_size: int) -> list[dict[str, Any]]:
    """Each record (seq, record_hash, body) with its audit path in the tree of `tree_size`."""
    proofs = _inclusion_proofs([seq - 1 for seq, _, _ in rows], tree_size)
    return [
        {
            "seq": seq,
            "leaf_index": seq - 1,
            "record_hash": record_hash,
            "proof": [h.hex() for h in proof],
            "body": json.loads(body),
        }
        for (seq, record_hash, body), proof in zip(rows, proofs, strict=True)
    ]


def check_proof(document: dict[str, Any], *, vkey: str | None) -> list[str]:
    """Problems with a proof document; empty means every record is proven."""
    vkey = vkey or document.get("vkey")
    if not vkey:
        return ["no verifier key: pass --vkey (from `audit keygen` or the admin API)"]
    try:
        body = signed_note.verify_note(document["checkpoint"], vkey)
        checkpoint = signed_note.parse_checkpoint(body)
    except (signed_note.NoteVerificationError, signed_note.CheckpointFormatError, KeyError, ValueError) as exc:
        return [f"checkpoint: {exc}"]
    problems = []
    wanted = document.get("entry_hash")
    if wanted is not None and not any(_entry_of(item) == wanted for item in document.get("records", [])):
        problems.append(f"entry {wanted}: no record of the proof has this entry hash")
    for item in document.get("records", []):
        if "body" in item and _hash_of(item) != item.get("record_hash"):
            problems.append(f"seq {item.get('seq')}: the record body does not hash to its record_hash")
            continue
        try:
            ok = verify_inclusion_hash(
                leaf_hash(bytes.fromhex(item["record_hash"])),
                int(item["leaf_index"]),
                checkpoint.size,
                [bytes.fromhex(h) for h in item["proof"]],
                checkpoint.root,
            )
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            problems.append(f"seq {item.get('seq')}: not included in the signed tree")
    return problems


def _hash_of(item: dict[str, Any]) -> str | None:
    body = item.get("body")
    return record_hash(body) if isinstance(body, dict) else None


def _entry_of(item: dict[str, Any]) -> str | None:
    body = item.get("body")
    if not isinstance(body, dict) or record_hash(body) != item.get("record_hash"):
        return None
    return entry_hash(body)

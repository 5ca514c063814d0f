"""Inclusion proofs: a request's records are in the log a checkpoint signed.

`audit prove TRACE_ID` writes a JSON document that `audit check-proof` (or
any RFC 9162 verifier, see docs/AUDIT_LOG_SPEC.md) checks with no database:
the signed checkpoint note, and for each record its leaf index and audit path.
"""

from __future__ import annotations

from typing import Any

from audit import signed_note
from audit.merkle import HASH_SIZE, inclusion_proof, leaf_hash, verify_inclusion_hash
from audit.models import AuditRecord, Checkpoint
from audit.selectors import audit_rows_stream


class ProofError(Exception):
    pass


def _leaf_hashes(size: int) -> bytearray:
    """Leaf hashes of records 1..size, packed: 32 bytes each, ~32 MB per million."""
    packed = bytearray()
    for row in audit_rows_stream(upto=size):
        packed += leaf_hash(bytes.fromhex(row["record_hash"]))
    if len(packed) != size * HASH_SIZE:
        raise ProofError(f"the chain has gaps below {size}: run `audit verify`")
    return packed


def trace_inclusion_proof(*, trace_id: str, vkey: str | None) -> dict[str, Any]:
    records = list(AuditRecord.objects.filter(trace_id=trace_id).order_by("seq").values_list("seq", "record_hash"))
    if not records:
        raise ProofError(f"no audit records for trace {trace_id}")
    newest = records[-1][0]
    checkpoint = Checkpoint.objects.filter(tree_size__gte=newest).order_by("tree_size").first()
    if checkpoint is None:
        raise ProofError(f"no checkpoint covers seq {newest} yet: run `python manage.py audit checkpoint`")
    packed = _leaf_hashes(checkpoint.tree_size)

    def get(i: int) -> bytes:
        return bytes(packed[i * HASH_SIZE : (i + 1) * HASH_SIZE])

    return {
        "trace_id": trace_id,
        "checkpoint": checkpoint.note,
        "vkey": vkey,
        "records": [
            {
                "seq": seq,
                "leaf_index": seq - 1,
                "record_hash": record_hash,
                "proof": [h.hex() for h in inclusion_proof(seq - 1, checkpoint.tree_size, get)],
            }
            for seq, record_hash in records
        ],
    }


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
    for item in document.get("records", []):
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

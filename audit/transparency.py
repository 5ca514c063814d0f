"""Proofs for outsiders (issue 15): what the proof endpoints serve.

Every answer is checkable with no database and no trust in the server: a
signed checkpoint (C2SP note, with its witnesses' cosignatures), and RFC 6962
inclusion or consistency proofs against it. The standalone verifier
(clients/veritta_verify, docs/VERIFYING.md) checks them.

Who may see what is decided here, once: `owners` is None for the admin key
(any record), else the actors the caller proved it is (its API key and/or its
session); a record of anyone else is "not found", so a client cannot even
learn that another client's trace exists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django.db.models import Q

from audit.models import AuditIntake, AuditRecord, Checkpoint
from audit.proof_tiles import ChainGap, range_roots
from audit.proofs import path_ranges
from audit.witnesses import cosigned_note
from veritta_site.errors import VerittaError

Owners = Sequence[dict[str, Any]] | None


def _not_found(obj: str, **details: Any) -> VerittaError:
    return VerittaError("NOT_FOUND", evidence={"object": obj, **details}, details={"object": obj, **details})


def _chain_problem(exc: ChainGap) -> VerittaError:
    # The chain itself is broken (a gap): the server cannot prove anything and says so.
    return VerittaError("INTERNAL_ERROR", evidence={"object": "chain", "problem": "gap"}, details={"problem": "audit chain incomplete"})


# --- checkpoints ---------------------------------------------------------------------


def checkpoint_document(checkpoint: Checkpoint, vkey: str) -> dict[str, Any]:
    return {
        "tree_size": checkpoint.tree_size,
        "root_hash": checkpoint.root_hash,
        "note": cosigned_note(checkpoint),
        "vkey": vkey,
    }


def checkpoint_at(tree_size: int | None) -> Checkpoint:
    """The checkpoint of exactly this size, or the newest one."""
    qs = Checkpoint.objects.all()
    checkpoint = qs.filter(tree_size=tree_size).first() if tree_size is not None else qs.order_by("-tree_size").first()
    if checkpoint is None:
        raise _not_found("checkpoint")
    return checkpoint


# --- inclusion -------------------------------------------------------------------------


def _owned(owners: Owners) -> Q:
    if owners is None:
        return Q()
    if not owners:
        return Q(pk__in=[])
    mine = Q(pk__in=[])
    for actor in owners:
        mine |= Q(actor_kind=actor["kind"], actor_id=str(actor["id"]))
    return mine


def records_for(selector: dict[str, Any], owners: Owners) -> list[tuple[int, str, str]]:
    """(seq, record_hash, body) of the records one selector names, the caller's only."""
    if selector.get("trace_id"):
        lookup = Q(trace_id=selector["trace_id"].lower())
    elif selector.get("seq") is not None:
        lookup = Q(seq=selector["seq"])
    elif selector.get("record_hash"):
        lookup = Q(record_hash=selector["record_hash"])
    else:
        lookup = Q(entry_hash=selector["entry_hash"])
    rows = list(AuditRecord.objects.filter(lookup & _owned(owners)).order_by("seq").values_list("seq", "record_hash", "body"))
    if not rows and selector.get("entry_hash") and owners is None:
        # Only the admin learns that a record is waiting: a client asking for
        # someone else's entry hash must not tell it from an unknown one.
        if AuditIntake.objects.filter(entry_hash=selector["entry_hash"]).exists():
            raise _not_found("record", problem="not_yet_sequenced")
    if not rows:
        raise _not_found("record")
    return rows


def inclusion_document(selector: dict[str, Any], tree_size: int | None, owners: Owners, vkey: str) -> dict[str, Any]:
    """The proof that each record the selector names is a leaf of a signed tree:
    the given checkpoint, or the latest one."""
    rows = records_for(selector, owners)
    checkpoint = checkpoint_at(tree_size)
    newest = rows[-1][0]
    if checkpoint.tree_size < newest:
        raise _not_found("checkpoint", problem="does_not_cover_record", tree_size=checkpoint.tree_size, seq=newest)
    try:
        items = [
            {
                "seq": seq,
                "leaf_index": seq - 1,
                "record_hash": record_hash,
                "proof": [h.hex() for h in range_roots(path_ranges(seq - 1, 0, checkpoint.tree_size), checkpoint.tree_size)],
                "body": json.loads(body),
            }
            for seq, record_hash, body in rows
        ]
    except ChainGap as exc:
        raise _chain_problem(exc) from exc
    note = checkpoint_document(checkpoint, vkey)["note"]
    return {"tree_size": checkpoint.tree_size, "checkpoint": note, "vkey": vkey, "records": items}


# --- consistency -------------------------------------------------------------------------


def _split(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose roots make up PROOF(old_size, D[new_size]) (RFC
    6962 §2.1.2, the iterative SUBPROOF of audit.merkle.consistency_proof), in
    proof order."""
    if not 0 < old_size < new_size:
        return []
    ranges: list[tuple[int, int]] = []
    lo, hi, m, whole_old_tree = 0, new_size, old_size, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, whole_old_tree = lo + k, m - k, False
    if not whole_old_tree:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def consistency_document(first: int, second: int | None, vkey: str) -> dict[str, Any]:
    """PROOF(first, second) between two signed checkpoints (second: the latest)."""
    new = checkpoint_at(second)
    old = checkpoint_at(first)
    if old.tree_size > new.tree_size:
        raise VerittaError(
            "VALIDATION_ERROR",
            evidence={"fields": ["first", "second"], "problem": "first_after_second"},
            details={"fields": ["first", "second"], "problem": "first_after_second"},
        )
    try:
        proof = range_roots(consistency_ranges(old.tree_size, new.tree_size), new.tree_size)
    except ChainGap as exc:
        raise _chain_problem(exc) from exc
    return {
        "first": checkpoint_document(old, vkey),
        "second": checkpoint_document(new, vkey),
        "proof": [h.hex() for h in proof],
    }

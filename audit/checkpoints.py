"""Signed checkpoints (C2SP tlog-checkpoint) over the audit chain.

A checkpoint at size S commits to the RFC 6962 Merkle root of the first S
record hashes (seq 1..S, leaf data = the 32 raw bytes of record_hash). It is
stored in the database and written outside it, to VERITTA_AUDIT_CHECKPOINT_DIR:
`NNNNNNNNNNNNNNN.note` (the signed note) and `NNNNNNNNNNNNNNN.hashes` (the
record hashes it added since the previous checkpoint, one hex line each), so
`audit verify` can name the exact record of a log rewritten in the database.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction

from audit import signed_note
from audit.chain import chain_head

# The signing key's basics live with the key ring; named here too, where callers look.
from audit.keyring import SigningKeyError, key_name, may_sign, public_vkey, signing_seed  # noqa: F401
from audit.merkle import CompactRange
from audit.models import Checkpoint

logger = logging.getLogger("veritta.audit")


def _hashes_between(after: int, upto: int) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT seq, record_hash FROM audit_auditrecord WHERE seq > %s AND seq <= %s ORDER BY seq",
            [after, upto],
        )
        rows = cursor.fetchall()
    if len(rows) != upto - after or (rows and (rows[0][0] != after + 1 or rows[-1][0] != upto)):
        raise DatabaseError(f"audit chain has gaps between {after} and {upto}; run audit verify")
    return [h for _, h in rows]


def _write_external(size: int, note: str, hashes: list[str]) -> None:
    directory = Path(settings.VERITTA_AUDIT_CHECKPOINT_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".hashes", "".join(h + "\n" for h in hashes)), (".note", note)):
        final = directory / f"{size:015d}{suffix}"
        tmp = final.with_suffix(suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, final)  # atomic: a reader sees the old file or the whole new one


def checkpoint_create(*, size: int | None = None, extra_signers: Sequence[bytes] = ()) -> Checkpoint:
    """Seal the first `size` records (default: all) with a signed checkpoint.

    Idempotent: an existing checkpoint of that size is returned as it is.
    `extra_signers`: seeds that sign it too (the new key of a rotation,
    audit/keyring.py). Refused (SigningKeyError) when the key ring file says
    the signing key may not sign that size.
    """
    seed = signing_seed()
    if size is None:
        with connection.cursor() as cursor:
            size, _ = chain_head(cursor)
    existing = Checkpoint.objects.filter(tree_size=size).first()
    if existing is not None:
        return existing
    refused = may_sign(public_vkey(), size)
    if refused:
        raise SigningKeyError(refused)
    base = Checkpoint.objects.filter(tree_size__lt=size).order_by("-tree_size").first()
    tree = CompactRange.from_json(base.frontier) if base else CompactRange()
    hashes = _hashes_between(tree.size, size)
    for h in hashes:
        tree.append(bytes.fromhex(h))
    body = signed_note.checkpoint_body(settings.VERITTA_AUDIT_ORIGIN, size, tree.root())
    note = signed_note.sign_note(body, key_name(), seed)
    note += "".join(signed_note.signature_line(body, key_name(), extra) for extra in extra_signers)
    try:
        with transaction.atomic():
            checkpoint = Checkpoint.objects.create(
                tree_size=size,
                root_hash=tree.root().hex(),
                note=note,
                frontier=tree.to_json(),
                created_at=datetime.now(UTC),
            )
    except IntegrityError:
        # Another process sealed the same size first; theirs is identical.
        return Checkpoint.objects.get(tree_size=size)
    _write_external(size, note, hashes)
    return checkpoint


_warned_no_key = False


def checkpoint_if_due(first_seq: int, last_seq: int) -> None:
    """Called after each append: seal when the chain crosses a multiple of N."""
    global _warned_no_key
    every = settings.VERITTA_AUDIT_CHECKPOINT_EVERY
    if every <= 0 or last_seq // every == (first_seq - 1) // every:
        return
    try:
        checkpoint_create(size=(last_seq // every) * every)
    except SigningKeyError as exc:
        if not _warned_no_key:
            logger.warning("audit checkpoints disabled", extra={"cause": str(exc)})
            _warned_no_key = True
    except (DatabaseError, OSError) as exc:
        # The chain itself is committed; the next crossing or `audit checkpoint` seals it.
        logger.error("audit checkpoint failed", extra={"exc_class": type(exc).__name__})

"""`audit export`'s anchor: what ties an export (a whole log or a fragment cut
with --since/--until) to a signed checkpoint, so that `audit verify --file
EXPORT --anchor EXPORT.anchor` can say `ok` with no database and no
checkpoint directory (docs/AUDIT_LOG_SPEC.md §7, "Exports and their anchor")."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.db import connection

from audit import signed_note
from audit.anchors import anchor_header, extent_text
from audit.checkpoints import checkpoint_create, key_name, signing_seed
from audit.merkle import CompactRange
from audit.models import Checkpoint


def _hashes(after: int, upto: int, *, page: int = 10000) -> Iterator[str]:
    """record_hash of seq (after, upto], in order, a page at a time."""
    while after < upto:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT seq, record_hash FROM audit_auditrecord WHERE seq > %s AND seq <= %s ORDER BY seq LIMIT %s",
                [after, upto, page],
            )
            rows = cursor.fetchall()
        if not rows:
            return
        for _, h in rows:
            yield h
        after = rows[-1][0]


def export_anchor_write(path: Path, *, first: int, last: int) -> int:
    """Write the anchor of the records first..last to `path`; returns the size
    of the checkpoint it is cut under: the smallest that covers `last`, or, if
    none does yet, one sealed now at `last` (a checkpoint, never a record: the
    chain is not written).

    Raises audit.checkpoints.SigningKeyError when there is no signing key."""
    seed = signing_seed()
    checkpoint = Checkpoint.objects.filter(tree_size__gte=last).order_by("tree_size").first()
    if checkpoint is None:
        checkpoint = checkpoint_create(size=last)
    base = Checkpoint.objects.filter(tree_size__lt=first).order_by("-tree_size").first()
    before = CompactRange.from_json(base.frontier) if base else CompactRange()
    for h in _hashes(before.size, first - 1):
        before.append(bytes.fromhex(h))
    extent = signed_note.sign_note(
        extent_text(settings.VERITTA_AUDIT_ORIGIN, first, last, checkpoint.tree_size), key_name(), seed
    )
    header = anchor_header(first=first, last=last, checkpoint_note=checkpoint.note, before=before, extent=extent)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(header)
        for h in _hashes(first - 1, checkpoint.tree_size):
            handle.write(h + "\n")
    os.replace(tmp, path)  # a reader never sees half an anchor
    return checkpoint.tree_size

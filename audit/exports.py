"""`audit export`'s anchor: what ties an export (a whole log or a fragment cut
with --since/--until) to a signed checkpoint, so that `audit verify --file
EXPORT --anchor EXPORT.anchor.json` can say `ok` with no database and no
checkpoint directory (docs/AUDIT_LOG_SPEC.md §7, "Exports and their anchor")."""

from __future__ import annotations

from django.conf import settings
from django.db import connection

from audit import signed_note
from audit.anchors import anchor_document, extent_text
from audit.checkpoints import checkpoint_create, key_name, signing_seed
from audit.merkle import CompactRange
from audit.models import Checkpoint


def _hashes(after: int, upto: int) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT record_hash FROM audit_auditrecord WHERE seq > %s AND seq <= %s ORDER BY seq", [after, upto]
        )
        return [h for (h,) in cursor.fetchall()]


def export_anchor(*, first: int, last: int) -> dict:
    """The anchor of the records first..last. The checkpoint it is cut under is
    the smallest that covers `last`; if none does yet, one is sealed at `last`
    (a checkpoint, never a record: the chain is not written).

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
    return anchor_document(
        first=first,
        last=last,
        checkpoint_note=checkpoint.note,
        before=before,
        hashes=_hashes(first - 1, checkpoint.tree_size),
        extent=extent,
    )

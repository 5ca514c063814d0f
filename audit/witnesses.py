"""Witnesses, the log's side (issue 15): the cosignatures it accepts, keeps
and serves, and the refusals it is told of.

A witness (`manage.py audit witness`, audit/witness_client.py) is another
party with its own key. It cosigns a checkpoint (C2SP tlog-cosignature) only
after checking, with a consistency proof, that it extends the last one it
cosigned, and posts the cosignature here. The log accepts cosignatures only
from the witnesses in VERITTA_AUDIT_WITNESSES and only if they verify on the
checkpoint's own note; it then serves the note with them appended, so a
client that requires those witnesses (`veritta-verify --witness-key`) cannot
be shown a history they did not see. A witness that finds a fork refuses,
and reports it; the report raises the `witness_refused` alert here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.core.checks import Error, register
from django.db import IntegrityError, transaction

from audit import signed_note
from audit.alerts import alert_raise
from audit.models import Checkpoint, Cosignature
from veritta_site.errors import VerittaError

logger = logging.getLogger("veritta.audit")


@dataclass(frozen=True)
class Witness:
    name: str
    key_id: bytes
    vkey: str


def configured_witnesses() -> list[Witness]:
    """VERITTA_AUDIT_WITNESSES, parsed (the system check refuses a bad one at start)."""
    witnesses = []
    for vkey in settings.VERITTA_AUDIT_WITNESSES:
        name, kid, _ = signed_note.parse_cosigner_vkey(vkey)
        witnesses.append(Witness(name, kid, vkey))
    return witnesses


@register()
def witnesses_check(app_configs: object = None, **kwargs: object) -> list[Error]:
    problems = []
    for position, vkey in enumerate(settings.VERITTA_AUDIT_WITNESSES, start=1):
        try:
            signed_note.parse_cosigner_vkey(vkey)
        except signed_note.KeyFormatError as exc:
            problems.append(Error(f"VERITTA_AUDIT_WITNESSES entry {position}: {exc}", id="audit.E003"))
    return problems


def _refused(code: str, problem: str) -> VerittaError:
    return VerittaError(code, evidence={"problem": problem}, details={"problem": problem})


def cosignature_accept(*, tree_size: int, line: str) -> Cosignature:
    """Check one witness's cosignature line on the checkpoint of `tree_size`
    and keep it. Idempotent for the same witness and checkpoint."""
    checkpoint = Checkpoint.objects.filter(tree_size=tree_size).first()
    if checkpoint is None:
        raise VerittaError("NOT_FOUND", evidence={"object": "checkpoint"}, details={"object": "checkpoint"})
    try:
        cosigned = signed_note.add_signature_lines(checkpoint.note, [line])
        signature = signed_note.note_signatures(cosigned)[-1]
    except signed_note.NoteVerificationError as exc:
        raise _refused("COSIGNATURE_INVALID", "malformed_line") from exc
    witness = next((w for w in configured_witnesses() if (w.name, w.key_id) == (signature.name, signature.key_id)), None)
    if witness is None:
        raise _refused("WITNESS_UNKNOWN", "not_in_VERITTA_AUDIT_WITNESSES")
    try:
        stamp = signed_note.verify_cosignature(cosigned, witness.vkey)
    except signed_note.NoteVerificationError as exc:
        raise _refused("COSIGNATURE_INVALID", "does_not_verify") from exc
    existing = Cosignature.objects.filter(tree_size=tree_size, witness=witness.name).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return Cosignature.objects.create(
                tree_size=tree_size,
                witness=witness.name,
                line=line,
                cosigned_at=datetime.fromtimestamp(stamp, UTC),
                received_at=datetime.now(UTC),
            )
    except IntegrityError:  # the same witness, at the same moment, from another worker
        return Cosignature.objects.get(tree_size=tree_size, witness=witness.name)


def cosigned_note(checkpoint: Checkpoint) -> str:
    """The checkpoint's note with the cosignatures kept for it."""
    lines = list(Cosignature.objects.filter(tree_size=checkpoint.tree_size).order_by("witness").values_list("line", flat=True))
    return signed_note.add_signature_lines(checkpoint.note, lines) if lines else checkpoint.note


@dataclass(frozen=True)
class WitnessStatus:
    name: str
    cosigned_at: datetime | None  # None: this required witness has not cosigned


def witness_status(checkpoint: Checkpoint | None) -> list[WitnessStatus]:
    """For each configured witness: when it cosigned this checkpoint, if it did."""
    witnesses = configured_witnesses()
    if checkpoint is None or not witnesses:
        return []  # no query when there is nothing to show
    got = dict(Cosignature.objects.filter(tree_size=checkpoint.tree_size).values_list("witness", "cosigned_at"))
    return [WitnessStatus(w.name, got.get(w.name)) for w in witnesses]


def witness_refusal_report(*, witness: str, tree_size: int, problem: str) -> None:
    """A witness refused a checkpoint of this log (a fork, a rollback, a proof
    that does not verify): raise the alert on the log's side too."""
    if witness not in {w.name for w in configured_witnesses()}:
        raise _refused("WITNESS_UNKNOWN", "not_in_VERITTA_AUDIT_WITNESSES")
    alert_raise(
        kind="witness_refused",
        subject=f"witness:{witness}"[:80],
        summary=f"witness {witness} refused to cosign checkpoint {tree_size}: {problem}",
        detail={"witness": witness, "tree_size": tree_size, "problem": problem},
    )

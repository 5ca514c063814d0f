"""Verification runs: the outcome of `audit verify` kept as a VerificationRun
(the console's chain status, "last verified"), run in the foreground by the
command or in the background by the worker (audit/tasks.py), and the
verify_failed alert a failed verdict raises once it is over."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError
from django.utils import timezone

from audit.alerts import alert_raise
from audit.models import VerificationRun
from audit.selectors import audit_head_seq, audit_verify

logger = logging.getLogger("veritta.audit")


def verification_run_record(*, report: Any, actor: str, elapsed_s: float) -> VerificationRun:
    """Keep the outcome of a verifier run so that "last verified" survives restarts."""
    finished_at = timezone.now()
    run = VerificationRun(started_at=finished_at - timedelta(seconds=elapsed_s), actor=actor[:80])
    _finish(run, report, finished_at)
    try:
        run.save()
    except DatabaseError as exc:
        # `audit verify` must work on a damaged or half-migrated database too:
        # the report is still printed, only "last verify" is not kept.
        logger.error("verification run not recorded", extra={"exc_class": type(exc).__name__})
    return run


def _finish(run: VerificationRun, report: Any, finished_at: datetime) -> None:
    data = report.as_dict()
    run.status, run.finished_at = run.DONE, finished_at
    run.ok, run.records = data["ok"], data["records"]
    run.problems, run.warnings = data["problems"], data["warnings"]


def verification_run_execute(*, run_id: int) -> VerificationRun:
    """The worker's side: verify, keeping progress on the run, then its verdict.
    A failed verdict raises the verify_failed alert, after the run is kept
    (verification itself never writes into the chain)."""
    # Taken by one conditional update: a task delivered twice runs once.
    taken = VerificationRun.objects.filter(pk=run_id, status=VerificationRun.QUEUED).update(
        status=VerificationRun.RUNNING, started_at=timezone.now()
    )
    run = VerificationRun.objects.get(pk=run_id)
    if not taken:
        return run

    def progress(done: int, total: int) -> None:
        VerificationRun.objects.filter(pk=run.pk).update(records=done)

    try:
        run.total = audit_head_seq()
        run.save(update_fields=["total"])
        report = audit_verify(progress=progress)
    except Exception as exc:
        run.status, run.finished_at, run.error = VerificationRun.FAILED, timezone.now(), type(exc).__name__[:80]
        run.save(update_fields=["status", "finished_at", "error"])
        raise
    _finish(run, report, timezone.now())
    run.save()
    if not report.ok:
        alert_verify_failed(report)
    return run


def alert_verify_failed(report: Any) -> None:
    """Raised once the verify is over: the alert's own records are appended
    after the records it read, and say which was the last of those."""
    kinds: dict[str, int] = {}
    for problem in report.problems:
        kinds[problem.kind] = kinds.get(problem.kind, 0) + 1
    first = min((p.seq for p in report.problems if p.seq is not None), default=None)
    alert_raise(
        kind="verify_failed",
        subject="audit_chain",
        summary=f"audit verify found {len(report.problems)} problem(s), the first at seq {first}"
        f" (verified records {report.first_seq}..{report.last_seq}; this alert is recorded after them)",
        detail={
            "problems": len(report.problems),
            "first_seq": first,
            "kinds": kinds,
            "verified_upto_seq": report.last_seq,
        },
        background=False,
    )

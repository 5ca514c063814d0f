"""Writes of the audit trail: the decision and action records of a request.

A RequestContext is made once per governed request; every record of that
request is built from it, so trace id, input digest, actor and profile are
the same values in all of them (seed 002 gaps 3 and 4).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest
from django.utils import timezone

from audit.chain import AuditSinkError, Receipt, chain_append, chain_transaction
from audit.records import ACTION, DECISION, Presealed, new_record, preseal
from veritta_site.errors import VerittaError
from veritta_site.proxies import client_address

if TYPE_CHECKING:
    from audit.models import VerificationRun

logger = logging.getLogger("veritta.audit")

ANONYMOUS = {"kind": "anonymous", "id": None}


def client_digest(address: str | None) -> str | None:
    """A keyed digest of the client address: correlates without storing it."""
    if not address:
        return None
    mac = hmac.new(settings.SECRET_KEY.encode(), address.encode(), hashlib.sha256).hexdigest()
    return "ip_" + mac[:16]


@dataclass
class RequestContext:
    trace_id: str
    endpoint: str
    profile_id: str
    profile_hash: str
    parent_trace: str | None = None
    client: str | None = None
    client_address: str | None = None  # in memory only, for per-address limits
    actor: dict[str, Any] = field(default_factory=lambda: dict(ANONYMOUS))
    input_digest: str | None = None
    digest_kind: str = "unread"
    matched_rules: list[str] = field(default_factory=list)
    action_fields: dict[str, Any] = field(default_factory=dict)
    # The principal's roles once its credentials passed (docs/AUTHORIZATION.md):
    # every decision record after that names them in its evidence.
    roles: list[str] | None = None
    # time.monotonic() at the request's arrival: a terminal record's duration_us
    # covers the whole request (gates, waits for locks, the executor).
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def for_request(cls, request: HttpRequest, *, endpoint: str, profile_id: str, profile_hash: str) -> RequestContext:
        address = client_address(request)
        return cls(
            trace_id=request.trace_id,  # type: ignore[attr-defined]
            parent_trace=getattr(request, "traceparent", None),
            endpoint=endpoint,
            profile_id=profile_id,
            profile_hash=profile_hash,
            client=client_digest(address),
            client_address=address,
            started=getattr(request, "started_monotonic", None) or time.monotonic(),
        )

    def _common(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "parent_trace": self.parent_trace,
            "endpoint": self.endpoint,
            "actor": self.actor,
            "client": self.client,
            "input_digest": self.input_digest,
            "digest_kind": self.digest_kind,
            "profile_id": self.profile_id,
            "profile_hash": self.profile_hash,
        }

    def decision_record(
        self, *, decision: str, gate: str, http_status: int, error: VerittaError | None
    ) -> dict[str, Any]:
        return new_record(
            event_type=DECISION,
            decision=decision,
            gate=gate,
            http_status=http_status,
            matched_rules=list(self.matched_rules),
            reason_codes=[error.code] if error else [],
            evidence=self._decision_evidence(error),
            action=self.action_fields.get("action"),
            **self._common(),
        )

    def _decision_evidence(self, error: VerittaError | None) -> dict[str, Any]:
        evidence = dict(error.evidence) if error else {}
        if self.roles is not None:
            evidence["principal_roles"] = list(self.roles)
        return evidence

    def action_record(self, *, status: str, error: VerittaError | None = None, **extra: Any) -> dict[str, Any]:
        """Every action record has the same fields (seed 002 gap 8)."""
        codes = [error.code] if error else (["EXECUTION_ATTEMPT"] if status == "PENDING" else [])
        evidence = extra.pop("evidence", None) or {}  # a SUCCESS record's evidence, from its executor
        return new_record(
            event_type=ACTION,
            status=status,
            reason_codes=codes,
            evidence=dict(error.evidence) if error else dict(evidence),
            **self.action_fields,
            **extra,
            **self._common(),
        )


def sink_failure(exc: AuditSinkError) -> VerittaError:
    return VerittaError("AUDIT_SINK_FAILED", evidence={"exc_class": str(exc)})


@contextmanager
def audit_transaction() -> Iterator[None]:
    """The records appended inside, and whatever else is written inside, commit
    together or not at all (audit.chain.chain_transaction). Raises
    VerittaError(AUDIT_SINK_FAILED) if that cannot be done."""
    try:
        with chain_transaction():
            yield
    except AuditSinkError as exc:
        raise sink_failure(exc) from exc


def audit_deny(ctx: RequestContext, *, gate: str, error: VerittaError, blocked: bool = False) -> Receipt:
    """Record a denial (and the BLOCKED action, for registry denials).

    Raises VerittaError(AUDIT_SINK_FAILED) if it cannot be written: the
    request is then refused with 503 rather than with an unrecorded denial.
    """
    records = [ctx.decision_record(decision="DENY", gate=gate, http_status=error.status, error=error)]
    if blocked:
        records.append(ctx.action_record(status="BLOCKED", error=error))
    try:
        return chain_append(records)[-1]
    except AuditSinkError as exc:
        raise sink_failure(exc) from exc


def allow_records(ctx: RequestContext, *, pending: bool, http_status: int = 200) -> list[Presealed]:
    """ALLOW, and with it the PENDING action record, presealed: made before a
    lock is taken, from a context that already holds what the gates matched."""
    records = [ctx.decision_record(decision="ALLOW", gate="ALL", http_status=http_status, error=None)]
    if pending:
        records.append(ctx.action_record(status="PENDING"))
    return [preseal(record) for record in records]


def audit_allow(
    ctx: RequestContext, *, pending: bool, http_status: int = 200, prepared: list[Presealed] | None = None
) -> Receipt:
    """Record ALLOW, and with it the PENDING action record, in one transaction:
    both are committed before the executor may run (seed 002 gaps 2 and 5).
    `prepared`: the same records made earlier by allow_records."""
    records = prepared if prepared is not None else allow_records(ctx, pending=pending, http_status=http_status)
    try:
        # With PENDING, the terminal record follows and offers to sequence them all.
        return chain_append(records, sequence_now=not pending)[-1]
    except AuditSinkError as exc:
        raise sink_failure(exc) from exc


def audit_action_end(ctx: RequestContext, *, status: str, error: VerittaError | None = None, **extra: Any) -> Receipt:
    try:
        return chain_append([ctx.action_record(status=status, error=error, **extra)])[0]
    except AuditSinkError as exc:
        raise sink_failure(exc) from exc


# --- verification runs (the console's chain status, `audit verify`) ---------------


def verification_run_record(*, report: Any, actor: str, elapsed_s: float) -> VerificationRun:
    """Keep the outcome of a verifier run so that "last verified" survives restarts."""
    from audit.models import VerificationRun

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


def verification_run_start(*, actor: str) -> VerificationRun:
    """Queue a whole-chain verify for the background worker (audit/tasks.py);
    the returned run shows its status and progress as the worker goes."""
    from audit.models import VerificationRun
    from audit.tasks import verify_chain

    run = VerificationRun.objects.create(started_at=timezone.now(), status=VerificationRun.QUEUED, actor=actor[:80])
    verify_chain.enqueue(run_id=run.pk)
    return run


def verification_run_execute(*, run_id: int) -> VerificationRun:
    """The worker's side: verify, keeping progress on the run, then its verdict.
    A failed verdict raises the verify_failed alert, after the run is kept
    (verification itself never writes into the chain)."""
    from audit.models import VerificationRun
    from audit.selectors import audit_head_seq, audit_verify

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
    from veritta_site.alerts import alert_raise

    kinds: dict[str, int] = {}
    for problem in report.problems:
        kinds[problem.kind] = kinds.get(problem.kind, 0) + 1
    first = min((p.seq for p in report.problems if p.seq is not None), default=None)
    alert_raise(
        kind="verify_failed",
        subject="audit_chain",
        summary=f"audit verify found {len(report.problems)} problem(s), the first at seq {first}"
        f" (verified records {report.first_seq}..{report.last_seq}; this alert is recorded after them)",
        detail={"problems": len(report.problems), "first_seq": first, "kinds": kinds, "verified_upto_seq": report.last_seq},
        background=False,
    )

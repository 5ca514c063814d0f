"""Four-eyes approval of held requests (docs/APPROVALS.md): hold, vote,
execute once, expire. Every step is a chain record under the held request's
trace id; the payload itself is only ever in ApprovalRequest.sealed_payload.

States: WAITING -> APPROVED (the last approval, committed with its record)
-> EXECUTED (taken by one conditional UPDATE, committed with the PENDING
record and the payload's deletion, before the executor runs). WAITING ->
REJECTED | EXPIRED, each deleting the payload in the same transaction.
An executed request's sealed answer is deleted, recorded, after
VERITTA_APPROVAL_ANSWER_RETENTION_S.
A server killed between APPROVED and the take leaves an APPROVED row and no
PENDING record: the action never ran, and `audit verify` says so.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django_tasks import task

from audit.chain import AuditSinkError, chain_append
from audit.services import RequestContext, audit_transaction, sink_failure
from governance import held_payloads
from governance.approval_rules import ApprovalRule
from governance.models import ApprovalRequest, ApprovalVote
from veritta_site.errors import VerittaError

REASON_MAX = 500
EXPIRY_ACTOR = {"kind": "system", "id": "approval-expiry"}
RETENTION_ACTOR = {"kind": "system", "id": "approval-retention"}


def _now() -> datetime:
    return datetime.now(UTC)


def _append(records: list[dict[str, Any]]) -> None:
    try:
        chain_append(records)
    except AuditSinkError as exc:
        raise sink_failure(exc) from exc


def _step_record(ctx: RequestContext, *, code: str, decision: str, http_status: int, evidence: dict[str, Any]) -> dict[str, Any]:
    record = ctx.decision_record(decision=decision, gate="approval", http_status=http_status, error=None)
    record.update(reason_codes=[code], evidence=evidence)
    return record


def _deleted_record(ctx: RequestContext, held: ApprovalRequest, why: str) -> dict[str, Any]:
    return _step_record(ctx, code="HELD_PAYLOAD_DELETED", decision="ALLOW", http_status=0,
                        evidence={"approval_id": held.public_id, "why": why})


def held_context(held: ApprovalRequest, *, endpoint: str, actor: dict[str, Any]) -> RequestContext:
    """A context for a later step of a held request: its trace, input digest and profile."""
    return RequestContext(
        trace_id=held.trace_id, endpoint=endpoint, profile_id=held.profile_id, profile_hash=held.profile_hash,
        actor=dict(actor), input_digest=held.input_digest, digest_kind="json",
        action_fields={"action": held.action},
    )


def approval_view(held: ApprovalRequest) -> dict[str, Any]:
    approvals = held.votes.filter(verdict=ApprovalVote.APPROVE).count()
    return {
        "id": held.public_id,
        "status": held.status,
        "expires_at": held.expires_at.isoformat().replace("+00:00", "Z"),
        "approvals": approvals,
        "approvals_needed": held.approvals_needed,
    }


# --- hold -------------------------------------------------------------------


def hold(ctx: RequestContext, payload: dict[str, Any], approval: ApprovalRule) -> dict[str, Any]:
    """Keep the request sealed, record that it is held, run nothing. Called in
    the pipeline's decision transaction, after every gate allowed. Returns the
    202 answer's `approval` object."""
    now = _now()
    public_id = "apr_" + secrets.token_hex(12)
    assert ctx.input_digest is not None
    sealed = held_payloads.seal(payload, public_id=public_id, input_digest=ctx.input_digest)
    with audit_transaction():
        held = ApprovalRequest.objects.create(
            public_id=public_id, trace_id=ctx.trace_id, action=payload["action"], profile_id=ctx.profile_id,
            profile_hash=ctx.profile_hash, requester=dict(ctx.actor), input_digest=ctx.input_digest,
            sealed_payload=sealed, group=approval.group, approvals_needed=approval.approvals,
            visible_fields=list(approval.visible_fields), created_at=now,
            expires_at=now + timedelta(seconds=approval.expires_after_s),
        )
        record = ctx.decision_record(decision="ALLOW", gate="ALL", http_status=202, error=None)
        record.update(reason_codes=["APPROVAL_HELD"], evidence={
            "approval_id": public_id, "group": approval.group, "approvals_needed": approval.approvals,
            "expires_at": approval_view(held)["expires_at"],
        })
        _append([record])
        _expiry_enqueue(held.expires_at)
        _alert(held, "approval_waiting", f"{held.action} request {public_id} waits for {approval.approvals} approval(s) of {approval.group}")
    return approval_view(held)


def _expiry_enqueue(when: datetime) -> None:
    """The background worker sweeps then (approvals_expire below): queued with
    the hold (a rolled-back hold queues nothing) and with each kept answer."""
    approvals_expire.using(run_after=when).enqueue()


def _alert(held: ApprovalRequest, kind: str, summary: str, *, background: bool = True) -> None:
    """Raised once its transaction commits (audit.alerts): ids and names only."""
    from audit.alerts import alert_raise

    alert_raise(background=background, kind=kind, subject=f"approval:{held.public_id}", summary=summary, detail={
        "approval_id": held.public_id, "action": held.action, "group": held.group,
        "expires_at": held.expires_at.isoformat(), "trace_id": held.trace_id,
    })


# --- vote -------------------------------------------------------------------


def _approver_checked(held: ApprovalRequest, approver: str) -> None:
    user = get_user_model().objects.filter(username=approver, is_active=True).first()
    if user is None or not user.groups.filter(name=held.group).exists():
        raise VerittaError("APPROVAL_NOT_APPROVER", evidence={"approval_id": held.public_id, "group": held.group})
    if _is_requester(held, user):
        raise VerittaError("APPROVAL_OWN_REQUEST", evidence={"approval_id": held.public_id})


def _is_requester(held: ApprovalRequest, user: Any) -> bool:
    """Four eyes: the person behind the request never decides on it. A session
    request's actor id is the user id the session was opened for; an API key's
    is the key's id, which no console user is."""
    asked_as = {str(held.requester.get("id"))}
    if held.requester.get("kind") == "session":
        from sessions_app.models import Session

        asked_as.update(Session.objects.filter(session_id=held.requester.get("id")).values_list("user_id", flat=True))
    return bool(asked_as & {user.get_username(), str(user.pk)})


def vote(public_id: str, *, approver: str, verdict: str, reason: str, ctx: RequestContext) -> ApprovalRequest:
    """One approver approves or rejects a waiting request, with a reason; the
    last approval makes it APPROVED. All of it, with its record, in one
    transaction under the row's lock: two approvers at the same moment, or a
    vote racing expiry, are decided one after the other. Raises VerittaError."""
    reason = (reason or "").strip()
    if not approver or not reason or len(reason) > REASON_MAX:
        raise VerittaError("APPROVAL_REASON_REQUIRED", evidence={"approval_id": public_id})
    with audit_transaction():
        held = ApprovalRequest.objects.select_for_update().filter(public_id=public_id).first()
        if held is None:
            raise VerittaError("APPROVAL_NOT_FOUND", evidence={"approval_id": public_id})
        _approver_checked(held, approver)
        now = _now()
        if held.status != ApprovalRequest.WAITING or held.expires_at <= now:
            raise VerittaError("APPROVAL_NOT_WAITING", evidence={"approval_id": public_id, "status": held.status})
        if held.votes.filter(approver=approver).exists():
            raise VerittaError("APPROVAL_ALREADY_DECIDED", evidence={"approval_id": public_id})
        ApprovalVote.objects.create(request=held, approver=approver, verdict=verdict, reason=reason, at=now)
        step = held_context(held, endpoint=ctx.endpoint, actor={"kind": "approver", "id": approver})
        step = replace(step, client=ctx.client, parent_trace=ctx.parent_trace)
        approvals = held.votes.filter(verdict=ApprovalVote.APPROVE).count()
        evidence = {"approval_id": public_id, "approver": approver, "reason": reason,
                    "approvals": approvals, "approvals_needed": held.approvals_needed,
                    "waited_s": int((now - held.created_at).total_seconds()), "request_trace_id": ctx.trace_id}
        if verdict == ApprovalVote.REJECT:
            _close(held, ApprovalRequest.REJECTED, now)
            _append([_step_record(step, code="APPROVAL_REJECTED", decision="DENY", http_status=200, evidence=evidence),
                      _deleted_record(step, held, "rejected")])
        else:
            if approvals >= held.approvals_needed:
                _close(held, ApprovalRequest.APPROVED, now, keep_payload=True)
            _append([_step_record(step, code="APPROVAL_GRANTED", decision="ALLOW", http_status=200, evidence=evidence)])
    held.refresh_from_db()
    return held


def _close(held: ApprovalRequest, status: str, now: datetime, *, keep_payload: bool = False) -> None:
    """Leave WAITING, only from WAITING (a conditional UPDATE: one winner)."""
    changes: dict[str, Any] = {"status": status, "decided_at": now}
    if not keep_payload:
        changes["sealed_payload"] = None
    if not ApprovalRequest.objects.filter(pk=held.pk, status=ApprovalRequest.WAITING).update(**changes):
        raise VerittaError("APPROVAL_NOT_WAITING", evidence={"approval_id": held.public_id})


# --- execute once -------------------------------------------------------------


def take_for_execution(public_id: str) -> tuple[ApprovalRequest, dict[str, Any]] | None:
    """Take an APPROVED request for its one execution: the payload is opened
    (its digest checked), then, in one transaction, the row leaves APPROVED by
    a conditional UPDATE, the payload is deleted and PENDING is recorded. None
    when another process took it first."""
    from veritta_site.canonical import digest_of

    held = ApprovalRequest.objects.filter(public_id=public_id, status=ApprovalRequest.APPROVED).first()
    if held is None or held.sealed_payload is None:
        return None
    payload = held_payloads.unseal(held.sealed_payload, public_id=public_id, input_digest=held.input_digest)
    if digest_of(payload) != held.input_digest:  # the approved input, or nothing
        raise VerittaError("APPROVAL_UNAVAILABLE", evidence={"approval_id": public_id, "problem": "input digest differs"})
    return held, payload


def mark_taken(held: ApprovalRequest, ctx: RequestContext) -> bool:
    """APPROVED -> EXECUTED with PENDING and the payload's deletion recorded;
    False when another process won the UPDATE (it runs, this one does not)."""
    with audit_transaction():
        taken = ApprovalRequest.objects.filter(pk=held.pk, status=ApprovalRequest.APPROVED).update(
            status=ApprovalRequest.EXECUTED, sealed_payload=None
        )
        if not taken:
            return False
        _append([ctx.action_record(status="PENDING"), _deleted_record(ctx, held, "executed")])
    return True


def answer_keep(held: ApprovalRequest, body: dict[str, Any], status: int) -> None:
    """Keep the answer, sealed, for the requester's GET /approvals/{id} until
    its retention ends (answers_purge_due below, which the worker runs then)."""
    sealed = held_payloads.seal({"status": status, "body": body}, public_id=held.public_id, input_digest=held.input_digest)
    now = _now()
    ApprovalRequest.objects.filter(pk=held.pk).update(sealed_answer=sealed, answered_at=now)
    _expiry_enqueue(now + timedelta(seconds=settings.VERITTA_APPROVAL_ANSWER_RETENTION_S))


def answer_of(held: ApprovalRequest) -> dict[str, Any] | None:
    if held.sealed_answer is None:
        return None
    return held_payloads.unseal(held.sealed_answer, public_id=held.public_id, input_digest=held.input_digest)


# --- expire -------------------------------------------------------------------


def expire_due(*, now: datetime | None = None, background: bool = True) -> list[str]:
    """Expire every WAITING request past its expires_at, each with its records,
    each by a conditional UPDATE (a vote that won the row first wins)."""
    now = now or _now()
    expired = []
    for held in ApprovalRequest.objects.filter(status=ApprovalRequest.WAITING, expires_at__lte=now).order_by("pk"):
        step = held_context(held, endpoint="approval expiry", actor=EXPIRY_ACTOR)
        try:
            with audit_transaction():
                _close(held, ApprovalRequest.EXPIRED, now)
                evidence = {"approval_id": held.public_id, "waited_s": int((now - held.created_at).total_seconds())}
                _append([_step_record(step, code="APPROVAL_EXPIRED", decision="DENY", http_status=0, evidence=evidence),
                         _deleted_record(step, held, "expired")])
        except VerittaError as error:
            if error.code != "APPROVAL_NOT_WAITING":
                raise
            continue
        # After the commit; a command delivers before it exits (background=False).
        _alert(held, "approval_expired", f"{held.action} request {held.public_id} expired without a decision", background=background)
        expired.append(held.public_id)
    return expired


def answers_purge_due(*, now: datetime | None = None) -> list[str]:
    """Delete every sealed answer stored VERITTA_APPROVAL_ANSWER_RETENTION_S ago
    or more, each with its HELD_ANSWER_DELETED record in the same transaction,
    each by a conditional UPDATE (of two sweeps, one deletes and records)."""
    retention = settings.VERITTA_APPROVAL_ANSWER_RETENTION_S
    cutoff = (now or _now()) - timedelta(seconds=retention)
    due = ApprovalRequest.objects.filter(sealed_answer__isnull=False, answered_at__lte=cutoff).order_by("pk")
    deleted = []
    for held in due.only("pk", "public_id", "trace_id", "action", "profile_id", "profile_hash", "input_digest"):
        step = held_context(held, endpoint="approval answer retention", actor=RETENTION_ACTOR)
        with audit_transaction():
            if not ApprovalRequest.objects.filter(pk=held.pk, sealed_answer__isnull=False).update(sealed_answer=None):
                continue
            _append([_step_record(step, code="HELD_ANSWER_DELETED", decision="ALLOW", http_status=0,
                                  evidence={"approval_id": held.public_id, "why": "retention", "retention_s": retention})])
        deleted.append(held.public_id)
    return deleted


def approvals_waiting_count() -> int:
    return ApprovalRequest.objects.filter(status=ApprovalRequest.WAITING).count()


@task(queue_name="approvals")
def approvals_expire() -> None:
    """Expire the held requests past their expires_at, run by `manage.py
    db_worker --queue-name verify,approvals`. Enqueued, to run then, for each
    request that starts waiting, and for each answer at the end of its
    retention; a request already decided is left as is."""
    expire_due()
    answers_purge_due()

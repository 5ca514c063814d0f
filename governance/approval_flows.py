"""The flows of four-eyes approval (docs/APPROVALS.md): an approver's vote
(admin API and console), and the one execution after the last approval. A
client reading its held request is edge/approval_flows.py; the state changes
themselves are in governance/approvals.py."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings

from audit.services import RequestContext, audit_deny
from governance import approvals, gates
from governance.decision import Denied, run_gate
from governance.models import ApprovalRequest, ApprovalVote
from governance.pipeline import Outcome, error_outcome, execute_allowed
from governance.selectors import profile_active
from veritta_site.errors import VerittaError


def approval_decide(public_id: str, *, approver: str, verdict: str, reason: str, ctx: RequestContext) -> Outcome:
    """One approver's vote; after the last approval the action runs, once."""
    held = approvals.vote(public_id, approver=approver, verdict=verdict, reason=reason, ctx=ctx)
    if held.status == ApprovalRequest.APPROVED:
        execute_approved(public_id)
        held.refresh_from_db()
    return Outcome(200, {"status_code": 200, "trace_id": ctx.trace_id, "approval": approvals.approval_view(held)})


def execute_approved(public_id: str) -> Outcome | None:
    """Run an APPROVED request with the approved input, exactly once: None
    when another process took it (or it is no longer APPROVED)."""
    taken = approvals.take_for_execution(public_id)
    if taken is None:
        return None
    held, payload = taken
    ctx = approvals.held_context(held, endpoint="POST /process", actor=held.requester)
    ctx.started = time.monotonic()
    try:
        rule = run_gate("profile", _rule_of, held)
        executor = run_gate("registry", gates.executor_for, payload, rule, [])
    except Denied as denied:  # the profile or registry changed while it waited: it does not run
        ctx.action_fields = {"action": held.action}
        if approvals.mark_taken(held, ctx):
            outcome = error_outcome(ctx.trace_id, denied.error)
            audit_deny(ctx, gate=denied.gate, error=denied.error, blocked=True)
            approvals.answer_keep(held, outcome.body, outcome.status)
            return outcome
        return None
    ctx.action_fields = {"action": held.action, "action_version": payload.get("action_version"),
                         "executor_id": executor.executor_id, "executor_version": executor.version}
    if not approvals.mark_taken(held, ctx):
        return None
    try:
        outcome = execute_allowed(ctx, executor, payload, rule)
    except VerittaError as error:  # executed, outcome unrecorded
        outcome = error_outcome(ctx.trace_id, error)
    approvals.answer_keep(held, outcome.body, outcome.status)
    return outcome


def _rule_of(held: ApprovalRequest) -> dict[str, Any]:
    profile = profile_active(held.profile_id if held.profile_id else settings.VERITTA_POLICY_PROFILE)
    rule = profile.actions.get(held.action)
    if rule is None:
        raise VerittaError("UNKNOWN_ACTION", evidence={"action": held.action})
    return rule


VERDICTS = {"approve": ApprovalVote.APPROVE, "reject": ApprovalVote.REJECT}


# An APPROVED request not taken this long after its last approval was left by a
# process killed between the approval's commit and the execution.
RESUME_AFTER_S = 30


def resume_stranded(*, now: datetime | None = None) -> list[str]:
    """Run the approved requests a killed process left untaken, each at most
    once (the take is a conditional UPDATE): what `governance expire-approvals`
    does after expiring. Returns the ids it ran."""
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=RESUME_AFTER_S)
    stranded = ApprovalRequest.objects.filter(status=ApprovalRequest.APPROVED, decided_at__lte=cutoff).order_by("pk")
    return [public_id for public_id in stranded.values_list("public_id", flat=True) if execute_approved(public_id)]

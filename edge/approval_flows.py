"""GET /approvals/{id}: a client reading its held request (docs/APPROVALS.md),
through the readers' chain of edge.audit_flows. The vote and the one execution
after the last approval are in governance/approval_flows.py, which the console
uses too."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from audit.services import RequestContext
from audit.transparency import Owners
from edge.audit_flows import reader_request
from edge.sessions_apis import no_parameters
from governance import approvals
from governance.models import ApprovalRequest
from governance.pipeline import Outcome
from veritta_site.errors import VerittaError


def approval_read(request: HttpRequest, public_id: str) -> Outcome:
    """GET /approvals/{id}, through the clients' gates (P0, G0/G2/G4, G10 limits,
    edge.audit_flows.reader_request) and only for the credential that asked: any
    other, the admin key included, gets 404 as for an id that does not exist."""

    def perform(ctx: RequestContext, data: dict[str, Any], owners: Owners) -> Outcome:
        held = ApprovalRequest.objects.filter(public_id=public_id[:40]).first()
        if held is None or owners is None or held.requester not in owners:
            raise VerittaError("APPROVAL_NOT_FOUND", evidence={"approval_id": public_id[:40]})
        body = {
            "status_code": 200,
            "trace_id": ctx.trace_id,
            "request_trace_id": held.trace_id,
            "approval": approvals.approval_view(held),
            "answer": approvals.answer_of(held),
        }
        return Outcome(200, body)

    return reader_request(request, endpoint="GET /approvals/{id}", parse=no_parameters, perform=perform)

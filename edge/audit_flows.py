"""The gate chain of the proof endpoints (issue 15), read by clients and the
admin alike, built from the same pieces as /process and the admin API.

    X-ADMIN-KEY sent:  the admin API's chain (edge.sessions_flows.admin_request); any record
    otherwise:         P0 size -> G0 credential -> G2 API key and/or G4 session
                         -> G10 limits -> P2 parameters -> the operation -> its decision record

The operation is told whose records the caller may see (`owners`): None for
the admin key, else the actors its credentials proved. Every request leaves
exactly one decision record, allowed or denied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from audit.profile_hashes import profile_hash_of
from audit.services import RequestContext, audit_allow, audit_deny
from audit.transparency import Owners
from edge.sessions_flows import admin_request, gated_input
from governance import gates
from governance.pipeline import (
    Denied,
    Outcome,
    client_credentials,
    error_outcome,
    run_gate,
)
from veritta_site.errors import VerittaError

Perform = Callable[[RequestContext, dict[str, Any], Owners], Outcome]


def reader_request(request: HttpRequest, *, endpoint: str, parse: Callable[[Any], dict[str, Any]], perform: Perform) -> Outcome:
    """One read of the proof endpoints, by the admin key or a client credential."""
    if request.META.get("HTTP_X_ADMIN_KEY"):
        return admin_request(request, endpoint=endpoint, parse=parse, perform=lambda ctx, data: perform(ctx, data, None))
    profile_id = settings.VERITTA_POLICY_PROFILE  # the clients' profile, as for POST /sessions
    ctx = RequestContext.for_request(request, endpoint=endpoint, profile_id=profile_id, profile_hash=profile_hash_of(profile_id))
    try:
        try:
            (key_actor, session_actor), headers, data = gated_input(
                request,
                ctx,
                credentials=lambda: client_credentials(request, ctx),  # G0, G2 and/or G4 as on /process
                within_limits=lambda actors: gates.within_limits(
                    key_actor=actors[0], session_actor=actors[1], client=ctx.client
                ),
                parse=parse,
            )
            owners = [{"kind": a["kind"], "id": a["id"]} for a in (key_actor, session_actor) if a is not None]
            outcome = run_gate("object", perform, ctx, data, owners)
        except Denied as denied:
            audit_deny(ctx, gate=denied.gate, error=denied.error)
            return error_outcome(ctx.trace_id, denied.error)
        audit_allow(ctx, pending=False, http_status=outcome.status)
    except VerittaError as error:  # the audit sink failed: no answer without its record
        return error_outcome(ctx.trace_id, error)
    outcome.headers = {**headers, "Cache-Control": "no-store", **outcome.headers}
    return outcome

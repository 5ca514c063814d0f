"""`governance explain`: what POST /process would decide for a request under
a profile file, without executing or recording anything (like `opa eval`).

It runs the gate functions the pipeline runs, in the pipeline's order: P0,
then G0/G2/G4 when asked to (`check_credentials`; G4 without marking the
session seen), then `governance.decision.policy_evaluate` (P2, profile,
registry), the one place the pipeline evaluates them too. G10 counts requests,
so explain never evaluates it: it reports it as not evaluated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest

from audit.services import ANONYMOUS, RequestContext
from governance import gates
from governance.approval_rules import APPROVAL_RULE
from governance.decision import Denied, policy_evaluate, run_gate
from governance.pipeline import client_credentials
from governance.profiles import Profile

NOT_EVALUATED_CREDENTIALS = (
    "not evaluated: explain decides for a client that passed them (--check-credentials evaluates them)"
)
NOT_EVALUATED_G10 = "not evaluated: it counts requests, and explain changes nothing"


def explain_request(
    request: HttpRequest, body: bytes, profile: Profile, *, check_credentials: bool, roles: list[str] | None = None
) -> dict[str, Any]:
    """The decision, gate by gate, for `body` sent as `request` under `profile`,
    for a principal holding `roles` (with credentials checked: the roles they
    hold, narrowed to `roles` when given)."""
    steps: list[dict[str, Any]] = []

    def step(gate: str, check: Callable[..., Any], *args: Any, rule: str) -> Any:
        result = run_gate(gate, check, *args)
        steps.append({"gate": gate, "result": "allow", "rules": [rule]})
        return result

    # The pipeline's own credential sequence, on a context nothing records: the
    # actor and roles it leaves are what a live decision record would carry.
    live = RequestContext(trace_id="explain", endpoint="POST /process", profile_id=profile.profile_id, profile_hash=profile.sha256)
    try:
        step("P0", gates.read_body_within_limit, request, rule="P0:size_within_limit")
        parsed = gates.parse_input(body)
        if check_credentials:
            try:
                client_credentials(request, live, session_gate=gates.session_valid_readonly)
            finally:
                steps.extend({"gate": r.split(":")[0], "result": "allow", "rules": [r]} for r in live.matched_rules)
        else:
            steps.append({"gate": "G0/G2/G4", "result": NOT_EVALUATED_CREDENTIALS, "rules": []})
        steps.append({"gate": "G10", "result": NOT_EVALUATED_G10, "rules": []})
    except Denied as denied:
        return _explained(steps, denied, profile, actor=_actor(live), roles=live.roles)
    actor = _actor(live)
    held = (live.roles or []) if check_credentials else sorted(set(roles or []))  # as the pipeline reads them
    if check_credentials and roles is not None:
        held = sorted(set(held) & set(roles))
    decision = policy_evaluate(request, parsed, profile_source=lambda: profile, roles=held)
    for gate in ("P2", "profile", "authz", "registry"):
        rules = [r for r in decision.matched if r.split(":")[0] == gate]
        if rules:
            steps.append({"gate": gate, "result": "allow", "rules": rules})
    if decision.denied is not None:
        return _explained(
            steps, decision.denied, profile, actor=actor, roles=held, action=decision.action_fields.get("action")
        )
    executor = decision.executor
    assert executor is not None
    explained = _explained(steps, None, profile, actor=actor, roles=held, action=decision.action_fields["action"])
    explained["executor"] = {
        "executor_id": executor.executor_id,
        "version": executor.version,
        "capabilities": sorted(executor.capabilities),
        "would_run": True,
    }
    if "connector" in decision.rule:
        explained["executor"]["connector"] = decision.rule["connector"]
    if decision.approval is not None:  # held: it runs only after its approvals
        explained["executor"]["would_run"] = False
        explained["http_status"] = 202
        explained["approval"] = decision.approval.as_dict()
        explained["gates"].append({"gate": "approval", "result": "hold", "rules": [APPROVAL_RULE]})
        explained["matched_rules"].append(APPROVAL_RULE)
    return explained


def _actor(ctx: RequestContext) -> dict[str, Any] | None:
    """The actor a live record names, None before any credential passed."""
    return None if ctx.actor == ANONYMOUS else dict(ctx.actor)


def _explained(
    steps: list[dict[str, Any]],
    denied: Denied | None,
    profile: Profile,
    *,
    actor: dict[str, Any] | None,
    roles: list[str] | None,
    action: str | None = None,
) -> dict[str, Any]:
    if denied is not None:
        error = denied.error
        steps.append(
            {"gate": denied.gate, "result": "deny", "rules": [], "reason_code": error.code, "evidence": error.evidence}
        )
    return {
        "decision": "DENY" if denied else "ALLOW",
        "gate": denied.gate if denied else "ALL",
        "http_status": denied.error.status if denied else 200,
        "reason_codes": [denied.error.code] if denied else [],
        # As a live decision record: the principal's roles once credentials passed.
        "evidence": {**(denied.error.evidence if denied else {}), **({} if roles is None else {"principal_roles": roles})},
        "details": dict(denied.error.details) if denied else {},
        "matched_rules": [r for s in steps for r in s["rules"]],
        "gates": steps,
        "action": action,
        "actor": actor,
        "roles": roles,
        "profile": {"profile_id": profile.profile_id, "version": profile.version, "sha256": profile.sha256},
        "executor": None,
        "approval": None,
        "executed": False,
        "recorded": False,
    }


def request_for(body: bytes, *, headers: dict[str, str], content_type: str) -> HttpRequest:
    """An HttpRequest as POST /process would receive it: these headers and body."""
    request = HttpRequest()
    request.method = "POST"
    request.path = request.path_info = "/process"
    request.META = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_ADDR": "127.0.0.1",
        **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()},
    }
    request._body = body  # read by gates.read_body_within_limit through request.body
    return request

"""The one place where a request's policy decision is evaluated: P2 (the
payload), the profile's rules and the registry, in that order, by the gate
functions of governance/gates.py.

The live pipeline (governance/pipeline.py) and `governance explain`
(governance/explain.py) both call `policy_evaluate`; they differ only in where
the profile comes from (the active set, or a file) and in what they do with
the outcome (record and execute, or print). A rule added here is therefore
seen by both at once. The principal's roles are an argument: the pipeline
passes the credential's, explain those given with --role.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from django.http import HttpRequest

from audit.services import RequestContext
from governance import gates
from governance.approval_rules import APPROVAL_RULE, ApprovalRule, approval_required
from governance.executors import Executor
from governance.profiles import Profile
from veritta_site.errors import VerittaError

logger = logging.getLogger("veritta.pipeline")

T = TypeVar("T")

G10_RULE = "G10:within_limits"


class Denied(Exception):
    def __init__(self, gate: str, error: VerittaError) -> None:
        self.gate, self.error = gate, error
        super().__init__(gate, error.code)


def run_gate(gate: str, check: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Runs one gate: it allows by returning, denies by raising VerittaError;
    any other exception is a deny with GATE_EXCEPTION (a gate is never skipped
    and never allows by accident)."""
    try:
        return check(*args, **kwargs)
    except VerittaError as error:
        raise Denied(gate, error) from error
    except Exception as exc:  # noqa: BLE001 - a failing gate denies, whatever failed
        logger.exception("gate raised", extra={"gate": gate})
        raise Denied(
            gate, VerittaError("GATE_EXCEPTION", evidence={"gate": gate, "exc_class": type(exc).__name__})
        ) from exc


@dataclass
class PolicyDecision:
    """The outcome of P2, profile and registry for one request."""

    matched: list[str] = field(default_factory=list)
    action_fields: dict[str, Any] = field(default_factory=dict)
    payload: dict[str, Any] | None = None
    profile: Profile | None = None
    executor: Executor | None = None
    rule: dict[str, Any] = field(default_factory=dict)
    denied: Denied | None = None
    # Set when the rule holds this request for four-eyes approval (docs/APPROVALS.md).
    approval: ApprovalRule | None = None

    def applied_to(self, ctx: RequestContext) -> RequestContext:
        """The context as it will be once G10 has allowed and `apply` has run."""
        return replace(
            ctx, matched_rules=[*ctx.matched_rules, G10_RULE, *self.matched], action_fields=dict(self.action_fields)
        )

    def apply(self, ctx: RequestContext) -> tuple[dict[str, Any], Executor]:
        """Record what these gates matched, as if they ran now; raise their denial."""
        ctx.matched_rules.extend(self.matched)
        ctx.action_fields = dict(self.action_fields)
        if self.denied is not None:
            raise self.denied
        assert self.payload is not None and self.executor is not None
        return self.payload, self.executor


def policy_evaluate(
    request: HttpRequest, parsed: gates.ParsedInput, *, profile_source: Callable[[], Profile], roles: list[str]
) -> PolicyDecision:
    """P2, then the profile from `profile_source`, then authz (the principal's
    `roles` against the profile's role rules), then the registry. Computes
    only: writes nothing, runs nothing."""
    decision = PolicyDecision()
    try:
        payload = run_gate("P2", gates.payload_valid, request, parsed)
        decision.matched.append("P2:payload_valid")
        decision.profile = profile = run_gate("profile", profile_source)
        rule = run_gate("profile", gates.profile_allows, payload, profile, decision.matched)
        decision.action_fields = {"action": payload["action"]}  # a registry denial records the action
        role = run_gate("authz", gates.role_allows, payload, rule, profile, roles, decision.matched)
        executor = run_gate("registry", gates.executor_for, payload, rule, decision.matched)
        role_rule = profile.document["roles"][role] if role is not None else None
        decision.approval = run_gate("profile", approval_required, rule, payload, role_rule)
    except Denied as denied:
        decision.denied = denied
        return decision
    decision.action_fields.update(
        action_version=payload.get("action_version"),  # validated by the registry gate
        executor_id=executor.executor_id,
        executor_version=executor.version,
    )
    if decision.approval is not None:
        decision.matched.append(APPROVAL_RULE)
    decision.payload, decision.executor, decision.rule = payload, executor, rule
    return decision

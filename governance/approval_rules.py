"""The one place that reads an action rule's `approval` (four-eyes approval,
docs/APPROVALS.md): what a well-formed one is, and whether a request needs it.

    "approval": {
        "group": "payments-approvers",      # a Django group: who may approve
        "approvals": 2,                      # distinct approvers needed
        "expires_after_s": 3600,             # how long a request may wait
        "when": {"amount": {"gt": 1000}},    # optional: every condition must hold
        "visible_fields": ["action", "amount"]  # what approvers are shown
    }

Without `when`, every request for the action waits for approval. A condition
on a field the request does not carry, or carries with another type, holds
the request (fail closed: doubt means a person looks at it).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

APPROVAL_KEYS = {"group", "approvals", "expires_after_s", "when", "visible_fields", "description"}
CONDITIONS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le, "eq": operator.eq, "ne": operator.ne,
}
MAX_WAIT_S = 30 * 24 * 3600  # a held payload is kept no longer than this (docs/SECURITY.md)
APPROVAL_RULE = "approval:required"


@dataclass(frozen=True)
class ApprovalRule:
    group: str
    approvals: int
    expires_after_s: int
    visible_fields: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "approvals": self.approvals,
            "expires_after_s": self.expires_after_s,
            "visible_fields": list(self.visible_fields),
        }


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _condition_problems(path: str, when: Any) -> list[str]:
    if not isinstance(when, dict) or not when:
        return [f"{path}: must be an object of field conditions, e.g. {{\"amount\": {{\"gt\": 1000}}}}"]
    problems = []
    for name, condition in sorted(when.items()):
        if not isinstance(condition, dict) or not condition:
            problems.append(f"{path}.{name}: must be an object of conditions {sorted(CONDITIONS)}")
            continue
        for op, value in sorted(condition.items()):
            if op not in CONDITIONS:
                problems.append(f"{path}.{name}.{op}: unknown condition, one of {sorted(CONDITIONS)}")
            elif op in ("eq", "ne") and not isinstance(value, (str, int)):
                problems.append(f"{path}.{name}.{op}: must be a string, integer or boolean")
            elif op not in ("eq", "ne") and not _is_int(value):
                problems.append(f"{path}.{name}.{op}: must be an integer")
    return problems


def approval_problems(path: str, approval: Any, fields: dict[str, Any]) -> list[str]:
    """Every problem of one rule's `approval`, each `field.path: what is wrong`."""
    if not isinstance(approval, dict):
        return [f"{path}: must be an object (an approval rule)"]
    problems = [f"{path}.{k}: unknown key" for k in sorted(set(approval) - APPROVAL_KEYS)]
    group = approval.get("group")
    if not isinstance(group, str) or not group or len(group) > 150:
        problems.append(f"{path}.group: required, the name of the Django group whose members approve")
    count = approval.get("approvals", 1)
    if not _is_int(count) or not 1 <= count <= 10:
        problems.append(f"{path}.approvals: must be an integer from 1 to 10 (distinct approvers)")
    wait = approval.get("expires_after_s")
    if not _is_int(wait) or not 1 <= wait <= MAX_WAIT_S:
        problems.append(f"{path}.expires_after_s: required, an integer from 1 to {MAX_WAIT_S} (seconds a request may wait)")
    if "when" in approval:
        problems += _condition_problems(f"{path}.when", approval["when"])
    visible = approval.get("visible_fields", [])
    if not isinstance(visible, list) or not all(isinstance(v, str) for v in visible):
        problems.append(f"{path}.visible_fields: must be a list of field names")
    elif isinstance(fields, dict):
        unknown = sorted(set(visible) - set(fields) - {"action"})
        if unknown:
            problems.append(f"{path}.visible_fields: {unknown} are not fields of this action")
    return problems


def _holds(value: Any, condition: dict[str, Any]) -> bool:
    for op, limit in condition.items():
        if type(value) is not type(limit):  # missing or of another type: doubt holds the request
            return True
        if not CONDITIONS[op](value, limit):
            return False
    return True


def approval_required(
    rule: dict[str, Any], payload: dict[str, Any], role_rule: dict[str, Any] | None = None
) -> ApprovalRule | None:
    """The approval this request needs under its action rule, or else under the
    rule of the role that allowed it (docs/AUTHORIZATION.md); None when it may
    run at once. Each rule is one `approval_problems` accepted."""
    approval = rule.get("approval")
    if approval is None and role_rule is not None:
        approval = role_rule.get("approval", {}).get(payload["action"])
    if approval is None:
        return None
    when = approval.get("when", {})
    if not all(_holds(payload.get(name), condition) for name, condition in when.items()):
        return None
    return ApprovalRule(
        group=approval["group"],
        approvals=approval.get("approvals", 1),
        expires_after_s=approval["expires_after_s"],
        visible_fields=tuple(approval.get("visible_fields", [])),
    )

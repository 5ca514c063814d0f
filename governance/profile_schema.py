"""What a well-formed policy profile is: `governance validate` reports every
problem of a document, each named by its field path.

The gates (governance/gates.py) read profiles as they are; a profile that
passes this check never makes a gate raise (GATE_EXCEPTION) for its shape.
The executor and capability checks use the live registry, so a profile valid
here is one this server could serve.
"""

from __future__ import annotations

from typing import Any

from governance.approval_rules import approval_problems
from governance.connectors import connector_pin_problem
from governance.gates import ACTION_NAME_RE
from governance.registry import executor_registry
from governance.selectors import ADMIN_API_EXECUTOR
from sessions_app.selectors import ROLE_NAME_RE
from veritta_site.semver import parse_semver

TOP_LEVEL_KEYS = {
    "profile_id",
    "version",
    "description",
    "common_fields",
    "forbidden_fields",
    "external_fields",
    "limits",
    "actions",
    "roles",
}
# A role rule (docs/AUTHORIZATION.md); `approval`: the actions this role may
# ask for only with four-eyes approval, each with its approval rule.
ROLE_RULE_KEYS = {"actions", "executors", "connectors", "fields", "approval", "description"}
RULE_KEYS = {"executor", "min_executor_version", "capabilities", "fields", "connector", "description", "approval"}
FIELD_TYPES = {"string": str, "integer": int, "boolean": bool}
FIELD_KEYS = {"type", "max_length", "enum", "min", "max", "description"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string_list_problems(path: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return [f"{path}: must be a list of strings"]
    return []


def _field_spec_problems(path: str, spec: Any) -> list[str]:
    if not isinstance(spec, dict):
        return [f"{path}: must be an object (a field rule)"]
    problems = [f"{path}.{k}: unknown key" for k in sorted(set(spec) - FIELD_KEYS)]
    kind = spec.get("type", "string")
    if kind not in FIELD_TYPES:
        return [*problems, f"{path}.type: must be one of {sorted(FIELD_TYPES)}"]
    if "max_length" in spec and (kind != "string" or not _is_int(spec["max_length"]) or spec["max_length"] < 0):
        problems.append(f"{path}.max_length: must be a non-negative integer, on a string field")
    for bound in ("min", "max"):
        if bound in spec and (kind != "integer" or not _is_int(spec[bound])):
            problems.append(f"{path}.{bound}: must be an integer, on an integer field")
    if _is_int(spec.get("min")) and _is_int(spec.get("max")) and spec["min"] > spec["max"]:
        problems.append(f"{path}.min: is greater than max")
    if "enum" in spec:
        expected = FIELD_TYPES[kind]
        values = spec["enum"]
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, expected) and (kind != "integer" or not isinstance(v, bool)) for v in values)
        ):
            problems.append(f"{path}.enum: must be a non-empty list of {kind} values")
    return problems


def _fields_problems(path: str, fields: Any) -> list[str]:
    if not isinstance(fields, dict):
        return [f"{path}: must be an object of field rules"]
    return [p for name, spec in sorted(fields.items()) for p in _field_spec_problems(f"{path}.{name}", spec)]


def _rule_problems(path: str, action: str, rule: Any) -> list[str]:
    if not ACTION_NAME_RE.match(action):
        return [f"{path}: action name must match {ACTION_NAME_RE.pattern}"]
    if not isinstance(rule, dict):
        return [f"{path}: must be an object (an action rule)"]
    problems = [f"{path}.{k}: unknown key" for k in sorted(set(rule) - RULE_KEYS)]
    if "fields" in rule:
        problems += _fields_problems(f"{path}.fields", rule["fields"])
    if "capabilities" in rule:
        problems += _string_list_problems(f"{path}.capabilities", rule["capabilities"])
    minimum = rule.get("min_executor_version", "0.0.0")
    if parse_semver(minimum) is None:
        problems.append(f"{path}.min_executor_version: must be a semantic version MAJOR.MINOR.PATCH")
    executor_id = rule.get("executor")
    if not isinstance(executor_id, str) or not executor_id:
        return [*problems, f"{path}.executor: required, the id of a registered executor"]
    if executor_id == ADMIN_API_EXECUTOR:
        return problems
    connector_problem = connector_pin_problem(action, rule)
    if connector_problem is not None:
        problems.append(f"{path}.connector: {connector_problem}")
    executor = executor_registry().get(executor_id)
    if executor is None:
        return [*problems, f"{path}.executor: {executor_id!r} is not registered here (governance executors)"]
    if action not in executor.actions:
        problems.append(f"{path}: executor {executor_id!r} does not handle action {action!r}")
    wanted = parse_semver(minimum)
    have = parse_semver(executor.version)
    if wanted is not None and have is not None and have < wanted:
        problems.append(f"{path}.min_executor_version: {minimum} is above the registered {executor.version}")
    if isinstance(rule.get("capabilities"), list):
        missing = sorted(set(rule["capabilities"]) - executor.capabilities)
        if missing:
            problems.append(f"{path}.capabilities: {executor_id!r} lacks {missing}")
    return problems


def _roles_problems(roles: Any, actions: dict[str, Any], common: Any) -> list[str]:
    if not isinstance(roles, dict):
        return ["roles: must be an object of role rules, by role name"]
    problems: list[str] = []
    for role, grant in sorted(roles.items()):
        path = f"roles.{role}"
        if not ROLE_NAME_RE.match(role):
            problems.append(f"{path}: role name must match {ROLE_NAME_RE.pattern}")
            continue
        if not isinstance(grant, dict):
            problems.append(f"{path}: must be an object (a role rule)")
            continue
        problems += [f"{path}.{k}: unknown key" for k in sorted(set(grant) - ROLE_RULE_KEYS)]
        for key in ("actions", "executors", "connectors"):
            if key in grant:
                problems += _string_list_problems(f"{path}.{key}", grant[key])
        granted = grant.get("actions", [])
        if isinstance(granted, list):
            problems += [
                f"{path}.actions: {a!r} is no action of this profile" for a in granted if a != "*" and a not in actions
            ]
        if "fields" in grant:
            problems += _fields_problems(f"{path}.fields", grant["fields"])
        if "approval" in grant:
            problems += _role_approval_problems(f"{path}.approval", grant["approval"], granted, actions, common)
    return problems


def _role_approval_problems(path: str, approval: Any, granted: Any, actions: dict[str, Any], common: Any) -> list[str]:
    """`approval` of a role rule: {action: approval rule}, for actions the role is granted."""
    if not isinstance(approval, dict):
        return [f"{path}: must be an object of approval rules, by action"]
    problems: list[str] = []
    for action, rule in sorted(approval.items()):
        if action not in actions:
            problems.append(f"{path}.{action}: is no action of this profile")
            continue
        if not isinstance(granted, list) or ("*" not in granted and action not in granted):
            problems.append(f"{path}.{action}: the role is not granted this action")
        fields = actions[action].get("fields", {}) if isinstance(actions[action], dict) else {}
        known = {**(common if isinstance(common, dict) else {}), **(fields if isinstance(fields, dict) else {})}
        problems += approval_problems(f"{path}.{action}", rule, known)
    return problems


def profile_problems(document: Any) -> list[str]:
    """Every problem of a profile document, each `field.path: what is wrong`;
    an empty list when the profile is well formed and servable here."""
    if not isinstance(document, dict):
        return ["(document): must be a JSON object"]
    problems = [f"{k}: unknown key" for k in sorted(set(document) - TOP_LEVEL_KEYS)]
    for key in ("profile_id", "version"):
        value = document.get(key)
        if not isinstance(value, str) or not value or len(value) > (64 if key == "profile_id" else 32):
            problems.append(f"{key}: required, a non-empty string")
    for key in ("forbidden_fields", "external_fields"):
        if key in document:
            problems += _string_list_problems(key, document[key])
    limits = document.get("limits", {})
    if not isinstance(limits, dict) or set(limits) - {"max_fields"}:
        problems.append("limits: must be an object with at most max_fields")
    elif "max_fields" in limits and (not _is_int(limits["max_fields"]) or limits["max_fields"] < 1):
        problems.append("limits.max_fields: must be a positive integer")
    common = document.get("common_fields", {})
    problems += _fields_problems("common_fields", common)
    actions = document.get("actions")
    if not isinstance(actions, dict) or not actions:
        return [*problems, "actions: required, an object with at least one action rule"]
    if "roles" in document:
        problems += _roles_problems(document["roles"], actions, common)
    for action, rule in sorted(actions.items()):
        problems += _rule_problems(f"actions.{action}", action, rule)
        fields = rule.get("fields", {}) if isinstance(rule, dict) else {}
        routed = isinstance(rule, dict) and rule.get("executor") != ADMIN_API_EXECUTOR  # admin API: no /process body
        if isinstance(rule, dict) and "approval" in rule:
            if not routed:
                problems.append(f"actions.{action}.approval: only actions run through /process can wait for approval")
            known = {**(common if isinstance(common, dict) else {}), **(fields if isinstance(fields, dict) else {})}
            problems += approval_problems(f"actions.{action}.approval", rule["approval"], known)
        if (
            routed
            and isinstance(common, dict)
            and isinstance(fields, dict)
            and "action" not in common
            and "action" not in fields
        ):
            # Every request carries `action`: without a rule for it, every request is UNKNOWN_FIELDS_PRESENT.
            problems.append(
                f"actions.{action}.fields: no rule for `action` here or in common_fields, so every request is denied"
            )
    return problems

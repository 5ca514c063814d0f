"""Which reason codes count as an authentication failure, an authorization
denial or a policy violation: /metrics, the security SLO (audit/reports.py) and
decision correctness (audit/correctness.py) all read them from here."""

from __future__ import annotations

from veritta_site.errors import CATALOGUE

AUTHN_FAILURE_CODES = frozenset(
    {"MISSING_API_KEY", "GATE_DENIED_INVALID_API_KEY", "CONSOLE_LOGIN_FAILED"}
    | {code for code in CATALOGUE if code.startswith(("SESSION_", "ADMIN_KEY_", "METRICS_TOKEN_"))}
)
REGISTRY_CODES = frozenset(code for code, reason in CATALOGUE.items() if reason.where == "registry")
AUTHZ_DENIAL_CODES = frozenset({"AUTHZ_DENIED", "PROFILE_ACTION_MISMATCH", "ADMIN_SIGNAL_FORBIDDEN"} | REGISTRY_CODES)
POLICY_VIOLATION_CODES = frozenset(code for code, reason in CATALOGUE.items() if reason.where == "profile")
SECURITY_CODES = AUTHN_FAILURE_CODES | AUTHZ_DENIAL_CODES | POLICY_VIOLATION_CODES


def security_categories(code: str | None) -> list[str]:
    """The categories a denial's reason code counts in (a code may be in two:
    PROFILE_ACTION_MISMATCH is both an authorization denial and a policy violation)."""
    if not code:
        return []
    found = []
    if code in AUTHN_FAILURE_CODES:
        found.append("authn_failure")
    if code in AUTHZ_DENIAL_CODES:
        found.append("authz_denial")
    if code in POLICY_VIOLATION_CODES:
        found.append("policy_violation")
    return found

"""The P1.1 fingerprint lock: the service refuses to start (and `manage.py
check` fails) unless the active policy profiles are a set this server may
serve — see governance.selectors.active_set_problem, the one rule."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, register
from django.db import DatabaseError

from governance.selectors import active_set_problem, profiles_active, profiles_lock_values


def fingerprint_lock_problem(*, require_loaded: bool) -> str | None:
    if not profiles_lock_values():
        return None  # reported by veritta.E001
    try:
        profiles = profiles_active()
    except DatabaseError:
        # Before `migrate` there is no profile table: `check` lets migrate run;
        # a server start (require_loaded) refuses.
        return "the policy profile table is missing: run migrate" if require_loaded else None
    if not profiles:
        return "no active policy profiles: run `python manage.py governance load-profiles`" if require_loaded else None
    return active_set_problem(profiles)


@register()
def fingerprint_lock_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    problem = fingerprint_lock_problem(require_loaded=False)
    return [Error(problem, id="governance.E001")] if problem else []


def approval_key_needed_problem() -> str | None:
    """A loaded profile asks for approval but held payloads cannot be sealed."""
    from governance.held_payloads import approval_key_problem

    problem = approval_key_problem()
    if problem is None:
        return None
    try:
        profiles = profiles_active()
    except DatabaseError:
        return None  # before migrate: nothing is loaded yet
    asking = sorted(f"{p.profile_id}:{a}" for p in profiles for a, rule in p.actions.items() if "approval" in rule)
    return f"{problem}, but {', '.join(asking)} wait for approval" if asking else None


@register()
def approval_key_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    problem = approval_key_needed_problem()
    hint = "Set VERITTA_APPROVAL_KEY to base64 of 32 random bytes (docs/APPROVALS.md)."
    return [Error(problem, hint=hint, id="governance.E002")] if problem else []

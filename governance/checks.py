"""The P1.1 fingerprint lock: the service refuses to start unless the active
policy profiles hash to VERITTA_PROFILES_FINGERPRINT."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register
from django.db import DatabaseError

from governance.selectors import profiles_active_fingerprint


def fingerprint_lock_problem(*, require_loaded: bool) -> str | None:
    expected = settings.VERITTA_PROFILES_FINGERPRINT
    if not expected:
        return None  # reported by veritta.E001
    try:
        actual = profiles_active_fingerprint()
    except DatabaseError:
        # Before `migrate` there is no profile table: `check` lets migrate run;
        # a server start (require_loaded) refuses.
        return "the policy profile table is missing: run migrate" if require_loaded else None
    if actual is None:
        return "no active policy profiles: run `python manage.py governance load-profiles`" if require_loaded else None
    if actual != expected:
        return (
            "VERITTA_PROFILES_FINGERPRINT does not match the active policy profiles "
            f"(active set hashes to {actual})"
        )
    return None


@register()
def fingerprint_lock_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    problem = fingerprint_lock_problem(require_loaded=False)
    return [Error(problem, id="governance.E001")] if problem else []

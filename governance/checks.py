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

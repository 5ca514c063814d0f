"""Reads of the governance app.

The active policy profiles are served from a per-process snapshot that is
re-read from the database at most every VERITTA_PROFILES_RECHECK_S seconds,
so that every worker of every server picks up `governance load-profiles`
within that bound (docs/POLICY_CHANGES.md). A snapshot whose set is not one
this server may serve (`active_set_problem`) refuses every request instead
of falling back to an older set: the service and `manage.py check` give the
same answer about the same database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError

from governance.connectors import connector_pin_problem
from governance.models import PolicyProfile
from governance.profiles import Profile, fingerprint, profile_hash
from governance.registry import executor_registry
from veritta_site.errors import VerittaError


class ProfilesNotServable(VerittaError, LookupError):
    """The active profile set fails the lock (or names an unregistered executor):
    the profile gate denies with PROFILES_NOT_SERVABLE; code that only needs a
    profile's hash treats it as a missing profile (LookupError)."""

    def __init__(self, problem: str, *, fingerprint_value: str | None) -> None:
        super().__init__("PROFILES_NOT_SERVABLE", evidence={"problem": problem, "active_fingerprint": fingerprint_value})
        self.problem = problem


@dataclass(frozen=True)
class _Snapshot:
    profiles: dict[str, Profile]
    fingerprint: str | None
    problem: str | None
    read_at: float


_snapshot: _Snapshot | None = None

# The admin profile's operations are performed by the admin API itself
# (edge/sessions_flows.py), not by a registered executor.
ADMIN_API_EXECUTOR = "admin"


def profiles_lock_values() -> frozenset[str]:
    """The fingerprints VERITTA_PROFILES_FINGERPRINT accepts: one value, or two
    (comma-separated) while a change is rolled out or can be rolled back."""
    return frozenset(v.strip().lower() for v in settings.VERITTA_PROFILES_FINGERPRINT.split(",") if v.strip())


def active_set_problem(profiles: list[Profile]) -> str | None:
    """Why this server may not serve this set of active profiles, or None.

    The one rule behind the start-up refusal, `manage.py check`, the runtime
    refusal and `governance load-profiles`: the set hashes to a locked
    fingerprint, every document still hashes to its recorded hash, and every
    executor a profile names is registered here."""
    for p in profiles:
        if profile_hash(p.document) != p.sha256:
            return f"policy profile {p.profile_id} {p.version} does not match its recorded hash"
    actual = fingerprint([(p.profile_id, p.version, p.sha256) for p in profiles])
    if actual not in profiles_lock_values():
        return (
            "VERITTA_PROFILES_FINGERPRINT does not match the active policy profiles "
            f"(active set hashes to {actual})"
        )
    registered = executor_registry()
    for p in profiles:
        for action, rule in sorted(p.actions.items()):
            executor = rule.get("executor") if isinstance(rule, dict) else None
            if executor != ADMIN_API_EXECUTOR and executor not in registered:
                return (
                    f"policy profile {p.profile_id} {p.version} action {action!r} names executor "
                    f"{executor!r}, which is not registered (VERITTA_EXECUTORS)"
                )
            connector_problem = connector_pin_problem(action, rule)  # a missing or changed connector
            if connector_problem is not None:
                return f"policy profile {p.profile_id} {p.version} action {action!r}: {connector_problem}"
    return None


def profiles_active() -> list[Profile]:
    """Every active profile, read from the database now."""
    rows = PolicyProfile.objects.filter(active=True).order_by("profile_id")
    return [Profile(r.profile_id, r.version, r.sha256, r.document) for r in rows]


def profiles_active_fingerprint() -> str | None:
    """The lock value of the active set in the database, None if none is loaded."""
    rows = list(PolicyProfile.objects.filter(active=True).values_list("profile_id", "version", "sha256"))
    return fingerprint(rows) if rows else None


def _read_snapshot() -> _Snapshot:
    profiles = profiles_active()
    problem = active_set_problem(profiles) if profiles else "no active policy profiles"
    value = fingerprint([(p.profile_id, p.version, p.sha256) for p in profiles]) if profiles else None
    return _Snapshot({p.profile_id: p for p in profiles}, value, problem, time.monotonic())


def profile_active(profile_id: str) -> Profile:
    """The active version of a profile, as this process serves it.

    Raises ProfilesNotServable when the active set may not be served (or was
    never read), and LookupError when the set has no such profile."""
    global _snapshot
    snapshot = _snapshot
    if snapshot is None or time.monotonic() - snapshot.read_at >= settings.VERITTA_PROFILES_RECHECK_S:
        try:
            snapshot = _snapshot = _read_snapshot()
        except DatabaseError:
            # The database is unreachable: nothing can be recorded, so nothing
            # runs, and the audit gate answers 503. Keep deciding with the last
            # set read (the next request reads again) rather than turn every
            # request into a gate exception; with no set read yet, refuse.
            if snapshot is None:
                raise ProfilesNotServable("the policy profiles could not be read", fingerprint_value=None) from None
    if snapshot.problem is not None:
        raise ProfilesNotServable(snapshot.problem, fingerprint_value=snapshot.fingerprint)
    try:
        return snapshot.profiles[profile_id]
    except KeyError:
        raise LookupError(f"no active policy profile {profile_id!r}") from None


def profile_hash_of(profile_id: str) -> str:
    """The hash of an active profile; a recognisable all-zero hash if it is missing
    (still recorded, never empty, like the /process pipeline does)."""
    try:
        return profile_active(profile_id).sha256
    except LookupError:
        return "0" * 64


def profile_documents_by_hash(hashes: set[str]) -> dict[str, dict[str, Any]]:
    """Every stored profile version among `hashes`, active or not: {sha256: document}."""
    return dict(PolicyProfile.objects.filter(sha256__in=hashes).values_list("sha256", "document"))


def profile_cache_clear() -> None:
    global _snapshot
    _snapshot = None

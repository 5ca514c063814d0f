"""Writes of the governance app."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import transaction

from audit.chain import AuditSinkError, chain_append
from audit.services import sink_failure
from governance.models import PolicyProfile
from governance.profiles import Profile, fingerprint, profile_hash, shipped_profiles
from governance.selectors import active_set_problem, profiles_active, profiles_active_fingerprint


class ProfileLoadRefused(ValueError):
    pass


@dataclass(frozen=True)
class LoadResult:
    activated: list[str]  # "id version" that became active: new versions and earlier ones again
    new: int  # of those, versions never loaded before
    unchanged: int
    deactivated: int
    fingerprint: str


@transaction.atomic
def profiles_load(*, directory: Path | None = None, actor: dict[str, Any] | None = None) -> LoadResult:
    """Load the shipped profile files; idempotent; all or nothing.

    Each file's (profile_id, version) becomes the active version of its id;
    profiles whose id is no longer shipped are deactivated, so the active set
    is exactly the shipped set and its fingerprint matches `governance fingerprint`.
    A file whose content changed without a version bump is refused, and so is
    a set this server could not serve (not in VERITTA_PROFILES_FINGERPRINT, or
    naming an unregistered executor): then nothing changes, and the servers go
    on serving the set they served (docs/POLICY_CHANGES.md).

    With an `actor` (the command passes the operator), a load that changes an
    active set is an audited action in the same transaction: the new set and
    its records commit together or not at all.
    """
    before = profiles_active_fingerprint()
    activated: list[str] = []
    new = unchanged = 0
    shipped_ids = set()
    for document in shipped_profiles(directory):
        pid, version, sha = document["profile_id"], document["version"], profile_hash(document)
        shipped_ids.add(pid)
        row = PolicyProfile.objects.filter(profile_id=pid, version=version).first()
        if row is not None and row.sha256 != sha:
            raise ProfileLoadRefused(f"profile {pid} {version} changed without a version bump")
        if row is not None and row.active:
            unchanged += 1
            continue
        PolicyProfile.objects.filter(profile_id=pid, active=True).update(active=False)
        if row is None:
            PolicyProfile.objects.create(profile_id=pid, version=version, document=document, sha256=sha, active=True)
            new += 1
        else:
            row.active = True
            row.save(update_fields=["active"])
        activated.append(f"{pid} {version}")
    deactivated = PolicyProfile.objects.filter(active=True).exclude(profile_id__in=shipped_ids).update(active=False)
    profiles = profiles_active()
    problem = active_set_problem(profiles)
    if problem is not None:
        raise ProfileLoadRefused(f"not loaded, nothing changed: {problem}")  # rolls the transaction back
    value = fingerprint([(p.profile_id, p.version, p.sha256) for p in profiles])
    result = LoadResult(activated, new, unchanged, deactivated, value)
    if actor is not None and before is not None and before != value:
        _load_audited(result, before=before, actor=actor, profiles=profiles)
    return result


def _load_audited(result: LoadResult, *, before: str, actor: dict[str, Any], profiles: list[Profile]) -> None:
    """ALLOW, PENDING and SUCCESS of the policy change, with its actor; raises
    (rolling the load back) if they cannot be written."""
    from sessions_app.services import operator_context

    ctx = operator_context(endpoint="manage.py governance load-profiles", actor=actor)
    ctx.action_fields = {"action": "load_profiles"}
    evidence = {
        "fingerprint_before": before,
        "fingerprint_after": result.fingerprint,
        "activated": result.activated,
        "deactivated": result.deactivated,
        "active": [{"profile_id": p.profile_id, "version": p.version, "sha256": p.sha256} for p in profiles],
    }
    ctx.matched_rules.append("operator:profiles_servable")
    decision = ctx.decision_record(decision="ALLOW", gate="ALL", http_status=200, error=None)
    pending = ctx.action_record(status="PENDING")
    success = ctx.action_record(status="SUCCESS", evidence=evidence)
    pending["evidence"] = dict(evidence)
    try:
        chain_append([decision, pending, success])
    except AuditSinkError as exc:
        raise sink_failure(exc) from exc

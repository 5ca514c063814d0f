"""Writes of the governance app."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from governance.models import PolicyProfile
from governance.profiles import fingerprint, profile_hash, shipped_profiles
from governance.selectors import active_set_problem, profiles_active


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
def profiles_load(*, directory: Path | None = None) -> LoadResult:
    """Load the shipped profile files; idempotent; all or nothing.

    Each file's (profile_id, version) becomes the active version of its id;
    profiles whose id is no longer shipped are deactivated, so the active set
    is exactly the shipped set and its fingerprint matches `governance fingerprint`.
    A file whose content changed without a version bump is refused, and so is
    a set this server could not serve (not in VERITTA_PROFILES_FINGERPRINT, or
    naming an unregistered executor): then nothing changes, and the servers go
    on serving the set they served (docs/POLICY_CHANGES.md).
    """
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
    return LoadResult(activated, new, unchanged, deactivated, value)

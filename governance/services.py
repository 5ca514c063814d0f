"""Writes of the governance app."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from governance.models import PolicyProfile
from governance.profiles import profile_hash, shipped_profiles


@dataclass(frozen=True)
class LoadResult:
    created: int
    activated: int
    unchanged: int
    deactivated: int


@transaction.atomic
def profiles_load(*, directory: Path | None = None) -> LoadResult:
    """Load the shipped profile files; idempotent.

    Each file's (profile_id, version) becomes the active version of its id;
    profiles whose id is no longer shipped are deactivated, so the active set
    is exactly the shipped set and its fingerprint matches `governance fingerprint`.
    A file whose content changed without a version bump is refused.
    """
    created = activated = unchanged = 0
    shipped_ids = set()
    for document in shipped_profiles(directory):
        pid, version, sha = document["profile_id"], document["version"], profile_hash(document)
        shipped_ids.add(pid)
        row = PolicyProfile.objects.filter(profile_id=pid, version=version).first()
        if row is not None and row.sha256 != sha:
            raise ValueError(f"profile {pid} {version} changed without a version bump")
        if row is not None and row.active:
            unchanged += 1
            continue
        PolicyProfile.objects.filter(profile_id=pid, active=True).update(active=False)
        if row is None:
            PolicyProfile.objects.create(profile_id=pid, version=version, document=document, sha256=sha, active=True)
            created += 1
        else:
            row.active = True
            row.save(update_fields=["active"])
            activated += 1
    deactivated = PolicyProfile.objects.filter(active=True).exclude(profile_id__in=shipped_ids).update(active=False)
    return LoadResult(created, activated, unchanged, deactivated)

"""Reads of the governance app."""

from __future__ import annotations

from django.db import DatabaseError

from governance.models import PolicyProfile
from governance.profiles import Profile, fingerprint, profile_hash

# Active profiles are cached per process after the fingerprint lock has been
# checked at start: a profile change needs a new VERITTA_PROFILES_FINGERPRINT,
# which needs a restart, so the cache can never serve a profile the lock
# did not approve.
_active_cache: dict[str, Profile] = {}


def profiles_active_fingerprint() -> str | None:
    """The lock value of the active set in the database, None if none is loaded."""
    rows = list(PolicyProfile.objects.filter(active=True).values_list("profile_id", "version", "sha256"))
    return fingerprint(rows) if rows else None


def profile_active(profile_id: str) -> Profile:
    """The active version of a profile. Raises LookupError if there is none."""
    cached = _active_cache.get(profile_id)
    if cached is not None:
        return cached
    try:
        row = PolicyProfile.objects.get(profile_id=profile_id, active=True)
    except (PolicyProfile.DoesNotExist, DatabaseError) as exc:
        raise LookupError(f"no active policy profile {profile_id!r}") from exc
    if profile_hash(row.document) != row.sha256:
        # The stored document no longer hashes to what was loaded and locked.
        raise LookupError(f"policy profile {profile_id!r} does not match its recorded hash")
    profile = Profile(row.profile_id, row.version, row.sha256, row.document)
    _active_cache[profile_id] = profile
    return profile


def profile_cache_clear() -> None:
    _active_cache.clear()

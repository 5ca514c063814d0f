"""The hash of an active policy profile, for the layers below governance.

Governance owns the profiles; audit and sessions_app record their hash but may
not import governance (docs/ARCHITECTURE.md "Layers"). GovernanceConfig.ready()
registers the provider on this hook (audit/hooks.py). Without a provider
nothing is recorded: the call raises HookMissing (fail closed), it never
stores an empty hash.
"""

from __future__ import annotations

from collections.abc import Callable

from audit.hooks import Hook

provider: Hook[Callable[[str], str]] = Hook("audit.profile_hashes.provider", provided_by="governance")


def profile_hash_of(profile_id: str) -> str:
    return provider.provided()(profile_id)

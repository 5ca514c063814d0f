"""The hash of an active policy profile, for the layers below governance.

Governance owns the profiles; audit and sessions_app record their hash but may
not import governance (docs/ARCHITECTURE.md "Layers"). GovernanceConfig.ready()
registers the provider here, the way AuditConfig.ready() connects the chain
events. Without a provider nothing is recorded: the call raises (fail closed),
it never stores an empty hash.
"""

from collections.abc import Callable

_provider: Callable[[str], str] | None = None


class ProfileHashProviderMissing(RuntimeError):
    """No app registered the profile hash provider (governance not ready)."""


def register(provider: Callable[[str], str]) -> None:
    global _provider
    _provider = provider


def profile_hash_of(profile_id: str) -> str:
    if _provider is None:
        raise ProfileHashProviderMissing("no profile hash provider: governance is not installed or not ready")
    return _provider(profile_id)

"""The profile hash reaches audit and sessions_app through a provider (docs/ARCHITECTURE.md "Layers")."""

import pytest

from audit import profile_hashes
from audit.hooks import HookMissing
from governance.selectors import profile_hash_of as governance_profile_hash_of


@pytest.mark.django_db
def test_the_provider_governance_registers_answers_with_its_hash():
    assert profile_hashes.profile_hash_of("admin") == governance_profile_hash_of("admin")
    assert len(profile_hashes.profile_hash_of("admin")) == 64


def test_without_a_provider_nothing_is_recorded_with_an_empty_hash(monkeypatch):
    monkeypatch.setattr(profile_hashes.provider, "_provided", None)
    with pytest.raises(HookMissing):
        profile_hashes.profile_hash_of("admin")

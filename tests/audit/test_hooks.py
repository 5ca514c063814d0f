"""What a lower layer calls of a higher one comes down through a named hook the
higher app registers at startup (audit/hooks.py, docs/ARCHITECTURE.md "Layers")."""

import pytest

from audit import alerts, chain_events, correctness, profile_hashes
from audit.hooks import Hook, HookMissing
from governance.selectors import profile_documents_by_hash, profile_hash_of
from sessions_app.ratelimit import minute_count


def test_every_hook_is_registered_by_the_app_that_provides_it():
    assert profile_hashes.provider.provided() is profile_hash_of
    assert correctness.profile_documents.provided() is profile_documents_by_hash
    assert alerts.minute_counter.provided() is minute_count
    assert chain_events.events() is chain_events.connected.provided()


def test_a_hook_nothing_registered_raises_naming_who_should_have():
    with pytest.raises(HookMissing, match=r"^example: nothing registered \(governance is not installed or not ready\)$"):
        Hook[object]("example", provided_by="governance").provided()


def test_a_chain_with_nothing_connected_refuses_to_write(monkeypatch):
    monkeypatch.setattr(chain_events.connected, "_provided", None)
    with pytest.raises(HookMissing):
        chain_events.events()


@pytest.mark.django_db
def test_correctness_without_the_profile_reader_raises_rather_than_calling_every_decision_wrong(monkeypatch, api):
    from audit.reports import Window

    assert api.process({"action": "process", "text": "hi"}).status_code == 200
    assert correctness.decision_correctness(window=Window.last(hours=1), sample=10).correct == 1
    monkeypatch.setattr(correctness.profile_documents, "_provided", None)
    with pytest.raises(HookMissing):
        correctness.decision_correctness(window=Window.last(hours=1), sample=10)

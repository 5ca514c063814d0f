"""Stored API keys: made by `manage.py sessions create-key`, printed once, kept
only as a digest, looked up by prefix and compared in constant time; the
bootstrap key keeps working next to them."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from django.core.management import call_command

from conftest import API_KEY

SMOKE = {"action": "test_action", "event_type": "test_event"}


def create_key(name: str = "billing") -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("sessions", "create-key", "--name", name, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def test_create_key_prints_the_key_once_and_stores_only_its_digest(db):
    from sessions_app.models import ApiKey

    key, note = create_key()
    assert key.startswith("vk_") and len(key) > 40
    assert key not in note
    row = ApiKey.objects.get()
    assert key.startswith(f"vk_{row.prefix}_") and row.name == "billing"
    assert row.digest == hashlib.sha256(key.encode()).hexdigest()
    assert key not in json.dumps(list(ApiKey.objects.values()), default=str)
    listing = io.StringIO()
    call_command("sessions", "list-keys", stdout=listing)
    assert row.prefix in listing.getvalue() and key not in listing.getvalue() and row.digest not in listing.getvalue()


def test_stored_key_passes_g2_and_is_the_actor_by_its_prefix(api, audit_records):
    key, _ = create_key()
    response = api.process(SMOKE, key=key)
    assert response.status_code == 200
    (decision, *_) = audit_records(response.json()["trace_id"])
    assert decision["actor"] == {"kind": "api_key", "id": key.split("_")[1]}
    assert key not in json.dumps(audit_records())


def test_bootstrap_key_keeps_working_beside_stored_keys(api, audit_records):
    create_key()
    response = api.process(SMOKE, key=API_KEY)
    assert response.status_code == 200
    assert audit_records(response.json()["trace_id"])[0]["actor"] == {"kind": "api_key", "id": "bootstrap"}


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"), id="wrong-secret"),
        pytest.param(lambda k: "vk_00000000_" + k.split("_", 2)[2], id="unknown-prefix"),
        pytest.param(lambda k: k.rsplit("_", 1)[0], id="truncated"),
        pytest.param(lambda k: "vk_" + "é" * 8 + "_x", id="non-ascii"),
    ],
)
def test_altered_stored_key_is_refused(api, tamper):
    key, _ = create_key()
    response = api.process(SMOKE, key=tamper(key))
    assert response.status_code == 403 and response.json()["reason_codes"] == ["GATE_DENIED_INVALID_API_KEY"]


def test_revoked_stored_key_is_refused(api):
    key, _ = create_key()
    call_command("sessions", "revoke-key", key.split("_")[1], stdout=io.StringIO())
    response = api.process(SMOKE, key=key)
    assert response.json()["reason_codes"] == ["GATE_DENIED_INVALID_API_KEY"]


def test_unknown_prefix_costs_the_same_digest_comparison_as_a_known_one(db, monkeypatch):
    """Constant time: a miss still hashes the presented key and compares it
    (against a dummy digest), so timing does not reveal which prefixes exist."""
    import sessions_app.selectors as selectors

    key, _ = create_key()
    calls: list[tuple[bytes, bytes]] = []
    real = selectors.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(selectors.hmac, "compare_digest", spy)
    assert selectors.api_key_authenticate(presented=key) is not None
    assert selectors.api_key_authenticate(presented="vk_00000000_" + "x" * 43) is None
    assert selectors.api_key_authenticate(presented="not-even-a-vk-key") is None
    assert len(calls) == 3
    assert calls[1][1] == calls[2][1] == selectors.DUMMY_DIGEST.encode()


def test_unknown_session_costs_the_same_token_comparison(api, open_session, monkeypatch):
    import sessions_app.selectors as selectors

    calls: list[bytes] = []
    real = selectors.hmac.compare_digest
    monkeypatch.setattr(selectors.hmac, "compare_digest", lambda a, b: calls.append(b) or real(a, b))
    with pytest.raises(Exception, match="SESSION_INVALID"):
        selectors.session_authenticate(session_id="sess_nope", user_id="u", token="vs_x")
    assert calls == [selectors.DUMMY_DIGEST.encode()]

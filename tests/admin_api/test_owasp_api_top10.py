"""The OWASP API Security Top 10 (2023) items that apply to sessions, keys and
the admin API, one test (at least) each."""

from __future__ import annotations

import json

import pytest

from conftest import ADMIN_KEY, API_KEY, bearer

README_G4 = {"action": "process", "event_type": "test_event"}


def test_api1_broken_object_level_authorization_a_session_acts_only_as_itself(api, open_session):
    alice, bob = open_session("u_alice"), open_session("u_bob")
    # Alice's token with Bob's session id, with Bob's user id, or both: refused.
    for alter in ({"session_id": bob["session_id"]}, {"user_id": "u_bob"}, {"session_id": bob["session_id"], "user_id": "u_bob"}):
        response = api.process(README_G4, key=None, **bearer(alice, **alter))
        assert response.status_code == 403 and response.json()["reason_codes"] == ["SESSION_INVALID"]
    # And session metadata is an admin object: no session or key reads it.
    for headers in (bearer(alice), {"HTTP_X_API_KEY": API_KEY}):
        response = api.get(f"/admin/sessions/{alice['session_id']}", **headers)
        assert response.status_code == 403 and response.json()["reason_codes"] == ["ADMIN_KEY_MISSING"]


def test_api2_broken_authentication_guessing_is_throttled_and_secrets_never_echoed(api, open_session, settings):
    session = open_session()
    settings.VERITTA_RATE_LIMIT_ADDRESS_PER_MIN = 10
    answers = [api.process(README_G4, key=None, **bearer(session, token=f"vs_guess{i}")) for i in range(12)]
    codes = [a.json()["reason_codes"][0] for a in answers]
    assert "RATE_LIMIT_EXCEEDED" in codes and codes.count("SESSION_INVALID") <= 10
    everything = " ".join(a.content.decode() for a in answers)
    assert session["token"] not in everything and "vs_guess" not in everything
    # Keys and tokens are only ever shown at creation; no answer repeats a presented one.
    ok = api.process(README_G4, key=API_KEY)
    assert API_KEY not in ok.content.decode()


def test_api2_expired_and_revoked_credentials_do_not_authenticate(api, open_session):
    from datetime import UTC, datetime, timedelta

    from sessions_app.models import Session

    session = open_session()
    Session.objects.filter(session_id=session["session_id"]).update(expires_at=datetime.now(UTC) - timedelta(minutes=1))
    assert api.process(README_G4, key=None, **bearer(session)).json()["reason_codes"] == ["SESSION_EXPIRED"]


def test_api4_unrestricted_resource_consumption_is_bounded(api, admin, settings):
    settings.VERITTA_RATE_LIMIT_KEY_PER_MIN = 5
    assert [api.process(README_G4).status_code for _ in range(6)][-1] == 429
    # Pages and summaries are bounded; bodies are bounded before they are read.
    assert admin.admin_get("/admin/audit/events", limit=100000).status_code == 400
    assert admin.admin_get("/admin/audit/summary", limit=1_000_000).status_code == 400
    settings.VERITTA_MAX_PAYLOAD_SIZE = 64
    too_big = admin.admin_post("/admin/sessions/revoke", {"session_id": "s", "reason": "x" * 100})
    assert too_big.status_code == 413
    too_big = api.post("/sessions", data=json.dumps({"user_id": "u" * 100}), content_type="application/json", HTTP_X_API_KEY=API_KEY)
    assert too_big.status_code == 413


ADMIN_PATHS = [
    ("get", "/admin/health"),
    ("get", "/admin/audit/summary"),
    ("get", "/admin/audit/events"),
    ("get", "/admin/audit/checkpoints/latest"),
    ("post", "/admin/sessions/revoke"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_PATHS)
def test_api5_broken_function_level_authorization_process_credentials_cannot_call_admin(api, open_session, method, path):
    from conftest import AdminClient

    session = open_session()
    client = AdminClient()
    for credentials in (
        {"HTTP_X_API_KEY": API_KEY},
        bearer(session),
        {"HTTP_X_ADMIN_KEY": API_KEY},  # a /process key offered as the admin key
        {"HTTP_X_ADMIN_KEY": session["token"]},
    ):
        if method == "post":
            response = client.post(path, data=json.dumps({"session_id": session["session_id"]}), content_type="application/json", **credentials)
        else:
            response = client.get(path, **credentials)
        assert response.status_code == 403
        assert response.json()["reason_codes"][0] in ("ADMIN_KEY_MISSING", "ADMIN_KEY_INVALID")
    # Nothing was revoked by any of those calls.
    assert api.process(README_G4, key=None, **bearer(session)).status_code == 200


def test_api5_the_admin_key_is_not_a_process_key(api):
    response = api.process(README_G4, key=ADMIN_KEY)
    assert response.status_code == 403 and response.json()["reason_codes"] == ["GATE_DENIED_INVALID_API_KEY"]
    response = api.process(README_G4, key=None, HTTP_X_ADMIN_KEY=ADMIN_KEY)
    assert response.status_code == 403 and response.json()["reason_codes"] == ["MISSING_API_KEY"]

"""POST /sessions and gate G4: a bearer session works on /process only with its
own token, user id and session id, while neither revoked nor expired."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from conftest import API_KEY, bearer

README_G4 = {"action": "process", "event_type": "test_event"}


def test_open_session_returns_id_user_expiry_and_token_once(api, open_session, settings):
    from sessions_app.models import Session

    session = open_session("u_12345")
    assert set(session) == {"session_id", "user_id", "roles", "token", "created_at", "expires_at", "trace_id"}
    assert session["roles"] == ["operator"]  # all of the opening (bootstrap) key's
    assert session["session_id"].startswith("sess_") and session["token"].startswith("vs_")
    assert session["user_id"] == "u_12345"
    expires = datetime.fromisoformat(session["expires_at"])
    ttl = expires - datetime.fromisoformat(session["created_at"])
    assert ttl == timedelta(seconds=settings.VERITTA_SESSION_TTL_S)
    row = Session.objects.get(session_id=session["session_id"])
    # Stored only as a digest: the token itself is nowhere in the row.
    assert row.token_digest == hashlib.sha256(session["token"].encode()).hexdigest()
    assert session["token"] not in json.dumps(list(Session.objects.values()), default=str)


def test_open_session_is_an_audited_action_with_pending_before_success(open_session, audit_records):
    session = open_session()
    records = audit_records(session["trace_id"])
    assert [(r["event_type"], r["decision"], r["status"]) for r in records] == [
        ("decision_audit", "ALLOW", None),
        ("action_audit", None, "PENDING"),
        ("action_audit", None, "SUCCESS"),
    ]
    assert {r["action"] for r in records} == {"open_session"}
    assert records[0]["endpoint"] == "POST /sessions"
    assert records[0]["actor"] == {"kind": "api_key", "id": "bootstrap"}
    assert records[2]["evidence"]["session_id"] == session["session_id"]
    assert session["token"] not in json.dumps(records)


def test_readme_bearer_example_runs_with_a_real_session(api, open_session, audit_records):
    session = open_session("u_12345")
    response = api.process(README_G4, key=None, **bearer(session))
    assert response.status_code == 200, response.content
    records = audit_records(response.json()["trace_id"])
    assert records[0]["actor"] == {"kind": "session", "id": session["session_id"]}
    assert "G4:session_valid" in records[0]["matched_rules"]
    assert "G2:api_key_valid" not in records[0]["matched_rules"]  # no X-API-Key: G2 is skipped
    assert response["RateLimit-Policy"].startswith('"')


@pytest.mark.parametrize(
    ("alter", "cause"),
    [
        pytest.param({"token": "vs_" + "A" * 43}, "wrong_token", id="wrong-token"),
        pytest.param({"user_id": "u_99999"}, "wrong_user", id="other-user-id"),
        pytest.param({"session_id": "sess_unknown"}, "unknown_session", id="unknown-session"),
    ],
)
def test_wrong_token_user_or_session_is_one_answer_with_the_cause_only_in_the_audit(
    api, open_session, audit_records, alter, cause
):
    session = open_session()
    response = api.process(README_G4, key=None, **bearer(session, **alter))
    assert response.status_code == 403
    envelope = response.json()
    assert envelope["reason_codes"] == ["SESSION_INVALID"]
    assert cause not in json.dumps(envelope)
    (decision,) = audit_records(envelope["trace_id"])
    assert decision["gate"] == "G4" and decision["evidence"] == {"cause": cause}


def test_token_of_one_session_cannot_be_used_with_another_session_id(api, open_session):
    mine, theirs = open_session("u_1"), open_session("u_2")
    response = api.process(README_G4, key=None, **bearer(mine, session_id=theirs["session_id"], user_id="u_2"))
    assert response.json()["reason_codes"] == ["SESSION_INVALID"]


@pytest.mark.parametrize(
    ("headers", "cause"),
    [
        pytest.param({"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"}, "not_bearer", id="basic-auth"),
        pytest.param({"HTTP_AUTHORIZATION": "Bearer "}, "not_bearer", id="empty-bearer"),
        pytest.param({"HTTP_X_VERITTA_USER_ID": ""}, "missing_header", id="no-user-id"),
        pytest.param({"HTTP_X_VERITTA_SESSION_ID": ""}, "missing_header", id="no-session-id"),
    ],
)
def test_malformed_bearer_credentials_are_refused(api, open_session, audit_records, headers, cause):
    session = open_session()
    response = api.process(README_G4, key=None, **{**bearer(session), **headers})
    assert response.status_code == 403 and response.json()["reason_codes"] == ["SESSION_INVALID"]
    assert audit_records(response.json()["trace_id"])[0]["evidence"]["cause"] == cause


def test_revoked_session_is_refused_on_its_next_request(api, open_session, audit_records):
    from sessions_app.services import session_revoke

    session = open_session()
    assert api.process(README_G4, key=None, **bearer(session)).status_code == 200
    session_revoke(session_id=session["session_id"], actor={"kind": "operator", "id": "test"}, reason="test")
    response = api.process(README_G4, key=None, **bearer(session))
    assert response.status_code == 403 and response.json()["reason_codes"] == ["SESSION_REVOKED"]


def test_expired_session_is_refused(api, open_session):
    from sessions_app.models import Session

    session = open_session()
    Session.objects.filter(session_id=session["session_id"]).update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    response = api.process(README_G4, key=None, **bearer(session))
    assert response.status_code == 403 and response.json()["reason_codes"] == ["SESSION_EXPIRED"]


def test_revoked_or_expired_state_is_told_only_to_the_token_holder(api, open_session):
    from sessions_app.models import Session

    session = open_session()
    Session.objects.filter(session_id=session["session_id"]).update(revoked_at=datetime.now(UTC))
    response = api.process(README_G4, key=None, **bearer(session, token="vs_guess"))
    assert response.json()["reason_codes"] == ["SESSION_INVALID"]


def test_valid_key_with_invalid_session_is_still_refused(api, open_session):
    # Both credentials sent: each presented credential must hold.
    session = open_session()
    response = api.process(README_G4, key=API_KEY, **bearer(session, token="vs_wrong"))
    assert response.json()["reason_codes"] == ["SESSION_INVALID"]


def test_last_seen_is_recorded(api, open_session):
    from sessions_app.models import Session

    session = open_session()
    assert Session.objects.get(session_id=session["session_id"]).last_seen_at is None
    api.process(README_G4, key=None, **bearer(session))
    assert Session.objects.get(session_id=session["session_id"]).last_seen_at is not None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param({}, "user_id", id="no-user"),
        pytest.param({"user_id": "u 1; drop"}, "user_id", id="bad-user"),
        pytest.param({"user_id": "u_1", "ttl_s": 10}, "ttl_s", id="ttl-too-short"),
        pytest.param({"user_id": "u_1", "ttl_s": 86401}, "ttl_s", id="ttl-over-max"),
        pytest.param({"user_id": "u_1", "is_admin": True}, "is_admin", id="unknown-field"),
    ],
)
def test_open_session_validates_its_body(api, audit_records, payload, field):
    response = api.post("/sessions", data=json.dumps(payload), content_type="application/json", HTTP_X_API_KEY=API_KEY)
    assert response.status_code == 400
    envelope = response.json()
    assert envelope["reason_codes"] == ["VALIDATION_ERROR"] and envelope["details"]["fields"] == [field]
    (decision,) = audit_records(envelope["trace_id"])
    assert decision["decision"] == "DENY" and decision["gate"] == "P2"


def test_session_lifetime_is_bounded_by_the_maximum(api, open_session, settings):
    settings.VERITTA_SESSION_TTL_MAX_S = 120
    response = api.post(
        "/sessions",
        data=json.dumps({"user_id": "u_1", "ttl_s": 121}),
        content_type="application/json",
        HTTP_X_API_KEY=API_KEY,
    )
    assert response.status_code == 400
    session = open_session("u_1", ttl_s=120)
    ttl = datetime.fromisoformat(session["expires_at"]) - datetime.fromisoformat(session["created_at"])
    assert ttl == timedelta(seconds=120)


def test_a_session_cannot_open_sessions(api, open_session):
    session = open_session()
    response = api.post(
        "/sessions", data=json.dumps({"user_id": "u_2"}), content_type="application/json", **bearer(session)
    )
    assert response.status_code == 403 and response.json()["reason_codes"] == ["MISSING_API_KEY"]


def test_open_session_with_a_wrong_key_is_refused_and_audited(api, audit_records):
    response = api.post(
        "/sessions", data=json.dumps({"user_id": "u_1"}), content_type="application/json", HTTP_X_API_KEY="nope"
    )
    assert response.status_code == 403 and response.json()["reason_codes"] == ["GATE_DENIED_INVALID_API_KEY"]
    (decision,) = audit_records(response.json()["trace_id"])
    assert decision["endpoint"] == "POST /sessions" and decision["gate"] == "G2"

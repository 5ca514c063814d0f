"""POST /admin/sessions/revoke and GET /admin/sessions/{id}; the revocation is
one service (session_revoke) called by the admin API and `manage.py sessions
revoke`, audited as an action with the admin as actor."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from django.core.management import CommandError, call_command

from conftest import ADMIN_KEY, bearer

README_G4 = {"action": "process", "event_type": "test_event"}


def test_revoke_writes_decision_pending_and_success_with_the_admin_as_actor(admin, open_session, audit_records):
    session = open_session()
    response = admin.admin_post("/admin/sessions/revoke", {"session_id": session["session_id"], "reason": "offboarding"})
    assert response.status_code == 200
    body = response.json()
    assert body["session_id"] == session["session_id"] and body["status"] == "revoked" and body["revoked_at"]
    records = audit_records(body["trace_id"])
    assert [(r["event_type"], r["decision"], r["status"]) for r in records] == [
        ("decision_audit", "ALLOW", None),
        ("action_audit", None, "PENDING"),
        ("action_audit", None, "SUCCESS"),
    ]
    for record in records:
        assert record["action"] == "revoke_session" and record["actor"] == {"kind": "admin_key", "id": "admin"}
        assert record["endpoint"] == "POST /admin/sessions/revoke" and record["profile_id"] == "admin"
    assert records[2]["evidence"] == {"session_id": session["session_id"], "outcome": "revoked"}
    assert "offboarding" not in json.dumps(records)


def test_revoke_is_idempotent(admin, open_session, audit_records):
    session = open_session()
    first = admin.admin_post("/admin/sessions/revoke", {"session_id": session["session_id"]}).json()
    second = admin.admin_post("/admin/sessions/revoke", {"session_id": session["session_id"]})
    assert second.status_code == 200
    assert second.json()["status"] == "already_revoked" and second.json()["revoked_at"] == first["revoked_at"]
    (decision,) = audit_records(second.json()["trace_id"])  # nothing to do: no action records
    assert decision["decision"] == "ALLOW"


def test_revoking_an_unknown_session_is_404_in_the_envelope(admin, audit_records):
    response = admin.admin_post("/admin/sessions/revoke", {"session_id": "sess_nope"})
    assert response.status_code == 404 and response.json()["reason_codes"] == ["NOT_FOUND"]
    (decision,) = audit_records(response.json()["trace_id"])
    assert decision["decision"] == "DENY" and decision["gate"] == "object"


@pytest.mark.parametrize(
    "payload", [{}, {"session_id": ""}, {"session_id": "x" * 41}, {"session_id": "s", "reason": "r" * 201}, {"session_id": "s", "extra": 1}]
)
def test_revoke_validates_its_body(admin, payload, audit_records):
    response = admin.admin_post("/admin/sessions/revoke", payload)
    assert response.status_code == 400 and response.json()["reason_codes"] == ["VALIDATION_ERROR"]
    assert audit_records(response.json()["trace_id"])[0]["gate"] == "P2"


def test_revoke_refuses_a_body_that_is_not_json(admin):
    response = admin.post("/admin/sessions/revoke", data=b"session_id=x", content_type="application/json", HTTP_X_ADMIN_KEY=ADMIN_KEY)
    assert response.status_code == 400 and response.json()["reason_codes"] == ["INVALID_JSON"]


def test_session_metadata_never_shows_the_token_or_its_digest(admin, open_session, api):
    session = open_session("u_42")
    api.process(README_G4, key=None, **bearer(session))
    response = admin.admin_get(f"/admin/sessions/{session['session_id']}")
    assert response.status_code == 200
    body = response.json()
    assert body["session_id"] == session["session_id"] and body["user_id"] == "u_42" and body["state"] == "active"
    assert body["created_by"] == "bootstrap" and body["last_seen_at"] and body["revoked_at"] is None
    text = response.content.decode()
    assert session["token"] not in text and hashlib.sha256(session["token"].encode()).hexdigest() not in text
    assert "token" not in body and "token_digest" not in body


def test_session_metadata_shows_revocation(admin, open_session):
    session = open_session()
    admin.admin_post("/admin/sessions/revoke", {"session_id": session["session_id"], "reason": "test"})
    body = admin.admin_get(f"/admin/sessions/{session['session_id']}").json()
    assert body["state"] == "revoked" and body["revoked_by"] == "admin_key:admin" and body["revoked_reason"] == "test"


def test_unknown_session_metadata_is_404(admin):
    response = admin.admin_get("/admin/sessions/sess_unknown")
    assert response.status_code == 404 and response.json()["reason_codes"] == ["NOT_FOUND"]


def test_manage_command_revokes_through_the_same_audited_service(open_session, api, audit_records):
    session = open_session()
    out = io.StringIO()
    call_command("sessions", "revoke", session["session_id"], "--reason", "cli", stdout=out)
    assert f"{session['session_id']}: revoked" in out.getvalue()
    revocation = [r for r in audit_records() if r["action"] == "revoke_session"]
    assert [r["status"] for r in revocation] == [None, "PENDING", "SUCCESS"]
    assert revocation[0]["actor"]["kind"] == "operator" and revocation[0]["endpoint"] == "manage.py sessions revoke"
    assert api.process(README_G4, key=None, **bearer(session)).json()["reason_codes"] == ["SESSION_REVOKED"]
    again = io.StringIO()
    call_command("sessions", "revoke", session["session_id"], stdout=again)
    assert "already_revoked" in again.getvalue()
    with pytest.raises(CommandError, match="NOT_FOUND"):
        call_command("sessions", "revoke", "sess_nope", stdout=io.StringIO())


@pytest.mark.parametrize("session_id", ["sess_x%00", "..%2f..%2fetc%2fpasswd", "x" * 41])
def test_malformed_session_ids_are_404_without_reaching_the_database(admin, session_id):
    response = admin.admin_get(f"/admin/sessions/{session_id}")
    assert response.status_code == 404 and response.json()["reason_codes"] == ["NOT_FOUND"]


def test_a_nul_byte_in_the_session_header_is_an_invalid_session(api, open_session, audit_records):
    session = open_session()
    response = api.process(README_G4, key=None, **bearer(session, session_id="sess_x\x00"))
    assert response.status_code == 403 and response.json()["reason_codes"] == ["SESSION_INVALID"]
    assert audit_records(response.json()["trace_id"])[0]["evidence"] == {"cause": "unknown_session"}

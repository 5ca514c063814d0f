"""Revoking sessions and API keys from the console: a confirmation page with a
reason, its own permission, the one revocation rule (sessions_app.services)
with the console user as actor, audited, effective on the next API request."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.test import Client

from conftest import bearer
from sessions_app.models import ApiKey, Session

SESSIONS = "/console/sessions_app/session/"
KEYS = "/console/sessions_app/apikey/"


def _page(session: dict[str, Any], view: str) -> str:
    """A session's console page, as the console links it: the admin quotes pks
    in URLs, so a raw "sess_26…" would reach it as "sess&…"."""
    return f"{SESSIONS}{quote(session['session_id'])}/{view}/"


def _action_records(audit_records: Any, action: str) -> list[dict[str, Any]]:
    return [r for r in audit_records() if r["event_type"] == "action_audit" and r["action"] == action]


@pytest.fixture
def revoker(console_user: Any, api: Any) -> Client:
    client = Client()
    client.force_login(console_user("rita", permissions=("sessions_app.view_session", "sessions_app.revoke_session",
                                                         "sessions_app.view_apikey", "sessions_app.revoke_apikey")))  # fmt: skip
    return client


def test_revoke_selected_asks_for_a_reason_then_revokes_and_the_api_refuses_the_session(
    revoker: Client, api: Any, open_session: Any, audit_records: Any
) -> None:
    session = open_session("u_777")
    other = open_session("u_888")
    ask = revoker.post(SESSIONS, {"action": "revoke_selected", "_selected_action": [session["session_id"]], "index": "0"})
    assert ask.status_code == 200
    page = ask.content.decode()
    assert "Are you sure" in page and session["session_id"] in page and 'name="reason"' in page
    assert Session.objects.get(pk=session["session_id"]).revoked_at is None  # nothing happened yet

    no_reason = {"action": "revoke_selected", "_selected_action": [session["session_id"]], "post": "yes", "reason": " "}
    assert revoker.post(SESSIONS, no_reason).status_code == 200  # the page again, with the error
    assert Session.objects.get(pk=session["session_id"]).revoked_at is None

    done = revoker.post(SESSIONS, {**no_reason, "reason": "laptop stolen"})
    assert done.status_code == 302
    row = Session.objects.get(pk=session["session_id"])
    assert row.revoked_at is not None and row.revoked_by == "console:rita" and row.revoked_reason == "laptop stolen"
    assert Session.objects.get(pk=other["session_id"]).revoked_at is None

    refused = api.process({"action": "process", "event_type": "test_event", "text": "hi"}, **bearer(session))
    assert refused.status_code == 403 and refused.json()["reason_codes"] == ["SESSION_REVOKED"]
    statuses = [(r["status"], r["actor"]) for r in _action_records(audit_records, "revoke_session")]
    assert statuses == [("PENDING", {"kind": "console", "id": "rita"}), ("SUCCESS", {"kind": "console", "id": "rita"})]


def test_the_revoke_button_on_a_session_page(revoker: Client, open_session: Any) -> None:
    session = open_session("u_999")
    page = revoker.get(_page(session, "change")).content.decode()
    assert 'id="revoke-button"' in page
    assert "Are you sure" in revoker.get(_page(session, "revoke")).content.decode()
    done = revoker.post(_page(session, "revoke"), {"reason": "left the company"})
    assert done.status_code == 302
    assert Session.objects.get(pk=session["session_id"]).revoked_reason == "left the company"
    again = revoker.get(_page(session, "change")).content.decode()
    assert 'id="revoke-button"' not in again  # no button on a revoked session


def test_a_session_id_the_admin_must_quote_is_revoked_by_its_button_and_shown_after(
    revoker: Client, open_session: Any
) -> None:
    """About 1 session id in 40 reads as an escape to the admin ("sess_26…" is
    "sess&…"): the revoke redirect once sent the console user to "does not
    exist" instead of the revoked session's page."""
    opened = open_session("u_quote")
    awkward = "sess_26" + opened["session_id"][7:]
    Session.objects.filter(pk=opened["session_id"]).update(session_id=awkward)
    page = revoker.get(_page({"session_id": awkward}, "change")).content.decode()
    (button,) = re.findall(r'href="([^"]+)" class="deletelink" id="revoke-button"', page)
    done = revoker.post(button, {"reason": "left the company"}, follow=True)
    assert done.redirect_chain[-1] == (_page({"session_id": awkward}, "change"), 302)
    shown = done.content.decode()
    assert awkward in shown and "doesn’t exist" not in shown and 'id="revoke-button"' not in shown
    assert Session.objects.get(pk=awkward).revoked_reason == "left the company"


def test_revoking_needs_the_revoke_permission(console_user: Any, open_session: Any) -> None:
    session = open_session("u_111")
    viewer = Client()
    viewer.force_login(console_user("val", permissions=("sessions_app.view_session",)))
    page = viewer.get(SESSIONS).content.decode()
    assert session["session_id"] in page and "revoke_selected" not in page
    assert 'id="revoke-button"' not in viewer.get(_page(session, "change")).content.decode()
    assert viewer.post(_page(session, "revoke"), {"reason": "x"}).status_code == 403
    viewer.post(SESSIONS, {"action": "revoke_selected", "_selected_action": [session["session_id"]], "post": "yes", "reason": "x"})
    assert Session.objects.get(pk=session["session_id"]).revoked_at is None


def test_sessions_filter_by_state_and_search_by_exact_user_or_session_id(revoker: Client, open_session: Any) -> None:
    active = open_session("u_aaa")
    revoked = open_session("u_bbb")
    revoker.post(_page(revoked, "revoke"), {"reason": "test"})
    listing = revoker.get(SESSIONS, {"state": "revoked"}).content.decode()
    assert revoked["session_id"] in listing and active["session_id"] not in listing
    listing = revoker.get(SESSIONS, {"state": "active"}).content.decode()
    assert active["session_id"] in listing and revoked["session_id"] not in listing
    assert active["session_id"] in revoker.get(SESSIONS, {"q": "u_aaa"}).content.decode()
    assert active["session_id"] not in revoker.get(SESSIONS, {"q": "u_aa"}).content.decode()
    assert active["session_id"] in revoker.get(SESSIONS, {"q": active["session_id"]}).content.decode()


def test_session_pages_never_show_the_token_digest(revoker: Client, open_session: Any) -> None:
    session = open_session("u_ccc")
    digest = Session.objects.get(pk=session["session_id"]).token_digest
    for url in (SESSIONS, _page(session, "change")):
        assert digest not in revoker.get(url).content.decode()


def test_revoking_an_api_key_is_audited_and_the_key_is_refused(revoker: Client, api: Any, audit_records: Any) -> None:
    from sessions_app.services import api_key_create

    row, key = api_key_create(name="ci")
    assert api.process({"action": "process", "event_type": "test_event", "text": "hi"}, key=key).status_code == 200
    ask = revoker.post(KEYS, {"action": "revoke_selected", "_selected_action": [row.pk], "index": "0"})
    assert "Are you sure" in ask.content.decode() and row.digest not in ask.content.decode()
    revoker.post(KEYS, {"action": "revoke_selected", "_selected_action": [row.pk], "post": "yes", "reason": "rotated"})
    assert ApiKey.objects.get(pk=row.pk).revoked_at is not None
    refused = api.process({"action": "process", "event_type": "test_event", "text": "hi"}, key=key)
    assert refused.status_code == 403 and refused.json()["reason_codes"] == ["GATE_DENIED_INVALID_API_KEY"]
    records = _action_records(audit_records, "revoke_api_key")
    assert [r["status"] for r in records] == ["PENDING", "SUCCESS"]
    assert records[-1]["actor"] == {"kind": "console", "id": "rita"}
    assert key not in json.dumps(audit_records())


def test_an_expired_session_is_listed_as_expired_not_active(revoker: Client, open_session: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    expired = open_session("u_old")
    Session.objects.filter(pk=expired["session_id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert expired["session_id"] in revoker.get(SESSIONS, {"state": "expired"}).content.decode()
    assert expired["session_id"] not in revoker.get(SESSIONS, {"state": "active"}).content.decode()

"""Rotating API keys and the admin key (issue 19): stored keys get an expiry,
so an old and a new key overlap during a rotation and the old one stops at
its expiry; the console shows which keys are expiring; the previous admin key
is accepted, under its own actor, while it is being rotated out."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.test import Client
from django.utils import timezone

from conftest import ADMIN_KEY
from sessions_app.models import ApiKey
from sessions_app.services import api_key_create, api_key_expire

PROCESS = {"action": "test_action"}


def test_an_old_and_a_new_key_overlap_until_the_old_one_expires(api, audit_records):
    _, old = api_key_create(name="client-a 2026")
    _, new = api_key_create(name="client-a 2027")
    prefix = old.split("_")[1]
    assert api_key_expire(prefix=prefix, expires_at=timezone.now() + timedelta(days=1))
    assert api.process(PROCESS, key=old).status_code == api.process(PROCESS, key=new).status_code == 200

    assert api_key_expire(prefix=prefix, expires_at=timezone.now())  # the overlap ends
    refused = api.process(PROCESS, key=old)
    assert refused.status_code == 403 and refused.json()["reason_codes"] == ["GATE_DENIED_INVALID_API_KEY"]
    assert api.process(PROCESS, key=new).status_code == 200
    audited = [(r["status"], r["evidence"].get("outcome")) for r in audit_records() if r["action"] == "expire_api_key" and r["status"]]
    assert audited == [("PENDING", None), ("SUCCESS", "expiry_set")] * 2


def test_an_expiry_is_only_ever_brought_forward(db, audit_log):
    row, _ = api_key_create(name="client-b")
    soon = timezone.now() + timedelta(hours=1)
    api_key_expire(prefix=row.prefix, expires_at=soon)
    api_key_expire(prefix=row.prefix, expires_at=soon + timedelta(days=30))
    assert ApiKey.objects.get(pk=row.pk).expires_at == soon


def test_a_key_created_with_an_expiry_works_until_then(api):
    row, key = api_key_create(name="contractor", expires_at=timezone.now() + timedelta(days=7))
    assert api.process(PROCESS, key=key).status_code == 200
    ApiKey.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api.process(PROCESS, key=key).status_code == 403


def test_the_console_shows_expiring_and_expired_keys(console_user: Any, api):
    client = Client()
    client.force_login(console_user("kim", permissions=("sessions_app.view_apikey",)))
    kept, _ = api_key_create(name="kept-key")
    rotating, _ = api_key_create(name="rotating-key")
    gone, _ = api_key_create(name="gone-key")
    api_key_expire(prefix=rotating.prefix, expires_at=timezone.now() + timedelta(days=3))
    api_key_expire(prefix=gone.prefix, expires_at=timezone.now())
    page = client.get("/console/sessions_app/apikey/").content.decode()
    assert "expires at" in page.lower()
    for state, row in (("expiring", rotating), ("expired", gone), ("active", kept)):
        listed = client.get(f"/console/sessions_app/apikey/?state={state}").content.decode()
        assert row.name in listed and all(o.name not in listed for o in (kept, rotating, gone) if o is not row), state


def test_the_previous_admin_key_works_under_its_own_actor_while_rotated_out(api, settings, audit_records):
    previous = "previous-admin-key-0123456789abcdef"
    assert api.get("/admin/audit/summary", HTTP_X_ADMIN_KEY=previous).status_code == 403
    settings.VERITTA_ADMIN_API_KEY_PREVIOUS = previous
    answered = api.get("/admin/audit/summary", HTTP_X_ADMIN_KEY=previous)
    assert answered.status_code == 200
    (decision,) = audit_records(answered.headers["X-Trace-ID"])
    assert decision["actor"] == {"kind": "admin_key", "id": "admin_previous"}
    current = api.get("/admin/audit/summary", HTTP_X_ADMIN_KEY=ADMIN_KEY)
    assert audit_records(current.headers["X-Trace-ID"])[0]["actor"] == {"kind": "admin_key", "id": "admin"}
    assert api.get("/admin/audit/summary", HTTP_X_ADMIN_KEY="not-" + previous).status_code == 403


def test_expire_key_reaches_a_running_server_at_once(app_server):
    key = app_server.manage("sessions", "create-key", "--name", "ops-rotation").stdout.strip()
    successor = app_server.manage("sessions", "create-key", "--name", "ops-rotation-2027").stdout.strip()
    headers = {"X-API-Key": key}
    assert app_server.post("/process", json=PROCESS, headers=headers).status_code == 200
    prefix = key.split("_")[1]
    app_server.manage("sessions", "expire-key", prefix, "--in-days", "1")
    listed = app_server.manage("sessions", "list-keys").stdout
    assert any(line.startswith(prefix) and "\texpiring " in line for line in listed.splitlines())
    assert app_server.post("/process", json=PROCESS, headers=headers).status_code == 200
    app_server.manage("sessions", "expire-key", prefix, "--in-days", "0")
    refused = app_server.post("/process", json=PROCESS, headers=headers)
    assert refused.status_code == 403 and json.loads(refused.text)["reason_codes"] == ["GATE_DENIED_INVALID_API_KEY"]
    assert app_server.post("/process", json=PROCESS, headers={"X-API-Key": successor}).status_code == 200

"""The shipped admin profile lists every action recorded under it.

Every admin record names `profile_id: admin` and the admin profile's hash:
an action the profile does not list would be a record citing a policy that
does not mention it. The admin API does not route by the profile's list (it
is its own executor), so nothing fails at run time when they drift: these
tests are what keeps them together."""

from __future__ import annotations

import json
import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from governance.profiles import profile_hash

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_ADMIN = ROOT / "governance" / "profiles" / "admin.json"
ADMIN_CONTEXT = re.compile(r'operator_context\(|profile_id="admin"')
# How admin code names its action before its first record (sessions_app/services.py).
NAMED_ACTION = re.compile(r'action_fields = \{"action": "([a-z_]+)"')


def shipped_admin() -> dict:
    return json.loads(SHIPPED_ADMIN.read_text())


def test_every_action_written_by_admin_code_is_in_the_shipped_admin_profile():
    actions: dict[str, str] = {}
    for path in sorted(ROOT.glob("*/**/*.py")):
        if path.parts[len(ROOT.parts)] in {"tests", ".venv", "bench"}:
            continue
        text = path.read_text()
        if ADMIN_CONTEXT.search(text):
            actions.update({name: str(path.relative_to(ROOT)) for name in NAMED_ACTION.findall(text)})
    assert {"revoke_session", "set_api_key_roles", "expire_api_key", "revoke_api_key", "load_profiles"} <= set(actions)
    missing = {name: where for name, where in actions.items() if name not in shipped_admin()["actions"]}
    assert missing == {}


@pytest.mark.django_db
def test_admin_api_and_commands_record_only_actions_the_admin_profile_lists(admin, open_session, audit_records):
    from sessions_app.models import ApiKey

    call_command("sessions", "create-key", "--name", "drift", stdout=StringIO(), stderr=StringIO())
    prefix = ApiKey.objects.get(name="drift").prefix
    session = open_session()
    assert admin.admin_post("/admin/sessions/revoke", {"session_id": session["session_id"]}).status_code == 200
    assert admin.admin_post(f"/admin/keys/{prefix}/roles", {"roles": ["auditor"]}).status_code == 200
    assert admin.admin_get(f"/admin/sessions/{session['session_id']}").status_code == 200
    call_command("sessions", "expire-key", prefix, "--in-days", "1", stdout=StringIO(), stderr=StringIO())
    call_command("sessions", "revoke-key", prefix, stdout=StringIO(), stderr=StringIO())

    records = [r for r in audit_records() if r["profile_id"] == "admin"]
    performed = {r["action"] for r in records if r.get("action")}
    assert performed == {"revoke_session", "set_api_key_roles", "expire_api_key", "revoke_api_key"}
    assert performed <= set(shipped_admin()["actions"])
    assert {r["profile_hash"] for r in records} == {profile_hash(shipped_admin())}

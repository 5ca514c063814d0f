"""Role rules in a profile (docs/AUTHORIZATION.md): `governance validate`
names every problem of them, and `governance explain --role` decides as a
principal holding those roles, with the pipeline's gate functions."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from governance.profile_schema import profile_problems

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "roles" / "profiles" / "default.json"


def example() -> dict:
    return json.loads(EXAMPLE.read_text())


def test_the_example_profile_is_valid_and_bad_role_rules_are_named():
    assert profile_problems(example()) == []
    document = example()
    document["roles"] = {
        "Bad Name": {"actions": ["noop"]},
        "ghost": {"actions": ["no_such_action"], "executors": "noop_v1", "approve": True},
        "narrow": {"actions": ["process"], "fields": {"text": {"type": "string", "max_length": -1}}},
    }
    problems = profile_problems(document)
    assert "roles.Bad Name: role name must match ^[a-z][a-z0-9_.-]{0,31}$" in problems
    assert "roles.ghost.approve: unknown key" in problems
    assert "roles.ghost.executors: must be a list of strings" in problems
    assert "roles.ghost.actions: 'no_such_action' is no action of this profile" in problems
    assert any(p.startswith("roles.narrow.fields.text.max_length") for p in problems)
    assert profile_problems({**example(), "roles": []}) == ["roles: must be an object of role rules, by role name"]


def explain(request: dict, *roles: str) -> dict:
    out = StringIO()
    args = ["explain", "--profile", str(EXAMPLE), "--request", json.dumps(request)]
    for role in roles:
        args += ["--role", role]
    call_command("governance", *args, stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.django_db
def test_explain_decides_per_role():
    stats = {"action": "process", "text": "hi", "operation": "stats"}
    allowed = explain(stats, "support_agent", "text_stats")
    assert allowed["decision"] == "ALLOW" and "authz:role:text_stats" in allowed["matched_rules"]
    assert allowed["roles"] == ["support_agent", "text_stats"]
    too_long = explain({**stats, "text": "x" * 257}, "text_stats")
    assert too_long["reason_codes"] == ["AUTHZ_DENIED"]
    assert too_long["evidence"]["refused_by"] == {"text_stats": "field_limit:text"}
    nobody = explain({"action": "noop"})
    assert nobody["gate"] == "authz" and nobody["evidence"] == {"principal_roles": [], "refused_by": {}}
    unknown_role = explain({"action": "noop"}, "auditor")
    assert unknown_role["evidence"]["refused_by"] == {"auditor": "role_not_in_profile"}
    assert explain({"action": "noop"}, "operator")["decision"] == "ALLOW"


@pytest.mark.django_db
def test_create_key_and_set_roles_refuse_a_bad_role_name_and_change_nothing():
    from sessions_app.models import ApiKey

    with pytest.raises(CommandError):
        call_command("sessions", "create-key", "--name", "x", "--role", "Not A Role", stdout=StringIO(), stderr=StringIO())
    assert not ApiKey.objects.exists()
    call_command("sessions", "create-key", "--name", "x", stdout=StringIO(), stderr=StringIO())
    key = ApiKey.objects.get()
    assert key.roles == ["operator"]  # the documented default
    with pytest.raises(CommandError):
        call_command("sessions", "set-roles", key.prefix, "--role", "UPPER", stdout=StringIO())
    key.refresh_from_db()
    assert key.roles == ["operator"]


@pytest.mark.django_db
def test_admin_api_reads_and_sets_roles_and_an_unknown_key_is_a_recorded_not_found(client, audit_records):
    from sessions_app.services import api_key_create
    from tests.settings import TEST_ENV

    admin = {"HTTP_X_ADMIN_KEY": TEST_ENV["VERITTA_ADMIN_API_KEY"]}
    row, _ = api_key_create(name="bot", roles=["support_agent"])
    read = client.get(f"/admin/keys/{row.prefix}/roles", **admin)
    assert read.status_code == 200 and read.json()["roles"] == ["support_agent"]
    for prefix in ("nosuchkey", "bad%00prefix"):
        missing = client.post(f"/admin/keys/{prefix}/roles", {"roles": []}, content_type="application/json", **admin)
        assert missing.status_code == 404 and missing.json()["reason_codes"] == ["NOT_FOUND"]
        (record,) = audit_records(missing.json()["trace_id"])
        assert (record["decision"], record["gate"]) == ("DENY", "object")
    bad = client.post(f"/admin/keys/{row.prefix}/roles", {"roles": ["Root!"]}, content_type="application/json", **admin)
    assert bad.status_code == 400
    row.refresh_from_db()
    assert row.roles == ["support_agent"]


@pytest.mark.django_db
def test_a_role_may_need_approval_where_another_runs_at_once(tmp_path):
    """`approval` in a role rule: that role asks for those actions only with
    four-eyes approval; a principal also holding a role that may run it at once
    runs it at once (roles add up)."""
    document = example()
    document["roles"]["support_agent"]["approval"] = {"noop": {"group": "supervisors", "approvals": 1, "expires_after_s": 600}}
    profile = tmp_path / "default.json"
    profile.write_text(json.dumps(document))

    def explain_with(*roles: str) -> dict:
        out = StringIO()
        args = ["explain", "--profile", str(profile), "--request", json.dumps({"action": "noop"})]
        for role in roles:
            args += ["--role", role]
        call_command("governance", *args, stdout=out)
        return json.loads(out.getvalue())

    held = explain_with("support_agent")
    assert held["http_status"] == 202 and held["executor"]["would_run"] is False
    assert "authz:role:support_agent" in held["matched_rules"] and "approval:required" in held["matched_rules"]
    at_once = explain_with("support_agent", "operator")
    assert at_once["http_status"] == 200 and at_once["executor"]["would_run"] is True
    assert "authz:role:operator" in at_once["matched_rules"] and "approval:required" not in at_once["matched_rules"]

    document["roles"]["text_stats"]["approval"] = {"noop": {"group": "g", "expires_after_s": 60}, "nope": {}}
    problems = profile_problems(document)
    assert "roles.text_stats.approval.noop: the role is not granted this action" in problems
    assert "roles.text_stats.approval.nope: is no action of this profile" in problems

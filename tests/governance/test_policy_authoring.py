"""`governance validate` and `governance explain`: explain agrees with the
live pipeline on every case of the gate tests (the same requests are sent to
both), and neither records nor executes anything."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from conftest import API_KEY, TEST_PROFILES_DIR, bearer
from tests.governance.test_process_gates import DENIALS, README_PROCESS, RUNBOOK_SMOKE

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DEFAULT = ROOT / "governance" / "profiles" / "default.json"
TEST_DEFAULT = TEST_PROFILES_DIR / "default.json"


def explain(tmp_path, profile: Path, body: bytes, *, key: str | None, content_type: str, capsys, headers: dict | None = None) -> dict:
    # The body goes through a file (it may not be UTF-8), removed at once: the
    # leak scan rightly refuses payload values left on disk.
    with tempfile.TemporaryDirectory() as directory:
        request = Path(directory) / "request.body"
        request.write_bytes(body)
        args = ["--profile", str(profile), "--request", f"@{request}", "--content-type", content_type, "--check-credentials"]
        if key is not None:
            args += ["--header", f"X-API-Key: {key}"]
        for meta, value in (headers or {}).items():  # the test client's HTTP_X_Y is header X-Y
            args += ["--header", f"{meta.removeprefix('HTTP_').replace('_', '-')}: {value}"]
        capsys.readouterr()
        call_command("governance", "explain", *args)
    return json.loads(capsys.readouterr().out)


def record_count() -> int:
    from audit.models import AuditIntake, AuditRecord

    return AuditRecord.objects.count() + AuditIntake.objects.count()


def assert_agree(api, audit_records, tmp_path, capsys, profile: Path, payload, headers: dict) -> dict:
    """Send one request to explain, then to the pipeline; their decisions must be equal."""
    headers = dict(headers)
    key = headers.pop("key", API_KEY)
    content_type = headers.pop("content_type", "application/json")
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    before = record_count()
    explained = explain(tmp_path, profile, body, key=key, content_type=content_type, capsys=capsys, headers=headers)
    assert record_count() == before, "explain recorded something"
    assert explained["executed"] is False and explained["recorded"] is False

    response = api.process(None, raw=body, key=key, content_type=content_type, **headers)
    decision = audit_records(response.json()["trace_id"])[0]
    lived = {
        "decision": decision["decision"],
        "gate": decision["gate"],
        "http_status": decision["http_status"],
        "reason_codes": decision["reason_codes"],
        "evidence": decision["evidence"],
        "matched_rules": [r for r in decision["matched_rules"] if r != "G10:within_limits"],
        "profile_hash": decision["profile_hash"],
    }
    said = {k: explained[k] for k in lived if k != "profile_hash"} | {"profile_hash": explained["profile"]["sha256"]}
    assert said == lived
    if explained["decision"] == "DENY":
        assert response.status_code == explained["http_status"]
    if explained["decision"] == "ALLOW":  # the answer is the executor's; the decision agreed
        result = response.json().get("result")
        ran = (result or {}).get("executor_id") or audit_records(response.json()["trace_id"])[1]["executor_id"]
        assert explained["executor"]["executor_id"] == ran
    else:
        assert explained["executor"] is None
    return explained


ALLOWED = [
    pytest.param(README_PROCESS, {}, id="allow-readme-process"),
    pytest.param(RUNBOOK_SMOKE, {}, id="allow-runbook-smoke"),
    pytest.param({"action": "process", "text": "Hello", "operation": "upper", "action_version": "1.0.0"}, {}, id="allow-versioned"),
]


@pytest.mark.parametrize(("payload", "headers"), [*ALLOWED, *[pytest.param(*p.values[:2], id=p.id) for p in DENIALS]])
def test_explain_agrees_with_the_pipeline_on_every_gate_case(api, audit_records, tmp_path, capsys, payload, headers):
    assert_agree(api, audit_records, tmp_path, capsys, SHIPPED_DEFAULT, payload, headers)


@pytest.mark.parametrize(
    "payload",
    [
        {"action": "orphan"},
        {"action": "needs_v2"},
        {"action": "needs_capability"},
        {"action": "counted", "count": 3, "flag": True},
        {"action": "counted", "count": 11},
        {"action": "counted", "count": True},
        {"action": "counted", "count": 10**400},
        {"action": "counted", "flag": "yes"},
        {"action": "slow"},
        {"action": "explode"},
    ],
)
def test_explain_agrees_with_the_pipeline_on_registry_and_field_rule_cases(api, test_profiles, audit_records, tmp_path, capsys, payload):
    assert_agree(api, audit_records, tmp_path, capsys, TEST_DEFAULT, payload, {})


def test_explain_agrees_on_a_profile_whose_gate_raises(api, test_profiles, audit_records, tmp_path, capsys, settings):
    settings.VERITTA_POLICY_PROFILE = "broken"
    explained = assert_agree(api, audit_records, tmp_path, capsys, TEST_PROFILES_DIR / "broken.json", {"action": "noop"}, {})
    assert explained["reason_codes"] == ["GATE_EXCEPTION"]
    assert "forbidden_fields: must be a list of strings" in explained["profile"]["problems"]


def test_explain_agrees_with_the_pipeline_on_another_keys_session(api, open_session, audit_records, tmp_path, capsys):
    from sessions_app.services import api_key_create

    _, other_key = api_key_create(name="other", roles=["operator", "auditor"])
    session = open_session(key=other_key)  # opened by another key than the one that sends it
    explained = assert_agree(
        api, audit_records, tmp_path, capsys, SHIPPED_DEFAULT, README_PROCESS, {"key": API_KEY, **bearer(session)}
    )
    assert explained["reason_codes"] == ["AUTHZ_DENIED"]
    assert explained["evidence"]["cause"] == "session_of_another_key" and "principal_roles" in explained["evidence"]


def test_explain_runs_no_executor(api, test_profiles, tmp_path, capsys):
    from tests.executors import CountingExecutor

    runs = CountingExecutor.runs
    explained = explain(tmp_path, TEST_DEFAULT, b'{"action": "count_me"}', key=API_KEY, content_type="application/json", capsys=capsys)
    assert explained["decision"] == "ALLOW" and explained["executor"]["executor_id"] == "counting_v1"
    assert CountingExecutor.runs == runs


def test_explain_without_credentials_decides_the_policy_and_says_what_it_skipped(db, capsys):
    call_command("governance", "explain", "--profile", str(SHIPPED_DEFAULT), "--request", json.dumps(README_PROCESS))
    explained = json.loads(capsys.readouterr().out)
    assert explained["decision"] == "ALLOW" and explained["executor"]["executor_id"] == "text_process_v1"
    skipped = {s["gate"]: s["result"] for s in explained["gates"] if s["result"] != "allow"}
    assert set(skipped) == {"G0/G2/G4", "G10"} and all(v.startswith("not evaluated") for v in skipped.values())


def test_validate_accepts_the_shipped_profiles(capsys):
    for path in sorted((ROOT / "governance" / "profiles").glob("*.json")):
        call_command("governance", "validate", str(path))
        assert ": ok, profile " in capsys.readouterr().out


def test_validate_names_every_problem_by_field(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({
        "profile_id": "",
        "version": "1",
        "surprise": True,
        "limits": {"max_fields": 0},
        "common_fields": {"action": {"type": "string"}, "n": {"type": "integer", "min": 5, "max": 1}},
        "actions": {
            "process": {"executor": "text_process_v1", "capabilities": ["net.call"], "fields": {"text": {"type": "text"}}},
            "ghost": {"executor": "no_such_v1", "min_executor_version": "one"},
            "Bad Name": {"executor": "noop_v1"},
        },
    }))
    with pytest.raises(CommandError) as refused:
        call_command("governance", "validate", str(bad))
    message = str(refused.value)
    for expected in [
        "surprise: unknown key",
        "profile_id: required, a non-empty string",
        "limits.max_fields: must be a positive integer",
        "common_fields.n.min: is greater than max",
        "actions.process.fields.text.type: must be one of",
        "actions.process.capabilities: 'text_process_v1' lacks ['net.call']",
        "actions.ghost.min_executor_version: must be a semantic version",
        "actions.ghost.executor: 'no_such_v1' is not registered here",
        "actions.Bad Name: action name must match",
    ]:
        assert expected in message, (expected, message)


def test_validate_exits_nonzero_from_the_shell(tmp_path):
    from tests.support.appserver import manage, server_env

    env = server_env(tmp_path, f"sqlite:///{tmp_path / 'unused.sqlite3'}")
    result = manage(env, "governance", "validate", str(TEST_PROFILES_DIR / "broken.json"), check=False)
    assert result.returncode != 0 and "forbidden_fields: must be a list of strings" in result.stderr


def test_loading_a_new_profile_version_is_an_audited_action_with_its_actor(db, audit_log, settings, tmp_path, audit_records):
    import getpass

    from governance.profiles import shipped_fingerprint
    from governance.selectors import profile_cache_clear

    shipped = ROOT / "governance" / "profiles"
    call_command("governance", "load-profiles")  # the first set of an empty database
    call_command("governance", "load-profiles")  # nothing changes: nothing to record
    assert audit_records() == []

    directory = tmp_path / "profiles"
    directory.mkdir()
    (directory / "admin.json").write_text((shipped / "admin.json").read_text())
    changed = json.loads((shipped / "default.json").read_text()) | {"version": "1.1.0"}
    (directory / "default.json").write_text(json.dumps(changed))
    before, after = shipped_fingerprint(shipped), shipped_fingerprint(directory)
    settings.VERITTA_PROFILES_DIR = directory
    settings.VERITTA_PROFILES_FINGERPRINT = f"{before},{after}"
    profile_cache_clear()
    call_command("governance", "load-profiles")

    decision, pending, success = audit_records()
    assert decision["decision"] == "ALLOW" and decision["endpoint"] == "manage.py governance load-profiles"
    assert [pending["status"], success["status"]] == ["PENDING", "SUCCESS"]
    assert {r["trace_id"] for r in (decision, pending, success)} == {decision["trace_id"]}
    assert success["actor"] == {"kind": "operator", "id": getpass.getuser()[:64]}
    assert success["action"] == "load_profiles"
    assert success["evidence"]["fingerprint_before"] == before and success["evidence"]["fingerprint_after"] == after
    assert success["evidence"]["activated"] == ["default 1.1.0"]


@pytest.mark.parametrize("case", ["valid", "wrong_token", "wrong_user", "missing_session_header", "not_bearer", "revoked"])
def test_explain_agrees_with_the_pipeline_on_session_gate_cases(api, open_session, audit_records, tmp_path, capsys, case):
    """G4, read-only in explain: the same answer, and the session is not marked seen."""
    from conftest import bearer
    from sessions_app.models import Session
    from sessions_app.services import session_revoke

    session = open_session()
    headers = {
        "valid": bearer(session),
        "wrong_token": bearer(session, token="vs_" + "x" * 40),
        "wrong_user": bearer(session, user_id="u_someone_else"),
        "missing_session_header": {k: v for k, v in bearer(session).items() if k != "HTTP_X_VERITTA_SESSION_ID"},
        "not_bearer": {**bearer(session), "HTTP_AUTHORIZATION": "Basic abc"},
        "revoked": bearer(session),
    }[case]
    if case == "revoked":
        session_revoke(session_id=session["session_id"], actor={"kind": "operator", "id": "test"}, reason="test")
    never_seen = Session.objects.filter(session_id=session["session_id"])
    never_seen.update(last_seen_at=None)
    explained = explain(tmp_path, SHIPPED_DEFAULT, json.dumps(RUNBOOK_SMOKE).encode(), key=None,
                        content_type="application/json", capsys=capsys, headers=headers)
    assert never_seen.get().last_seen_at is None  # explain wrote nothing, not even "seen"
    assert_agree(api, audit_records, tmp_path, capsys, SHIPPED_DEFAULT, RUNBOOK_SMOKE, {"key": None, **headers})
    assert explained["decision"] == ("ALLOW" if case == "valid" else "DENY")
    if case == "valid":
        assert never_seen.get().last_seen_at is not None  # where the pipeline does mark it

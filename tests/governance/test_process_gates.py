"""Every gate of POST /process, allow and deny, through the Django test client:
status, reason code, envelope, and the audit records each answer leaves."""

from __future__ import annotations

import json
import uuid

import pytest

from audit.records import entry_hash
from conftest import API_KEY

README_PROCESS = {"action": "process", "event_type": "test_event", "text": "Hello World"}
RUNBOOK_SMOKE = {"action": "test_action", "event_type": "test_event"}


def test_readme_process_example_succeeds_with_receipt(api, audit_records):
    response = api.process(README_PROCESS)
    assert response.status_code == 200
    body = response.json()
    assert body["status_code"] == 200
    assert body["result"] == {
        "action": "process",
        "status": "SUCCESS",
        "executor_id": "text_process_v1",
        "executor_version": "1.0.0",
        "output": {"operation": "normalize", "characters": 11, "words": 2, "text": "Hello World"},
    }
    records = audit_records(body["trace_id"])
    assert [(r["event_type"], r["decision"], r["status"]) for r in records] == [
        ("decision_audit", "ALLOW", None),
        ("action_audit", None, "PENDING"),
        ("action_audit", None, "SUCCESS"),
    ]
    assert body["audit"] == {
        "seq": records[-1]["seq"],
        "record_hash": records[-1]["record_hash"],
        "entry_hash": entry_hash(records[-1]),
    }
    assert response["X-Trace-ID"] == body["trace_id"]


def test_runbook_smoke_action_runs_noop_executor(api):
    response = api.process(RUNBOOK_SMOKE)
    assert response.status_code == 200
    assert response.json()["result"]["executor_id"] == "noop_v1"


def test_curl_default_form_content_type_is_accepted_for_json_bodies(api):
    # `curl -d '{...}'` without -H sends application/x-www-form-urlencoded.
    response = api.process(RUNBOOK_SMOKE, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200


def test_three_records_share_trace_id_input_digest_actor_and_profile(api, audit_records):
    body = api.process(README_PROCESS).json()
    records = audit_records(body["trace_id"])
    assert len(records) == 3
    for key in ("trace_id", "input_digest", "digest_kind", "actor", "profile_id", "profile_hash", "client"):
        assert len({json.dumps(r[key]) for r in records}) == 1, key
    assert records[0]["digest_kind"] == "json"
    assert records[0]["profile_hash"] and len(records[0]["profile_hash"]) == 64
    assert records[0]["actor"] == {"kind": "api_key", "id": "bootstrap"}
    assert records[2]["output_digest"] and records[1]["output_digest"] is None
    assert records[1]["reason_codes"] == ["EXECUTION_ATTEMPT"]


def test_input_digest_is_sha256_of_canonical_json(api, audit_records):
    from veritta_site.canonical import digest_of

    body = api.process(README_PROCESS, raw=b'{ "text":"Hello World", "event_type":"test_event","action":"process"}').json()
    assert audit_records(body["trace_id"])[0]["input_digest"] == digest_of(README_PROCESS)


def test_matched_rules_list_every_rule_that_passed(api, audit_records):
    body = api.process(README_PROCESS).json()
    rules = audit_records(body["trace_id"])[0]["matched_rules"]
    assert rules[:5] == ["P0:size_within_limit", "G0:credential_present", "G2:api_key_valid", "G10:within_limits", "P2:payload_valid"]
    assert "profile:action_allowed" in rules and "registry:capabilities" in rules


def test_client_trace_id_is_kept_as_parent_never_as_the_trace_id(api, audit_records):
    client_id = str(uuid.uuid4())
    response = api.process(RUNBOOK_SMOKE, HTTP_X_TRACE_ID=client_id)
    trace = response.json()["trace_id"]
    assert trace == response["X-Trace-ID"] and trace != client_id and uuid.UUID(trace).version == 4
    assert {r["parent_trace"] for r in audit_records(trace)} == {client_id}
    assert audit_records(client_id) == []


def test_traceparent_is_the_parent_when_both_are_sent(api, audit_records):
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    response = api.process(RUNBOOK_SMOKE, HTTP_X_TRACE_ID=str(uuid.uuid4()), HTTP_TRACEPARENT=parent)
    assert {r["parent_trace"] for r in audit_records(response.json()["trace_id"])} == {parent}


@pytest.mark.parametrize("header", ["not-a-uuid", "{" + "0" * 32 + "}", "x\r\nSet-Cookie: a=b", "a" * 500])
def test_invalid_trace_id_header_is_not_recorded(api, audit_records, header):
    response = api.process(RUNBOOK_SMOKE, HTTP_X_TRACE_ID=header)
    trace = response.json()["trace_id"]
    assert trace != header
    assert uuid.UUID(trace).version == 4
    assert {r["parent_trace"] for r in audit_records(trace)} == {None}


# (payload or raw body, headers, expected status, expected code, deciding gate)
DENIALS = [
    pytest.param({"action": "test"}, {"key": None}, 403, "MISSING_API_KEY", "G0", id="G0-missing-key"),
    pytest.param(RUNBOOK_SMOKE, {"key": "wrong-key"}, 403, "GATE_DENIED_INVALID_API_KEY", "G2", id="G2-bad-key"),
    pytest.param(RUNBOOK_SMOKE, {"key": API_KEY[:-1]}, 403, "GATE_DENIED_INVALID_API_KEY", "G2", id="G2-prefix-key"),
    pytest.param(b"not json", {}, 400, "INVALID_JSON", "P2", id="P2-not-json"),
    pytest.param(b"[1, 2]", {}, 400, "INVALID_JSON", "P2", id="P2-array"),
    pytest.param(b"", {}, 400, "INVALID_JSON", "P2", id="P2-empty"),
    pytest.param(b'{"action":"noop","action":"process"}', {}, 400, "INVALID_JSON", "P2", id="P2-duplicate-keys"),
    pytest.param(b'{"action":"noop","n":NaN}', {}, 400, "INVALID_JSON", "P2", id="P2-nan"),
    pytest.param(b'{"action":"\xff"}', {}, 400, "INVALID_JSON", "P2", id="P2-invalid-utf8"),
    pytest.param(b"[" * 3000 + b"]" * 3000, {}, 400, "INVALID_JSON", "P2", id="P2-deep-nesting"),
    pytest.param({"event_type": "x"}, {}, 400, "VALIDATION_ERROR", "P2", id="P2-no-action"),
    pytest.param({"action": 7}, {}, 400, "VALIDATION_ERROR", "P2", id="P2-action-not-string"),
    pytest.param({"action": "noop", "event_type": 1}, {}, 400, "VALIDATION_ERROR", "P2", id="P2-event-type-not-string"),
    pytest.param(RUNBOOK_SMOKE, {"content_type": "application/xml"}, 415, "UNSUPPORTED_MEDIA_TYPE", "P2", id="P2-xml"),
    pytest.param({"action": "test"}, {}, 403, "PROFILE_ACTION_MISMATCH", "profile", id="profile-action"),
    pytest.param({"action": "process", "is_admin": True}, {}, 403, "ADMIN_SIGNAL_FORBIDDEN", "profile", id="profile-admin"),
    pytest.param({"action": "process", "callback_url": "x"}, {}, 403, "EXTERNAL_FIELDS_NOT_ALLOWED", "profile", id="profile-external"),
    pytest.param({"action": "process", "colour": "red"}, {}, 403, "UNKNOWN_FIELDS_PRESENT", "profile", id="profile-unknown"),
    pytest.param({"action": "process", "text": "x" * 4097}, {}, 403, "LIMIT_EXCEEDED", "profile", id="profile-length"),
    pytest.param({"action": "process", "text": 5}, {}, 400, "VALIDATION_ERROR", "profile", id="profile-type"),
    pytest.param({"action": "process", "operation": "rot13"}, {}, 400, "VALIDATION_ERROR", "profile", id="profile-enum"),
    pytest.param({"action": "process", "action_version": "1.x"}, {}, 400, "ACTION_VERSION_INVALID", "registry", id="registry-version-invalid"),
    pytest.param({"action": "process", "action_version": "2.0.0"}, {}, 409, "EXECUTOR_VERSION_MISMATCH", "registry", id="registry-version-newer"),
]


@pytest.mark.parametrize(("payload", "headers", "status", "code", "gate"), DENIALS)
def test_each_gate_denies_with_its_status_code_and_one_deny_record(api, audit_records, payload, headers, status, code, gate):
    headers = dict(headers)
    raw = payload if isinstance(payload, bytes) else None
    response = api.process(None if raw is not None else payload, raw=raw, **headers)
    assert response.status_code == status
    envelope = response.json()
    assert envelope["reason_codes"] == [code]
    records = audit_records(envelope["trace_id"])
    decision = records[0]
    assert (decision["event_type"], decision["decision"], decision["gate"]) == ("decision_audit", "DENY", gate)
    assert decision["reason_codes"] == [code] and decision["http_status"] == status
    assert decision["profile_hash"]
    if gate == "registry":
        assert [r["status"] for r in records[1:]] == ["BLOCKED"]
    else:
        assert len(records) == 1


def test_payload_over_limit_is_refused_before_reading(api, audit_records, settings):
    settings.VERITTA_MAX_PAYLOAD_SIZE = 64
    response = api.process({"action": "process", "text": "x" * 100})
    assert response.status_code == 413
    (decision,) = audit_records(response.json()["trace_id"])
    assert decision["gate"] == "P0" and decision["digest_kind"] == "unread" and decision["input_digest"] is None
    assert decision["evidence"] == {"limit": 64, "content_length": len(json.dumps({"action": "process", "text": "x" * 100}))}


def test_non_json_body_is_digested_as_raw_bytes(api, audit_records):
    import hashlib

    response = api.process(None, raw=b"plain words")
    (decision,) = audit_records(response.json()["trace_id"])
    assert decision["digest_kind"] == "raw"
    assert decision["input_digest"] == hashlib.sha256(b"plain words").hexdigest()


def test_evidence_names_fields_never_values(api, audit_records):
    response = api.process({"action": "process", "secret_note": "VALUE-THAT-MUST-NOT-LEAK"})
    envelope = response.json()
    (decision,) = audit_records(envelope["trace_id"])
    from veritta_site.redact import keyed_digest

    # An unknown field's name is the client's text too: a keyed digest in the trail.
    assert decision["evidence"] == {
        "field_digests": [keyed_digest("field_", "secret_note")],
        "count": 1,
        "principal_roles": ["operator"],  # the bootstrap key's (docs/AUTHORIZATION.md)
    }
    assert envelope["details"] == {"fields": ["secret_note"]}
    assert "VALUE-THAT-MUST-NOT-LEAK" not in json.dumps(envelope) + json.dumps(decision)
    assert "secret_note" not in json.dumps(decision)


def test_unknown_action_name_is_not_stored(api, audit_records):
    response = api.process({"action": "drop_tables_of_customer_ana"})
    (decision,) = audit_records(response.json()["trace_id"])
    assert decision["action"] is None
    assert decision["evidence"] == {"field": "action", "principal_roles": ["operator"]}


def test_bootstrap_key_unset_at_request_time_denies_500_and_is_audited(api, audit_records, settings):
    settings.VERITTA_BETA_API_KEY = ""
    response = api.process(RUNBOOK_SMOKE)
    assert response.status_code == 500
    assert response.json()["reason_codes"] == ["SERVER_MISCONFIGURED"]
    (decision,) = audit_records(response.json()["trace_id"])
    assert decision["decision"] == "DENY" and decision["evidence"] == {"setting": "VERITTA_BETA_API_KEY"}

"""The ten auditability gaps of seed 002 (sections 5 and 6), each closed and
each with a test named after it."""

from __future__ import annotations

import hashlib

import pytest

from tests.support.receipts import committed_statuses

SMOKE = {"action": "test_action", "event_type": "test_event"}


def test_gap01_non_json_payload_still_gets_one_consistent_input_digest(api, audit_records):
    body = b"\x00\x01 not json at all"
    response = api.process(None, raw=body)
    (decision,) = audit_records(response.json()["trace_id"])
    assert decision["digest_kind"] == "raw"
    assert decision["input_digest"] == hashlib.sha256(body).hexdigest()


def test_gap02_audit_write_failure_refuses_the_request_and_runs_nothing(api, test_profiles, audit_records, settings, tmp_path):
    from tests.executors import CountingExecutor

    runs_before = CountingExecutor.runs
    settings.VERITTA_AUDIT_LOG_PATH = tmp_path  # a directory: the mirror cannot be written
    response = api.process({"action": "count_me"})
    assert response.status_code == 503 and response.json()["reason_codes"] == ["AUDIT_SINK_FAILED"]
    assert CountingExecutor.runs == runs_before
    assert audit_records(response.json()["trace_id"]) == []  # nothing half-written stays


def test_gap03_trace_id_is_the_same_in_every_record_of_a_request(api, audit_records):
    trace = api.process(SMOKE).json()["trace_id"]
    records = audit_records(trace)
    assert len(records) == 3 and {r["trace_id"] for r in records} == {trace}


def test_gap04_input_digest_is_computed_once_and_shared(api, audit_records):
    trace = api.process(SMOKE).json()["trace_id"]
    assert len({r["input_digest"] for r in audit_records(trace)}) == 1


def test_gap05_pending_is_committed_before_the_executor_runs(app_server_with_test_profiles):
    response = app_server_with_test_profiles.post("/process", json={"action": "witness"}, headers=_key())
    assert response.status_code == 200
    assert response.json()["result"]["output"] == {"pending_seen": True}


def test_gap05_a_deny_is_committed_before_its_answer(app_server_with_test_profiles):
    server = app_server_with_test_profiles
    response = server.post("/process", json={"action": "noop"}, headers={"X-API-Key": "vk_not-a-key"})
    assert response.status_code == 403
    # Read at once, over a connection of our own: no sequencer has had to run.
    assert committed_statuses(server.database_url, response.json()["trace_id"]) == [("decision_audit", "DENY", None)]


@pytest.mark.parametrize("payload", [SMOKE, {"action": "nope"}, {"event_type": "x"}])
def test_gap06_profile_hash_is_never_empty(api, audit_records, payload):
    trace = api.process(payload).json()["trace_id"]
    assert all(len(r["profile_hash"]) == 64 for r in audit_records(trace))


def test_gap07_matched_rules_record_what_passed(api, audit_records):
    trace = api.process({"action": "process", "colour": "red"}).json()["trace_id"]
    (decision,) = audit_records(trace)
    assert "profile:action_allowed" in decision["matched_rules"]
    assert "profile:known_fields" not in decision["matched_rules"]


def test_gap08_every_action_record_has_the_same_schema(api, test_profiles, audit_records):
    from audit.records import RECORD_FIELDS

    traces = [api.process({"action": a}).json()["trace_id"] for a in ("noop", "orphan", "explode", "slow")]
    actions = [r for t in traces for r in audit_records(t) if r["event_type"] == "action_audit"]
    assert {r["status"] for r in actions} == {"PENDING", "SUCCESS", "BLOCKED", "FAILED"}
    assert all(tuple(sorted(r)) == tuple(sorted(RECORD_FIELDS)) for r in actions)


def test_gap09_denials_record_their_evidence(api, audit_records):
    trace = api.process({"action": "process", "text": "x" * 5000}).json()["trace_id"]
    (decision,) = audit_records(trace)
    assert decision["evidence"] == {"field": "text", "limit": "max_length", "max": 4096, "principal_roles": ["operator"]}


def test_gap10_a_failing_gate_is_recorded_with_its_exception_class(api, test_profiles, audit_records, settings):
    settings.VERITTA_POLICY_PROFILE = "broken"
    trace = api.process({"action": "noop"}).json()["trace_id"]
    (decision,) = audit_records(trace)
    assert decision["reason_codes"] == ["GATE_EXCEPTION"] and decision["evidence"]["exc_class"] == "TypeError"


def _key() -> dict[str, str]:
    from conftest import API_KEY

    return {"X-API-Key": API_KEY}

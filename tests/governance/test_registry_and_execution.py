"""Registry denials (BLOCKED) and executor outcomes (SUCCESS/FAILED) with the
test profile set and test executors."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("action", "status", "code"),
    [
        ("orphan", 422, "UNKNOWN_ACTION"),
        ("needs_v2", 409, "EXECUTOR_VERSION_MISMATCH"),
        ("needs_capability", 409, "CAPABILITY_MISMATCH"),
    ],
)
def test_registry_denial_is_blocked_action_in_the_same_schema(api, test_profiles, audit_records, action, status, code):
    response = api.process({"action": action})
    assert response.status_code == status and response.json()["reason_codes"] == [code]
    decision, blocked = audit_records(response.json()["trace_id"])
    assert decision["decision"] == "DENY" and decision["gate"] == "registry"
    assert blocked["status"] == "BLOCKED" and blocked["reason_codes"] == [code] and blocked["action"] == action
    assert set(blocked) == set(decision)  # one schema for every record


def test_executor_timeout_is_504_and_failed_record(api, test_profiles, audit_records):
    response = api.process({"action": "slow"})
    assert response.status_code == 504 and response.json()["reason_codes"] == ["EXECUTOR_TIMEOUT"]
    statuses = [(r["status"], r["reason_codes"]) for r in audit_records(response.json()["trace_id"])[1:]]
    assert statuses == [("PENDING", ["EXECUTION_ATTEMPT"]), ("FAILED", ["EXECUTOR_TIMEOUT"])]


def test_executor_exception_is_500_with_exception_class_in_evidence(api, test_profiles, audit_records):
    response = api.process({"action": "explode"})
    assert response.status_code == 500 and response.json()["reason_codes"] == ["EXECUTOR_FAILED"]
    failed = audit_records(response.json()["trace_id"])[-1]
    assert failed["status"] == "FAILED" and failed["evidence"] == {"exc_class": "RuntimeError"}
    assert "blew up" not in response.content.decode()


def test_executor_returning_non_object_fails_closed(api, test_profiles, audit_records):
    response = api.process({"action": "bad_output"})
    assert response.status_code == 500
    assert audit_records(response.json()["trace_id"])[-1]["evidence"] == {"exc_class": "TypeError"}


def test_gate_that_raises_denies_with_gate_exception(api, test_profiles, audit_records, settings):
    settings.VERITTA_POLICY_PROFILE = "broken"
    response = api.process({"action": "noop"})
    assert response.status_code == 500 and response.json()["reason_codes"] == ["GATE_EXCEPTION"]
    (decision,) = audit_records(response.json()["trace_id"])
    assert decision["decision"] == "DENY" and decision["gate"] == "profile"
    assert decision["evidence"] == {"gate": "profile", "exc_class": "TypeError", "principal_roles": ["operator"]}


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"count": 3, "flag": True}, 200, None),
        ({"count": 11}, 403, "LIMIT_EXCEEDED"),
        ({"count": True}, 400, "VALIDATION_ERROR"),
        ({"count": 10**400}, 403, "LIMIT_EXCEEDED"),
        ({"flag": "yes"}, 400, "VALIDATION_ERROR"),
    ],
)
def test_integer_and_boolean_field_rules(api, test_profiles, fields, status, code):
    response = api.process({"action": "counted", **fields})
    assert response.status_code == status
    if code:
        assert response.json()["reason_codes"] == [code]


def test_executor_cannot_mutate_the_payload(test_profiles):
    from types import MappingProxyType

    from governance.executors import ActionRequest

    request = ActionRequest(action="noop", payload=MappingProxyType({"a": 1}), trace_id="t", deadline=0)
    with pytest.raises(TypeError):
        request.payload["a"] = 2  # type: ignore[index]

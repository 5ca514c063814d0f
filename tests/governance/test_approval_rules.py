"""Four-eyes approval rules in a profile (docs/APPROVALS.md): validate names
every problem of an `approval`, and explain says which requests would wait."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from conftest import TEST_PROFILES_DIR

PAY_PROFILE = TEST_PROFILES_DIR / "default.json"


def pay_only_profile(tmp_path):
    # The test profile set keeps broken rules on purpose; this one holds only `pay`.
    document = json.loads(PAY_PROFILE.read_text())
    document["actions"] = {"pay": document["actions"]["pay"]}
    path = tmp_path / "pay.json"
    path.write_text(json.dumps(document))
    return path, document


def test_validate_accepts_an_approval_rule(test_profiles, tmp_path, capsys):
    call_command("governance", "validate", str(pay_only_profile(tmp_path)[0]))
    assert ": ok, profile " in capsys.readouterr().out


def test_validate_names_every_problem_of_an_approval_rule(test_profiles, tmp_path):
    bad, document = pay_only_profile(tmp_path)
    document["actions"]["pay"]["approval"] = {
        "approvals": 0,
        "expires_after_s": -1,
        "when": {"amount": {"over": 5}, "payee": {"gt": "x"}},
        "visible_fields": ["amount", "secret_note"],
        "surprise": 1,
    }
    bad.write_text(json.dumps(document))
    with pytest.raises(CommandError) as refused:
        call_command("governance", "validate", str(bad))
    message = str(refused.value)
    for expected in [
        "actions.pay.approval.surprise: unknown key",
        "actions.pay.approval.group: required",
        "actions.pay.approval.approvals: must be an integer from 1 to 10",
        "actions.pay.approval.expires_after_s: required",
        "actions.pay.approval.when.amount.over: unknown condition",
        "actions.pay.approval.when.payee.gt: must be an integer",
        "actions.pay.approval.visible_fields: ['secret_note'] are not fields of this action",
    ]:
        assert expected in message, (expected, message)


def explained(db, capsys, payload: dict) -> dict:
    call_command("governance", "explain", "--profile", str(PAY_PROFILE), "--request", json.dumps(payload))
    return json.loads(capsys.readouterr().out)


def test_explain_says_a_request_over_the_limit_would_wait_for_approval(test_profiles, capsys):
    held = explained(None, capsys, {"action": "pay", "amount": 5000, "payee": "acme"})
    assert held["decision"] == "ALLOW", (held["reason_codes"], held["evidence"], held["gate"])
    assert held["http_status"] == 202
    assert held["executor"]["would_run"] is False and "approval:required" in held["matched_rules"]
    assert held["approval"] == {"group": "approvers", "approvals": 2, "expires_after_s": 600, "visible_fields": ["action", "amount", "payee"]}


def test_explain_lets_a_request_under_the_limit_run_at_once(test_profiles, capsys):
    at_once = explained(None, capsys, {"action": "pay", "amount": 1000, "payee": "acme"})
    assert at_once["http_status"] == 200 and at_once["executor"]["would_run"] is True and at_once["approval"] is None


def test_explain_holds_a_request_missing_the_conditions_field(test_profiles, capsys):
    # Doubt holds: a condition on a field the request does not carry asks a person.
    held = explained(None, capsys, {"action": "pay", "payee": "acme"})
    assert held["http_status"] == 202 and held["approval"]["approvals"] == 2

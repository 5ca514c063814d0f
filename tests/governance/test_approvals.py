"""Four-eyes approval through the pipeline and the admin API (docs/APPROVALS.md):
a request over the limit is held (202, nothing run), runs once after two
distinct approvers, never after a rejection or expiry; the requester cannot
approve; the held payload is sealed, apart from the chain, and deleted."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command

from conftest import API_KEY, bearer

BIG = {"action": "pay", "amount": 5000, "payee": "acme-corp-7731", "memo": "invoice-8842-secret-memo"}


@pytest.fixture
def approvers(test_profiles):
    group = Group.objects.create(name="approvers")
    people = {}
    for name in ("alice", "bob", "carol", "u_12345"):
        people[name] = User.objects.create_user(name, password="x-" + name * 4)
        people[name].groups.add(group)
    User.objects.create_user("mallory", password="x-mallory")  # not in the group
    return people


def pay_runs(audit_log: Path) -> list[str]:
    runs = Path(audit_log).with_name("pay_runs.log")
    return runs.read_text().split() if runs.exists() else []


def decide(admin, approval_id: str, verdict: str, approver: str, reason: str = "checked the invoice"):
    return admin.admin_post(f"/admin/approvals/{approval_id}/{verdict}", {"approver": approver, "reason": reason})


def codes(records: list[dict]) -> list[str]:
    return [(r.get("status") or r["decision"]) + ":" + ",".join(r["reason_codes"]) for r in records]


def test_small_payment_runs_at_once(api, approvers, audit_log):
    response = api.process({"action": "pay", "amount": 10, "payee": "acme"})
    assert response.status_code == 200 and response.json()["result"]["output"]["paid"] is True


def test_held_then_approved_by_two_people_runs_once_with_its_whole_story(api, admin, approvers, audit_log, audit_records):
    from governance.models import ApprovalRequest

    held = api.process(BIG)
    assert held.status_code == 202, held.content
    approval = held.json()["approval"]
    assert approval["status"] == "WAITING" and approval["approvals_needed"] == 2
    trace = held.json()["trace_id"]
    assert pay_runs(audit_log) == []
    row = ApprovalRequest.objects.get(public_id=approval["id"])
    assert row.sealed_payload and b"acme-corp-7731" not in bytes(row.sealed_payload)

    first = decide(admin, approval["id"], "approve", "alice")
    assert first.status_code == 200 and first.json()["approval"]["status"] == "WAITING"
    again = decide(admin, approval["id"], "approve", "alice")
    assert again.status_code == 409 and again.json()["reason_codes"] == ["APPROVAL_ALREADY_DECIDED"]
    assert pay_runs(audit_log) == []
    last = decide(admin, approval["id"], "approve", "bob")
    assert last.status_code == 200 and last.json()["approval"]["status"] == "EXECUTED"
    assert pay_runs(audit_log) == [trace]
    assert decide(admin, approval["id"], "approve", "carol").json()["reason_codes"] == ["APPROVAL_NOT_WAITING"]
    assert pay_runs(audit_log) == [trace]

    read = api.get(f"/approvals/{approval['id']}", HTTP_X_API_KEY=API_KEY)
    assert read.status_code == 200 and read.json()["answer"]["body"]["result"]["output"] == {"paid": True, "amount": 5000}
    assert ApprovalRequest.objects.get(public_id=approval["id"]).sealed_payload is None
    assert codes(audit_records(trace)) == [
        "ALLOW:APPROVAL_HELD", "ALLOW:APPROVAL_GRANTED", "ALLOW:APPROVAL_GRANTED",
        "PENDING:EXECUTION_ATTEMPT", "ALLOW:HELD_PAYLOAD_DELETED", "SUCCESS:",
    ]
    granted = [r for r in audit_records(trace) if r["reason_codes"] == ["APPROVAL_GRANTED"]]
    assert [r["actor"]["id"] for r in granted] == ["alice", "bob"] and granted[0]["evidence"]["reason"] == "checked the invoice"
    chain_text = json.dumps(audit_records()) + Path(audit_log).read_text()
    assert "acme-corp-7731" not in chain_text and "invoice-8842" not in chain_text


def test_rejected_never_runs_and_its_payload_is_deleted(api, admin, approvers, audit_log, audit_records):
    from governance.models import ApprovalRequest

    held = api.process(BIG).json()
    rejected = decide(admin, held["approval"]["id"], "reject", "carol", "payee not on the list")
    assert rejected.status_code == 200 and rejected.json()["approval"]["status"] == "REJECTED"
    assert decide(admin, held["approval"]["id"], "approve", "alice").json()["reason_codes"] == ["APPROVAL_NOT_WAITING"]
    assert pay_runs(audit_log) == [] and ApprovalRequest.objects.get(public_id=held["approval"]["id"]).sealed_payload is None
    assert codes(audit_records(held["trace_id"])) == ["ALLOW:APPROVAL_HELD", "DENY:APPROVAL_REJECTED", "ALLOW:HELD_PAYLOAD_DELETED"]


def test_expired_never_runs(api, admin, approvers, audit_log, audit_records, capsys):
    from governance.models import ApprovalRequest

    held = api.process(BIG).json()
    ApprovalRequest.objects.filter(public_id=held["approval"]["id"]).update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert decide(admin, held["approval"]["id"], "approve", "alice").json()["reason_codes"] == ["APPROVAL_NOT_WAITING"]
    call_command("governance", "expire-approvals")
    assert "expired 1 held request(s)" in capsys.readouterr().out
    row = ApprovalRequest.objects.get(public_id=held["approval"]["id"])
    assert row.status == "EXPIRED" and row.sealed_payload is None and pay_runs(audit_log) == []
    assert codes(audit_records(held["trace_id"])) == ["ALLOW:APPROVAL_HELD", "DENY:APPROVAL_EXPIRED", "ALLOW:HELD_PAYLOAD_DELETED"]


def test_the_requester_cannot_approve_and_outsiders_are_refused(api, admin, approvers, open_session, audit_log):
    session = open_session("u_12345")
    held = api.process(BIG, key=None, **bearer(session))
    assert held.status_code == 202, held.content
    approval_id = held.json()["approval"]["id"]
    own = decide(admin, approval_id, "approve", "u_12345")
    assert own.status_code == 403 and own.json()["reason_codes"] == ["APPROVAL_OWN_REQUEST"]
    outsider = decide(admin, approval_id, "approve", "mallory")
    assert outsider.status_code == 403 and outsider.json()["reason_codes"] == ["APPROVAL_NOT_APPROVER"]
    no_reason = decide(admin, approval_id, "approve", "alice", reason="")
    assert no_reason.status_code == 400 and no_reason.json()["reason_codes"] == ["APPROVAL_REASON_REQUIRED"]
    # Only the credential that asked reads it; the API key did not ask.
    assert api.get(f"/approvals/{approval_id}", HTTP_X_API_KEY=API_KEY).status_code == 404
    mine = api.get(f"/approvals/{approval_id}", **bearer(session))
    assert mine.json()["approval"]["status"] == "WAITING"
    assert mine["RateLimit"]  # read through the clients' gates: it counts against the limits (G10)
    # Not even the admin key reads a held request: only the credential that asked.
    assert admin.admin_get(f"/approvals/{approval_id}").status_code == 404
    assert pay_runs(audit_log) == []


def test_a_profile_asking_for_approval_needs_the_key(approvers, settings):
    from governance.checks import approval_key_check

    assert approval_key_check() == []
    settings.VERITTA_APPROVAL_KEY = ""
    assert [e.id for e in approval_key_check()] == ["governance.E002"]


def test_without_the_key_a_held_request_is_refused_and_nothing_runs(api, approvers, settings, audit_log, audit_records):
    settings.VERITTA_APPROVAL_KEY = ""
    refused = api.process(BIG)
    assert refused.status_code == 503 and refused.json()["reason_codes"] == ["APPROVAL_UNAVAILABLE"]
    assert codes(audit_records(refused.json()["trace_id"])) == ["DENY:APPROVAL_UNAVAILABLE"]
    assert pay_runs(audit_log) == []


def test_verify_names_a_request_approved_but_never_executed(api, approvers, audit_log, audit_records):
    # What a server killed between the last approval's commit and the
    # execution leaves: the approval service ran, the execution did not.
    from audit.selectors import audit_rows_stream
    from audit.services import RequestContext
    from audit.verify import ChainVerifier
    from governance import approvals
    from governance.approval_flows import execute_approved

    held = api.process(BIG).json()
    approval_id = held["approval"]["id"]
    ctx = RequestContext(trace_id="00000000-0000-4000-8000-000000000014", endpoint="POST /admin/approvals/{id}/approve",
                         profile_id="admin", profile_hash="0" * 64)
    approvals.vote(approval_id, approver="alice", verdict="APPROVE", reason="ok", ctx=ctx)
    approvals.vote(approval_id, approver="bob", verdict="APPROVE", reason="ok", ctx=ctx)

    def problems():
        verifier = ChainVerifier()
        for row in audit_rows_stream():
            verifier.feed(row.pop("body"), row)
        return [(p.kind, p.seq) for p in verifier.finish().problems]

    granted = [r["seq"] for r in audit_records(held["trace_id"]) if r["reason_codes"] == ["APPROVAL_GRANTED"]]
    assert problems() == [("approved_not_executed", granted[-1])] and pay_runs(audit_log) == []
    # Taken later, it runs once; a second taker finds nothing to run.
    assert execute_approved(approval_id).status == 200 and execute_approved(approval_id) is None
    assert problems() == [] and pay_runs(audit_log) == [held["trace_id"]]


def test_holding_queues_its_expiry_for_the_background_worker(api, approvers, audit_log, caplog):
    from django_tasks_db.models import DBTaskResult

    from governance.approvals import approvals_expire
    from governance.models import ApprovalRequest

    held = api.process(BIG).json()
    row = ApprovalRequest.objects.get(public_id=held["approval"]["id"])
    queued = DBTaskResult.objects.get(task_path="governance.approvals.approvals_expire")
    assert queued.queue_name == "approvals" and queued.run_after == row.expires_at
    ApprovalRequest.objects.filter(pk=row.pk).update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    approvals_expire.call()  # what the worker runs at run_after
    assert ApprovalRequest.objects.get(pk=row.pk).status == "EXPIRED" and pay_runs(audit_log) == []
    kinds = [getattr(r, "alert_kind", None) for r in caplog.records]
    assert "approval_waiting" in kinds and "approval_expired" in kinds


def test_metrics_count_approval_steps_and_time_to_decision(api, admin, approvers, audit_log):
    from audit.metrics import metrics_exposition

    def sample(name: str) -> float:
        line = next((row for row in metrics_exposition().decode().splitlines() if row.startswith(name + " ")), None)
        return float(line.split()[-1]) if line else 0.0

    before = {step: sample(f'veritta_approvals_total{{step="{step}"}}') for step in ("held", "approved", "rejected")}
    decided_before = sample('veritta_approval_decision_seconds_count{outcome="rejected"}')
    first, second = api.process(BIG).json(), api.process(BIG).json()
    decide(admin, first["approval"]["id"], "approve", "alice")
    decide(admin, second["approval"]["id"], "reject", "bob")
    assert sample('veritta_approvals_total{step="held"}') == before["held"] + 2
    assert sample('veritta_approvals_total{step="approved"}') == before["approved"] + 1
    assert sample('veritta_approvals_total{step="rejected"}') == before["rejected"] + 1
    assert sample('veritta_approval_decision_seconds_count{outcome="rejected"}') == decided_before + 1


def test_audit_summary_counts_approvals_rejections_expiries_and_time_to_decision(api, admin, approvers, audit_log):
    from governance.models import ApprovalRequest

    approved, rejected, expired, waiting = (api.process(BIG).json() for _ in range(4))
    decide(admin, approved["approval"]["id"], "approve", "alice")
    decide(admin, approved["approval"]["id"], "approve", "bob")
    decide(admin, rejected["approval"]["id"], "approve", "carol")
    decide(admin, rejected["approval"]["id"], "reject", "bob")
    decide(admin, waiting["approval"]["id"], "approve", "alice")
    ApprovalRequest.objects.filter(public_id=expired["approval"]["id"]).update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    call_command("governance", "expire-approvals", stdout=io.StringIO())
    out = io.StringIO()
    call_command("audit", "summary", "--days", "1", "--json", stdout=out)
    approvals = json.loads(out.getvalue())["approvals"]
    assert {k: v for k, v in approvals.items() if k != "time_to_decision_s"} == {
        "held": 4, "approvals": 4, "rejections": 1, "expiries": 1, "executed": 1,
    }
    decided = approvals["time_to_decision_s"]
    assert decided["decided"] == 3 and 0 <= decided["p50"] <= decided["max"]  # the waiting one is not decided


def test_expire_approvals_runs_once_an_approved_request_a_killed_process_left(api, approvers, audit_log, audit_records, capsys):
    """The last approval committed, then the process died before the take: the
    sweep (`governance expire-approvals`) runs it, once, with its records."""
    from audit.services import RequestContext
    from governance import approvals
    from governance.approval_flows import RESUME_AFTER_S
    from governance.models import ApprovalRequest

    held = api.process(BIG).json()
    approval_id = held["approval"]["id"]
    ctx = RequestContext(trace_id="00000000-0000-4000-8000-000000000015", endpoint="POST /admin/approvals/{id}/approve",
                         profile_id="admin", profile_hash="0" * 64)
    approvals.vote(approval_id, approver="alice", verdict="APPROVE", reason="ok", ctx=ctx)
    approvals.vote(approval_id, approver="bob", verdict="APPROVE", reason="ok", ctx=ctx)  # no execution: "killed"
    call_command("governance", "expire-approvals")
    assert "left untaken" not in capsys.readouterr().out and pay_runs(audit_log) == []  # too recent: maybe still running
    ApprovalRequest.objects.filter(public_id=approval_id).update(
        decided_at=datetime.now(UTC) - timedelta(seconds=RESUME_AFTER_S + 1)
    )
    call_command("governance", "expire-approvals")
    assert f"ran 1 approved request(s) left untaken\n{approval_id}" in capsys.readouterr().out
    call_command("governance", "expire-approvals")
    assert "left untaken" not in capsys.readouterr().out
    assert pay_runs(audit_log) == [held["trace_id"]]
    row = ApprovalRequest.objects.get(public_id=approval_id)
    assert row.status == "EXECUTED" and row.sealed_payload is None
    assert codes(audit_records(held["trace_id"]))[-3:] == ["PENDING:EXECUTION_ATTEMPT", "ALLOW:HELD_PAYLOAD_DELETED", "SUCCESS:"]



def test_expire_approvals_deletes_a_sealed_answer_past_its_retention_with_a_record(
    api, admin, approvers, audit_log, audit_records, capsys, settings
):
    """The answer of an executed request is kept, sealed, for GET /approvals/{id}
    during VERITTA_APPROVAL_ANSWER_RETENTION_S after it was stored, then the
    sweep deletes it, once, with a HELD_ANSWER_DELETED record."""
    from django_tasks_db.models import DBTaskResult

    from governance.approvals import approvals_expire
    from governance.models import ApprovalRequest

    settings.VERITTA_APPROVAL_ANSWER_RETENTION_S = 3600
    held = api.process(BIG).json()
    approval_id = held["approval"]["id"]
    decide(admin, approval_id, "approve", "alice")
    assert decide(admin, approval_id, "approve", "bob").json()["approval"]["status"] == "EXECUTED"
    row = ApprovalRequest.objects.get(public_id=approval_id)
    assert row.sealed_answer is not None and row.answered_at is not None
    queued = DBTaskResult.objects.filter(task_path="governance.approvals.approvals_expire")
    assert row.answered_at + timedelta(seconds=3600) in set(queued.values_list("run_after", flat=True))

    call_command("governance", "expire-approvals")
    assert "sealed answer" not in capsys.readouterr().out  # within its retention: kept
    read = api.get(f"/approvals/{approval_id}", HTTP_X_API_KEY=API_KEY)
    assert read.json()["answer"]["body"]["result"]["output"] == {"paid": True, "amount": 5000}

    ApprovalRequest.objects.filter(pk=row.pk).update(answered_at=row.answered_at - timedelta(seconds=3601))
    call_command("governance", "expire-approvals")
    assert f"deleted 1 sealed answer(s) past their retention\n{approval_id}" in capsys.readouterr().out
    call_command("governance", "expire-approvals")
    assert "sealed answer" not in capsys.readouterr().out  # once
    approvals_expire.call()  # the worker's sweep at the retention's end: nothing left to delete

    row.refresh_from_db()
    assert row.sealed_answer is None and row.status == "EXECUTED"
    read = api.get(f"/approvals/{approval_id}", HTTP_X_API_KEY=API_KEY)
    assert read.status_code == 200 and read.json()["answer"] is None
    records = audit_records(held["trace_id"])
    assert codes(records)[-1] == "ALLOW:HELD_ANSWER_DELETED"
    assert records[-1]["actor"] == {"kind": "system", "id": "approval-retention"}
    assert records[-1]["evidence"] == {"approval_id": approval_id, "why": "retention", "retention_s": 3600}


def test_the_approvals_worker_deletes_a_sealed_answer_past_its_retention(api, admin, approvers, audit_log, audit_records, settings):
    from governance.approvals import approvals_expire
    from governance.models import ApprovalRequest

    settings.VERITTA_APPROVAL_ANSWER_RETENTION_S = 60
    held = api.process(BIG).json()
    decide(admin, held["approval"]["id"], "approve", "alice")
    decide(admin, held["approval"]["id"], "approve", "bob")
    row = ApprovalRequest.objects.get(public_id=held["approval"]["id"])
    approvals_expire.call()
    assert ApprovalRequest.objects.get(pk=row.pk).sealed_answer is not None
    ApprovalRequest.objects.filter(pk=row.pk).update(answered_at=row.answered_at - timedelta(seconds=61))
    approvals_expire.call()  # what the worker runs at the queued run_after
    assert ApprovalRequest.objects.get(pk=row.pk).sealed_answer is None
    assert codes(audit_records(held["trace_id"]))[-1] == "ALLOW:HELD_ANSWER_DELETED"

"""Four-eyes approval through a real multi-worker gunicorn server: two
approvers at the same moment, an approval racing expiry, a worker killed
mid-execution; in every case the action runs at most once."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import requests

from conftest import ADMIN_KEY, API_KEY, env_for_test_profiles
from tests.support.appserver import manage

BIG = {"action": "pay", "amount": 7000, "payee": "globex-5521"}

MAKE_APPROVERS = (
    "from django.contrib.auth.models import Group, User; g = Group.objects.create(name='approvers'); "
    "[User.objects.create_user(n, password='pw-' + n * 3).groups.add(g) for n in ('alice', 'bob', 'carol')]"
)


@pytest.fixture
def server(start_app_server):
    # Executor timeout long enough for the test's own pauses, short enough to bound a stuck one.
    srv = start_app_server(env={**env_for_test_profiles(), "VERITTA_EXECUTOR_TIMEOUT_S": "20"})
    srv.manage("shell", "--no-imports", "-c", MAKE_APPROVERS)
    return srv


def hold(server, payload=BIG) -> dict:
    response = server.post("/process", json=payload, headers={"X-API-Key": API_KEY})
    assert response.status_code == 202, response.text
    return response.json()


def decide(server, approval_id: str, approver: str, verdict: str = "approve"):
    return server.post(f"/admin/approvals/{approval_id}/{verdict}", json={"approver": approver, "reason": "looked at it"},
                       headers={"X-ADMIN-KEY": ADMIN_KEY})


def runs(server) -> list[str]:
    path = server.tmp / "pay_runs.log"
    return path.read_text().split() if path.exists() else []


def pending_seq(server, trace_id: str) -> int:
    def pending(found: list[dict]) -> list[int]:
        return [r["seq"] for r in found if r.get("status") == "PENDING"]

    return pending(server.mirror_records(trace_id, until=pending))[0]


def status_of(server, approval_id: str) -> str:
    return server.get(f"/approvals/{approval_id}", headers={"X-API-Key": API_KEY}).json()["approval"]["status"]


def test_two_last_approvers_at_the_same_moment_run_it_once(server):
    for _ in range(3):
        held = hold(server)
        approval_id = held["approval"]["id"]
        assert decide(server, approval_id, "alice").status_code == 200
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(decide, [server, server], [approval_id, approval_id], ["bob", "carol"]))
        assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
        assert runs(server).count(held["trace_id"]) == 1
        assert status_of(server, approval_id) == "EXECUTED"


def test_an_approval_racing_expiry_runs_at_most_once(server):
    held = hold(server)
    approval_id = held["approval"]["id"]
    assert decide(server, approval_id, "alice").status_code == 200
    due = (datetime.now(UTC) + timedelta(milliseconds=300)).isoformat()
    server.manage("shell", "--no-imports", "-c",
                  f"from governance.models import ApprovalRequest as A; from datetime import datetime; "
                  f"A.objects.filter(public_id='{approval_id}').update(expires_at=datetime.fromisoformat('{due}'))")
    with ThreadPoolExecutor(2) as pool:
        expiry = pool.submit(server.manage, "governance", "expire-approvals")
        vote = pool.submit(decide, server, approval_id, "bob")
        expiry.result(), vote.result()
    server.manage("governance", "expire-approvals")  # whichever lost, the request is decided now
    final = status_of(server, approval_id)
    assert final in ("EXECUTED", "EXPIRED")
    assert runs(server).count(held["trace_id"]) == (1 if final == "EXECUTED" else 0)


def test_a_worker_killed_mid_execution_never_runs_it_again_and_verify_says_so(server):
    held = hold(server, {**BIG, "memo": "wait-for-release"})
    approval_id = held["approval"]["id"]
    assert decide(server, approval_id, "alice").status_code == 200
    with ThreadPoolExecutor(1) as pool:
        last = pool.submit(decide, server, approval_id, "bob")
        while held["trace_id"] not in runs(server):  # the payment has started in some worker
            assert not last.done(), last.result().text
            time.sleep(0.05)
        for pid in server.worker_pids():
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(requests.ConnectionError):  # the connection dies with its worker
            last.result()
    (server.tmp / "pay_release").write_text("")
    server._wait_until_serving()
    assert decide(server, approval_id, "carol").json()["reason_codes"] == ["APPROVAL_NOT_WAITING"]
    assert status_of(server, approval_id) == "EXECUTED" and runs(server).count(held["trace_id"]) == 1
    # A PENDING younger than the executor timeout (+5 s) may still be running,
    # and verify counts it in flight; with a short timeout it soon is a finding.
    env = {**server.env, "VERITTA_EXECUTOR_TIMEOUT_S": "0.1"}
    report = json.loads(manage(env, "audit", "verify", "--json", check=False).stdout)
    while report["in_flight"]:
        time.sleep(0.5)
        report = json.loads(manage(env, "audit", "verify", "--json", check=False).stdout)
    assert [(p["kind"], p["seq"]) for p in report["problems"]] == [("incomplete", pending_seq(server, held["trace_id"]))]
    # The held payload is nowhere the service writes.
    assert "globex-5521" not in (server.tmp / "audit.log").read_text() and "globex-5521" not in server.log()

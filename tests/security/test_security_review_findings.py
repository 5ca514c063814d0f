"""The findings of the security review (issue 20, docs/SECURITY.md "Review
findings"), each attacked again through a real gunicorn server as the review
did: as an API client, an admin-key holder, a console user and an anonymous
visitor."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from conftest import API_KEY


def test_client_chosen_trace_id_cannot_break_verification(app_server):
    """S1: sixteen concurrent requests under one client id used to give one
    trace two PENDING records, and `audit verify` failed for good."""
    client_id = str(uuid.uuid4())

    def send(_: int) -> requests.Response:
        return app_server.post("/process", json={"action": "test_action", "event_type": "t"},
                               headers={"X-API-Key": API_KEY, "X-Trace-ID": client_id})  # fmt: skip

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(send, range(16)))
    assert [r.status_code for r in responses] == [200] * 16
    traces = {r.json()["trace_id"] for r in responses}
    assert len(traces) == 16 and client_id not in traces
    verify = app_server.manage("audit", "verify", "--json", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["ok"] is True
    # The client's id is still there to correlate by, as the parent.
    mirror = [json.loads(line) for line in (app_server.tmp / "audit.log").read_text().splitlines()]
    assert {r["trace_id"] for r in mirror if r["parent_trace"] == client_id} == traces

"""SQLite's writer queue (veritta_site/sqlite_queued), through a real gunicorn
server: a writer waits for the queue no longer than VERITTA_SQLITE_LOCK_TIMEOUT_S,
then the request fails closed with the envelope and nothing of it is kept; once
the queue is free the next request is served and the chain verifies."""

from __future__ import annotations

import fcntl
import json
import os

import pytest

from conftest import API_KEY


def test_a_writer_kept_waiting_in_the_queue_fails_closed(start_app_server):
    server = start_app_server(workers=1, threads=4, env={"VERITTA_SQLITE_LOCK_TIMEOUT_S": "0.5"})
    if not server.database_url.startswith("sqlite"):
        pytest.skip("the writer queue is SQLite's")
    served = server.post("/process", json={"action": "process", "text": "before"}, headers={"X-API-Key": API_KEY})
    assert served.status_code == 200

    # Another process holds the queue (as a writer stuck mid-transaction would).
    queue = os.open(server.database_url.removeprefix("sqlite:///") + ".writelock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(queue, fcntl.LOCK_EX)
    try:
        refused = server.post("/process", json={"action": "process", "text": "held"}, headers={"X-API-Key": API_KEY})
    finally:
        fcntl.flock(queue, fcntl.LOCK_UN)
        os.close(queue)
    assert refused.status_code == 503
    assert refused.json()["reason_codes"] == ["AUDIT_SINK_FAILED"]

    after = server.post("/process", json={"action": "process", "text": "after"}, headers={"X-API-Key": API_KEY})
    assert after.status_code == 200
    assert json.loads(server.manage("audit", "verify", "--json").stdout)["ok"]
    records = [json.loads(line) for line in server.manage("audit", "export").stdout.splitlines()]
    traces = {record["trace_id"] for record in records}
    # The served requests are recorded; the refused one left nothing.
    assert {served.json()["trace_id"], after.json()["trace_id"]} <= traces
    assert refused.json()["trace_id"] not in traces

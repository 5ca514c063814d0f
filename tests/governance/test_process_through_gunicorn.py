"""POST /process through a real multi-worker gunicorn server: the seed
README's calls as a new user makes them, chunked bodies, timeouts, and no
payload value anywhere the service writes."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import API_KEY

README_PROCESS = '{"action": "process", "event_type": "test_event", "text": "Hello World"}'


def curl(server, *args: str) -> tuple[int, dict]:
    out = subprocess.run(
        ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    body, _, status = out.rpartition("\n")
    return int(status), json.loads(body)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is part of the README examples")
def test_seed_readme_curl_examples_verbatim(app_server):
    url = app_server.url
    status, body = curl(app_server, "-X", "POST", f"{url}/process", "-H", "Content-Type: application/json",
                        "-H", f"X-API-Key: {API_KEY}", "-d", README_PROCESS)  # fmt: skip
    assert status == 200 and body["result"]["action"] == "process" and body["result"]["status"] == "SUCCESS"
    status, body = curl(app_server, "-X", "POST", f"{url}/process", "-H", "Content-Type: application/json",
                        "-d", '{"action":"test"}')  # fmt: skip
    assert status == 403 and body["reason_codes"] == ["MISSING_API_KEY"] and body["details"] == {"header": "X-API-Key"}
    # The runbook's smoke call: no Content-Type header, its own trace id.
    trace = str(uuid.uuid4())
    status, body = curl(app_server, "-X", "POST", f"{url}/process", "-H", f"X-API-Key: {API_KEY}",
                        "-H", f"X-TRACE-ID: {trace}", "-d", '{"action":"test_action","event_type":"test_event"}')  # fmt: skip
    # The server owns the trace id; the caller's id is the records' parent.
    assert status == 200 and body["trace_id"] != trace
    lines = app_server.mirror_records(body["trace_id"], until=lambda found: len(found) >= 3)
    assert len(lines) == 3 and {line["parent_trace"] for line in lines} == {trace}
    status, body = curl(app_server, f"{url}/health")
    assert status == 200 and body["status"] == "ok"


def test_chunked_body_over_the_limit_is_refused_without_reading_it_all(app_server):
    def chunks():
        for _ in range(64):
            yield b"x" * 1024

    response = app_server.post("/process", data=chunks(), headers={"X-API-Key": API_KEY})
    assert response.status_code == 413 and response.json()["reason_codes"] == ["PAYLOAD_TOO_LARGE"]


def test_chunked_body_within_the_limit_is_processed(app_server):
    def chunks():
        yield b'{"action": "test_action",'
        yield b' "event_type": "test_event"}'

    response = app_server.post("/process", data=chunks(), headers={"X-API-Key": API_KEY, "Content-Type": "application/json"})
    assert response.status_code == 200


def test_declared_length_over_the_limit_is_refused(app_server):
    response = app_server.post("/process", data=b"{" + b" " * 9000 + b"}", headers={"X-API-Key": API_KEY})
    assert response.status_code == 413


def test_executor_timeout_answers_504_long_before_the_executor_would_finish(app_server_with_test_profiles):
    started = time.monotonic()
    response = app_server_with_test_profiles.post("/process", json={"action": "slow"}, headers={"X-API-Key": API_KEY})
    elapsed = time.monotonic() - started
    assert response.status_code == 504 and response.json()["reason_codes"] == ["EXECUTOR_TIMEOUT"]
    # The limit is 0.5 s; the generous bound only proves the answer does not
    # wait for the executor, which would never return on its own.
    assert elapsed < 10


def test_uncaught_errors_and_unknown_paths_answer_in_the_envelope(app_server):
    for method, path in (("GET", "/nope"), ("GET", "/process"), ("DELETE", "/process"), ("GET", "/console/../etc/passwd")):
        response = app_server.get(path) if method == "GET" else __import__("requests").request(method, app_server.url + path, timeout=10)
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json()["reason_codes"][0] in ("NOT_FOUND", "METHOD_NOT_ALLOWED")


def test_no_payload_value_reaches_the_database_mirror_or_logs(app_server):
    marker = f"PAYLOAD-MARKER-{uuid.uuid4().hex}"
    payloads = [
        {"action": "process", "text": marker},
        {"action": "process", "colour": marker},  # an unknown field: its name's keyed digest is evidence, never its value
        {"action": "process", "text": 7, "event_type": marker},
        {"action": marker},
    ]
    for payload in payloads:
        app_server.post("/process", json=payload, headers={"X-API-Key": API_KEY})
    app_server.post("/process", data=marker.encode(), headers={"X-API-Key": API_KEY})
    app_server.post("/process", json={"action": "process", "text": marker}, headers={"X-API-Key": marker})
    dumped = app_server.manage("audit", "export").stdout
    assert dumped.count("\n") >= 6
    assert marker not in (app_server.tmp / "audit.log").read_text()
    assert marker not in app_server.log()
    db_file = app_server.tmp / "veritta.sqlite3"
    if db_file.exists():
        for path in app_server.tmp.glob("veritta.sqlite3*"):
            assert marker.encode() not in path.read_bytes()
    assert marker not in dumped and '"field_digests":["field_' in dumped and '"colour"' not in dumped
    assert API_KEY not in dumped and API_KEY not in app_server.log()

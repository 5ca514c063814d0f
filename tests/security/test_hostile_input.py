"""Hostile input against a real gunicorn server: each case is answered by a
4xx envelope — never a 5xx, never an HTML page — and leaves no trace but its
DENY record (nothing executed, no PENDING)."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from conftest import ADMIN_KEY, API_KEY, assert_envelope_codes_catalogued
from tests.support.appserver import AppServer

KEY = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """This module's own server: a campaign of hundreds of requests must not
    run into the (correct) per-minute limits of the admin key and API key."""
    limits = {"VERITTA_ADMIN_RATE_LIMIT_PER_MIN": "100000", "VERITTA_RATE_LIMIT_KEY_PER_MIN": "100000"}
    server = AppServer(tmp_path_factory.mktemp("hostile"), workers=2, env=limits).prepare().start()
    yield server
    server.stop()


def raw_http(server, request: bytes, *, pause: float = 0.0, split_at: int | None = None, timeout: float = 20) -> tuple[int, bytes]:
    """Send bytes as they are (no client normalisation); return status and body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        if split_at is None:
            sock.sendall(request)
        else:
            sock.sendall(request[:split_at])
            time.sleep(pause)
            sock.sendall(request[split_at:])
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body


def records_for(server, trace: str) -> list[dict]:
    out = server.manage("audit", "trace", trace, "--json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else []


def assert_denied_only(server, response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text[:300]
    envelope = response.json()
    assert envelope["reason_codes"] == [code]
    records = records_for(server, envelope["trace_id"])
    assert [(r["event_type"], r["decision"]) for r in records] == [("decision_audit", "DENY")]


BODIES = [
    pytest.param(b'{"action": "\xff\xfe"}', 400, "INVALID_JSON", id="invalid-utf8"),
    pytest.param(b'{"action": "noop", "action": "process"}', 400, "INVALID_JSON", id="duplicate-keys"),
    pytest.param(b'{"a":' * 1300 + b"1" + b"}" * 1300, 400, "INVALID_JSON", id="deep-nesting-objects"),
    pytest.param(b"[" * 4000 + b"]" * 4000, 400, "INVALID_JSON", id="deep-nesting-arrays"),
    pytest.param(b'{"action": "counted", "n": ' + b"9" * 5000 + b"}", 400, "INVALID_JSON", id="huge-number"),
    pytest.param(b'{"action": "noop", "x": 1e999999}', 403, "UNKNOWN_FIELDS_PRESENT", id="float-overflow"),
    pytest.param(b'{"action": "noop", "x": NaN}', 400, "INVALID_JSON", id="nan"),
    pytest.param(b'{"action": "noop", "x": -Infinity}', 400, "INVALID_JSON", id="infinity"),
    pytest.param(b'"just a string"', 400, "INVALID_JSON", id="non-object-string"),
    pytest.param(b"null", 400, "INVALID_JSON", id="non-object-null"),
    pytest.param(b"12", 400, "INVALID_JSON", id="non-object-number"),
    pytest.param(b'{"action": "noop", "x": "\\ud800"}', 400, "INVALID_JSON", id="lone-surrogate"),
    pytest.param(b"\x00\x00\x00{", 400, "INVALID_JSON", id="nul-bytes"),
    pytest.param(b'{"action": "../../etc/passwd"}', 400, "VALIDATION_ERROR", id="traversal-action"),
    pytest.param(b'{"action": "noop\'; DROP TABLE audit_auditrecord; --"}', 400, "VALIDATION_ERROR", id="sql-action"),
]


@pytest.mark.parametrize(("body", "status", "code"), BODIES)
def test_hostile_body_is_a_4xx_envelope_and_only_a_deny_record(app_server, body, status, code):
    response = app_server.post("/process", data=body, headers={**KEY, "Content-Type": "application/json"})
    assert_denied_only(app_server, response, status, code)


@pytest.mark.parametrize("content_type", ["application/xml", "multipart/form-data; boundary=x", "image/png"])
def test_wrong_content_type_is_415(app_server, content_type):
    response = app_server.post("/process", data=b'{"action": "noop"}', headers={**KEY, "Content-Type": content_type})
    assert_denied_only(app_server, response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_missing_content_type_with_json_body_is_accepted(app_server):
    status, body = raw_http(
        app_server,
        b"POST /process HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: " + API_KEY.encode()
        + b"\r\nContent-Length: 18\r\nConnection: close\r\n\r\n" + b'{"action": "noop"}',
    )  # fmt: skip
    assert status == 200, body


def test_body_over_the_limit_with_and_without_content_length(app_server):
    big = b"{" + b" " * 20000 + b"}"
    response = app_server.post("/process", data=big, headers=KEY)
    assert_denied_only(app_server, response, 413, "PAYLOAD_TOO_LARGE")
    chunked = app_server.post("/process", data=iter([big[:10000], big[10000:]]), headers=KEY)
    assert_denied_only(app_server, chunked, 413, "PAYLOAD_TOO_LARGE")


def test_declared_length_longer_than_the_body_sent_does_not_hang_the_server(app_server):
    # The client announces 100 bytes and sends 10, then stalls: the server
    # answers within gunicorn's worker timeout instead of waiting forever,
    # and other clients keep being served meanwhile.
    with socket.create_connection(("127.0.0.1", app_server.port), timeout=90) as sock:
        sock.sendall(b"POST /process HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: " + API_KEY.encode() + b"\r\nContent-Length: 100\r\n\r\n" + b"{" * 10)
        assert app_server.post("/process", json={"action": "noop"}, headers=KEY).status_code == 200
        sock.shutdown(socket.SHUT_WR)
        answer = sock.recv(65536)
    assert answer == b"" or not answer.startswith(b"HTTP/1.1 5")


def test_slow_body_is_still_processed_correctly(app_server):
    body = b'{"action": "noop", "event_type": "slow"}'
    request = (
        b"POST /process HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nX-API-Key: "
        + API_KEY.encode() + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip
    status, _ = raw_http(app_server, request, split_at=len(request) - 5, pause=1.0)
    assert status == 200


def test_oversized_and_repeated_headers_are_refused_with_4xx(app_server):
    huge = b"X-Filler: " + b"a" * 20000 + b"\r\n"
    status, body = raw_http(app_server, b"POST /process HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + huge + b"\r\n")
    assert 400 <= status < 500, status
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(500))
    status, body = raw_http(app_server, b"POST /process HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + many + b"\r\n")
    assert 400 <= status < 500, status


def test_repeated_api_key_headers_do_not_authenticate(app_server):
    request = (
        b"POST /process HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n"
        b"X-API-Key: wrong\r\nX-API-Key: " + API_KEY.encode() + b"\r\nContent-Length: 18\r\n\r\n" + b'{"action": "noop"}'
    )  # fmt: skip
    status, body = raw_http(app_server, request)
    # gunicorn joins repeated headers with ","; the joined value is no key.
    assert status == 403 and json.loads(body)["reason_codes"] == ["GATE_DENIED_INVALID_API_KEY"]


@pytest.mark.parametrize(
    "header",
    [
        b"X-Trace-ID: 00000000-0000-4000-8000-000000000000\r\nSet-Cookie: injected=1",
        b"X-Trace-ID: %0d%0aSet-Cookie:%20injected=1",
        b"traceparent: 00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01%0d%0aX-Evil: 1",
        b"X-Trace-ID: " + b"9" * 4000,
    ],
)
def test_header_injection_in_trace_headers_is_neutralised(app_server, header):
    body = b'{"action": "noop"}'
    request = (
        b"POST /process HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n" + header
        + b"\r\nX-API-Key: " + API_KEY.encode() + b"\r\nContent-Length: 18\r\n\r\n" + body
    )  # fmt: skip
    with socket.create_connection(("127.0.0.1", app_server.port), timeout=20) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head = data.partition(b"\r\n\r\n")[0].lower()
    assert b"injected" not in head and b"x-evil" not in head
    trace = [line for line in head.split(b"\r\n") if line.startswith(b"x-trace-id:")][0].split(b":", 1)[1].strip()
    assert uuid.UUID(trace.decode())


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "TRACE", "PROPFIND", "BREW"])
def test_unknown_and_unsupported_methods_are_405_or_4xx_envelopes(app_server, method):
    response = requests.request(method, app_server.url + "/process", headers=KEY, timeout=10)
    assert 400 <= response.status_code < 500
    if response.headers.get("Content-Type", "").startswith("application/json"):
        assert_envelope_codes_catalogued(response.status_code, response.headers["Content-Type"], response.content)


@pytest.mark.parametrize(
    "path",
    [
        "/admin/sessions/..%2f..%2fetc%2fpasswd",
        "/admin/sessions/%2e%2e",
        "/admin/audit/traces/..%2F..%2Faudit.log",
        "/admin/audit/traces/' OR '1'='1",
        "/admin/sessions/sess_x%00",
    ],
)
def test_path_traversal_in_ids_is_a_4xx_envelope(app_server, path):
    response = app_server.get(path, headers={"X-ADMIN-KEY": ADMIN_KEY})
    assert 400 <= response.status_code < 500
    assert response.headers["Content-Type"].startswith("application/json")


SQL_META = ["' OR 1=1 --", '"; DROP TABLE audit_auditrecord; --', "%' OR '%'='", "\\", "x' UNION SELECT body FROM audit_auditrecord --"]
FILTERS = ["trace_id", "event_type", "decision", "status", "reason_code", "actor", "since", "until", "cursor", "limit"]


@pytest.mark.parametrize("name", FILTERS)
def test_sql_metacharacters_in_every_admin_filter(app_server, name):
    before = app_server.manage("audit", "verify", "--json", check=False)
    for value in SQL_META:
        response = app_server.get("/admin/audit/events", params={name: value}, headers={"X-ADMIN-KEY": ADMIN_KEY})
        assert response.status_code in (200, 400), (name, value, response.status_code)
        if response.status_code == 200:
            assert response.json()["items"] == []
    for value in SQL_META:
        response = app_server.get("/admin/audit/summary", params={"event_type": value}, headers={"X-ADMIN-KEY": ADMIN_KEY})
        assert response.status_code == 400
    after = app_server.manage("audit", "verify", "--json", check=False)
    assert json.loads(after.stdout)["ok"] and json.loads(before.stdout)["ok"]

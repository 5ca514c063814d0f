"""Every answer the service gives is the error envelope, including those
gunicorn gives before Django sees the request (gunicorn.conf.py): an
over-long request line, too many or too large headers, a request line that
does not parse. Sent over a raw socket to a real gunicorn server."""

from __future__ import annotations

import ast
import json
import socket
from pathlib import Path

import pytest

from conftest import assert_envelope_codes_catalogued
from veritta_site.errors import CATALOGUE

ROOT = Path(__file__).resolve().parents[2]


def raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory):
    from tests.support.appserver import AppServer

    server = AppServer(tmp_path_factory.mktemp("envelopes"), workers=1).prepare().start()
    yield server.port
    server.stop()


@pytest.mark.parametrize(
    ("case", "request_bytes", "status", "code"),
    [
        ("request line too long", b"GET /health?q=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", 414, "REQUEST_LINE_TOO_LONG"),
        ("too many headers", b"GET /health HTTP/1.1\r\nHost: localhost\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n", 431, "REQUEST_HEADERS_TOO_LARGE"),
        ("a header too large", b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431, "REQUEST_HEADERS_TOO_LARGE"),
        ("a request line that does not parse", b"GARBAGE\r\n\r\n", 400, "BAD_REQUEST"),
    ],
)  # fmt: skip
def test_gunicorns_own_refusals_are_envelopes(port, case, request_bytes, status, code):
    got, headers, body = raw(port, request_bytes)
    assert got == status, (case, body[:200])
    assert headers["content-type"] == "application/json"
    assert_envelope_codes_catalogued(got, headers["content-type"], body)
    envelope = json.loads(body)
    assert envelope["reason_codes"] == [code] and envelope["trace_id"] == headers["x-trace-id"]
    # The request is not echoed. Runs of 32: the trace id is hex, "aaaa" can be in it.
    for echo in (b"a" * 32, b"b" * 32, b"X-H7:", b"GARBAGE"):
        assert echo not in body, echo


def test_the_servers_codes_are_in_the_catalogue_with_their_status():
    tree = ast.parse((ROOT / "gunicorn.conf.py").read_text())
    [codes] = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SERVER_ERROR_CODES"
    ]
    for status, code in codes.items():
        assert CATALOGUE[code].status == status, code

"""Every documented setting works or refuses to start (issue 19): CORS,
VERITTA_HOST/VERITTA_PORT and VERITTA_AUDIT_DIGEST_ENABLED, each through the
part that honours it (a real gunicorn, `manage.py check`, the pipeline)."""

from __future__ import annotations

import subprocess
import sys

import requests

from conftest import API_KEY
from tests.support.appserver import ROOT, AppServer, manage, server_env
from tests.support.servers import free_port, wait_for_port

ORIGIN = "https://app.example.test"


def _preflight(server, origin: str, path: str = "/process") -> requests.Response:
    return requests.options(
        server.url + path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-api-key,idempotency-key",
        },
        timeout=30,
    )


def test_cors_preflight_is_answered_for_the_configured_origin_only(start_app_server):
    server = start_app_server(env={"VERITTA_CORS_ORIGINS": f"{ORIGIN},http://localhost:3000"})
    allowed = _preflight(server, ORIGIN)
    assert allowed.status_code == 200 and allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    asked = set(allowed.headers["Access-Control-Allow-Headers"].split(", "))
    assert {"content-type", "x-api-key", "idempotency-key"} <= asked
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Origin" not in _preflight(server, "https://evil.example.test").headers
    # The actual request: allowed, and the trace id readable by the page.
    response = server.post("/process", json={"action": "test_action"}, headers={"X-API-Key": API_KEY, "Origin": ORIGIN})
    assert response.status_code == 200 and response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "X-Trace-ID" in response.headers["Access-Control-Expose-Headers"]
    # Never the admin API or the console.
    assert "Access-Control-Allow-Origin" not in _preflight(server, ORIGIN, "/admin/sessions").headers
    assert "Access-Control-Allow-Origin" not in _preflight(server, ORIGIN, "/console/").headers


def test_without_cors_origins_no_cors_header_is_sent(app_server):
    response = _preflight(app_server, ORIGIN)
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]


def test_a_malformed_cors_origin_refuses_to_start(tmp_path):
    env = server_env(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}", {"VERITTA_CORS_ORIGINS": "*"})
    result = manage(env, "check", check=False)
    assert result.returncode != 0 and "corsheaders.E013" in result.stderr


def _gunicorn(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "veritta_site.wsgi:application", "--workers", "1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_veritta_host_and_port_choose_where_gunicorn_listens(tmp_path):
    server = AppServer(tmp_path).prepare()
    port = free_port()
    process = _gunicorn({**server.env, "VERITTA_HOST": "127.0.0.1", "VERITTA_PORT": str(port)})
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=30).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_bad_or_doubled_bind_setting_refuses_to_start(tmp_path):
    env = server_env(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}")
    for extra, named in (
        ({"VERITTA_PORT": "eighty"}, "VERITTA_PORT must be a TCP port number"),
        ({"VERITTA_PORT": "8123", "GUNICORN_BIND": "127.0.0.1:8124"}, "GUNICORN_BIND and VERITTA_HOST/VERITTA_PORT"),
    ):
        process = _gunicorn({**env, **extra})
        output, _ = process.communicate(timeout=60)
        assert process.returncode != 0 and named in output, output


def test_digest_disabled_records_no_input_or_output_digest(api, audit_records, settings):
    settings.VERITTA_AUDIT_DIGEST_ENABLED = False
    response = api.process({"action": "process", "text": "Hello", "operation": "upper"})
    assert response.status_code == 200
    records = audit_records(response.json()["trace_id"])
    assert [r["status"] for r in records] == [None, "PENDING", "SUCCESS"]
    assert {(r["input_digest"], r["output_digest"], r["digest_kind"]) for r in records} == {(None, None, "disabled")}


def test_digest_enabled_records_both_digests(api, audit_records):
    response = api.process({"action": "process", "text": "Hello", "operation": "upper"})
    records = audit_records(response.json()["trace_id"])
    assert all(r["input_digest"] and r["digest_kind"] == "json" for r in records)
    assert records[-1]["output_digest"]

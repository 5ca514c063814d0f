"""The findings of the security review (issue 20, docs/SECURITY.md "Review
findings"), each attacked again through a real gunicorn server as the review
did: as an API client, an admin-key holder, a console user and an anonymous
visitor."""

from __future__ import annotations

import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from conftest import ADMIN_KEY, API_KEY
from tests.support.leakscan import LeakScan

VIEWER_PASSWORD = "viewer-console-pw-0123456789"
LOGIN = "/console/login/"


@pytest.fixture(scope="module")
def viewer(app_server):
    """A view-only console user (what the review attacked the console as)."""
    app_server.create_user(
        "viewer", VIEWER_PASSWORD,
        permissions=("audit.view_auditrecord", "audit.view_verificationrun", "governance.view_policyprofile",
                     "sessions_app.view_session", "sessions_app.view_apikey"),
    )  # fmt: skip
    return "viewer"


class FromAddress(requests.adapters.HTTPAdapter):
    """Connect from another loopback address: the console throttles per client address too."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def console_login(server: Any, username: str, password: str, *, source: str | None = None) -> requests.Response:
    """One login through the console's own HTTP form, CSRF token and all."""
    browser = requests.Session()
    if source:
        browser.mount("http://", FromAddress(source))
    page = browser.get(server.url + LOGIN, timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    form = {"csrfmiddlewaretoken": token, "username": username, "password": password, "next": "/console/"}
    response = browser.post(server.url + LOGIN, data=form, headers={"Referer": server.url + LOGIN}, allow_redirects=False, timeout=30)
    response.browser = browser  # type: ignore[attr-defined]
    return response


def console_session(server: Any, username: str, password: str) -> requests.Session:
    response = console_login(server, username, password)
    assert response.status_code == 302, response.text[:500]
    return response.browser  # type: ignore[attr-defined]


def mirror_records(server: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (server.tmp / "audit.log").read_text().splitlines()]


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


def test_revoking_a_key_revokes_its_sessions_at_once_and_lists_them(app_server, viewer):
    """S2: after `sessions revoke-key`, a session the key opened still got 200."""
    key = app_server.manage("sessions", "create-key", "--name", "review").stdout.strip()
    prefix = key.split("_")[1]
    opened = app_server.post("/sessions", json={"user_id": "u_review"}, headers={"X-API-Key": key}).json()
    bearer = {"Authorization": f"Bearer {opened['token']}", "X-VERITTA-USER-ID": "u_review",
              "X-VERITTA-SESSION-ID": opened["session_id"]}  # fmt: skip
    action = {"action": "test_action", "event_type": "t"}
    assert app_server.post("/process", json=action, headers=bearer).status_code == 200

    app_server.manage("sessions", "revoke-key", prefix)
    refused = app_server.post("/process", json=action, headers=bearer)
    assert refused.status_code == 403 and refused.json()["reason_codes"] == ["SESSION_REVOKED"]
    (revocation,) = [r for r in mirror_records(app_server) if r["action"] == "revoke_api_key" and r["status"] == "SUCCESS"]
    assert revocation["evidence"]["key_prefix"] == prefix and revocation["evidence"]["sessions_revoked"] == 1

    # The admin API lists the key's sessions ...
    listed = app_server.get("/admin/sessions", params={"created_by": prefix}, headers={"X-ADMIN-KEY": ADMIN_KEY})
    assert listed.status_code == 200
    assert [(s["session_id"], s["state"]) for s in listed.json()["sessions"]] == [(opened["session_id"], "revoked")]
    assert "token" not in listed.text
    bad = app_server.get("/admin/sessions", params={"created_by": "x' OR 1=1"}, headers={"X-ADMIN-KEY": ADMIN_KEY})
    assert bad.status_code == 400 and bad.json()["reason_codes"] == ["VALIDATION_ERROR"]
    # ... and so does the console, from the key's page.
    console = console_session(app_server, viewer, VIEWER_PASSWORD)
    key_pk = re.search(r'href="/console/sessions_app/apikey/(\d+)/change/"',
                       console.get(app_server.url + "/console/sessions_app/apikey/", timeout=30).text).group(1)  # fmt: skip
    key_page = console.get(f"{app_server.url}/console/sessions_app/apikey/{key_pk}/change/", timeout=30).text
    link = re.search(r'href="([^"]+)" id="sessions-of-key"', key_page).group(1).replace("&amp;", "&")
    sessions_page = console.get(app_server.url + link, timeout=30).text
    assert opened["session_id"] in sessions_page


def test_console_refuses_filters_it_does_not_offer(app_server, viewer):
    """S3: any local field could be filtered with any lookup, so a view-only
    user read token digests one character at a time and ran body regexes."""
    app_server.post("/sessions", json={"user_id": "u_oracle"}, headers={"X-API-Key": API_KEY})
    console = console_session(app_server, viewer, VIEWER_PASSWORD)
    base = app_server.url + "/console"
    refused = [
        "/sessions_app/session/?token_digest__startswith=a",
        "/sessions_app/session/?token_digest__gt=8",
        "/sessions_app/apikey/?digest__startswith=a",
        "/audit/auditrecord/?body__contains=u_oracle",
        "/audit/auditrecord/?body__regex=(a%2B)%2B%24",
        "/audit/auditrecord/?actor__regex=.*",
        "/sessions_app/session/?user_id__regex=.*",
    ]
    for path in refused:
        response = console.get(base + path, timeout=30)
        assert response.status_code == 400, path
        assert response.headers["Content-Type"].startswith("application/json") and "u_oracle" not in response.text
    # The filters the pages offer still work.
    for path in ["/sessions_app/session/?state=active", "/sessions_app/apikey/?state=revoked", "/audit/auditrecord/?type=decision_audit",
                 "/audit/auditrecord/?since=2020-01-01T00:00", "/audit/verificationrun/?ok__exact=1",
                 "/governance/policyprofile/?active__exact=1"]:  # fmt: skip
        assert console.get(base + path, timeout=30).status_code == 200, path


def _console_login_records(server: Any, *, reason: str | None = None) -> list[dict[str, Any]]:
    return [r for r in mirror_records(server) if r["endpoint"] == "POST /console/login/" and (reason is None or r["reason_codes"] == [reason])]


def test_console_login_throttle_counts_the_normalised_username_exactly(start_app_server):
    """S4: " root" and full-width "ｒｏｏｔ" logged in as root after root was
    throttled; 24 parallel logins got more password checks than the limit;
    console failures were missing from veritta_authn_failures_total and the alert."""
    server = start_app_server(env={"VERITTA_ALERT_AUTHN_FAILURES_PER_MIN": "5"})
    server.create_user("root", VIEWER_PASSWORD)
    for i in range(5):  # five failures, each from its own address
        assert console_login(server, "root", "wrong", source=f"127.0.1.{i + 1}").status_code == 200
    for i, look_alike in enumerate([" root", "root ", "\uff52\uff4f\uff4f\uff54"]):
        refused = console_login(server, look_alike, VIEWER_PASSWORD, source=f"127.0.2.{i + 1}")
        assert refused.status_code == 200 and "Too many failed logins" in refused.text, repr(look_alike)
    throttled = _console_login_records(server, reason="RATE_LIMIT_EXCEEDED")
    assert [r["actor"]["id"] for r in throttled] == ["root"] * 3

    # 24 at once for another user, from 24 addresses: exactly the limit gets a password check.
    server.create_user("bob", VIEWER_PASSWORD)
    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda i: console_login(server, "bob", f"guess-{i}", source=f"127.0.3.{i + 1}"), range(24)))
    assert all(a.status_code == 200 for a in answers)
    bob = [r for r in _console_login_records(server) if r["actor"]["id"] == "bob"]
    assert sorted(r["reason_codes"][0] for r in bob).count("CONSOLE_LOGIN_FAILED") == 5
    assert len(bob) == 24

    # The failures are authentication failures: counted, and an incident.
    metrics = server.get("/metrics", headers={"X-ADMIN-KEY": ADMIN_KEY}).text
    (line,) = [m for m in metrics.splitlines() if m.startswith("veritta_authn_failures_total")]
    assert float(line.split()[-1]) == 10
    alerts = [r for r in mirror_records(server) if r["action"] == "alert" and r["status"] == "PENDING"]
    assert {"console:root", "console:bob"} <= {r["evidence"]["subject"] for r in alerts}


@pytest.fixture(scope="module")
def test_executor_server(tmp_path_factory):
    from conftest import env_for_test_profiles
    from tests.support.appserver import AppServer

    server = AppServer(tmp_path_factory.mktemp("exec"), workers=2, env=env_for_test_profiles()).prepare().start()
    yield server
    server.stop()


def test_executor_raising_system_exit_is_contained_in_the_envelope(test_executor_server):
    """S6: SystemExit from an executor escaped to gunicorn's HTML 500."""
    server = test_executor_server
    response = server.post("/process", json={"action": "exit"}, headers={"X-API-Key": API_KEY})
    assert response.status_code == 500 and response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["reason_codes"] == ["EXECUTOR_FAILED"] and body["trace_id"] == response.headers["X-Trace-ID"]
    records = [r for r in mirror_records(server) if r["trace_id"] == body["trace_id"]]
    assert [(r["status"], r["reason_codes"]) for r in records[1:]] == [("PENDING", ["EXECUTION_ATTEMPT"]), ("FAILED", ["EXECUTOR_FAILED"])]
    assert records[-1]["evidence"]["exc_class"] == "SystemExit"
    # The worker goes on serving.
    assert server.post("/process", json={"action": "noop"}, headers={"X-API-Key": API_KEY}).status_code == 200


def test_outcome_unrecorded_after_execution_is_said_and_named_by_verify(test_executor_server):
    """S5: a 503 said "nothing was executed" when the executor had run and only
    its terminal record failed."""
    server = test_executor_server
    mirror = server.tmp / "audit.log"
    try:
        response = server.post("/process", json={"action": "break_sink"}, headers={"X-API-Key": API_KEY})
    finally:
        mirror.rmdir()
        (server.tmp / "audit.log.moved").rename(mirror)
    assert response.status_code == 503
    body = response.json()
    assert body["reason_codes"] == ["AUDIT_SINK_FAILED"] and "nothing was executed" not in body["message"]
    assert "executed" in body["message"] and body["details"] == {"executed": True, "outcome_recorded": False}
    # On PostgreSQL the PENDING may still wait in the intake (the terminal
    # append, which would have sequenced it, failed): sequence it now.
    server.manage("audit", "sequence")
    (pending,) = [r for r in mirror_records(server) if r["trace_id"] == body["trace_id"] and r["status"] == "PENDING"]
    # An export is checked with no "may still be running" grace for PENDING records.
    export = server.tmp / "export.jsonl"
    server.manage("audit", "export", "--output", str(export))
    report = json.loads(server.manage("audit", "verify", "--file", str(export), "--json", check=False).stdout)
    assert {"seq": pending["seq"], "kind": "incomplete"} in [{"seq": p["seq"], "kind": p["kind"]} for p in report["problems"]]


def test_admin_reads_cannot_use_up_session_revocation(start_app_server):
    """S7: 100 /metrics scrapes in a minute blocked the next session revocation."""
    server = start_app_server(env={"VERITTA_ADMIN_RATE_LIMIT_PER_MIN": "5"})
    admin = {"X-ADMIN-KEY": ADMIN_KEY}
    opened = server.post("/sessions", json={"user_id": "u_brake"}, headers={"X-API-Key": API_KEY}).json()
    scrapes = [server.get("/metrics", headers=admin).status_code for _ in range(7)]
    assert scrapes[:5] == [200] * 5 and scrapes[5:] == [429, 429]  # the read limit holds
    revoked = server.post("/admin/sessions/revoke", json={"session_id": opened["session_id"], "reason": "stolen"}, headers=admin)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"


def test_access_log_lines_stay_json_whatever_the_path(start_app_server):
    """S8: the access log was templated, so %0a or %5c in a path split or broke its lines."""
    server = start_app_server()
    hostile = '/x%0a{"logger":"forged"}%5c%22%0d/'
    assert server.get(hostile).status_code == 404
    server.stop()
    access = []
    for line in filter(str.strip, server.log().splitlines()):
        parsed = json.loads(line)  # every line is one JSON object
        assert parsed.get("logger") != "forged", line
        if parsed.get("logger") == "gunicorn.access":
            access.append(parsed)
    (line,) = [p for p in access if p["path"].startswith("/x")]
    assert line["path"] == '/x\n{"logger":"forged"}\\"\r/' and line["status"] == 404 and uuid.UUID(line["trace_id"])


def test_gunicorn_opens_no_control_socket(start_app_server, tmp_path):
    """S10: gunicorn's control socket was on, in a path shared by every gunicorn the user runs."""
    home, runtime = tmp_path / "home", tmp_path / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    server = start_app_server(env={"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)})
    assert server.get("/health").status_code == 200
    assert not list(runtime.iterdir()) and not (home / ".gunicorn").exists()


def test_check_deploy_refuses_short_api_and_admin_keys(tmp_path):
    """S10: `check --deploy` accepted one-character API and admin keys."""
    from tests.support.appserver import fresh_database_url, manage, server_env

    env = server_env(tmp_path, fresh_database_url(tmp_path))
    env.update(DJANGO_SECURE="true", DJANGO_DEBUG="false", DJANGO_ALLOWED_HOSTS="veritta.example.com",
               DJANGO_SECRET_KEY="k" * 20 + "-production-secret-key-with-enough-entropy-0123456789",
               VERITTA_BETA_API_KEY="x", VERITTA_ADMIN_API_KEY="y" * 31)  # fmt: skip
    result = manage(env, "check", "--deploy", check=False)
    assert result.returncode != 0
    assert "VERITTA_BETA_API_KEY is shorter than 32" in result.stderr and "VERITTA_ADMIN_API_KEY is shorter than 32" in result.stderr


def test_a_webhook_url_that_is_not_http_stops_the_server_from_starting(start_app_server):
    """S10: a file:// webhook URL raised an uncaught TypeError when an alert fired."""
    server = start_app_server()
    server.stop()
    for url in ["file:///etc/passwd", "ftp://127.0.0.1/x", "http:///no-host", "gopher://x"]:
        server.env["VERITTA_ALERT_WEBHOOK_URL"] = url
        with pytest.raises(RuntimeError, match="VERITTA_ALERT_WEBHOOK_URL must be an http"):
            server.start()


def _wait_for_alert_ends(server: Any, timeout: float = 30) -> list[dict[str, Any]]:
    import time

    deadline = time.monotonic() + timeout
    while True:
        ends = [r for r in mirror_records(server) if r["action"] == "alert" and r["status"] in ("SUCCESS", "FAILED")]
        if ends or time.monotonic() > deadline:
            return ends
        time.sleep(0.1)


def test_the_alert_webhook_follows_no_redirect(start_app_server):
    """S10: the webhook followed redirects (a 302/303 became a GET elsewhere)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    reached: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            if self.path.startswith("/elsewhere"):
                reached.append(self.command)
                self.send_response(204)
            else:
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _answer  # noqa: N815 - http.server's names

        def log_message(self, format: str, *args: Any) -> None:
            return None

    webhook = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=webhook.serve_forever, daemon=True).start()
    try:
        server = start_app_server(env={
            "VERITTA_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{webhook.server_address[1]}/alerts",
            "VERITTA_ALERT_AUTHN_FAILURES_PER_MIN": "1", "VERITTA_ALERT_WEBHOOK_ATTEMPTS": "1",
        })  # fmt: skip
        assert server.post("/process", json={"action": "noop"}, headers={"X-API-Key": "wrong"}).status_code == 403
        ends = _wait_for_alert_ends(server)  # alerts are delivered in the background
        assert ends and {r["status"] for r in ends} == {"FAILED"}
        assert reached == []
    finally:
        webhook.shutdown()
        webhook.server_close()


def test_client_text_is_not_stored_as_field_names_or_typed_usernames(app_server):
    """S9: an unknown field named with a card number landed in audit.log, and a
    password typed into the console's username box stayed in the trail."""
    card, typed_password = "4111111111111111", "correct-horse-battery-staple-42"
    response = app_server.post("/process", json={"action": "noop", card: "x"}, headers={"X-API-Key": API_KEY})
    assert response.status_code == 403 and response.json()["reason_codes"] == ["UNKNOWN_FIELDS_PRESENT"]
    opened = app_server.post("/sessions", json={"user_id": "u_x", card + "0": 1}, headers={"X-API-Key": API_KEY})
    assert opened.status_code == 400
    assert console_login(app_server, typed_password, "whatever", source="127.0.4.1").status_code == 200
    (decision,) = [r for r in mirror_records(app_server) if r["trace_id"] == response.json()["trace_id"]]
    assert decision["evidence"]["count"] == 1 and re.fullmatch(r"field_[0-9a-f]{16}", decision["evidence"]["field_digests"][0])
    # What the leak scan does after the suite, here for these two values alone.
    scan = LeakScan(payload_values={card, card + "0", typed_password}, databases=[app_server.database_url])
    assert scan.scan_databases() == (1, []) and scan.scan_files([app_server.tmp])[1] == []

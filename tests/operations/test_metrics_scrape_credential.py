"""The read-only /metrics scrape credential (issue 19, audit/scrape.py),
through a real two-worker gunicorn: Prometheus scrapes without the admin key,
the token opens nothing else, and its scrapes leave the SLOs unchanged."""

from __future__ import annotations

import hashlib
import json
import secrets

from conftest import ADMIN_KEY, API_KEY

TOKEN = secrets.token_urlsafe(32)


def _security_slo(server) -> dict:
    report = json.loads(server.manage("audit", "slo", "--json", check=False).stdout)
    return next(s for s in report["slos"] if s["name"] == "security_violation_rate")


def test_scrapes_with_the_metrics_credential_leave_the_slos_unchanged(start_app_server):
    server = start_app_server(env={"VERITTA_METRICS_TOKEN_SHA256": hashlib.sha256(TOKEN.encode()).hexdigest()})
    assert server.post("/process", json={"action": "test_action"}, headers={"X-API-Key": API_KEY}).status_code == 200
    assert server.post("/process", json={"action": "test_action"}, headers={"X-API-Key": "wrong"}).status_code == 403
    before = _security_slo(server)
    assert (before["value"], before["sample"]) == (0.5, 2)

    for _ in range(5):
        scrape = server.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert scrape.status_code == 200 and "veritta_decisions_total" in scrape.text
    assert _security_slo(server) == before
    # Each scrape is still a record, under its own actor.
    summary = server.manage("audit", "stats", "--json", check=False)
    actors = {row["actor"]: row for row in json.loads(summary.stdout)["by_actor"]}
    assert actors["metrics:scraper"]["ALLOW"] == 5

    # The same scrape with the admin key is counted: the exclusion is by credential.
    assert server.get("/metrics", headers={"X-ADMIN-KEY": ADMIN_KEY}).status_code == 200
    assert _security_slo(server)["sample"] == before["sample"] + 1


def test_the_metrics_credential_opens_nothing_else_and_a_wrong_one_is_refused(start_app_server):
    server = start_app_server(env={"VERITTA_METRICS_TOKEN_SHA256": hashlib.sha256(TOKEN.encode()).hexdigest()})
    wrong = server.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 403 and wrong.json()["reason_codes"] == ["METRICS_TOKEN_INVALID"]
    basic = server.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 403 and basic.json()["reason_codes"] == ["METRICS_TOKEN_INVALID"]
    for path in ("/admin/sessions", "/admin/audit/summary"):
        denied = server.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert denied.status_code == 403 and denied.json()["reason_codes"] == ["ADMIN_KEY_MISSING"]
    as_api_key = server.post("/process", json={"action": "test_action"}, headers={"X-API-Key": TOKEN})
    assert as_api_key.status_code == 403


def test_without_a_configured_credential_a_bearer_scrape_is_refused(app_server):
    response = app_server.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 403 and response.json()["reason_codes"] == ["METRICS_TOKEN_INVALID"]


def test_a_token_in_place_of_its_hash_refuses_to_start(tmp_path):
    from tests.support.appserver import manage, server_env

    env = server_env(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}", {"VERITTA_METRICS_TOKEN_SHA256": TOKEN})
    result = manage(env, "check", check=False)
    assert result.returncode != 0 and "veritta.E004" in result.stderr and TOKEN not in result.stderr

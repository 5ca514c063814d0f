"""GET /metrics through a real multi-worker gunicorn server: counts are exact
whichever worker served a request, because they are counted from the audit
records as they are committed and summed over every worker's samples."""

from __future__ import annotations

import uuid
from pathlib import Path

import requests

from conftest import API_KEY
from tests.operations.conftest import sample, scrape


def test_n_denied_requests_spread_over_workers_add_exactly_n_authn_failures(start_app_server, tmp_path: Path):
    metrics_dir = tmp_path / "metrics"
    server = start_app_server(workers=3, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    before = scrape(server.url)

    n = 40
    for i in range(n):
        # A new connection each time, so the master hands them to any worker.
        key = None if i % 2 else "wrong-key-" + uuid.uuid4().hex
        headers = {"X-API-Key": key} if key else {}
        response = requests.post(server.url + "/process", json={"action": "process"}, headers=headers, timeout=30)
        assert response.status_code == 403

    after = scrape(server.url)
    delta = {name: sample(after, name) - sample(before, name) for name in (
        "veritta_authn_failures_total", "veritta_authz_denials_total", "veritta_policy_violations_total",
    )}  # fmt: skip
    assert delta == {"veritta_authn_failures_total": n, "veritta_authz_denials_total": 0, "veritta_policy_violations_total": 0}
    missing = sample(after, "veritta_decisions_total", decision="DENY", gate="G0", reason_code="MISSING_API_KEY")
    invalid = sample(after, "veritta_decisions_total", decision="DENY", gate="G2", reason_code="GATE_DENIED_INVALID_API_KEY")
    assert (missing, invalid) == (n // 2, n // 2)
    # More than one worker wrote samples: the sums above really span processes.
    assert len({p.name.rsplit("_", 1)[-1] for p in metrics_dir.glob("counter_*.db")}) >= 2


def test_metrics_cover_actions_latency_audit_writes_and_trace_completeness(app_server):
    before = scrape(app_server.url)
    ok = app_server.post("/process", json={"action": "process", "text": "Hello"}, headers={"X-API-Key": API_KEY})
    assert ok.status_code == 200
    after = scrape(app_server.url)

    assert sample(after, "veritta_actions_total", action="process", status="SUCCESS") - sample(
        before, "veritta_actions_total", action="process", status="SUCCESS"
    ) == 1
    assert sample(after, "veritta_decisions_total", decision="ALLOW", gate="ALL") > sample(
        before, "veritta_decisions_total", decision="ALLOW", gate="ALL"
    )
    assert sample(after, "veritta_request_duration_seconds_count", endpoint="POST /process") >= 1
    assert sample(after, "veritta_audit_write_duration_seconds_count") >= 2
    assert "veritta_audit_sink_failures_total" in after
    assert "veritta_rate_limited_total" in after
    assert after["veritta_trace_completeness_ratio"] == 1.0


def test_metrics_need_the_admin_key(app_server):
    missing = app_server.get("/metrics")
    wrong = app_server.get("/metrics", headers={"X-ADMIN-KEY": "not-the-key"})
    assert (missing.status_code, missing.json()["reason_codes"]) == (403, ["ADMIN_KEY_MISSING"])
    assert (wrong.status_code, wrong.json()["reason_codes"]) == (403, ["ADMIN_KEY_INVALID"])
    assert "veritta_" not in missing.text + wrong.text

"""`audit slo` (audit/reports.py): passes on a healthy run of a real server,
fails, names the SLO and raises an alert when an executor is made slow."""

from __future__ import annotations

import json

import requests

from conftest import API_KEY, env_for_test_profiles
from tests.operations.conftest import WebhookReceiver

SLO_ENV = {"VERITTA_SLO_LATENCY_P95_MS": "250", "VERITTA_SLO_LATENCY_P99_MS": "400"}


def _process(server, action: str) -> int:
    return requests.post(server.url + "/process", json={"action": action}, headers={"X-API-Key": API_KEY}, timeout=30).status_code


def test_slo_passes_on_a_healthy_run_and_fails_when_an_executor_is_slow(start_app_server, webhook: WebhookReceiver):
    server = start_app_server(env={**env_for_test_profiles(), **SLO_ENV, "VERITTA_ALERT_WEBHOOK_URL": webhook.url})
    for _ in range(10):
        assert _process(server, "process") == 200

    healthy = server.manage("audit", "slo", "--json", check=False)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    report = json.loads(healthy.stdout)
    assert report["ok"] and {s["name"] for s in report["slos"]} == {
        "latency_p95_ms", "latency_p99_ms", "trace_completeness", "security_violation_rate", "decision_correctness",
    }  # fmt: skip
    assert next(s for s in report["slos"] if s["name"] == "latency_p95_ms")["sample"] == 10
    assert webhook.bodies == []

    for _ in range(3):
        assert _process(server, "slow") == 504  # EXECUTOR_TIMEOUT after 0.5 s

    slow = server.manage("audit", "slo", check=False)
    assert slow.returncode == 1
    assert "latency_p95_ms" in slow.stdout and "BREACH" in slow.stdout
    breached = {b["subject"] for b in webhook.wait_for(2)}
    assert breached == {"latency_p95_ms", "latency_p99_ms"}
    # A second run in the same window alerts no more.
    assert server.manage("audit", "slo", check=False).returncode == 1
    assert len(webhook.bodies) == 2

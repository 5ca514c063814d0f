"""Alerts for rate-limit spikes and executor timeouts (issue 19), raised from a
real two-worker gunicorn server once per minute and subject."""

from __future__ import annotations

import time

from conftest import API_KEY, env_for_test_profiles
from tests.operations.conftest import WebhookReceiver


def test_a_rate_limit_spike_raises_one_alert(start_app_server, webhook: WebhookReceiver):
    threshold = 3
    server = start_app_server(env={
        "VERITTA_ALERT_WEBHOOK_URL": webhook.url,
        "VERITTA_RATE_LIMIT_KEY_PER_MIN": "2",
        "VERITTA_ALERT_RATE_LIMITED_PER_MIN": str(threshold),
    })  # fmt: skip
    refused = 0
    for _ in range(20):  # bounded: the limit gives one request back every 30 s
        status = server.post("/process", json={"action": "test_action"}, headers={"X-API-Key": API_KEY}).status_code
        refused += status == 429
        if refused == threshold + 2:  # past the threshold too: still one alert
            break
    assert refused == threshold + 2
    assert webhook.wait_for(1), server.log()[-6000:]
    (alert,) = webhook.bodies
    time.sleep(1.5)  # any duplicate would have arrived by now
    assert len(webhook.bodies) == 1
    assert (alert["kind"], alert["subject"]) == ("rate_limit_spike", "service")
    assert alert["detail"] == {"refused": threshold, "window_s": 60}


def test_repeated_executor_timeouts_raise_one_alert_for_the_action(start_app_server, webhook: WebhookReceiver):
    threshold = 2
    server = start_app_server(env={
        **env_for_test_profiles(),
        "VERITTA_ALERT_WEBHOOK_URL": webhook.url,
        "VERITTA_ALERT_EXECUTOR_TIMEOUTS_PER_MIN": str(threshold),
    })  # fmt: skip
    for _ in range(2 * threshold - 1):
        assert server.post("/process", json={"action": "slow"}, headers={"X-API-Key": API_KEY}).status_code == 504
    assert server.post("/process", json={"action": "noop"}, headers={"X-API-Key": API_KEY}).status_code == 200
    (alert,) = webhook.wait_for(1)
    time.sleep(1.5)
    assert len(webhook.bodies) == 1
    assert (alert["kind"], alert["subject"]) == ("executor_timeouts", "action:slow")
    assert alert["detail"]["timeouts"] == threshold

"""Alerts (audit/alerts.py): logged, POSTed to the webhook with bounded
retries, audited, deduplicated per (kind, subject) and window across workers,
and never carrying a secret."""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests
from django.core.management import call_command
from django.db import connection
from standardwebhooks import Webhook

from audit import alerts
from audit.alerts import alert_raise
from audit.models import AuditRecord
from audit.triggers import drop_sql
from conftest import API_KEY
from tests.operations.conftest import WebhookReceiver
from tests.settings import TEST_ENV


@pytest.fixture
def alert_settings(settings, loaded_profiles, audit_log):
    settings.VERITTA_ALERT_DEDUP_S = 300
    settings.VERITTA_ALERT_WEBHOOK_TIMEOUT_S = 1.0
    return settings


def test_an_alert_is_posted_audited_and_deduplicated(alert_settings, webhook):
    alert_settings.VERITTA_ALERT_WEBHOOK_URL = webhook.url
    subject = f"test_{uuid.uuid4().hex[:8]}"
    first = alert_raise(kind="slo_breach", subject=subject, summary="latency", detail={"value": "1.5"}, background=False)
    second = alert_raise(kind="slo_breach", subject=subject, summary="latency", background=False)
    other = alert_raise(kind="slo_breach", subject=subject + "_b", summary="latency", background=False)

    assert first is not None and second is None and other is not None
    bodies = webhook.wait_for(2)
    assert [b["subject"] for b in bodies] == [subject, subject + "_b"]
    assert bodies[0]["kind"] == "slo_breach" and bodies[0]["alert_id"] == first.alert_id
    statuses = list(AuditRecord.objects.filter(trace_id=first.alert_id).order_by("seq").values_list("action", "status"))
    assert statuses == [("alert", "PENDING"), ("alert", "SUCCESS")]


def test_the_dedup_period_runs_from_the_alert_in_every_process(alert_settings):
    """Periods used to be clock-aligned (time // VERITTA_ALERT_DEDUP_S): two
    alerts could go out a second apart, one each side of a boundary."""
    from sessions_app.models import RateLimitState

    alert_settings.VERITTA_ALERT_DEDUP_S = 2
    subject = f"test_{uuid.uuid4().hex[:8]}"
    assert alerts._first_in_period("slo_breach", subject)
    started = time.time()
    assert not alerts._first_in_period("slo_breach", subject)  # this process remembers its claim
    alerts._claimed.clear()  # as another worker process would be: the shared claim stands
    assert not alerts._first_in_period("slo_breach", subject)
    claim = RateLimitState.objects.get(bucket=f"alert:slo_breach:{subject}")
    assert claim.tat_us - claim.seen_us == 2_000_000
    time.sleep(max(0.0, started + 2.1 - time.time()))
    assert alerts._first_in_period("slo_breach", subject)  # two seconds after the alert, not at a boundary


def test_every_delivery_is_signed_and_a_receiver_refuses_tampering_replay_and_other_keys(alert_settings, webhook):
    alert_settings.VERITTA_ALERT_WEBHOOK_URL = webhook.url
    alert = alert_raise(kind="slo_breach", subject=f"t_{uuid.uuid4().hex[:8]}", summary="x", background=False)
    assert alert is not None and webhook.refused == []
    [(headers, body)] = webhook.requests
    headers = {k.lower(): v for k, v in headers.items()}
    assert headers["webhook-id"] == alert.alert_id and headers["webhook-signature"].startswith("v1,")

    def resend(new_headers: dict[str, str], new_body: bytes) -> int:
        # Straight to the receiver (not through `requests`, whose answers the suite checks as Verittà's).
        request = urllib.request.Request(webhook.url, data=new_body, headers=new_headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status
        except urllib.error.HTTPError as refused:
            return refused.code

    assert resend(headers, body) == 401 and webhook.refused[-1] == "replayed webhook-id"
    tampered = body.replace(b'"slo_breach"', b'"verify_failed"')
    assert resend({**headers, "webhook-id": "other-id"}, tampered) == 401
    assert webhook.refused[-1] == "No matching signature found"
    # Signed with another secret, or replayed later with its old timestamp: refused.
    other_secret = "whsec_" + base64.b64encode(b"another-secret-of-thirty-two-byt").decode()
    forged = signed_with(other_secret, "forged-id", body, datetime.now(tz=UTC))
    assert resend(forged, body) == 401 and webhook.refused[-1] == "No matching signature found"
    stale = signed_with(TEST_ENV["VERITTA_ALERT_WEBHOOK_SECRET"], "stale-id", body, datetime.now(tz=UTC) - timedelta(minutes=10))
    assert resend(stale, body) == 401 and webhook.refused[-1] == "Message timestamp too old"
    assert len(webhook.bodies) == 1


def signed_with(secret: str, message_id: str, body: bytes, when: datetime) -> dict[str, str]:
    signature = Webhook(secret).sign(msg_id=message_id, timestamp=when, data=body)
    return {"webhook-id": message_id, "webhook-timestamp": str(int(when.timestamp())), "webhook-signature": signature}


def test_a_webhook_without_a_usable_secret_refuses_to_start(settings):
    from veritta_site.checks import webhook_url_check

    settings.VERITTA_ALERT_WEBHOOK_URL = "https://alerts.example.test/hook"
    for secret, problem in [
        ("", "is not set"),
        ("dGVzdA==", "must start with whsec_"),
        ("whsec_not base64!", "is not base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "must hold 24 to 64 bytes"),
    ]:
        settings.VERITTA_ALERT_WEBHOOK_SECRET = secret
        [error] = webhook_url_check()
        assert error.id == "veritta.E013" and problem in error.msg


def test_retries_of_one_alert_keep_its_webhook_id(alert_settings):
    receiver = WebhookReceiver(fail_first=1)
    try:
        alert_settings.VERITTA_ALERT_WEBHOOK_URL = receiver.url
        alert = alert_raise(kind="verify_failed", subject=f"t_{uuid.uuid4().hex[:8]}", summary="x", background=False)
        assert alert is not None and receiver.attempts == 2
        [(headers, _)] = receiver.requests
        assert {k.lower(): v for k, v in headers.items()}["webhook-id"] == alert.alert_id
    finally:
        receiver.stop()


def test_a_failing_webhook_is_retried_a_bounded_number_of_times(alert_settings):
    receiver = WebhookReceiver(fail_first=2)
    try:
        alert_settings.VERITTA_ALERT_WEBHOOK_URL = receiver.url
        alert_settings.VERITTA_ALERT_WEBHOOK_ATTEMPTS = 3
        alert = alert_raise(kind="verify_failed", subject=f"t_{uuid.uuid4().hex[:8]}", summary="x", background=False)
        assert receiver.attempts == 3 and len(receiver.bodies) == 1
        assert alert is not None
        end = json.loads(AuditRecord.objects.filter(trace_id=alert.alert_id, status="SUCCESS").get().body)
        assert end["evidence"]["attempts"] == 3
    finally:
        receiver.stop()


def test_an_unreachable_webhook_fails_within_its_bounds_and_is_audited_failed(alert_settings):
    alert_settings.VERITTA_ALERT_WEBHOOK_URL = "http://127.0.0.1:9/nothing-listens-here"
    alert_settings.VERITTA_ALERT_WEBHOOK_ATTEMPTS = 2
    started = time.monotonic()
    alert = alert_raise(kind="audit_sink_failure", subject=f"t_{uuid.uuid4().hex[:8]}", summary="x", background=False)
    assert time.monotonic() - started < 2 * 1.0 + 1.5 + 1  # attempts x timeout + backoff
    assert alert is not None
    assert AuditRecord.objects.filter(trace_id=alert.alert_id, status="FAILED").exists()


def test_an_authentication_incident_over_several_workers_posts_exactly_one_alert(start_app_server, webhook):
    threshold = 5
    server = start_app_server(
        workers=3,
        env={"VERITTA_ALERT_WEBHOOK_URL": webhook.url, "VERITTA_ALERT_AUTHN_FAILURES_PER_MIN": str(threshold)},
    )
    wrong_keys = [f"wrong-{uuid.uuid4().hex}" for _ in range(2 * threshold - 1)]
    trace_ids = []
    for key in wrong_keys:
        # One minute window per subject: with 2 x threshold - 1 failures, only one
        # minute can reach the threshold even if the burst straddles a minute.
        response = requests.post(server.url + "/process", json={"action": "process"}, headers={"X-API-Key": key}, timeout=30)
        assert response.status_code == 403
        trace_ids.append(response.json()["trace_id"])

    bodies = webhook.wait_for(1)
    time.sleep(1.5)  # any duplicate would have arrived by now
    assert len(webhook.bodies) == 1, webhook.bodies
    alert = bodies[0]
    assert alert["kind"] == "auth_incident" and alert["subject"].startswith("client:ip_")
    assert alert["detail"] == {"failures": threshold, "window_s": 60}
    sent = json.dumps(alert)
    assert not any(key in sent for key in wrong_keys) and "127.0.0.1" not in sent and API_KEY not in sent

    # The alert is audited, and its log line carries the trace id of the request that raised it.
    stats = json.loads(server.manage("audit", "stats", "--json").stdout)
    assert stats["by_action"]["alert"]["SUCCESS"] == 1
    lines = [json.loads(line) for line in server.log().splitlines() if '"veritta.alerts"' in line]
    assert len(lines) == 1 and lines[0]["trace_id"] in trace_ids


def test_a_failed_verify_raises_one_alert(alert_settings, webhook, api):
    alert_settings.VERITTA_ALERT_WEBHOOK_URL = webhook.url
    alerts._claimed.clear()  # this process may have raised one in an earlier test
    assert api.process({"action": "process", "text": "hi"}).status_code == 200
    with connection.cursor() as cursor:
        for statement in drop_sql(connection.vendor):
            cursor.execute(statement)
        cursor.execute("UPDATE audit_auditrecord SET body = replace(body, '\"ALLOW\"', '\"DENY\"') WHERE seq = 1")
    with pytest.raises(SystemExit) as exit_:
        call_command("audit", "verify", "--json", stdout=io.StringIO())
    assert exit_.value.code == 1
    [alert] = webhook.wait_for(1)
    assert alert["kind"] == "verify_failed" and alert["subject"] == "audit_chain"
    assert alert["detail"]["first_seq"] == 1 and alert["detail"]["kinds"]["content"] >= 1


def test_an_audit_sink_failure_raises_an_alert_from_the_server(start_app_server, webhook, tmp_path):
    not_a_dir = tmp_path / "not-a-directory"
    not_a_dir.write_text("")
    server = start_app_server(workers=2, env={"VERITTA_ALERT_WEBHOOK_URL": webhook.url})
    server.stop()
    server.env["VERITTA_AUDIT_LOG_PATH"] = str(not_a_dir / "audit.log")  # the mirror cannot be opened
    server.start()
    for _ in range(3):
        response = server.post("/process", json={"action": "process", "text": "hi"}, headers={"X-API-Key": API_KEY})
        assert (response.status_code, response.json()["reason_codes"]) == (503, ["AUDIT_SINK_FAILED"])
    [alert] = webhook.wait_for(1)
    time.sleep(1)
    assert len(webhook.bodies) == 1
    assert alert["kind"] == "audit_sink_failure" and alert["detail"] == {"exc_class": alert["subject"]}

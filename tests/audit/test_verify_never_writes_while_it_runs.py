"""Verification only reads the chain (docs/AUDIT_LOG_SPEC.md §7): a verify,
clean or failing, of the database or of an export, adds no record; the alert
about a failed verify is recorded after the records it verified, and says
which was the last of them."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.db import connection

from audit import alerts
from audit.models import AuditRecord
from audit.selectors import audit_verify
from audit.triggers import drop_sql
from tests.operations.conftest import webhook  # noqa: F401  (the fixture)

SMOKE = {"action": "test_action", "event_type": "test_event"}


def chain() -> list[str]:
    return list(AuditRecord.objects.order_by("seq").values_list("body", flat=True))


@pytest.fixture
def two_requests(api):
    for _ in range(2):
        assert api.process(SMOKE).status_code == 200
    assert len(chain()) == 6
    return api


def test_verifying_the_database_or_an_export_adds_no_record(two_requests, tmp_path):
    before = chain()
    assert audit_verify().ok
    export = tmp_path / "e.jsonl"
    call_command("audit", "export", "--output", str(export), stderr=io.StringIO())
    call_command("audit", "verify", "--file", str(export), "--anchor", f"{export}.anchor", stdout=io.StringIO())
    assert chain() == before
    with connection.cursor() as cursor:
        for statement in drop_sql(connection.vendor):
            cursor.execute(statement)
        cursor.execute("UPDATE audit_auditrecord SET body = replace(body, '\"ALLOW\"', '\"DENY\"') WHERE seq = 4")
    tampered = chain()
    report = audit_verify()
    assert [(p.seq, p.kind) for p in report.problems] == [(4, "content")]
    assert chain() == tampered  # finding a problem writes nothing either


def test_a_failed_verify_is_alerted_after_it_ran_and_says_so(two_requests, settings, webhook):  # noqa: F811
    settings.VERITTA_ALERT_WEBHOOK_URL = webhook.url
    settings.VERITTA_ALERT_WEBHOOK_TIMEOUT_S = 1.0
    alerts._claimed.clear()  # this process may have raised one in an earlier test
    with connection.cursor() as cursor:
        for statement in drop_sql(connection.vendor):
            cursor.execute(statement)
        cursor.execute("UPDATE audit_auditrecord SET body = replace(body, '\"ALLOW\"', '\"DENY\"') WHERE seq = 4")
    verified = chain()
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("audit", "verify", "--json", stdout=out)
    assert exit_.value.code == 1 and json.loads(out.getvalue())["last_seq"] == 6
    [alert] = webhook.wait_for(1)
    assert alert["kind"] == "verify_failed" and alert["detail"]["verified_upto_seq"] == 6
    assert "verified records 1..6; this alert is recorded after them" in alert["summary"]
    after = [json.loads(body) for body in chain()]
    assert [json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False) for r in after[:6]] == verified
    # The alert's own records, after the verified ones: two action records, no decision.
    assert [(r["seq"], r["event_type"], r["endpoint"], r["actor"], r["status"]) for r in after[6:]] == [
        (7, "action_audit", "alert", {"kind": "system", "id": "alerts"}, "PENDING"),
        (8, "action_audit", "alert", {"kind": "system", "id": "alerts"}, "SUCCESS"),
    ]

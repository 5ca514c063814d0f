"""The JSONL mirror holds every record, one canonical line each, in seq
order, so `grep TRACE audit.log | jq .` works; it survives rotation."""

from __future__ import annotations

import json

from audit.models import AuditRecord

SMOKE = {"action": "test_action", "event_type": "test_event"}


def test_every_record_is_mirrored_with_every_field(api, audit_log):
    trace = api.process(SMOKE).json()["trace_id"]
    lines = [line for line in audit_log.read_text().splitlines() if trace in line]
    assert len(lines) == 3
    bodies = list(AuditRecord.objects.filter(trace_id=trace).order_by("seq").values_list("body", flat=True))
    assert lines == bodies
    assert [json.loads(line)["seq"] for line in lines] == sorted(json.loads(line)["seq"] for line in lines)


def test_mirror_reopens_after_rotation(api, audit_log):
    api.process(SMOKE)
    rotated = audit_log.with_name("audit.log.1")
    audit_log.rename(rotated)
    trace = api.process(SMOKE).json()["trace_id"]
    assert trace in audit_log.read_text()
    assert trace not in rotated.read_text()
    assert len(rotated.read_text().splitlines()) == 3


def test_unwritable_mirror_fails_closed_and_keeps_nothing(api, settings, tmp_path, audit_records):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings.VERITTA_AUDIT_LOG_PATH = blocker / "audit.log"  # its parent is a file: open() fails
    response = api.process(SMOKE)
    assert response.status_code == 503 and response.json()["reason_codes"] == ["AUDIT_SINK_FAILED"]
    assert audit_records(response.json()["trace_id"]) == []

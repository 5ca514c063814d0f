"""`audit summary | stats` and GET /admin/audit/summary: one set of queries
(audit/reports.py), computed by the database over the indexed columns."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.reports import AUTHN_FAILURE_CODES, AUTHZ_DENIAL_CODES, POLICY_VIOLATION_CODES, audit_summary
from audit.rollups import fold
from veritta_site.errors import CATALOGUE


def _traffic(api) -> None:
    assert api.process({"action": "process", "text": "hi"}).status_code == 200
    assert api.process({"action": "process", "text": "hi"}).status_code == 200
    assert api.process({"action": "process"}, key=None).status_code == 403  # MISSING_API_KEY
    assert api.process({"action": "process"}, key="wrong").status_code == 403  # GATE_DENIED_INVALID_API_KEY
    assert api.process({"action": "process", "is_admin": True}).status_code == 403  # ADMIN_SIGNAL_FORBIDDEN


def _command(*args: str) -> dict:
    out = StringIO()
    call_command("audit", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_summary_counts_decisions_denials_and_types(api):
    _traffic(api)
    summary = _command("summary", "--days", "1")
    assert summary["decisions"] == {"ALLOW": 2, "DENY": 3}
    assert summary["deny_breakdown"] == {"ADMIN_SIGNAL_FORBIDDEN": 1, "GATE_DENIED_INVALID_API_KEY": 1, "MISSING_API_KEY": 1}
    assert summary["events_by_type"] == {"action_audit": 4, "decision_audit": 5}  # PENDING + SUCCESS per allowed request
    only_actions = _command("summary", "--event-type", "action_audit")
    assert only_actions["events_by_type"] == {"action_audit": 4} and only_actions["decisions"] == {"ALLOW": 0, "DENY": 0}


def test_admin_summary_endpoint_answers_what_the_command_computes(api, admin):
    _traffic(api)
    direct = audit_summary(days=1, limit=10000, event_type=None)
    answer = admin.admin_get("/admin/audit/summary", days=1).json()  # its own record comes after the count
    for key in ("decisions", "deny_breakdown", "events_by_type"):
        assert answer[key] == direct[key], key
    assert set(answer["window"]) == {"days", "since", "until", "limit", "event_type", "events", "truncated"}


def test_summary_reads_rollups_and_record_counts_never_bodies(api):
    _traffic(api)
    fold()  # what the previous report or `audit rollup` did
    with CaptureQueriesContext(connection) as queries:
        audit_summary(days=7, limit=None, event_type=None)
    sqls = [query["sql"].lower() for query in queries]
    assert any("audit_rollupcount" in sql and "group by" in sql for sql in sqls), sqls
    for sql in sqls:
        assert "body" not in sql, sql
        if "from \"audit_auditrecord\"" in sql:
            # aggregates only, apart from the fold's probe for records after the watermark
            assert "group by" in sql or "count(" in sql or ("order by" in sql and "limit" in sql), sql


def test_summary_limit_counts_only_the_newest_records(api):
    _traffic(api)
    summary = audit_summary(days=1, limit=3, event_type="decision_audit")
    assert summary["window"]["events"] == 3 and summary["window"]["truncated"]
    assert summary["decisions"] == {"ALLOW": 0, "DENY": 3}  # the three denials came last


def test_stats_by_reason_code_action_actor_and_hour(api):
    _traffic(api)
    stats = _command("stats", "--days", "1")
    codes = {(r["event_type"], r["reason_code"]): r["count"] for r in stats["by_reason_code"]}
    assert codes == {
        ("decision_audit", "MISSING_API_KEY"): 1,
        ("decision_audit", "GATE_DENIED_INVALID_API_KEY"): 1,
        ("decision_audit", "ADMIN_SIGNAL_FORBIDDEN"): 1,
    }
    assert stats["by_action"]["process"] == {"PENDING": 2, "SUCCESS": 2, "FAILED": 0, "BLOCKED": 0}
    actors = {r["actor"]: (r["ALLOW"], r["DENY"]) for r in stats["by_actor"]}
    assert actors == {"api_key:bootstrap": (2, 1), "anonymous:-": (0, 2)}
    assert sum(h["ALLOW"] for h in stats["by_hour"]) == 2 and sum(h["DENY"] for h in stats["by_hour"]) == 3
    one_code = _command("stats", "--reason-code", "MISSING_API_KEY")
    assert [r["reason_code"] for r in one_code["by_reason_code"]] == ["MISSING_API_KEY"]


def test_tables_are_printed_without_json(api):
    _traffic(api)
    for sub in ("summary", "stats"):
        out = StringIO()
        call_command("audit", sub, stdout=out)
        assert "MISSING_API_KEY" in out.getvalue()


def test_security_categories_cover_every_credential_profile_and_registry_code():
    credential = {c for c, r in CATALOGUE.items() if r.where.startswith(("G0", "G2", "G4", "admin G0", "admin G2", "console login"))}
    assert credential == AUTHN_FAILURE_CODES
    assert {c for c, r in CATALOGUE.items() if r.where == "profile"} == POLICY_VIOLATION_CODES
    assert {c for c, r in CATALOGUE.items() if r.where == "registry"} < AUTHZ_DENIAL_CODES


def test_security_rate_over_too_few_decisions_is_shown_but_not_judged(api, settings):
    _traffic(api)  # 3 security denials among 5 decisions: 0.6
    slo = {s["name"]: s for s in _command("slo")["slos"]}["security_violation_rate"]
    assert slo["value"] == 0.6 and slo["sample"] == 5 and slo["ok"]
    assert slo["note"] == "not judged: fewer than 100 decisions"

    settings.VERITTA_SLO_SECURITY_MIN_DECISIONS = 5
    out = StringIO()
    with pytest.raises(SystemExit) as breached:
        call_command("audit", "slo", "--json", stdout=out)
    assert breached.value.code == 1
    slo = {s["name"]: s for s in json.loads(out.getvalue())["slos"]}["security_violation_rate"]
    assert not slo["ok"] and slo["note"] == ""

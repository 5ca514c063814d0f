"""GET /admin/audit/summary, /events, /traces/{id}, /checkpoints/latest and
/admin/health: shapes, parameter bounds, filters, pagination, and answers
computed by the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

SMOKE = {"action": "test_action", "event_type": "test_event"}


@pytest.fixture
def traffic(api):
    """Two allowed requests (3 records each) and two denials."""
    allowed = [api.process(SMOKE).json()["trace_id"] for _ in range(2)]
    api.process(SMOKE, key="wrong")
    api.process({"action": "not_in_profile"})
    return allowed


def test_summary_has_the_seed_shape_and_counts_from_the_database(admin, traffic):
    response = admin.admin_get("/admin/audit/summary")
    assert response.status_code == 200
    body = response.json()
    # The seed's shape, plus the approval steps (issue 14, docs/APPROVALS.md "Changes to SPEC")
    assert set(body) == {"window", "decisions", "deny_breakdown", "events_by_type", "approvals", "ts_utc"}
    assert body["decisions"] == {"ALLOW": 2, "DENY": 2}
    assert body["deny_breakdown"] == {"GATE_DENIED_INVALID_API_KEY": 1, "PROFILE_ACTION_MISMATCH": 1}
    assert body["events_by_type"] == {"decision_audit": 4, "action_audit": 4}
    assert body["window"]["days"] == 1 and body["window"]["limit"] == 10000 and body["window"]["truncated"] is False


def test_summary_limit_counts_only_the_newest_records(admin, traffic, api):
    for _ in range(40):
        api.process(SMOKE, key="wrong")
    body = admin.admin_get("/admin/audit/summary", limit=100, event_type="decision_audit").json()
    assert body["window"]["events"] == 44 and body["events_by_type"] == {"decision_audit": 44}
    for _ in range(60):
        api.process(SMOKE, key="wrong")
    body = admin.admin_get("/admin/audit/summary", limit=100, event_type="decision_audit").json()
    assert body["window"]["events"] == 100 and body["window"]["truncated"] is True
    # The newest hundred: 99 denials and the first summary call's own ALLOW.
    assert body["decisions"] == {"ALLOW": 1, "DENY": 99}


@pytest.mark.parametrize(
    "params",
    [{"days": 0}, {"days": 8}, {"days": "x"}, {"limit": 99}, {"limit": 50001}, {"event_type": "other"}, {"colour": "red"}],
)
def test_summary_parameters_out_of_bounds_are_400(admin, params):
    response = admin.admin_get("/admin/audit/summary", **params)
    assert response.status_code == 400 and response.json()["reason_codes"] == ["VALIDATION_ERROR"]
    assert response.json()["details"]["fields"] == list(params)


def test_events_filter_and_paginate_by_cursor_newest_first(admin, traffic):
    seen, cursor = [], None
    while True:
        params = {"event_type": "action_audit", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = admin.admin_get("/admin/audit/events", **params).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 4 and all(r["event_type"] == "action_audit" for r in seen)
    seqs = [r["seq"] for r in seen]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 4


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"decision": "DENY"}, 2),
        ({"reason_code": "PROFILE_ACTION_MISMATCH"}, 1),
        ({"status": "SUCCESS"}, 2),
        ({"actor": "bootstrap"}, 7),
        ({"actor": "api_key:bootstrap"}, 7),
        ({"actor": "anonymous:nobody"}, 0),
    ],
)
def test_events_filters(admin, traffic, params, expected):
    items = admin.admin_get("/admin/audit/events", **params).json()["items"]
    assert len(items) == expected
    for name, value in params.items():
        if name in ("decision", "status"):
            assert {r[name] for r in items} == {value}


def test_events_by_trace_and_time_window(admin, traffic):
    items = admin.admin_get("/admin/audit/events", trace_id=traffic[0]).json()["items"]
    assert {r["trace_id"] for r in items} == {traffic[0]} and len(items) == 3
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert admin.admin_get("/admin/audit/events", since=future).json()["items"] == []
    assert len(admin.admin_get("/admin/audit/events", until=future, limit=1000).json()["items"]) >= 8


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"cursor": 0}, {"since": "yesterday"}, {"decision": "MAYBE"}])
def test_events_parameters_out_of_bounds_are_400(admin, params):
    assert admin.admin_get("/admin/audit/events", **params).json()["reason_codes"] == ["VALIDATION_ERROR"]


def test_trace_returns_every_record_of_one_request_in_order(admin, traffic):
    body = admin.admin_get(f"/admin/audit/traces/{traffic[1]}").json()
    assert body["trace_id"] == traffic[1]
    assert [(r["event_type"], r["status"]) for r in body["records"]] == [
        ("decision_audit", None),
        ("action_audit", "PENDING"),
        ("action_audit", "SUCCESS"),
    ]


def test_unknown_trace_is_404(admin):
    response = admin.admin_get("/admin/audit/traces/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404 and response.json()["reason_codes"] == ["NOT_FOUND"]


def test_latest_checkpoint_with_its_verifier_key(admin, traffic):
    from audit.checkpoints import checkpoint_create, public_vkey

    assert admin.admin_get("/admin/audit/checkpoints/latest").status_code == 404
    checkpoint = checkpoint_create()
    body = admin.admin_get("/admin/audit/checkpoints/latest").json()
    assert body == {"tree_size": checkpoint.tree_size, "root_hash": checkpoint.root_hash, "note": checkpoint.note, "vkey": public_vkey()}


def test_health_queries_the_database_and_checks_the_audit_sink(admin):
    body = admin.admin_get("/admin/health").json()
    assert body["status"] == "ok" and body["db"] == "ok" and body["audit_sink"] == "ok" and body["ts_utc"]


def test_health_is_503_degraded_when_the_audit_sink_is_not_writable(admin, settings, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings.VERITTA_AUDIT_LOG_PATH = blocker / "audit.log"
    response = admin.admin_get("/admin/health")
    assert response.status_code == 503 and response.json()["reason_codes"] == ["SERVICE_DEGRADED"]
    assert response.json()["details"]["status"] == "degraded" and response.json()["details"]["audit_sink"] == "unavailable"
    assert response.json()["details"]["db"] == "ok"


def test_other_admin_reads_refuse_when_their_record_cannot_be_written(admin, settings, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings.VERITTA_AUDIT_LOG_PATH = blocker / "audit.log"
    response = admin.admin_get("/admin/audit/summary")
    assert response.status_code == 503 and response.json()["reason_codes"] == ["AUDIT_SINK_FAILED"]


@pytest.mark.parametrize("trace_id", ["not-a-uuid%00", "..%2F..%2Faudit.log", "' OR '1'='1", "0" * 37])
def test_malformed_trace_ids_are_404_without_reaching_the_database(admin, trace_id):
    response = admin.admin_get(f"/admin/audit/traces/{trace_id}")
    assert response.status_code == 404 and response.json()["reason_codes"] == ["NOT_FOUND"]

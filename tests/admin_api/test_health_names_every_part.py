"""GET /admin/health names every part a governed request depends on, with a
status each, and answers 503 SERVICE_DEGRADED when any of them fails: the
database, the append-only triggers, the mirror and its disk, Redis (a real
one, stopped under it), checkpoint freshness and, on PostgreSQL, the intake's
integration lag (through a real server with the chain lock held)."""

from __future__ import annotations

import os
import time

import pytest
from django.core.management import call_command
from django.db import connection

from audit.triggers import drop_sql
from conftest import ADMIN_KEY, API_KEY
from tests.security.test_batched_write_path_faults import hold_chain_lock
from tests.support.servers import RedisServer

PARTS = {"db", "triggers", "audit_sink", "redis", "checkpoint", "integration"}
ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith("postgres")


def health(admin) -> tuple[int, dict]:
    response = admin.admin_get("/admin/health")
    body = response.json()
    if response.status_code == 503:
        assert body["reason_codes"] == ["SERVICE_DEGRADED"]
        return 503, body["details"]
    return response.status_code, body


def test_a_healthy_service_reports_every_part(admin):
    status, report = health(admin)
    assert status == 200 and report["status"] == "ok"
    assert PARTS <= set(report)
    assert report["db"] == report["triggers"] == report["audit_sink"] == report["checkpoint"] == "ok"
    assert report["redis"] == "not_configured"
    assert report["integration"] == ("ok" if connection.vendor == "postgresql" else "not_used")
    assert report["audit_sink_free_mb"] > 0


def test_dropped_triggers_fail_it(admin):
    with connection.cursor() as cursor:
        for statement in drop_sql(connection.vendor):
            cursor.execute(statement)
    status, report = health(admin)
    assert (status, report["status"], report["triggers"]) == (503, "degraded", "missing")
    assert report["db"] == "ok"


def test_a_full_disk_under_the_mirror_fails_it(admin, settings):
    settings.VERITTA_AUDIT_SINK_MIN_FREE_MB = 2**40  # more than any disk has
    status, report = health(admin)
    assert (status, report["audit_sink"]) == (503, "low_space")


def test_records_left_unsealed_past_the_bound_fail_it_until_a_checkpoint(admin, api, settings):
    settings.VERITTA_AUDIT_CHECKPOINT_EVERY = 0  # only `audit checkpoint` seals
    settings.VERITTA_AUDIT_CHECKPOINT_MAX_AGE_S = 1.0
    assert api.process({"action": "test_action", "event_type": "t"}).status_code == 200
    time.sleep(1.2)
    status, report = health(admin)
    assert (status, report["checkpoint"]) == (503, "stale")
    assert report["unsealed_records"] >= 3 and report["checkpoint_age_s"] is None
    call_command("audit", "checkpoint", stdout=open(os.devnull, "w"))
    status, report = health(admin)
    assert (status, report["checkpoint"]) == (200, "ok")
    assert report["checkpoint_age_s"] is not None and report["checkpoint_age_s"] < 60


def test_redis_going_away_fails_it_and_the_report_still_gets_out(admin, settings):
    with RedisServer() as redis_server:
        settings.VERITTA_RATE_LIMIT_URL = redis_server.url
        status, report = health(admin)
        assert (status, report["redis"]) == (200, "ok")
    # Redis is stopped: /process would refuse (RATE_LIMIT_UNAVAILABLE); health says why.
    status, report = health(admin)
    assert (status, report["redis"]) == (503, "unavailable")
    assert report["db"] == "ok"


@pytest.mark.skipif(not ON_POSTGRES, reason="the intake and its sequencer are PostgreSQL's")
def test_integration_lag_fails_it_through_a_real_server(start_app_server):
    server = start_app_server(env={"VERITTA_AUDIT_MAX_MERGE_DELAY_S": "2", "VERITTA_AUDIT_SEQUENCER_INTERVAL_S": "0.1"})
    admin_headers = {"X-ADMIN-KEY": ADMIN_KEY}
    holder = hold_chain_lock(server.database_url)  # a sequencer stuck mid-batch
    try:
        assert server.post("/process", json={"action": "noop"}, headers={"X-API-Key": API_KEY}).status_code == 200
        time.sleep(0.8)  # past a quarter of the merge delay
        response = server.get("/admin/health", headers=admin_headers)
        report = response.json()["details"]
        assert (response.status_code, report["integration"]) == (503, "lagging")
        assert report["integration_lag_s"] >= 0.5
    finally:
        holder.close()
    deadline = time.monotonic() + 10
    while True:  # the standby sequencers integrate what waited
        response = server.get("/admin/health", headers=admin_headers)
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert response.status_code == 200 and response.json()["integration"] == "ok"

"""What `GET /admin/health` checks: every part a governed request depends on,
each with its own status, so a load balancer or an operator sees which one
failed (docs/ADMIN_API.md, docs/OPERATIONS.md).

    db           the database answers a query
    triggers     the append-only triggers are present and enabled
    audit_sink   the JSONL mirror is writable and its disk has room
    redis        the rate counters' Redis answers (when VERITTA_RATE_LIMIT_URL is set)
    checkpoint   no record has waited longer than VERITTA_AUDIT_CHECKPOINT_MAX_AGE_S
                 for a signed checkpoint to seal it
    integration  PostgreSQL: no record has waited in the intake past a quarter
                 of the maximum merge delay (when the alert fires)

A part that is not used here says so ("not_configured", "not_used") and
does not fail the report; any other status than "ok" does.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection

from audit.chain import max_merge_delay, oldest_waiting
from audit.mirror import mirror
from audit.models import AuditRecord, Checkpoint
from audit.selectors import audit_head_seq
from audit.triggers import missing_or_disabled
from sessions_app.ratelimit import RateLimitUnavailable, store
from veritta_site.timestamps import utc_timestamp

PASSING = ("ok", "not_configured", "not_used")


def _seconds(delta: Any) -> float:
    return round(delta.total_seconds(), 3)


def _database(report: dict[str, Any]) -> bool:
    try:
        head = audit_head_seq()
        report["triggers"] = "missing" if missing_or_disabled(connection) else "ok"
    except DatabaseError:
        report.update(db="unavailable", triggers="unknown")
        return False
    report["db"] = "ok"
    report["head_seq"] = head
    return True


def _audit_sink(report: dict[str, Any]) -> None:
    try:
        mirror().check_writable()
        free = shutil.disk_usage(settings.VERITTA_AUDIT_LOG_PATH.parent).free
    except OSError:
        report["audit_sink"] = "unavailable"
        return
    report["audit_sink_free_mb"] = free // 2**20
    report["audit_sink"] = "ok" if free >= settings.VERITTA_AUDIT_SINK_MIN_FREE_MB * 2**20 else "low_space"


def _redis(report: dict[str, Any]) -> None:
    if not settings.VERITTA_RATE_LIMIT_URL:
        report["redis"] = "not_configured"
        return
    try:
        store().ping()  # type: ignore[union-attr]
        report["redis"] = "ok"
    except RateLimitUnavailable:
        report["redis"] = "unavailable"


def _checkpoint(report: dict[str, Any], now: datetime) -> None:
    """Stale when the oldest record no checkpoint covers is older than the bound."""
    try:
        latest = Checkpoint.objects.order_by("-tree_size").values("tree_size", "created_at").first()
        sealed = latest["tree_size"] if latest else 0
        report["checkpoint_age_s"] = _seconds(now - latest["created_at"]) if latest else None
        report["unsealed_records"] = max(0, report["head_seq"] - sealed)
        first_unsealed = AuditRecord.objects.filter(seq=sealed + 1).values_list("ts_utc", flat=True).first()
    except DatabaseError:
        report["checkpoint"] = "unknown"
        return
    waited = now - first_unsealed if first_unsealed else None
    report["checkpoint"] = (
        "stale" if waited and waited.total_seconds() > settings.VERITTA_AUDIT_CHECKPOINT_MAX_AGE_S else "ok"
    )


def _integration(report: dict[str, Any], now: datetime) -> None:
    if connection.vendor != "postgresql":
        report["integration"], report["integration_lag_s"] = "not_used", None
        return
    try:
        oldest = oldest_waiting()
    except DatabaseError:
        report["integration"], report["integration_lag_s"] = "unknown", None
        return
    lag = now - oldest if oldest else None
    report["integration_lag_s"] = _seconds(lag) if lag else 0.0
    report["integration"] = "lagging" if lag and lag > max_merge_delay() / 4 else "ok"


def health_report() -> dict[str, Any]:
    """Every check, then "status": "ok" only when none failed."""
    now = datetime.now(UTC)
    report: dict[str, Any] = {"status": "ok"}
    if _database(report):
        _checkpoint(report, now)
        _integration(report, now)
    else:
        report.update(checkpoint="unknown", integration="unknown")
    _audit_sink(report)
    _redis(report)
    report.pop("head_seq", None)
    failing = [name for name in CHECKS if report.get(name) not in PASSING]
    report["status"] = "degraded" if failing else "ok"
    report["ts_utc"] = utc_timestamp()
    return report


CHECKS = ("db", "triggers", "audit_sink", "redis", "checkpoint", "integration")

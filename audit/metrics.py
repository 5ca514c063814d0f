"""Prometheus metrics (GET /metrics), correct across gunicorn worker processes.

Decisions and actions are counted from the audit records themselves, at one
point: the chain writer calls `observe_appended` after each commit, so every
record that exists is counted exactly once and no gate needs instrumenting.
Request durations come from `RequestMetricsMiddleware`; the trace
completeness gauge is computed from the database at scrape time.

Under gunicorn, prometheus_client runs in multiprocess mode: each worker
writes its samples to files in PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py
makes one per server and marks dead workers), and a scrape sums them all.
Without that variable (tests, `manage.py`), the process's own registry is used.

Security counters use the categories of audit.reports (docs/OPERATIONS.md):
    veritta_authn_failures_total      MISSING_API_KEY, GATE_DENIED_INVALID_API_KEY, SESSION_*, ADMIN_KEY_*, CONSOLE_LOGIN_FAILED
    veritta_authz_denials_total       AUTHZ_DENIED (the authz gate), PROFILE_ACTION_MISMATCH, ADMIN_SIGNAL_FORBIDDEN, the registry's codes
    veritta_policy_violations_total   the profile gate's codes
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from audit.records import DECISION
from audit.reports import NOT_SERVICE_TRAFFIC_ACTORS, security_categories, trace_completeness

logger = logging.getLogger("veritta.metrics")

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Commands run with a server's environment write their samples there too
    # (a record is counted by whichever process committed it); make sure it exists.
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

DECISIONS = Counter(
    "veritta_decisions",
    "Decision records, by decision, deciding gate and reason code.",
    ["decision", "gate", "reason_code"],
)
ACTIONS = Counter(
    "veritta_actions", "Action records, by action and status (PENDING, SUCCESS, FAILED, BLOCKED).", ["action", "status"]
)
AUTHN_FAILURES = Counter(
    "veritta_authn_failures", "Denials for a missing or invalid credential (key, session, admin key, console login)."
)
AUTHZ_DENIALS = Counter("veritta_authz_denials", "Denials of an action the credential may not run (authz, profile, registry).")
POLICY_VIOLATIONS = Counter("veritta_policy_violations", "Denials by the policy profile gate.")
APPROVAL_STEPS = {"APPROVAL_HELD": "held", "APPROVAL_GRANTED": "approved", "APPROVAL_REJECTED": "rejected", "APPROVAL_EXPIRED": "expired"}
APPROVALS = Counter("veritta_approvals", "Four-eyes approval steps: held, approved (one per approver), rejected, expired.", ["step"])
APPROVAL_DECISION_SECONDS = Histogram(
    "veritta_approval_decision_seconds", "Time from a request's hold to its decision: last approval, rejection or expiry.",
    ["outcome"], buckets=(60, 300, 900, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600),
)
RATE_LIMITED = Counter("veritta_rate_limited", "Requests refused with RATE_LIMIT_EXCEEDED.")
SCRAPES = Counter("veritta_metrics_scrapes", "Scrapes with the metrics credential (not in veritta_decisions_total).")
REQUEST_DURATION = Histogram("veritta_request_duration_seconds", "Time to answer a request, by endpoint.", ["endpoint"])
AUDIT_WRITE_DURATION = Histogram(
    "veritta_audit_write_duration_seconds",
    "Time to append records to the chain (lock, insert, mirror, commit).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
AUDIT_SINK_FAILURES = Counter(
    "veritta_audit_sink_failures", "Appends the database or the mirror refused (AUDIT_SINK_FAILED)."
)

AUDIT_INTEGRATED = Histogram(
    "veritta_audit_integration_batch_records",
    "Records the sequencer moved from the intake into the chain per transaction (PostgreSQL).",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
AUDIT_GROUP_COMMIT_WRITES = Histogram(
    "veritta_audit_group_commit_writes",
    "Request threads' writes committed together by one group commit (SQLite, threaded workers).",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
AUDIT_INTEGRATION_SECONDS = Histogram(
    "veritta_audit_integration_seconds",
    "Time the sequencer held the chain lock per batch (PostgreSQL).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
AUDIT_INTEGRATION_LAGS = Counter(
    "veritta_audit_integration_lags",
    "Times a sequencer found the intake's oldest record waiting past a quarter of the merge delay.",
)

_CATEGORY_COUNTERS = {
    "authn_failure": AUTHN_FAILURES,
    "authz_denial": AUTHZ_DENIALS,
    "policy_violation": POLICY_VIOLATIONS,
}


# The labelled children, kept: `labels()` validates and locks on every call,
# and the pipeline counts 4 per request. The label values are few (routes,
# actions, decisions, gates, reason codes), as they are in the metrics.
_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, the same child, looked up once."""
    key = (metric, *values)
    child = _children.get(key)
    if child is None:
        child = _children.setdefault(key, metric.labels(*values))
    return child


def observe_appended(drafts: list[dict[str, Any]], *, since: datetime) -> None:
    """Count records just committed by the chain writer (`since`: when it began).

    Never raises: metrics must not fail a request whose records are written."""
    try:
        AUDIT_WRITE_DURATION.observe((datetime.now(UTC) - since).total_seconds())
        for record in drafts:
            codes = record.get("reason_codes") or []
            code = codes[0] if codes else ""
            if record["event_type"] != DECISION:
                _child(ACTIONS, record.get("action") or "", record.get("status") or "").inc()
                if record.get("status") == "FAILED" and code == "EXECUTOR_TIMEOUT":
                    from audit.alerts import executor_timeout_observed

                    executor_timeout_observed(action=record.get("action") or "")
                continue
            if (record.get("actor") or {}).get("kind") in NOT_SERVICE_TRAFFIC_ACTORS:
                SCRAPES.inc()  # no traffic of the service: kept out of the decision counters
                continue
            _child(DECISIONS, record.get("decision") or "", record.get("gate") or "", code).inc()
            if code in APPROVAL_STEPS:
                _observe_approval(APPROVAL_STEPS[code], record.get("evidence") or {})
                continue
            if record.get("decision") != "DENY":
                continue
            if code == "RATE_LIMIT_EXCEEDED":
                RATE_LIMITED.inc()
                from audit.alerts import rate_limited_observed

                rate_limited_observed()
            categories = security_categories(code)
            for category in categories:
                _CATEGORY_COUNTERS[category].inc()
            if "authn_failure" in categories:
                from audit.alerts import authn_failure_observed

                authn_failure_observed(client=record.get("client"), actor=record.get("actor") or {})
    except Exception:  # noqa: BLE001 - observation is best effort
        logger.exception("metrics observation failed")


def _observe_approval(step: str, evidence: dict[str, Any]) -> None:
    APPROVALS.labels(step).inc()
    decided = step in ("rejected", "expired") or evidence.get("approvals", 0) >= evidence.get("approvals_needed", 1)
    if step != "held" and decided and isinstance(evidence.get("waited_s"), int):
        APPROVAL_DECISION_SECONDS.labels(step).observe(evidence["waited_s"])


def observe_integrated(records: int, *, since: datetime) -> None:
    try:
        AUDIT_INTEGRATED.observe(records)
        AUDIT_INTEGRATION_SECONDS.observe((datetime.now(UTC) - since).total_seconds())
    except Exception:  # noqa: BLE001 - observation is best effort
        logger.exception("metrics observation failed")


def observe_group_commit(writes: int) -> None:
    try:
        AUDIT_GROUP_COMMIT_WRITES.observe(writes)
    except Exception:  # noqa: BLE001 - observation is best effort
        logger.exception("metrics observation failed")


def observe_integration_lag(lag: timedelta) -> None:
    """The intake is behind: count it and raise an alert."""
    try:
        AUDIT_INTEGRATION_LAGS.inc()
        from audit.alerts import integration_lag_observed

        integration_lag_observed(lag_s=lag.total_seconds())
    except Exception:  # noqa: BLE001 - the sequencer goes on whatever happens here
        logger.exception("integration lag observation failed")


def observe_sink_failure(exc: BaseException) -> None:
    """The chain writer could not append: count it and raise an alert."""
    try:
        AUDIT_SINK_FAILURES.inc()
        from audit.alerts import sink_failure_observed

        sink_failure_observed(exc_class=type(exc).__name__)
    except Exception:  # noqa: BLE001 - the caller is already failing closed
        logger.exception("sink failure observation failed")


# --- requests ----------------------------------------------------------------------

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def endpoint_label(request: HttpRequest) -> str:
    """The route pattern, never the raw path, so the label set stays small."""
    method = request.method if request.method in _METHODS else "OTHER"
    match = getattr(request, "resolver_match", None)
    return f"{method} /{match.route}" if match is not None else f"{method} unmatched"


class RequestMetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        _child(REQUEST_DURATION, endpoint_label(request)).observe(time.perf_counter() - started)
        return response


# --- the scrape -----------------------------------------------------------------------


class TraceCompletenessCollector(Collector):
    """Share of recent PENDING records, old enough to be over, that have their
    terminal record (1.0 when there are none). Computed by the database per scrape."""

    def collect(self) -> Iterator[Metric]:
        since = datetime.now(UTC) - timedelta(seconds=settings.VERITTA_METRICS_COMPLETENESS_WINDOW_S)
        complete, pending = trace_completeness(since=since)
        yield GaugeMetricFamily(
            "veritta_trace_completeness_ratio",
            "PENDING action records with their terminal record, over the recent window.",
            value=complete / pending if pending else 1.0,
        )


class DecisionCorrectnessCollector(Collector):
    """Share of the recent re-decidable /process decisions that their profile
    version re-decides the same (audit/correctness.py; 1.0 when there are
    none): the decision-correctness SLO, for Prometheus's alert rule."""

    def collect(self) -> Iterator[Metric]:
        from audit.correctness import decision_correctness
        from audit.reports import Window

        window = Window.last(hours=settings.VERITTA_METRICS_COMPLETENESS_WINDOW_S / 3600)
        sampled = decision_correctness(window=window, sample=settings.VERITTA_SLO_CORRECTNESS_SAMPLE)
        yield GaugeMetricFamily(
            "veritta_decision_correctness_ratio",
            "Sampled recent decisions that their profile version re-decides the same.",
            value=sampled.correct / sampled.checked if sampled.checked else 1.0,
        )


def metrics_exposition() -> bytes:
    """The Prometheus text exposition of every metric, all workers summed."""
    scrape = CollectorRegistry()
    scrape.register(TraceCompletenessCollector())
    scrape.register(DecisionCorrectnessCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(scrape)
        return generate_latest(scrape)
    return generate_latest(REGISTRY) + generate_latest(scrape)

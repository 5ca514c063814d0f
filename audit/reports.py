"""Operator reports over the audit trail: summary, stats and SLOs (SPEC §7).

One module for every aggregate read, used by `manage.py audit summary|stats|slo`,
GET /admin/audit/summary and the /metrics scrape, so each rule lives here once.
Everything is computed by the database over the indexed columns of
audit_auditrecord (event_type, decision, status, action, reason_code,
actor_kind/actor_id, ts_utc); record bodies are read only for the latency
percentiles, and then only `duration_us` of terminal action records, by the
database's own JSON functions. Nothing here parses the JSONL mirror.

The security categories (which reason codes count as an authentication
failure, an authorization denial or a policy violation) are defined in
audit/security_codes.py; /metrics and the security SLO both use them
(docs/OPERATIONS.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Min, Q, QuerySet

from audit.correctness import decision_correctness
from audit.models import AuditRecord
from audit.records import ACTION, DECISION, TERMINAL_STATUSES
from audit.rollups import Split, fold, folded_seq, split
from audit.security_codes import (  # noqa: F401  (re-exported: the reports' categories)
    AUTHN_FAILURE_CODES,
    AUTHZ_DENIAL_CODES,
    POLICY_VIOLATION_CODES,
    REGISTRY_CODES,
    SECURITY_CODES,
    security_categories,
)
from audit.verify import in_flight_cutoff
from veritta_site.timestamps import utc_timestamp

Progress = Callable[[str], None]


def _quiet(step: str) -> None:
    return None


# --- windows --------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime

    @classmethod
    def last(cls, *, days: float = 0, hours: float = 0, now: datetime | None = None) -> Window:
        until = now or datetime.now(UTC)
        return cls(since=until - timedelta(days=days, hours=hours), until=until)

    def records(self) -> QuerySet[AuditRecord]:
        # serves: the (ts_utc, event_type) index
        return AuditRecord.objects.filter(ts_utc__gte=self.since, ts_utc__lt=self.until)

    def split(self, *, upto: int | None = None) -> Split:
        """The window as rolled-up hours plus the records they do not hold,
        up to seq `upto` (default: the chain's head)."""
        return split(self.since, self.until, upto=upto)

    def folded(self, progress: Progress) -> Split:
        """Fold the records sequenced so far, then split: a report counts the
        records up to its fold, and reads none raw but the window's cut hours."""
        progress("folding new records into the rollups")
        fold()
        return self.split(upto=folded_seq())

    def as_dict(self) -> dict[str, str]:
        return {"since": utc_timestamp(self.since), "until": utc_timestamp(self.until)}


# --- audit summary (seed 003: GET /admin/audit/summary, `audit summary`) ---------


def audit_summary(
    *, days: int, limit: int | None, event_type: str | None, now: datetime | None = None, progress: Progress = _quiet
) -> dict[str, Any]:
    """Decisions (ALLOW/DENY), denials by reason code and records by type over
    the last `days`, counting at most the newest `limit` records (None: all).

    One GROUP BY over the window's hourly rollups and the records they do not
    hold (audit/rollups.py); with `limit`, over the newest records themselves.
    A second query counts the approval steps (`_approvals`)."""
    window = Window.last(days=days, now=now)
    parts = window.folded(progress)
    only_type = Q(event_type=event_type) if event_type else Q()
    records = window.records().filter(only_type, seq__lte=parts.upto)
    if limit is not None:
        progress(f"finding the newest {limit} records")
        nth_newest = list(records.order_by("-seq").values_list("seq", flat=True)[limit - 1 : limit])
        if nth_newest:
            # a cut inside an hour: counted from the records themselves (at most `limit`)
            records = records.filter(seq__gte=nth_newest[0])
            parts = Split.all_raw(window.since, window.until, records)
    progress("counting records by type, decision and reason code")
    counted = parts.counts(("event_type", "decision", "reason_code"), only_type)
    events_by_type: Counter[str] = Counter()
    decisions = dict.fromkeys(("ALLOW", "DENY"), 0)
    deny_breakdown: Counter[str] = Counter()
    for (kind, decision, code), n in counted.items():
        events_by_type[kind] += n
        if kind == DECISION and decision in decisions:
            decisions[decision] += n
            if decision == "DENY":
                deny_breakdown[code or "UNKNOWN"] += n
    progress("counting approval steps")
    approvals = _approvals(records)
    events = sum(events_by_type.values())
    return {
        "window": {
            "days": days,
            **window.as_dict(),
            "limit": limit,
            "event_type": event_type,
            "events": events,
            "truncated": limit is not None and events >= limit,
        },
        "decisions": decisions,
        "deny_breakdown": _by_count(dict(deny_breakdown)),
        "events_by_type": dict(sorted(events_by_type.items())),
        "approvals": approvals,
        "ts_utc": utc_timestamp(window.until),
    }


# The decision records of four-eyes approval (docs/APPROVALS.md), all under the
# held request's trace id; the payload's deletion marks the end of the wait
# (executed, rejected or expired).
APPROVAL_STEP_CODES = (
    "APPROVAL_HELD",
    "APPROVAL_GRANTED",
    "APPROVAL_REJECTED",
    "APPROVAL_EXPIRED",
    "HELD_PAYLOAD_DELETED",
)


def _approvals(records: QuerySet[AuditRecord]) -> dict[str, Any]:
    """Requests held, approvals, rejections and expiries, and the time from
    hold to decision: one GROUP BY trace over the approval steps' records
    (reason codes and timestamps only, from the reason-code index)."""
    steps = records.filter(event_type=DECISION, reason_code__in=APPROVAL_STEP_CODES)
    per_trace = list(
        steps.values("trace_id")
        .annotate(
            held=Min("ts_utc", filter=Q(reason_code="APPROVAL_HELD")),
            ended=Min("ts_utc", filter=Q(reason_code="HELD_PAYLOAD_DELETED")),
            granted=Count("seq", filter=Q(reason_code="APPROVAL_GRANTED")),
            rejected=Count("seq", filter=Q(reason_code="APPROVAL_REJECTED")),
            expired=Count("seq", filter=Q(reason_code="APPROVAL_EXPIRED")),
        )
        .order_by()
    )
    waits = sorted(
        (t["ended"] - t["held"]).total_seconds() for t in per_trace if t["held"] is not None and t["ended"] is not None
    )
    return {
        "held": sum(1 for t in per_trace if t["held"] is not None),
        "approvals": sum(t["granted"] for t in per_trace),
        "rejections": sum(t["rejected"] for t in per_trace),
        "expiries": sum(t["expired"] for t in per_trace),
        "executed": sum(1 for t in per_trace if t["ended"] is not None and not t["rejected"] and not t["expired"]),
        "time_to_decision_s": {
            "decided": len(waits),
            "p50": round(waits[(len(waits) - 1) // 2], 3) if waits else None,
            "max": round(waits[-1], 3) if waits else None,
        },
    }


def _by_count(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


# --- audit stats: by reason code, action, actor and hour ----------------------------


def audit_stats(
    *, window: Window, reason_code: str | None = None, top: int = 20, progress: Progress = _quiet
) -> dict[str, Any]:
    """Where the traffic and the trouble are. With `reason_code`, every table is
    limited to the records carrying it (e.g. who hit RATE_LIMIT_EXCEEDED, when)."""
    parts = window.folded(progress)
    only_code = Q(reason_code=reason_code) if reason_code else Q()

    progress("reason codes")
    # EXECUTION_ATTEMPT: the marker every PENDING record carries
    coded = parts.counts(
        ("event_type", "reason_code"), only_code & Q(reason_code__isnull=False) & ~Q(reason_code="EXECUTION_ATTEMPT")
    )
    by_reason = [
        {"event_type": kind, "reason_code": code, "count": n}
        for (kind, code), n in sorted(coded.items(), key=lambda item: (-item[1], *item[0]))
    ]

    progress("actions")
    by_action: dict[str, dict[str, int]] = {}
    for (action, status), n in parts.counts(("action", "status"), only_code & Q(event_type=ACTION)).items():
        row = by_action.setdefault(action or "-", {"PENDING": 0, **dict.fromkeys(TERMINAL_STATUSES, 0)})
        status = status or "-"  # an action record always has one
        row[status] = row.get(status, 0) + n

    progress("actors")
    actors: dict[tuple[str | None, str | None], Counter[str]] = {}
    for (kind, actor_id, decision), n in parts.counts(
        ("actor_kind", "actor_id", "decision"), only_code & Q(event_type=DECISION)
    ).items():
        actors.setdefault((kind, actor_id), Counter())[decision] += n
    ranked = sorted(actors.items(), key=lambda item: (-item[1].total(), item[0][0] or "", item[0][1] or ""))
    by_actor = [
        {"actor": f"{kind or 'anonymous'}:{actor_id or '-'}", "ALLOW": c["ALLOW"], "DENY": c["DENY"]}
        for (kind, actor_id), c in ranked[:top]
    ]

    progress("hours")
    hours: dict[datetime, Counter[str]] = {}
    for (hour, decision), n in parts.counts(("hour", "decision"), only_code & Q(event_type=DECISION)).items():
        hours.setdefault(hour, Counter())[decision] += n
    by_hour = [
        {"hour": utc_timestamp(hour), "ALLOW": c["ALLOW"], "DENY": c["DENY"]} for hour, c in sorted(hours.items())
    ]
    return {
        "window": window.as_dict(),
        "reason_code": reason_code,
        "by_reason_code": by_reason,
        "by_action": dict(sorted(by_action.items())),
        "by_actor": by_actor,
        "by_hour": by_hour,
    }


# --- trace completeness, latency, security rate ---------------------------------------


def trace_completeness(*, since: datetime, cutoff: datetime | None = None, upto: int | None = None) -> tuple[int, int]:
    """(PENDING records with their terminal record, PENDING records), for PENDING
    records written since `since` and old enough (before `cutoff`, default: the
    executor timeout plus grace, as `audit verify`) that their request is over."""
    cutoff = cutoff or in_flight_cutoff(settings.VERITTA_EXECUTOR_TIMEOUT_S)
    if cutoff <= since:
        return 0, 0
    parts = split(since, cutoff, upto=upto)
    total = parts.count(Q(event_type=ACTION, status="PENDING"))
    return (parts.completed_pending(terminals_since=since) if total else 0), total


def latency_percentiles(
    *, window: Window, percentiles: tuple[float, ...] = (0.95, 0.99), upto: int | None = None
) -> tuple[int, dict[float, int | None]]:
    """(sample size, {p: duration_us}) of terminal action records that ran an
    executor (SUCCESS, FAILED), by the nearest-rank method over the exact
    durations: how many records took each one, from the hourly rollups and the
    records they do not hold."""
    durations = window.split(upto=upto).durations()
    n = sum(durations.values())
    if not n:
        return 0, dict.fromkeys(percentiles)
    # ceil(p * n) in integer arithmetic, so 0.95 * 20 is rank 19, not 19.000000000000004 -> 20
    ranks = {p: max(1, (round(p * 100) * n + 99) // 100) for p in percentiles}
    values: dict[float, int | None] = {}
    seen = 0
    for duration in sorted(durations):
        seen += durations[duration]
        for p, rank in ranks.items():
            if p not in values and seen >= rank:
                values[p] = duration
    return n, values


# Scrapes with the metrics credential (audit/scrape.py) are recorded but are no
# traffic of the service: counted, every scrape would dilute the rate.
NOT_SERVICE_TRAFFIC_ACTORS = ("metrics",)


def security_violations(*, window: Window, upto: int | None = None) -> tuple[int, int]:
    """(denials whose code is a security category, decisions) in the window,
    scrapes with the metrics credential left out."""
    parts = window.split(upto=upto)
    decisions = Q(event_type=DECISION) & ~Q(actor_kind__in=NOT_SERVICE_TRAFFIC_ACTORS)
    bad = parts.count(decisions & Q(decision="DENY", reason_code__in=sorted(SECURITY_CODES)))
    return bad, parts.count(decisions)


# --- SLOs (seed 004 §8.3) -----------------------------------------------------------


@dataclass(frozen=True)
class Objectives:
    window_hours: float
    latency_p95_ms: float
    latency_p99_ms: float
    trace_completeness: float
    security_violation_rate: float
    security_min_decisions: int = 0  # from settings: VERITTA_SLO_SECURITY_MIN_DECISIONS
    decision_correctness: float = 1.0  # from settings: VERITTA_SLO_DECISION_CORRECTNESS
    correctness_sample: int = 200  # VERITTA_SLO_CORRECTNESS_SAMPLE

    @classmethod
    def from_settings(cls) -> Objectives:
        return cls(
            window_hours=settings.VERITTA_SLO_WINDOW_HOURS,
            latency_p95_ms=settings.VERITTA_SLO_LATENCY_P95_MS,
            latency_p99_ms=settings.VERITTA_SLO_LATENCY_P99_MS,
            trace_completeness=settings.VERITTA_SLO_TRACE_COMPLETENESS,
            security_violation_rate=settings.VERITTA_SLO_SECURITY_VIOLATION_RATE,
            security_min_decisions=settings.VERITTA_SLO_SECURITY_MIN_DECISIONS,
            decision_correctness=settings.VERITTA_SLO_DECISION_CORRECTNESS,
            correctness_sample=settings.VERITTA_SLO_CORRECTNESS_SAMPLE,
        )


@dataclass(frozen=True)
class SloResult:
    name: str
    objective: str  # e.g. "<= 1000 ms"
    value: float | None  # None: no data in the window
    sample: int
    ok: bool
    note: str = ""  # why a value was not judged against its objective


@dataclass
class SloReport:
    window: Window
    results: list[SloResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def breaches(self) -> list[SloResult]:
        return [r for r in self.results if not r.ok]

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "window": self.window.as_dict(), "slos": [asdict(r) for r in self.results]}


def _at_most(name: str, value: float | None, limit: float, sample: int, unit: str = "") -> SloResult:
    return SloResult(name, f"<= {limit:g}{unit}", value, sample, value is None or value <= limit)


def audit_slo(*, objectives: Objectives, now: datetime | None = None, progress: Progress = _quiet) -> SloReport:
    """Each SLO over the last `window_hours`, against its objective. An SLO with
    no data in the window (no executor ran, no request came) is not breached."""
    window = Window.last(hours=objectives.window_hours, now=now)
    report = SloReport(window)
    upto = window.folded(progress).upto

    progress("latency percentiles")
    n, values = latency_percentiles(window=window, upto=upto)
    for p, limit in ((0.95, objectives.latency_p95_ms), (0.99, objectives.latency_p99_ms)):
        us = values[p]
        report.results.append(
            _at_most(f"latency_p{round(p * 100)}_ms", None if us is None else us / 1000, limit, n, " ms")
        )

    progress("trace completeness")
    complete, pending = trace_completeness(since=window.since, upto=upto)
    ratio = complete / pending if pending else None
    limit = objectives.trace_completeness
    report.results.append(
        SloResult("trace_completeness", f">= {limit:g}", ratio, pending, ratio is None or ratio >= limit)
    )

    progress("security violation rate")
    bad, total = security_violations(window=window, upto=upto)
    rate = _at_most(
        "security_violation_rate", bad / total if total else None, objectives.security_violation_rate, total
    )
    if total and total < objectives.security_min_decisions:
        # A rate over a handful of decisions says nothing: the README's one
        # denial among its five examples is 0.2. Development and production
        # share this rule; production volumes are far above the minimum.
        rate = replace(rate, ok=True, note=f"not judged: fewer than {objectives.security_min_decisions} decisions")
    report.results.append(rate)

    progress("decision correctness")
    sampled = decision_correctness(window=window, sample=objectives.correctness_sample)
    share = sampled.correct / sampled.checked if sampled.checked else None
    limit = objectives.decision_correctness
    note = "; ".join(f"seq {seq}: {why}" for seq, why in sampled.wrong[:3])
    report.results.append(
        SloResult(
            "decision_correctness", f">= {limit:g}", share, sampled.checked, share is None or share >= limit, note
        )
    )
    return report

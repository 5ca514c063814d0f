"""Reads of the audit trail. Everything streams in `seq` order by keyset
pagination, so memory stays flat whatever the size of the log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from audit.anchors import checkpoints_read
from audit.chain import max_merge_delay
from audit.keyring import KeyRing, configured_keyring
from audit.models import AuditIntake, AuditRecord, Checkpoint, VerificationRun
from audit.records import ACTION, DECISION, parse_body
from audit.triggers import missing_or_disabled
from audit.verify import ChainVerifier, Report, external_checkpoints, in_flight_cutoff

_COLUMNS = (
    "seq, record_hash, prev_hash, event_type, trace_id, decision, status, action,"
    " reason_code, actor_kind, actor_id, body"
)
_NAMES = [c.strip() for c in _COLUMNS.split(",")]


def audit_rows_stream(*, after: int = 0, upto: int | None = None, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """Every record row (columns + body) with seq in (after, upto], in seq order."""
    while True:
        sql = f"SELECT {_COLUMNS} FROM audit_auditrecord WHERE seq > %s"
        params: list[Any] = [after]
        if upto is not None:
            sql += " AND seq <= %s"
            params.append(upto)
        sql += " ORDER BY seq LIMIT %s"
        params.append(batch)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if not rows:
            return
        for row in rows:
            yield dict(zip(_NAMES, row, strict=True))
        after = rows[-1][0]


def audit_seq_range(*, since: datetime | None, until: datetime | None) -> tuple[int, int] | None:
    """The first and last seq of the records in the time window (for `audit
    export`): an export is every record between them, so it never has a gap."""
    qs = AuditRecord.objects.all()
    if since is not None:
        qs = qs.filter(ts_utc__gte=since)
    if until is not None:
        qs = qs.filter(ts_utc__lt=until)
    first = qs.order_by("seq").values_list("seq", flat=True).first()
    last = qs.order_by("-seq").values_list("seq", flat=True).first()
    return None if first is None or last is None else (first, last)


def audit_bodies_between(*, since: datetime | None, until: datetime | None) -> Iterator[str]:
    """Record bodies in seq order, from the first to the last in the time window."""
    extent = audit_seq_range(since=since, until=until)
    if extent is not None:
        for row in audit_rows_stream(after=extent[0] - 1, upto=extent[1]):
            yield row["body"]


def audit_head_seq() -> int:
    row = AuditRecord.objects.order_by("-seq").values_list("seq", flat=True).first()
    return int(row or 0)


@dataclass(frozen=True)
class IntakeStatus:
    """Records committed to the intake of the batched write path (PostgreSQL)
    and not yet in the chain."""

    waiting: int
    oldest_age_s: float | None


def audit_intake_status() -> IntakeStatus | None:
    """None where there is no batched write path (SQLite)."""
    if connection.vendor != "postgresql":
        return None
    oldest = AuditIntake.objects.order_by("id").values_list("queued_at", flat=True).first()
    age = (timezone.now() - oldest).total_seconds() if oldest else None
    return IntakeStatus(waiting=AuditIntake.objects.count(), oldest_age_s=age)


def audit_records_for_trace(*, trace_id: str) -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(trace_id=trace_id).order_by("seq"))


def checkpoint_latest() -> Checkpoint | None:
    return Checkpoint.objects.order_by("-tree_size").first()


def audit_verify(
    *,
    vkey: str | KeyRing | None = None,
    checkpoint_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Verify the whole chain in the database against its checkpoints, both
    those stored in the database and those written outside it. It only reads:
    nothing is written into the chain while it runs."""
    vkey = vkey or _configured_vkey()
    directory = checkpoint_dir or Path(settings.VERITTA_AUDIT_CHECKPOINT_DIR)
    stored = list(Checkpoint.objects.values_list("tree_size", "note", "frontier"))
    sources = [(f"database checkpoint {size}", note) for size, note, _ in stored]
    sources += external_checkpoints(directory)
    anchors = checkpoints_read(sources, vkey, directory=directory, frontiers={size: f for size, _, f in stored})
    verifier = ChainVerifier(
        checkpoints=anchors.checkpoints,
        sealed=anchors.sealed(),
        in_flight_after=in_flight_cutoff(settings.VERITTA_EXECUTOR_TIMEOUT_S),
    )
    verifier.report.problems.extend(anchors.problems)
    verifier.report.warnings += anchors.warnings
    verifier.report.signatures_checked = bool(vkey)
    verifier.report.warnings += [f"append-only trigger {p}" for p in missing_or_disabled(connection)]
    total = audit_head_seq()
    for row in audit_rows_stream():
        verifier.feed(row.pop("body"), row)
        if progress is not None and verifier.report.records % 10000 == 0:
            progress(verifier.report.records, total)
    # Records still in the intake: only those past their merge deadline are
    # problems, so one integrated while the chain was read is never blamed.
    verifier.check_intake(
        AuditIntake.objects.order_by("id").values_list("id", "entry_hash", "queued_at").iterator(),
        deadline_passed_before=timezone.now() - max_merge_delay(),
    )
    return verifier.finish()


def _configured_vkey() -> KeyRing | None:
    """The key ring file, or the configured signing key alone (audit/keyring.py)."""
    return configured_keyring()


# --- the admin API (GET /admin/audit/...) ---------------------------------------


EVENT_FILTERS = ("trace_id", "event_type", "decision", "status", "reason_code")


def audit_events_page(
    *, filters: dict[str, Any], cursor: int | None, limit: int
) -> tuple[list[str], int | None]:
    """One page of record bodies, newest first (keyset pagination on seq).

    Returns the bodies and the cursor of the next page (None on the last)."""
    qs = AuditRecord.objects.order_by("-seq")
    for name in EVENT_FILTERS:
        if filters.get(name):
            qs = qs.filter(**{name: filters[name]})
    actor = filters.get("actor")
    if actor:
        kind, sep, actor_id = actor.partition(":")
        qs = qs.filter(actor_kind=kind, actor_id=actor_id) if sep else qs.filter(actor_id=actor)
    if filters.get("since"):
        qs = qs.filter(ts_utc__gte=filters["since"])
    if filters.get("until"):
        qs = qs.filter(ts_utc__lt=filters["until"])
    if cursor is not None:
        qs = qs.filter(seq__lt=cursor)
    rows = list(qs.values_list("seq", "body")[: limit + 1])
    next_cursor = rows[limit - 1][0] if len(rows) > limit else None
    return [body for _, body in rows[:limit]], next_cursor


# --- the console (audit/admin.py) ---------------------------------------------------


@dataclass(frozen=True)
class TraceStep:
    record: AuditRecord
    body: dict[str, Any]
    # True when this record directly follows the trace's previous one in the
    # chain and its prev_hash is that record's hash; None when other requests'
    # records were appended in between (the link is then to one of those).
    linked_to_previous: bool | None


@dataclass(frozen=True)
class TraceView:
    trace_id: str
    steps: list[TraceStep]
    pending: int  # PENDING action records
    terminal: int  # SUCCESS / FAILED / BLOCKED action records that follow a PENDING
    has_decision: bool

    @property
    def complete(self) -> bool:
        """Every PENDING has its terminal record (SPEC §7 completeness)."""
        return self.has_decision and self.terminal >= self.pending


def audit_trace_view(*, trace_id: str) -> TraceView:
    """Every record of one request in seq order, and whether the trace is complete.
    One query on the trace_id index."""
    steps: list[TraceStep] = []
    previous: AuditRecord | None = None
    for record in audit_records_for_trace(trace_id=trace_id):
        follows = previous is not None and record.seq == previous.seq + 1
        linked = (record.prev_hash == previous.record_hash) if follows and previous else None
        steps.append(TraceStep(record, parse_body(record.body), linked))
        previous = record
    pending = sum(1 for s in steps if s.record.status == "PENDING")
    terminal = sum(1 for s in steps if s.record.status in ("SUCCESS", "FAILED"))
    return TraceView(
        trace_id=trace_id,
        steps=steps,
        pending=pending,
        terminal=terminal,
        has_decision=any(s.record.event_type == DECISION for s in steps),
    )


def audit_dashboard(*, since: datetime) -> dict[str, Any]:
    """The console dashboard's figures since `since`: three GROUP BY queries, each
    a range scan of one of the (event_type, decision|status, ts_utc) indexes."""
    from django.db.models import Count, Value
    from django.db.models.functions import Coalesce, Substr, TruncHour

    decisions = AuditRecord.objects.filter(event_type=DECISION, decision__in=("ALLOW", "DENY"), ts_utc__gte=since)
    if connection.vendor == "sqlite":
        # SQLite keeps the time as text, "YYYY-MM-DD HH:MM:SS…" in UTC: its first 13
        # characters name the hour. Django's TruncHour there is a Python function
        # called per row (2.2 s instead of well under 1 s for a day of a 1M-record log).
        hour: Any = Substr("ts_utc", 1, 13)
    else:
        hour = TruncHour("ts_utc")
    per_hour = decisions.annotate(hour=hour).values("hour", "decision").annotate(n=Count("seq")).order_by("hour")
    deny_reasons = (
        AuditRecord.objects.filter(event_type=DECISION, decision="DENY", ts_utc__gte=since)
        # Grouping by an expression, not the bare column: otherwise SQLite walks the
        # whole (reason_code, seq) index to group (2 s on 1M records) instead of
        # reading the window's range of (event_type, decision, ts_utc).
        .values(code=Coalesce("reason_code", Value("UNKNOWN")))
        .annotate(n=Count("seq"))
        .order_by("-n", "code")[:10]
    )
    outcomes = (
        AuditRecord.objects.filter(event_type=ACTION, status__in=OUTCOMES, ts_utc__gte=since)
        .values("status")
        .annotate(n=Count("seq"))
        .order_by()
    )
    hours: dict[datetime, dict[str, int]] = {}
    for row in per_hour:
        key = row["hour"]
        if isinstance(key, str):
            key = datetime.fromisoformat(key + ":00:00").replace(tzinfo=UTC)
        hours.setdefault(key, {"ALLOW": 0, "DENY": 0})[str(row["decision"])] = int(row["n"])
    by_status = {row["status"]: int(row["n"]) for row in outcomes}
    return {
        "per_hour": hours,
        "deny_reasons": [(row["code"], int(row["n"])) for row in deny_reasons],
        "outcomes": [(status, by_status.get(status, 0)) for status in OUTCOMES],
    }


OUTCOMES = ("PENDING", "SUCCESS", "FAILED", "BLOCKED")


def verification_run_latest() -> VerificationRun | None:
    """The newest run with a verdict."""
    return VerificationRun.objects.filter(status=VerificationRun.DONE).order_by("-finished_at").first()


@dataclass(frozen=True)
class VerificationRuns:
    latest: VerificationRun | None  # the newest with a verdict
    active: list[VerificationRun]  # queued or running, oldest first
    recent: list[VerificationRun]  # the newest ten, newest first


def verification_runs_overview() -> VerificationRuns:
    """What the chain status page shows of verify runs, in one query (two when
    none of the newest ten has a verdict yet)."""
    recent = list(VerificationRun.objects.order_by("-started_at")[:10])
    done = [r for r in recent if r.status == VerificationRun.DONE]
    latest = max(done, key=lambda r: r.finished_at or r.started_at) if done else verification_run_latest()
    active = [r for r in reversed(recent) if r.status in (VerificationRun.QUEUED, VerificationRun.RUNNING)]
    return VerificationRuns(latest=latest, active=active, recent=recent)

"""Hourly rollups of the audit trail, so a report reads hours, not records.

The chain is append-only and gapless, so the records with seq <= W never
change: `fold()` counts the records after the watermark W once, by hour and by
the indexed columns the reports group on (RollupCount), the exact durations of
terminal action records (RollupDuration), the time span of each hour
(RollupHour) and the PENDING records still without a terminal record
(RollupUnpaired), then moves W. Folding is work of the reports and of
`manage.py audit rollup`, never of /process: a request pays nothing for it.

A report splits its window (`split()`): the whole hours come from the rollups,
and the rest is read raw: the records after W, and those in an hour the window
cuts through, unless every folded record of that hour lies inside the window
(the usual case for the newest hour of "the last N hours"). The two parts never
overlap, so a report is exact however far the fold lags; a lagging fold only
makes it slower. docs/OPERATIONS.md "Reports" has the operator's view.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import BigIntegerField, Count, Max, Min, Q, QuerySet, Sum
from django.db.models.expressions import RawSQL
from django.db.models.functions import TruncHour

from audit.models import AuditRecord, RollupCount, RollupDuration, RollupHour, RollupState, RollupUnpaired
from audit.records import ACTION, TERMINAL_STATUSES

HOUR = timedelta(hours=1)
# The indexed columns the reports group and filter on; RollupCount has the same names.
DIMENSIONS = ("event_type", "decision", "status", "action", "reason_code", "actor_kind", "actor_id")
TIMED_STATUSES = ("SUCCESS", "FAILED")  # terminal records of an executor that ran
FOLD_BATCH = 50_000  # records per fold transaction: a fold holds SQLite's write lock briefly
IN_CHUNK = 5_000  # values per IN (...): well under SQLite's bound parameters


def duration_sql() -> str:
    """The record body's duration_us, read by the database's own JSON functions."""
    if connection.vendor == "postgresql":
        return "((body::jsonb ->> 'duration_us')::bigint)"
    return "CAST(json_extract(body, '$.duration_us') AS INTEGER)"


def timed_counts(records: QuerySet[AuditRecord], *, by_hour: bool) -> list[tuple[Any, ...]]:
    """How many terminal action records that ran an executor (SUCCESS,
    FAILED) took each duration_us: (duration, n), or (hour, duration, n)."""
    timed = (
        records.filter(event_type=ACTION, status__in=TIMED_STATUSES)
        .annotate(duration=RawSQL(duration_sql(), [], output_field=BigIntegerField()))
        .filter(duration__isnull=False)
    )
    if by_hour:
        by = timed.annotate(hour=TruncHour("ts_utc")).values_list("hour", "duration")
        return list(by.annotate(n=Count("seq")).order_by())
    return list(timed.values_list("duration").annotate(n=Count("seq")).order_by())


# --- reading: a window split into rolled-up hours and raw records -----------------


@dataclass(frozen=True)
class Split:
    """Hours [first_hour, end_hour) answered by the rollups (records with
    seq <= folded_seq), and the querysets of every other record of the window."""

    since: datetime
    until: datetime
    folded_seq: int  # the records up to it are in the rollups; 0: none used
    upto: int | None  # the last seq counted; None: no bound
    first_hour: datetime | None
    end_hour: datetime | None
    raw: tuple[QuerySet[AuditRecord], ...]
    # The hour of each raw part that lies within one (the cut hours), else None:
    # grouping by a known hour spares the database a truncation per record.
    raw_hours: tuple[datetime | None, ...] = ()

    @classmethod
    def all_raw(
        cls, since: datetime, until: datetime, records: QuerySet[AuditRecord], upto: int | None = None
    ) -> Split:
        if upto is not None:
            records = records.filter(seq__lte=upto)
        return cls(
            since=since,
            until=until,
            folded_seq=0,
            upto=upto,
            first_hour=None,
            end_hour=None,
            raw=(records,),
            raw_hours=(None,),
        )

    def _rolled(self, model: Any) -> Any:
        if self.first_hour is None:
            return model.objects.none()
        return model.objects.filter(hour__gte=self.first_hour, hour__lt=self.end_hour)

    def count(self, where: Q) -> int:
        """Records of the window matching `where` (a filter on DIMENSIONS)."""
        return self._rolled_count(where) + sum(part.filter(where).count() for part in self.raw)

    def _rolled_count(self, where: Q) -> int:
        return int(self._rolled(RollupCount).filter(where).aggregate(n=Sum("n"))["n"] or 0)

    def counts(self, fields: Sequence[str], where: Q) -> Counter[tuple[Any, ...]]:
        """Records of the window matching `where`, by the values of `fields`
        (DIMENSIONS, or "hour": the hour of ts_utc)."""
        found: Counter[tuple[Any, ...]] = Counter()
        rolled = self._rolled(RollupCount).filter(where).values(*fields).annotate(n=Sum("n")).order_by()
        for row in rolled:
            found[tuple(row[f] for f in fields)] += row["n"]
        for part, hour in zip(self.raw, self.raw_hours, strict=True):
            grouped = [f for f in fields if f != "hour" or hour is None]
            if not grouped:  # nothing to group by (values() would group by every column): one count
                if n := part.filter(where).count():
                    found[tuple(hour for _ in fields)] += n
                continue
            if "hour" in grouped:
                part = part.annotate(hour=TruncHour("ts_utc"))
            for row in part.filter(where).values(*grouped).annotate(n=Count("seq")).order_by():
                found[tuple(hour if f not in grouped else row[f] for f in fields)] += row["n"]
        return found

    def durations(self) -> Counter[int]:
        """How many terminal action records took each duration_us."""
        found: Counter[int] = Counter()
        for duration, n in self._rolled(RollupDuration).values_list("duration_us").annotate(n=Sum("n")).order_by():
            found[int(duration)] += int(n)
        for part in self.raw:
            for duration, n in timed_counts(part, by_hour=False):
                found[int(duration)] += int(n)
        return found

    def completed_pending(self, *, terminals_since: datetime) -> int:
        """PENDING records of the window whose trace has a terminal record
        written since `terminals_since`."""
        pending = Q(event_type=ACTION, status="PENDING")
        complete = 0
        if self.folded_seq:
            # A folded PENDING record is complete unless still unpaired (kept
            # with its ts, so any part of the window can ask), or paired by a
            # terminal record the fold has not reached.
            folded = self._rolled_count(pending)
            folded += sum(part.filter(pending, seq__lte=self.folded_seq).count() for part in self.raw)
            waiting = list(
                RollupUnpaired.objects.filter(ts_utc__gte=self.since, ts_utc__lt=self.until).values_list(
                    "trace_id", flat=True
                )
            )
            late = self._ended(set(waiting), since=terminals_since, after=self.folded_seq)
            complete += folded - len(waiting) + sum(1 for trace in waiting if trace in late)
        for part in self.raw:
            unfolded = part.filter(pending, seq__gt=self.folded_seq)
            traces = list(unfolded.values_list("trace_id", flat=True))
            ended = self._ended(set(traces), since=terminals_since)
            complete += sum(1 for trace in traces if trace in ended)
        return complete

    def _ended(self, traces: set[str], *, since: datetime, after: int = 0) -> set[str]:
        """The traces among `traces` with a terminal record written since
        `since`, sequenced after `after` (and up to `upto`). Looked up by the
        trace_id index alone and filtered here: given the status as well,
        SQLite walks the status index over every terminal record since `since`."""
        ended: set[str] = set()
        for chunk in _chunks(traces):
            rows = AuditRecord.objects.filter(trace_id__in=chunk).values_list(
                "trace_id", "event_type", "status", "ts_utc", "seq"
            )
            ended.update(
                trace
                for trace, event_type, status, ts, seq in rows
                if event_type == ACTION
                and status in TERMINAL_STATUSES
                and ts >= since
                and seq > after
                and (self.upto is None or seq <= self.upto)
            )
        return ended


def _floor_hour(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def split(since: datetime, until: datetime, *, upto: int | None = None) -> Split:
    """Cut the window [since, until) into rolled-up hours and raw records,
    counting the records up to seq `upto` (default: the chain's head now)."""
    records = AuditRecord.objects.filter(ts_utc__gte=since, ts_utc__lt=until)
    watermark = folded_seq()
    if not watermark:
        return Split.all_raw(since, until, records, upto)
    first, last = _floor_hour(since), _floor_hour(until)
    spans = {h.hour: h for h in RollupHour.objects.filter(hour__in=(first, last))}
    # An hour the window cuts through is rolled up only if all its folded records lie inside the window.
    if first < since and first in spans and spans[first].first_ts < since:
        first += HOUR
    end = last
    if last < until and (last not in spans or spans[last].last_ts < until):
        end = last + HOUR
    if first >= end:
        return Split.all_raw(since, until, records, upto)
    # Each part names its own bounds: given the window's bounds as well, SQLite
    # walks the window's whole ts range; a seq range on both sides makes it
    # take the primary key's index for the records after the watermark.
    if upto is None:
        upto = AuditRecord.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    raw = [
        AuditRecord.objects.filter(ts_utc__gte=since, ts_utc__lt=min(first, until), seq__lte=upto),
        AuditRecord.objects.filter(ts_utc__gte=max(end, since), ts_utc__lt=until, seq__lte=upto),
    ]
    hours: list[datetime | None] = [_floor_hour(since), last]
    if upto > watermark:  # SQLite may still walk a status index for this part: a report folds first
        unfolded = AuditRecord.objects.filter(seq__gt=watermark, seq__lte=upto)
        raw.append(unfolded.filter(ts_utc__gte=max(first, since), ts_utc__lt=min(end, until)))
        hours.append(None)
    return Split(
        since=since,
        until=until,
        folded_seq=watermark,
        upto=upto,
        first_hour=first,
        end_hour=end,
        raw=tuple(raw),
        raw_hours=tuple(hours),
    )


# --- folding -------------------------------------------------------------------------


def folded_seq() -> int:
    return RollupState.objects.filter(pk=1).values_list("folded_seq", flat=True).first() or 0


def fold(*, batch: int = FOLD_BATCH) -> int:
    """Fold every record after the watermark into the rollups, `batch` per
    transaction; returns how many. Two folds at once never count a record
    twice: each claims its range by moving the watermark conditionally."""
    folded = 0
    while step := _fold_once(batch):
        folded += step
    return folded


def rebuild(*, batch: int = FOLD_BATCH) -> int:
    """Drop the rollups and fold the whole chain again (they are derived data)."""
    with transaction.atomic():
        RollupState.objects.update_or_create(pk=1, defaults={"folded_seq": 0})
        for model in (RollupCount, RollupDuration, RollupHour, RollupUnpaired):
            model.objects.all().delete()
    return fold(batch=batch)


def _fold_once(batch: int) -> int:
    try:
        RollupState.objects.get_or_create(pk=1)  # a flushed test database has no row
    except IntegrityError:
        pass  # another fold created it
    start = folded_seq()
    seqs = list(AuditRecord.objects.filter(seq__gt=start).order_by("seq").values_list("seq", flat=True)[:batch])
    # Only a gapless run from the watermark: a seq not visible yet is folded next time.
    end = start
    for seq in seqs:
        if seq != end + 1:
            break
        end = seq
    if end == start:
        return 0
    # The records are immutable: read them before taking the write lock.
    records = AuditRecord.objects.filter(seq__gt=start, seq__lte=end)
    by_hour = records.annotate(hour=TruncHour("ts_utc"))
    counts = list(by_hour.values("hour", *DIMENSIONS).annotate(n=Count("seq")).order_by())
    spans = list(by_hour.values("hour").annotate(first=Min("ts_utc"), last=Max("ts_utc")).order_by())
    durations = timed_counts(records, by_hour=True)
    pending = list(records.filter(event_type=ACTION, status="PENDING").values_list("seq", "trace_id", "ts_utc"))
    ended = set(records.filter(event_type=ACTION, status__in=TERMINAL_STATUSES).values_list("trace_id", flat=True))
    waiting = {trace for _, trace, _ in pending if trace not in ended}
    ended_before = _traces_ended(waiting, up_to=start)  # e.g. a second PENDING of an approved trace
    unpaired = [RollupUnpaired(seq=s, trace_id=t, ts_utc=ts) for s, t, ts in pending if t in waiting - ended_before]
    opened_here = {trace for _, trace, _ in pending}

    with transaction.atomic():
        if not RollupState.objects.filter(pk=1, folded_seq=start).update(folded_seq=end):
            return 0  # another fold claimed this range first
        _upsert_counts(counts)
        _upsert_durations(durations)
        _upsert_spans(spans)
        for chunk in _chunks(ended - opened_here):
            RollupUnpaired.objects.filter(trace_id__in=chunk).delete()
        RollupUnpaired.objects.bulk_create(unpaired, batch_size=1000)
    return end - start


def _traces_ended(traces: set[str], *, up_to: int) -> set[str]:
    ended: set[str] = set()
    for chunk in _chunks(traces):
        terminals = AuditRecord.objects.filter(
            event_type=ACTION, status__in=TERMINAL_STATUSES, seq__lte=up_to, trace_id__in=chunk
        )
        ended.update(terminals.values_list("trace_id", flat=True))
    return ended


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    values = sorted(values)
    for i in range(0, len(values), IN_CHUNK):
        yield values[i : i + IN_CHUNK]


def _when(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _upsert_counts(rows: list[dict[str, Any]]) -> None:
    table = RollupCount._meta.db_table
    columns = ", ".join(("hour", "dims", *DIMENSIONS, "n"))
    marks = ", ".join(["%s"] * (len(DIMENSIONS) + 3))
    sql = (
        f"INSERT INTO {table} ({columns}) VALUES ({marks})"
        f" ON CONFLICT (hour, dims) DO UPDATE SET n = {table}.n + excluded.n"
    )
    params = [
        (_when(r["hour"]), json.dumps([r[d] for d in DIMENSIONS]), *(r[d] for d in DIMENSIONS), r["n"]) for r in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _upsert_durations(rows: list[tuple[datetime, int, int]]) -> None:
    table = RollupDuration._meta.db_table
    sql = (
        f"INSERT INTO {table} (hour, duration_us, n) VALUES (%s, %s, %s)"
        f" ON CONFLICT (hour, duration_us) DO UPDATE SET n = {table}.n + excluded.n"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(_when(hour), duration, n) for hour, duration, n in rows])


def _upsert_spans(rows: Iterable[Mapping[str, Any]]) -> None:
    table = RollupHour._meta.db_table
    least, greatest = ("LEAST", "GREATEST") if connection.vendor == "postgresql" else ("MIN", "MAX")
    sql = (
        f"INSERT INTO {table} (hour, first_ts, last_ts) VALUES (%s, %s, %s) ON CONFLICT (hour) DO UPDATE SET"
        f" first_ts = {least}({table}.first_ts, excluded.first_ts), last_ts = {greatest}({table}.last_ts, excluded.last_ts)"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(_when(r["hour"]), _when(r["first"]), _when(r["last"])) for r in rows])


def check() -> list[str]:
    """Recount the folded records raw and compare with the rollups: the
    differences, none when they agree (`audit rollup --check`). The rollups
    are derived data: a difference means rebuild them, not a broken chain."""
    watermark = folded_seq()
    records = AuditRecord.objects.filter(seq__lte=watermark)
    by_hour = records.annotate(hour=TruncHour("ts_utc"))
    expected = {
        (r["hour"], *(r[d] for d in DIMENSIONS)): r["n"]
        for r in by_hour.values("hour", *DIMENSIONS).annotate(n=Count("seq")).order_by()
    }
    found = {
        (r["hour"], *(r[d] for d in DIMENSIONS)): r["n"] for r in RollupCount.objects.values("hour", *DIMENSIONS, "n")
    }
    problems = _differences("records by hour and columns", expected, found)
    expected_durations = {(h, d): n for h, d, n in timed_counts(records, by_hour=True)}
    found_durations = {(h, d): n for h, d, n in RollupDuration.objects.values_list("hour", "duration_us", "n")}
    problems += _differences("durations by hour", expected_durations, found_durations)
    expected_spans = {
        r["hour"]: (r["first"], r["last"])
        for r in by_hour.values("hour").annotate(first=Min("ts_utc"), last=Max("ts_utc")).order_by()
    }
    found_spans = {h: (first, last) for h, first, last in RollupHour.objects.values_list("hour", "first_ts", "last_ts")}
    problems += _differences("hour spans", expected_spans, found_spans)
    pending = records.filter(event_type=ACTION, status="PENDING")
    ended = records.filter(event_type=ACTION, status__in=TERMINAL_STATUSES).values("trace_id")
    expected_unpaired = set(pending.exclude(trace_id__in=ended).values_list("seq", flat=True))
    found_unpaired = set(RollupUnpaired.objects.values_list("seq", flat=True))
    if expected_unpaired != found_unpaired:
        problems.append(
            f"unpaired PENDING records: {len(found_unpaired - expected_unpaired)} too many,"
            f" {len(expected_unpaired - found_unpaired)} missing"
        )
    return problems


def _differences(what: str, expected: Mapping[Any, Any], found: Mapping[Any, Any]) -> list[str]:
    wrong = [key for key in expected.keys() | found.keys() if expected.get(key) != found.get(key)]
    if not wrong:
        return []
    first = min(wrong, key=str)
    return [f"{what}: {len(wrong)} rows differ (e.g. {first}: {found.get(first)} instead of {expected.get(first)})"]

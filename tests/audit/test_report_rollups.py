"""The reports' hourly rollups (audit/rollups.py) answer exactly what the
records themselves answer: for windows cut anywhere, before a fold, after one,
with records arriving after it, and with folds racing each other."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Q

from audit import rollups
from audit.models import AuditRecord, RollupCount
from audit.records import ACTION, DECISION, GENESIS_HASH, new_record, seal
from audit.reports import Window, latency_percentiles, security_violations, trace_completeness
from conftest import API_KEY
from tests.support.appserver import ROOT

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ACTORS = [("api_key", "vk_a"), ("api_key", "vk_b"), ("session", "vs_c"), ("metrics", "metrics"), (None, None)]
DENIALS = ["GATE_DENIED_INVALID_API_KEY", "RATE_LIMIT_EXCEEDED", "UNKNOWN_FIELDS_PRESENT", "VALIDATION_ERROR"]


def _traffic(rng: random.Random, start: datetime, count: int, step_s: float) -> list[dict[str, Any]]:
    """Records of `count` requests from `start`, one every ~step_s: allowed ones
    with a PENDING and (mostly) a terminal record with a duration, denials,
    and PENDING records whose terminal comes later or never."""
    drafts: list[dict[str, Any]] = []
    when = start
    for i in range(count):
        when += timedelta(seconds=rng.uniform(0.2, 2) * step_s)
        kind, actor_id = rng.choice(ACTORS)
        common = {
            "ts_utc": when.isoformat(timespec="microseconds"),
            "trace_id": f"00000000-0000-4000-8000-{rng.getrandbits(48):012x}",
            "endpoint": "POST /process",
            "actor": {"kind": kind, "id": actor_id} if kind else None,
            "profile_id": "default",
        }
        if rng.random() < 0.3:
            drafts.append(
                new_record(event_type=DECISION, decision="DENY", reason_codes=[rng.choice(DENIALS)], **common)
            )
            continue
        drafts.append(new_record(event_type=DECISION, decision="ALLOW", action="process", **common))
        drafts.append(
            new_record(
                event_type=ACTION, status="PENDING", action="process", reason_codes=["EXECUTION_ATTEMPT"], **common
            )
        )
        ending = rng.random()
        if ending < 0.1:
            continue  # never ends: an incomplete trace
        status = "SUCCESS" if ending < 0.7 else "FAILED" if ending < 0.9 else "BLOCKED"
        end = dict(common, ts_utc=(when + timedelta(seconds=rng.uniform(0, 3))).isoformat(timespec="microseconds"))
        extra = (
            {"duration_us": rng.choice([100, 250, 250, 900, rng.randrange(50, 5000)])} if status != "BLOCKED" else {}
        )
        drafts.append(new_record(event_type=ACTION, status=status, action="process", **extra, **end))
        if i % 11 == 0:  # a terminal record far later, in another hour
            drafts[-1]["ts_utc"] = (when + timedelta(hours=1, minutes=7)).isoformat(timespec="microseconds")
    return drafts


def _append(drafts: list[dict[str, Any]]) -> None:
    """Chain the drafts after the head, with the timestamps they carry."""
    head = AuditRecord.objects.order_by("-seq").values_list("seq", "record_hash").first()
    seq, prev = head or (0, GENESIS_HASH)
    rows = []
    for record in drafts:
        seq += 1
        body = seal(record, seq=seq, prev_hash=prev)
        prev = record["record_hash"]
        actor, codes = record["actor"] or {}, record["reason_codes"]
        rows.append(
            AuditRecord(
                seq=seq, record_hash=prev, prev_hash=record["prev_hash"], event_type=record["event_type"],
                ts_utc=datetime.fromisoformat(record["ts_utc"]), trace_id=record["trace_id"],
                decision=record["decision"], status=record["status"], action=record["action"],
                reason_code=codes[0] if codes else None, actor_kind=actor.get("kind"), actor_id=actor.get("id"),
                body=body.decode(),
            )
        )  # fmt: skip
    AuditRecord.objects.bulk_create(rows)


# --- the oracle: the records themselves, counted in Python ----------------------------


def _in(since: datetime, until: datetime) -> list[AuditRecord]:
    return [r for r in AuditRecord.objects.order_by("seq") if since <= r.ts_utc < until]


def _oracle_counts(since: datetime, until: datetime, fields: tuple[str, ...], keep: Any) -> Counter[tuple[Any, ...]]:
    def value(record: AuditRecord, f: str) -> Any:
        return record.ts_utc.replace(minute=0, second=0, microsecond=0) if f == "hour" else getattr(record, f)

    return Counter(tuple(value(r, f) for f in fields) for r in _in(since, until) if keep(r))


def _oracle_durations(since: datetime, until: datetime) -> Counter[int]:
    import json

    return Counter(
        json.loads(r.body)["duration_us"]
        for r in _in(since, until)
        if r.event_type == ACTION and r.status in ("SUCCESS", "FAILED") and "duration_us" in json.loads(r.body)
    )


def _oracle_completeness(since: datetime, cutoff: datetime) -> tuple[int, int]:
    terminals = {
        r.trace_id
        for r in _in(since, datetime.max.replace(tzinfo=UTC))
        if r.event_type == ACTION and r.status not in (None, "PENDING")
    }
    pending = [r for r in _in(since, cutoff) if r.event_type == ACTION and r.status == "PENDING"]
    return sum(1 for r in pending if r.trace_id in terminals), len(pending)


QUERIES = [
    (("event_type", "decision", "reason_code"), Q(), lambda r: True),
    # By hour alone, and by nothing: a cut hour's raw part then has no column to group by.
    (("hour",), Q(event_type=DECISION), lambda r: r.event_type == DECISION),
    ((), Q(event_type=ACTION), lambda r: r.event_type == ACTION),
    (("hour", "decision"), Q(event_type=DECISION), lambda r: r.event_type == DECISION),
    (("actor_kind", "actor_id", "decision"), Q(event_type=DECISION), lambda r: r.event_type == DECISION),
    (("action", "status"), Q(reason_code="RATE_LIMIT_EXCEEDED"), lambda r: r.reason_code == "RATE_LIMIT_EXCEEDED"),
    (
        ("event_type",),
        Q(event_type=DECISION) & ~Q(actor_kind__in=("metrics",)),
        lambda r: r.event_type == DECISION and r.actor_kind != "metrics",
    ),
]


def _windows() -> list[tuple[datetime, datetime]]:
    newest = AuditRecord.objects.order_by("-seq").values_list("ts_utc", flat=True).first()
    assert newest is not None
    return [
        (START - timedelta(days=1), newest + timedelta(seconds=1)),  # everything, "the last day"
        (START + timedelta(minutes=37), newest + timedelta(seconds=1)),  # starts inside an hour
        (
            START + timedelta(minutes=37),
            newest - timedelta(minutes=20),
        ),  # ends inside an hour, before its newest record
        (START + timedelta(hours=1), START + timedelta(hours=3)),  # whole hours
        (START + timedelta(hours=1, minutes=5), START + timedelta(hours=1, minutes=50)),  # inside one hour
        (START - timedelta(days=3), START - timedelta(days=2)),  # nothing
    ]


def _assert_exact() -> None:
    for since, until in _windows():
        parts = rollups.split(since, until)
        for fields, where, keep in QUERIES:
            assert parts.counts(fields, where) == _oracle_counts(since, until, fields, keep), (since, until, fields)
        assert parts.durations() == _oracle_durations(since, until), (since, until)
        assert trace_completeness(since=since, cutoff=until) == _oracle_completeness(since, until), (since, until)
        window = Window(since=since, until=until)
        durations = sorted(_oracle_durations(since, until).elements())
        n, values = latency_percentiles(window=window)
        assert n == len(durations)
        if durations:
            assert values[0.95] == durations[-(-95 * n // 100) - 1] and values[0.99] == durations[-(-99 * n // 100) - 1]
        bad = _oracle_counts(since, until, (), lambda r: r.event_type == DECISION and r.actor_kind != "metrics" and r.decision == "DENY" and r.reason_code in ("GATE_DENIED_INVALID_API_KEY", "UNKNOWN_FIELDS_PRESENT"))  # fmt: skip
        total = _oracle_counts(since, until, (), lambda r: r.event_type == DECISION and r.actor_kind != "metrics")
        assert security_violations(window=window) == (bad[()], total[()])


def test_rollups_answer_exactly_what_the_records_answer():
    rng = random.Random(16)
    _append(_traffic(rng, START, 300, step_s=40))  # ~3.5 hours
    assert rollups.folded_seq() == 0
    _assert_exact()  # nothing folded: every record is read raw

    assert rollups.fold(batch=37) == AuditRecord.objects.count()  # batches cut hours and traces
    assert rollups.split(START - timedelta(days=1), START + timedelta(days=1)).first_hour is not None
    _assert_exact()
    assert rollups.check() == []

    # Records after the fold, in an hour already folded and in new ones: read raw until the next fold.
    last = AuditRecord.objects.order_by("-seq").values_list("ts_utc", flat=True).first()
    _append(_traffic(rng, last - timedelta(minutes=30), 120, step_s=60))
    assert rollups.folded_seq() < AuditRecord.objects.count()
    _assert_exact()
    rollups.fold(batch=1000)
    _assert_exact()
    assert rollups.check() == []


def test_a_pending_record_folded_alone_is_paired_when_its_terminal_is_folded():
    pending = _traffic(random.Random(3), START, 1, step_s=1)
    while len(pending) < 3:  # an allowed request that ended
        pending = _traffic(random.Random(len(pending) + 4), START, 1, step_s=1)
    _append(pending[:2])  # ALLOW, PENDING
    rollups.fold()
    since, cutoff = START - timedelta(hours=1), START + timedelta(hours=5)
    assert trace_completeness(since=since, cutoff=cutoff) == (0, 1)
    _append(pending[2:])  # the terminal record, not folded yet
    assert trace_completeness(since=since, cutoff=cutoff) == (1, 1)
    rollups.fold()
    assert trace_completeness(since=since, cutoff=cutoff) == (1, 1)
    assert rollups.check() == []


def test_rebuild_and_check_find_and_repair_a_wrong_rollup(capsys):
    _append(_traffic(random.Random(5), START, 60, step_s=30))
    call_command("audit", "rollup", "--batch", "13")
    call_command("audit", "rollup", "--check")
    assert "rollups agree with records 1.." in capsys.readouterr().out
    row = RollupCount.objects.order_by("pk").first()
    assert row is not None
    RollupCount.objects.filter(pk=row.pk).update(n=row.n + 1)
    with pytest.raises(CommandError, match="run `audit rollup --rebuild`"):
        call_command("audit", "rollup", "--check")
    assert "records by hour and columns: 1 rows differ" in capsys.readouterr().err
    call_command("audit", "rollup", "--rebuild")
    call_command("audit", "rollup", "--check")
    with pytest.raises(CommandError, match="--batch must be at least 1"):
        call_command("audit", "rollup", "--batch", "0")


def test_folds_racing_through_a_real_server_never_count_a_record_twice(start_app_server):
    server = start_app_server(workers=2)
    for i in range(40):  # allowed and denied requests
        headers = {"X-API-Key": API_KEY if i % 4 else "not-a-key"}
        assert server.post("/process", json={"action": "noop"}, headers=headers).status_code in (200, 403)
    folds = [
        subprocess.Popen(
            [sys.executable, "manage.py", "audit", "rollup", "--batch", "3"],
            cwd=ROOT,
            env=server.env,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(3)
    ]
    outputs = [fold.communicate(timeout=120)[0] for fold in folds]
    assert all(fold.returncode == 0 for fold in folds), outputs
    folded = sum(int(out.split()[1]) for out in outputs)
    checked = server.manage("audit", "rollup", "--check").stdout
    records = int(checked.rsplit("..", 1)[1])
    assert folded == records > 40  # each record folded by exactly one of the three

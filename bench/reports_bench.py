"""Reports benchmark: `audit summary` computed by the database against the seed's
approach (AuditParser, seed 003): streaming the same records' JSONL export
through json.loads and counting in Python.

    python bench/reports_bench.py [--records N]      # default 1,000,000

1. Builds a chain of N realistic records (bench/verify_bench.py's mix) spread
   over --span-hours (default 24.5) in a fresh SQLite database migrated with the
   project's migrations, and exports it as JSONL (`audit export`'s format, one
   record per line). Every report's window is the last 24 hours, so it cuts
   through the oldest hour of records: the part no rollup answers.
2. Measures, in this process, median of --repeat runs:
   - summary: audit.reports.audit_summary over a window holding every record
     (what `manage.py audit summary` and GET /admin/audit/summary run);
   - jsonl: the same counts (decisions, denials by reason code, records by
     type, within the window) by reading the export line by line with json.loads;
   and the Python heap peak of each (tracemalloc, a separate run).
   - stats and slo: audit.reports.audit_stats and audit_slo over the same window.
   Before these, the records are folded into the hourly rollups once (timed
   apart: what `audit rollup` or an earlier report does), so each report reads
   the rollups and the records they do not hold (audit/rollups.py).
3. Prints the ratio jsonl/<report> for each of summary, stats and slo (issue 16:
   target >= 20 each), with the machine's load average at the start and end
   (the reports share 2 cores with other work: a loaded machine slows the
   database side and the parser alike, but not equally), and writes
   bench/results/reports-<timestamp>.json. Exits 1 if any ratio misses the target.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
RATIO_TARGET = 20.0  # issue 16: each report at least 20x the seed's parser


def jsonl_summary(path: Path, *, since: datetime) -> dict[str, Any]:
    """The seed's AuditParser.summarize: stream the file, parse every line."""
    decisions = {"ALLOW": 0, "DENY": 0}
    deny_breakdown: dict[str, int] = {}
    events_by_type: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if datetime.fromisoformat(record["ts_utc"]) < since:
                continue
            kind = record["event_type"]
            events_by_type[kind] = events_by_type.get(kind, 0) + 1
            if kind == "decision_audit" and record.get("decision") in decisions:
                decisions[record["decision"]] += 1
                if record["decision"] == "DENY":
                    code = (record.get("reason_codes") or ["UNKNOWN"])[0]
                    deny_breakdown[code] = deny_breakdown.get(code, 0) + 1
    return {"decisions": decisions, "deny_breakdown": deny_breakdown, "events_by_type": events_by_type}


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    runs, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs), result


def heap_peak_mb(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--span-hours",
        type=float,
        default=24.5,
        help="Spread the records over this many hours (default 24.5): the reports' last-24-hours window"
        " then cuts through the oldest hour, which they read record by record.",
    )
    parser.add_argument("--output", type=Path, help="JSON result file (default bench/results/reports-<timestamp>.json)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process: measure in DIR
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.records, args.repeat, args.span_hours, args.output)
        return

    from bench.verify_bench import build_chain
    from tests.support.appserver import manage, server_env

    tmp = Path(tempfile.mkdtemp(prefix="veritta-reports-bench-"))
    db = tmp / "bench.sqlite3"
    env = server_env(tmp, f"sqlite:///{db}", {"VERITTA_AUDIT_CHECKPOINT_EVERY": "0"})
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    manage(env, "migrate", "--no-input", "-v0")
    _, _, build_s = build_chain(db, args.records, sample_size=0, span_s=args.span_hours * 3600)
    print(f"{args.records:,} records built in {build_s:.1f}s", file=sys.stderr)
    # Measured in a fresh process whose settings are the bench database's.
    command = [
        sys.executable,
        __file__,
        "--measure",
        str(tmp),
        "--records",
        str(args.records),
        "--repeat",
        str(args.repeat),
        "--span-hours",
        str(args.span_hours),
        *(["--output", str(args.output.resolve())] if args.output else []),
    ]
    sys.exit(subprocess.run(command, env=env).returncode)


def measure(tmp: Path, records: int, repeat: int, span_hours: float, output: Path | None) -> None:
    import django

    django.setup()
    from audit.reports import Objectives, Window, audit_slo, audit_stats, audit_summary
    from audit.rollups import fold
    from audit.selectors import audit_bodies_between

    export = tmp / "export.jsonl"
    with export.open("w", encoding="utf-8") as handle:
        for body in audit_bodies_between(since=None, until=None):
            handle.write(body + "\n")
    with export.open("rb") as handle:
        handle.seek(-4096, os.SEEK_END)
        newest = datetime.fromisoformat(json.loads(handle.read().splitlines()[-1])["ts_utc"])
    now = newest + timedelta(seconds=1)
    days = 1
    since = now - timedelta(days=days)

    def summary() -> dict[str, Any]:
        return audit_summary(days=days, limit=None, event_type=None, now=now)

    def parsed() -> dict[str, Any]:
        return jsonl_summary(export, since=since)

    print(f"export {export.stat().st_size / 1e6:.0f} MB, newest record {newest}", file=sys.stderr)
    load_before = os.getloadavg()
    # What `audit rollup` (or the previous report) does once per record; the
    # reports below then fold nothing new and read the rollups.
    started = time.perf_counter()
    folded = fold()
    fold_s = time.perf_counter() - started
    assert folded == records, folded
    summary_s, by_db = timed(summary, repeat)
    jsonl_s, by_file = timed(parsed, repeat)
    in_window = sum(by_file["events_by_type"].values())
    assert by_db["window"]["events"] == in_window, (by_db["window"], in_window)
    for key in ("decisions", "events_by_type"):
        assert by_db[key] == by_file[key], (key, by_db[key], by_file[key])
    assert by_db["deny_breakdown"] == dict(sorted(by_file["deny_breakdown"].items(), key=lambda i: (-i[1], i[0])))
    window = Window(since=since, until=now)
    stats_s, _ = timed(lambda: audit_stats(window=window), repeat)
    objectives = Objectives(
        window_hours=24, latency_p95_ms=1000, latency_p99_ms=5000, trace_completeness=1.0, security_violation_rate=0.05
    )
    slo_s, _ = timed(lambda: audit_slo(objectives=objectives, now=now), repeat)
    load_after = os.getloadavg()
    seconds = {"summary": summary_s, "stats": stats_s, "slo": slo_s}
    ratios = {name: jsonl_s / s for name, s in seconds.items()}
    summary_mb, jsonl_mb = heap_peak_mb(summary), heap_peak_mb(parsed)

    result = {
        "records": records,
        "records_in_window": in_window,
        "span_hours": span_hours,
        "export_mb": round(export.stat().st_size / 1e6, 1),
        "summary_s": round(summary_s, 3),
        "jsonl_s": round(jsonl_s, 3),
        **{f"ratio_jsonl_over_{name}": round(r, 1) for name, r in ratios.items()},
        "ratio_target": RATIO_TARGET,
        "summary_heap_peak_mb": round(summary_mb, 2),
        "jsonl_heap_peak_mb": round(jsonl_mb, 2),
        "stats_s": round(stats_s, 3),
        "fold_s": round(fold_s, 3),
        "fold_records_per_s": round(records / fold_s),
        "slo_s": round(slo_s, 3),
        "database": "sqlite",
        "load_average_1_5_15_before": [round(x, 2) for x in load_before],
        "load_average_1_5_15_after": [round(x, 2) for x in load_after],
    }
    print(f"audit summary (database)    {summary_s:8.3f} s   heap peak {summary_mb:6.2f} MB")
    print(f"JSONL + json.loads (seed)   {jsonl_s:8.3f} s   heap peak {jsonl_mb:6.2f} MB")
    print(f"audit stats (database)      {stats_s:8.3f} s")
    print(f"audit slo (database)        {slo_s:8.3f} s")
    print(f"fold into rollups (once)    {fold_s:8.3f} s   {records / fold_s:,.0f} records/s")
    for name, r in ratios.items():
        print(f"ratio jsonl/{name:<15} {r:8.1f}x  (target >= {RATIO_TARGET:g}x)")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    out = output or RESULTS / f"reports-{datetime.now().strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    if min(ratios.values()) < RATIO_TARGET:
        sys.exit(1)


if __name__ == "__main__":
    main()

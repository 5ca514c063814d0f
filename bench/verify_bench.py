"""Audit-trail benchmark: `audit verify`, `export`, `checkpoint` and `prove`
over a large chain, against the raw cost of hashing the same records.

    python bench/verify_bench.py [--records N | --quick] [--profile]

1. Builds a valid chain of N realistic records (the mix a busy /process sees:
   ALLOW + PENDING + SUCCESS traces, some denials) with audit.records.new_record
   and seal, bulk-inserted into a fresh SQLite database migrated with the
   project's migrations, and seals it with signed checkpoints every
   --checkpoint-every records, as a running server would.
2. Measures, in this one run:
   - raw: canonical JSON + sha256 of the same records' dicts in a tight loop
     (the work no verifier can skip), measured before, between and after the
     commands below, median taken;
   - `manage.py audit verify --json`, `audit export`, `audit checkpoint` and
     `audit prove TRACE_ID`, each as a subprocess under /usr/bin/time -v, for
     wall time and peak RSS.
3. Prints records/s, verify/raw (target >= 0.30) and peak RSS (target < 150 MB),
   and writes bench/results/verify-<timestamp>.json.

--profile also runs verify under cProfile and prints where its time goes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: import the project

from audit.records import ACTION, DECISION, GENESIS_HASH, new_record, seal  # noqa: E402
from bench.support import bench_env  # noqa: E402
from tests.support.appserver import manage  # noqa: E402
from veritta_site.canonical import canonical_json  # noqa: E402

RESULTS = ROOT / "bench" / "results"
RSS_TARGET_MB = 150
RATIO_TARGET = 0.30
ALLOWED_RULES = [
    "P0:size_within_limit", "G0:credential_present", "G2:api_key_valid", "G10:within_limits", "P2:payload_valid",
    "profile:no_admin_signals", "profile:no_external_fields", "profile:action_allowed", "profile:known_fields",
    "profile:field_rules", "registry:executor_found", "registry:action_routed", "registry:version",
    "registry:capabilities",
]  # fmt: skip
# (gate, http status, reason code, evidence, rules passed before it) of the denials in the mix.
DENIALS = [
    ("G2", 403, "GATE_DENIED_INVALID_API_KEY", {"header": "X-API-Key"}, 2),
    ("G10", 429, "RATE_LIMIT_EXCEEDED", {"scope": "key", "limit": 1000, "window_s": 60}, 3),
    ("P2", 400, "VALIDATION_ERROR", {"fields": ["action"], "problem": "required"}, 4),
    ("profile", 403, "UNKNOWN_FIELDS_PRESENT", {"fields": ["debug", "sudo"]}, 7),
]
_INSERT = (
    "INSERT INTO audit_auditrecord (seq, record_hash, prev_hash, event_type, ts_utc, trace_id, decision,"
    " status, action, reason_code, actor_kind, actor_id, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


# --- a realistic chain -------------------------------------------------------------


def _hex(rng: random.Random, nbytes: int = 32) -> str:
    return rng.getrandbits(8 * nbytes).to_bytes(nbytes, "big").hex()


def trace_drafts(rng: random.Random, when: datetime) -> list[dict[str, Any]]:
    """The records one /process request leaves: 85% allowed (3 records), 15% denied (1)."""
    ts = when.isoformat(timespec="microseconds")
    common = {
        "ts_utc": ts,
        "trace_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "parent_trace": None,
        "endpoint": "POST /process",
        "actor": {"kind": "api_key", "id": f"vk_{rng.randrange(40):08x}"},
        "client": "ip_" + _hex(rng, 8),
        "input_digest": _hex(rng),
        "digest_kind": "json",
        "profile_id": "default",
        "profile_hash": PROFILE_HASH,
    }
    if rng.random() < 0.15:
        gate, status, code, evidence, passed = rng.choice(DENIALS)
        return [
            new_record(
                event_type=DECISION, decision="DENY", gate=gate, http_status=status, matched_rules=ALLOWED_RULES[:passed],
                reason_codes=[code], evidence=evidence, **common,
            )
        ]  # fmt: skip
    action = {
        "action": "process",
        "action_version": None,
        "executor_id": "text_process_v1",
        "executor_version": "1.0.0",
    }
    return [
        new_record(event_type=DECISION, decision="ALLOW", gate="ALL", http_status=200,
                   matched_rules=list(ALLOWED_RULES), action="process", **common),
        new_record(event_type=ACTION, status="PENDING", reason_codes=["EXECUTION_ATTEMPT"], **action, **common),
        new_record(event_type=ACTION, status="SUCCESS", output_digest=_hex(rng),
                   duration_us=rng.randrange(40, 4000), **action, **common),
    ]  # fmt: skip


PROFILE_HASH = hashlib.sha256(b"bench profile").hexdigest()


RECORDS_PER_TRACE = 0.85 * 3 + 0.15  # trace_drafts' mix
GAP_US = (500, 20000)  # between requests: ~1,000,000 records in about an hour


def sealed_records(count: int, seed: int = 7, span_s: float | None = None) -> Iterator[tuple[dict[str, Any], bytes]]:
    """(record, canonical body) for seq 1..count, chained from genesis; every
    trace is complete (the chain ends on a whole request). `span_s`: spread the
    requests over about that many seconds instead (GAP_US otherwise)."""
    rng = random.Random(seed)
    gap = GAP_US
    if span_s:
        mean_us = span_s * 1e6 / (count / RECORDS_PER_TRACE)
        gap = (max(1, int(mean_us / 20)), int(mean_us * 2 - mean_us / 20))
    when = datetime(2026, 1, 1, tzinfo=UTC)
    seq, prev = 0, GENESIS_HASH
    while seq < count:
        drafts = trace_drafts(rng, when)
        if seq + len(drafts) > count:  # finish on a one-record trace (a denial)
            drafts = [trace_drafts_deny(rng, when)]
        when += timedelta(microseconds=rng.randrange(*gap))
        for record in drafts:
            seq += 1
            body = seal(record, seq=seq, prev_hash=prev)
            prev = record["record_hash"]
            yield record, body


def trace_drafts_deny(rng: random.Random, when: datetime) -> dict[str, Any]:
    while True:
        drafts = trace_drafts(rng, when)
        if len(drafts) == 1:
            return drafts[0]


def _row(record: dict[str, Any], body: bytes) -> tuple[Any, ...]:
    actor, codes = record["actor"], record["reason_codes"]
    # The text Django's SQLite backend stores for an aware UTC datetime.
    ts = datetime.fromisoformat(record["ts_utc"]).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return (
        record["seq"], record["record_hash"], record["prev_hash"], record["event_type"], ts, record["trace_id"],
        record["decision"], record["status"], record["action"], codes[0] if codes else None,
        actor["kind"], actor["id"], body.decode(),
    )  # fmt: skip


def build_chain(
    db: Path, count: int, sample_size: int, span_s: float | None = None
) -> tuple[list[dict[str, Any]], str, float]:
    """Insert the chain; returns (a sample of the records' dicts, a trace id
    from the middle of the log, seconds taken)."""
    started = time.perf_counter()
    sample: list[dict[str, Any]] = []
    middle_trace = ""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")  # a generated file: no need to fsync while building it
    # The record_hash and trace_id indexes take random inserts: keep them in memory.
    conn.execute("PRAGMA cache_size=-1000000")
    conn.execute("BEGIN")
    batch: list[tuple[Any, ...]] = []
    for record, body in sealed_records(count, span_s=span_s):
        batch.append(_row(record, body))
        if len(sample) < sample_size:
            sample.append(record)
        if record["seq"] == count // 2:
            middle_trace = record["trace_id"]
        if len(batch) == 20000:
            conn.executemany(_INSERT, batch)
            batch.clear()
            print(f"\rbuilding the chain: {record['seq']:,}/{count:,}", end="", file=sys.stderr, flush=True)
    conn.executemany(_INSERT, batch)
    conn.execute("COMMIT")
    conn.close()
    print(file=sys.stderr)
    return sample, middle_trace, time.perf_counter() - started


# --- measurements -------------------------------------------------------------------


def raw_rate(sample: list[dict[str, Any]], seconds: float = 3.0) -> dict[str, float]:
    """Records/s of canonical JSON + sha256 over the sample, repeated for ~seconds,
    per wall-clock second and per CPU second of this process."""
    done, started, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        for record in sample:
            hashlib.sha256(canonical_json(record)).hexdigest()
        done += len(sample)
    return {"wall": done / (time.perf_counter() - started), "cpu": done / (time.process_time() - cpu)}


def timed(env: dict[str, str], *args: str, argv: list[str] | None = None) -> dict[str, Any]:
    """Run a manage.py command under /usr/bin/time -v: wall seconds, peak RSS, stdout."""
    command = argv or [sys.executable, "manage.py", *args]
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *command], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    usage = dict(
        re.findall(
            r"^\s*(Maximum resident set size \(kbytes\)|User time \(seconds\)|System time \(seconds\)): ([\d.]+)$",
            done.stderr,
            re.M,
        )
    )
    if done.returncode != 0 or len(usage) != 3:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return {
        "seconds": seconds,
        "cpu_seconds": float(usage["User time (seconds)"]) + float(usage["System time (seconds)"]),
        "peak_rss_mb": int(usage["Maximum resident set size (kbytes)"]) / 1024,
        "stdout": done.stdout,
    }


def profile_verify(env: dict[str, str], tmp: Path, top: int = 25) -> str:
    """cProfile of `audit verify`: the functions where it spends its own time."""
    import pstats

    out = tmp / "verify.prof"
    argv = [sys.executable, "-m", "cProfile", "-o", str(out), "manage.py", "audit", "verify", "--json"]
    subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, check=True)
    stats = pstats.Stats(str(out))
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    lines = [f"{'own s':>7} {'share':>6} {'calls':>10}  function   (cProfile total {total:.1f} s)"]
    for (path, line, name), (_cc, calls, own, _cum, _callers) in rows:
        where = f"{Path(path).name}:{line}" if line else path
        lines.append(f"{own:7.2f} {100 * own / total:5.1f}% {calls:10d}  {name} ({where})")
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 records")
    parser.add_argument("--checkpoint-every", type=int, default=1000, help="as VERITTA_AUDIT_CHECKPOINT_EVERY")
    parser.add_argument("--profile", action="store_true", help="also profile `audit verify` with cProfile")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (database, export, checkpoints)")
    parser.add_argument("--output", type=Path, help="JSON result file (default bench/results/verify-<timestamp>.json)")
    args = parser.parse_args()
    count = 100_000 if args.quick else args.records

    tmp = Path(tempfile.mkdtemp(prefix="veritta-verify-bench-"))
    db = tmp / "audit.sqlite3"
    env = bench_env(tmp, f"sqlite:///{db}", {"LOG_LEVEL": "WARNING"})
    result: dict[str, Any] = {"benchmark": "verify", "records": count, "started_utc": datetime.now(UTC).isoformat()}
    try:
        manage(env, "migrate", "--no-input", "-v0")
        sample, trace_id, build_s = build_chain(db, count, sample_size=min(count, 50_000))
        result["build"] = {"seconds": build_s, "records_per_s": count / build_s, "db_mb": db.stat().st_size / 2**20}
        print(f"built {count:,} records in {build_s:.0f} s ({db.stat().st_size / 2**20:.0f} MB)", flush=True)

        # Seal the log as a server does every N records (one signed checkpoint
        # each, in the database and outside it); `audit verify` checks them all.
        started = time.perf_counter()
        sizes = f"range({args.checkpoint_every}, {count + 1}, {args.checkpoint_every})"
        manage(
            env,
            "shell",
            "-c",
            f"from audit.checkpoints import checkpoint_create\nfor s in {sizes}: checkpoint_create(size=s)",
        )
        result["checkpoints_s"] = time.perf_counter() - started

        raws = [raw_rate(sample)]
        verify = timed(env, "audit", "verify", "--json")
        report = json.loads(verify.pop("stdout"))
        if not report["ok"] or report["records"] != count:
            raise RuntimeError(f"the generated chain does not verify: {json.dumps(report)[:2000]}")
        verify["checkpoints_checked"] = report.get("checkpoints_checked")
        raws.append(raw_rate(sample))
        export = timed(env, "audit", "export", "--output", str(tmp / "export.jsonl"))
        export.pop("stdout")
        checkpoint = timed(env, "audit", "checkpoint", "--json")
        checkpoint.pop("stdout")
        prove = timed(env, "audit", "prove", trace_id)
        proof = json.loads(prove.pop("stdout"))
        prove["records_proven"] = len(proof["records"])
        raws.append(raw_rate(sample))
        raw = {
            "records_per_s": statistics.median(r["wall"] for r in raws),
            "records_per_cpu_s": statistics.median(r["cpu"] for r in raws),
            "samples": raws,
            "sample_records": len(sample),
        }
        result.update(raw=raw, commands={"verify": verify, "export": export, "checkpoint": checkpoint, "prove": prove})
        for item in result["commands"].values():
            item["records_per_s"] = count / item["seconds"]
            item["records_per_cpu_s"] = count / item["cpu_seconds"]
        # Per CPU second: other processes on a shared machine slow the wall clock
        # of each measurement differently, but hardly the CPU time each one needs.
        result["verify_over_raw"] = verify["records_per_cpu_s"] / raw["records_per_cpu_s"]
        result["verify_over_raw_wall"] = verify["records_per_s"] / raw["records_per_s"]
        if args.profile:
            result["verify_profile"] = profile_verify(env, tmp)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print_report(result)
    output = args.output or RESULTS / f"verify-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}")


def print_report(result: dict[str, Any]) -> None:
    count, raw, raw_cpu = result["records"], result["raw"]["records_per_s"], result["raw"]["records_per_cpu_s"]
    print(f"\n== audit trail, {count:,} records (SQLite), {os.cpu_count()} cores ==\n")
    print(f"{'what':22} {'wall s':>7} {'records/s':>10} {'CPU s':>7} {'records/CPU s':>14} {'peak RSS MB':>12}")
    print(
        f"{'raw canonical+sha256':22} {count / raw:7.1f} {raw:10,.0f} {count / raw_cpu:7.1f} {raw_cpu:14,.0f} {'-':>12}"
    )
    for name, item in result["commands"].items():
        verdict = "" if item["peak_rss_mb"] < RSS_TARGET_MB else f"  (target < {RSS_TARGET_MB} MB: MISSED)"
        print(
            f"{'audit ' + name:22} {item['seconds']:7.1f} {item['records_per_s']:10,.0f} {item['cpu_seconds']:7.1f}"
            f" {item['records_per_cpu_s']:14,.0f} {item['peak_rss_mb']:12.0f}{verdict}"
        )
    ratio, verdict = result["verify_over_raw"], "met" if result["verify_over_raw"] >= RATIO_TARGET else "MISSED"
    print(f"\nverify/raw {ratio:.2f} per CPU second (target >= {RATIO_TARGET}: {verdict})")
    print(f"verify/raw {result['verify_over_raw_wall']:.2f} by wall clock (noisier on a shared machine)")
    if "verify_profile" in result:
        print("\nwhere `audit verify` spends its time (cProfile, own time):\n" + result["verify_profile"])


if __name__ == "__main__":
    main()

"""Scaling benchmark on PostgreSQL: one app server against two, and the
ceiling of the audit chain head.

    python bench/scale_bench.py [--quick] [--workers 2] [--connections 32]

On a throwaway PostgreSQL cluster, one database, the bench settings:

1. HTTP: governed `POST /process` (the request of bench/http_bench.py) on
   - one   one gunicorn master (--workers W), driven with C connections;
   - two   two gunicorn masters (W workers each, their own JSONL mirror) on the
           same database, C/2 connections at each, driven at the same time.
   After a warm-up the two scenarios run interleaved in short rounds (one,
   two, one, ...); the report gives medians over rounds and the median of each
   round's two/one ratio (issue 7's target: >= 1.5). While a round runs, a
   thread samples pg_stat_activity: how many backends wait on the chain's
   advisory lock, on other locks (rate-counter rows), sit inside a transaction
   between statements (the chain lock holder sealing records in Python), or
   run a statement.
2. Chain head: the servers are stopped, then P processes (each a Django
   process on the same database, P in --procs) call audit.chain.chain_append
   in a loop for S seconds, alternating an ALLOW+PENDING pair and a SUCCESS
   record as a request does (drafts from bench/verify_bench.py). Reported per
   P: transactions/s, records/s, per-call latency, the same pg_stat_activity
   shares, and the ceiling in governed requests/s (two transactions each).
   If throughput stops growing with P while latency grows and one backend
   always holds the lock, the chain head is the limit.
3. `manage.py audit verify --json` on the database afterwards: the bench must
   leave a chain that verifies.

Writes bench/results/scale-<timestamp>.json (or --output).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: import the project

from bench.http_bench import (  # noqa: E402
    BODY,
    HIGH,
    RESULTS,
    Gunicorn,
    Round,
    drive_async,
    machine,
    prepare_database,
    request_bytes,
)
from bench.support import bench_env  # noqa: E402
from tests.support.appserver import manage  # noqa: E402
from tests.support.servers import PostgresCluster  # noqa: E402

TARGET = 1.5  # issue 7: two servers >= 1.5x one server's throughput
SCENARIOS = ("one", "two")


# --- load on one or several servers at once -------------------------------------------


def split(connections: int, parts: int) -> list[int]:
    """Connections shared as evenly as possible."""
    return [connections // parts + (i < connections % parts) for i in range(parts)]


def merge(parts: list[Round]) -> Round:
    """One Round of several driven at the same time: all requests, all latencies,
    over the longest of their durations."""
    merged = Round(seconds=max(p.seconds for p in parts))
    for p in parts:
        merged.requests += p.requests
        merged.errors += p.errors
        merged.latencies += p.latencies
        for status, n in p.statuses.items():
            merged.statuses[status] = merged.statuses.get(status, 0) + n
    return merged


def drive_all(ports: list[int], request: bytes, connections: int, seconds: float) -> tuple[Round, list[Round]]:
    """drive() on every port at once, in one event loop (one load generator for
    both scenarios, so its cost is the same); returns (merged, per port)."""

    async def together() -> list[Round]:
        shares = split(connections, len(ports))
        return list(
            await asyncio.gather(*(drive_async(p, request, n, seconds) for p, n in zip(ports, shares, strict=True)))
        )

    parts = asyncio.run(together())
    return merge(parts), parts


# --- what the database backends are doing -------------------------------------------------

_ACTIVITY = """
SELECT count(*) FILTER (WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'),
       count(*) FILTER (WHERE wait_event_type = 'Lock' AND wait_event <> 'advisory'),
       count(*) FILTER (WHERE state = 'idle in transaction'),
       count(*) FILTER (WHERE state = 'active' AND wait_event_type IS DISTINCT FROM 'Lock')
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
"""
ACTIVITY_KEYS = ("wait_chain_lock", "wait_other_lock", "in_transaction_idle", "running_statement")


class Activity:
    """Samples pg_stat_activity of the bench database from a thread while a
    measurement runs; means are numbers of backends. The chain's lock is the
    only advisory lock the project takes (audit/chain.py), so `wait_chain_lock`
    is its queue; `in_transaction_idle` is a backend inside a transaction
    between statements, which for a chain append is the lock holder sealing
    records or writing the mirror in Python."""

    def __init__(self, url: str, interval: float = 0.025) -> None:
        self.url, self.interval = url, interval
        self.sums = [0] * len(ACTIVITY_KEYS)
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Activity:
        import psycopg

        self._conn = psycopg.connect(self.url, autocommit=True)  # a fresh snapshot per query
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            row = self._conn.execute(_ACTIVITY).fetchone()
            assert row is not None
            self.sums = [s + int(v) for s, v in zip(self.sums, row, strict=True)]
            self.samples += 1

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self._conn.close()

    def means(self) -> dict[str, float]:
        return {
            k: (s / self.samples if self.samples else float("nan"))
            for k, s in zip(ACTIVITY_KEYS, self.sums, strict=True)
        }


class CpuMeter:
    """Share of all cores busy (machine-wide, /proc/stat) between start and stop."""

    @staticmethod
    def _read() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    def __enter__(self) -> CpuMeter:
        self._start = self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._read()
        busy, total = end[0] - self._start[0], end[1] - self._start[1]
        self.busy = busy / total if total else float("nan")


# --- one server against two --------------------------------------------------------------


def bench_http(args: argparse.Namespace, tmp: Path, env: dict[str, str], url: str) -> dict[str, Any]:
    print("[http] preparing the database", flush=True)
    started = time.monotonic()
    api_key, token = prepare_database(env)
    # Two masters, each with its own JSONL mirror and checkpoint copies, as two
    # hosts would have (docs/DEPLOYMENT.md); "one" is the first of them alone.
    servers: list[Gunicorn] = []
    try:
        for name in ("a", "b"):
            (tmp / name).mkdir()
            server_env = {**env, "VERITTA_AUDIT_LOG_PATH": str(tmp / name / "audit.log")}
            servers.append(Gunicorn(server_env, tmp, name, args.workers, "sync"))
        for server in servers:
            server.wait_ready(args.workers)
        print(f"[http] database and 2 servers ready in {time.monotonic() - started:.0f} s", flush=True)
        request = request_bytes("governed", api_key, token)
        ports = {"one": [servers[0].port], "two": [s.port for s in servers]}
        for name in SCENARIOS:  # warm-up: imports, connections, caches
            warm, _ = drive_all(ports[name], request, args.connections, args.warmup)
            print(f"[http] warm-up {name}: {warm.rps:.0f} req/s, statuses {warm.statuses}", flush=True)
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in SCENARIOS}
        cpu_before = os.times()
        for i in range(args.rounds):
            for name in SCENARIOS:
                with CpuMeter() as cpu, Activity(url) as activity:
                    merged, parts = drive_all(ports[name], request, args.connections, args.seconds)
                rounds[name].append(
                    {"round": merged, "per_server_rps": [p.rps for p in parts], "cpu": cpu.busy, **activity.means()}
                )
            line = ", ".join(f"{n} {rounds[n][-1]['round'].rps:.0f}" for n in SCENARIOS)
            print(f"[http] round {i + 1}/{args.rounds}: {line} req/s", flush=True)
        cpu = os.times()
        client_cpu_s = (cpu.user + cpu.system) - (cpu_before.user + cpu_before.system)
        measured_s = sum(r["round"].seconds for rs in rounds.values() for r in rs)
        rss = {"one": servers[0].peak_rss_mb(), "two": servers[0].peak_rss_mb() + servers[1].peak_rss_mb()}
    finally:
        for server in servers:
            server.stop()
        print("[http] servers stopped", flush=True)
    return summarize_http(rounds, rss) | {"client_cpu_share": client_cpu_s / measured_s}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize_http(rounds: dict[str, list[dict[str, Any]]], rss: dict[str, list[float]]) -> dict[str, Any]:
    scenarios = {}
    for name, rs in rounds.items():
        runs: list[Round] = [r["round"] for r in rs]
        scenarios[name] = {
            "rps": _median([r.rps for r in runs]),
            "p50_ms": _median([r.percentile(0.50) for r in runs]),
            "p99_ms": _median([r.percentile(0.99) for r in runs]),
            "requests": sum(r.requests for r in runs),
            "errors": sum(r.errors for r in runs),
            "statuses": {
                str(k): sum(r.statuses.get(k, 0) for r in runs) for k in {k for r in runs for k in r.statuses}
            },
            "cpu_busy": _median([r["cpu"] for r in rs]),
            **{k: _median([r[k] for r in rs]) for k in ACTIVITY_KEYS},
            "peak_rss_mb_per_worker": [round(v, 1) for v in rss[name]],
            "rounds": [
                {
                    "rps": r["round"].rps,
                    "p50_ms": r["round"].percentile(0.5),
                    "p99_ms": r["round"].percentile(0.99),
                    "errors": r["round"].errors,
                    "per_server_rps": r["per_server_rps"],
                    "cpu_busy": r["cpu"],
                    **{k: r[k] for k in ACTIVITY_KEYS},
                }
                for r in rs
            ],
        }
    # Ratio of each round's pair (run seconds apart), then the median: robust to drift.
    ratio = _median(
        [b["round"].rps / a["round"].rps for a, b in zip(rounds["one"], rounds["two"], strict=True) if a["round"].rps]
    )
    return {"scenarios": scenarios, "ratio_two_over_one": ratio}


# --- the chain head's ceiling ----------------------------------------------------------------


def chain_worker() -> None:
    """A child process (--chain-worker): Django on the bench settings, then, for
    each "run SECONDS" line on stdin, chain appends for that long, alternating
    an ALLOW+PENDING pair and a SUCCESS record like a request; prints one JSON
    line per run. Answers "ready" once warm."""
    import django

    django.setup()
    from audit.chain import chain_append
    from bench.verify_bench import trace_drafts

    rng = random.Random(os.getpid())

    def calls() -> Any:
        while True:
            drafts = trace_drafts(rng, datetime.now(UTC))  # ts_utc is set again by chain_append
            if len(drafts) == 3:  # an allowed request (denials are one record, one call)
                yield drafts[:2]
                yield drafts[2:]

    source = calls()
    for _ in range(4):  # warm: connection, first statements, the mirror file
        chain_append(next(source))
    print(json.dumps({"ready": os.getpid()}), flush=True)
    while line := sys.stdin.readline():
        command, _, value = line.strip().partition(" ")
        if command != "run":
            break
        seconds = float(value)
        latencies: list[float] = []
        records = 0
        started = time.perf_counter()
        deadline = started + seconds
        pending = False  # stop on a whole request: no PENDING left without its SUCCESS
        while time.perf_counter() < deadline or pending:
            drafts = next(source)
            pending = len(drafts) == 2
            t0 = time.perf_counter()
            chain_append(drafts)
            latencies.append(time.perf_counter() - t0)
            records += len(drafts)
        elapsed = time.perf_counter() - started
        result = {"calls": len(latencies), "records": records, "elapsed": elapsed, "latencies": latencies}
        print(json.dumps(result), flush=True)


class ChainWorkers:
    """N chain_worker processes, started (and warmed) once, run on command."""

    def __init__(self, env: dict[str, str], count: int) -> None:
        argv = [sys.executable, str(Path(__file__).resolve()), "--chain-worker"]
        self.processes = [
            subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for _ in range(count)
        ]
        for p in self.processes:
            self._answer(p)

    @staticmethod
    def _answer(process: subprocess.Popen[str]) -> dict[str, Any]:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"chain worker {process.pid} exited with {process.wait()}")
        return json.loads(line)

    def run(self, procs: int, seconds: float) -> list[dict[str, Any]]:
        chosen = self.processes[:procs]
        for p in chosen:  # the same start, within a millisecond
            assert p.stdin is not None
            p.stdin.write(f"run {seconds}\n")
            p.stdin.flush()
        return [self._answer(p) for p in chosen]

    def stop(self) -> None:
        for p in self.processes:
            if p.poll() is None:
                assert p.stdin is not None
                p.stdin.close()  # end of input: the worker returns
        for p in self.processes:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _ms(ordered: list[float], q: float) -> float:
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def bench_chain(args: argparse.Namespace, env: dict[str, str], url: str) -> dict[str, Any]:
    started = time.monotonic()
    workers = ChainWorkers(env, max(args.procs))
    print(f"[chain] {max(args.procs)} chain workers ready in {time.monotonic() - started:.0f} s", flush=True)
    runs: dict[int, list[dict[str, Any]]] = {p: [] for p in args.procs}
    try:
        for i in range(args.chain_rounds):
            for procs in args.procs:
                with CpuMeter() as cpu, Activity(url) as activity:
                    answers = workers.run(procs, args.chain_seconds)
                seconds = max(a["elapsed"] for a in answers)
                latencies = sorted(v for a in answers for v in a["latencies"])
                calls = sum(a["calls"] for a in answers)
                runs[procs].append(
                    {
                        "tx_per_s": calls / seconds,
                        "records_per_s": sum(a["records"] for a in answers) / seconds,
                        "p50_ms": _ms(latencies, 0.50),
                        "p99_ms": _ms(latencies, 0.99),
                        "calls": calls,
                        "cpu_busy": cpu.busy,
                        **activity.means(),
                    }
                )
                print(
                    f"[chain] round {i + 1}/{args.chain_rounds} P={procs}: {calls / seconds:.0f} tx/s, "
                    f"p50 {runs[procs][-1]['p50_ms']:.1f} ms",
                    flush=True,
                )
    finally:
        workers.stop()
    per_p = {}
    for procs, rs in runs.items():
        entry = {k: _median([r[k] for r in rs]) for k in rs[0] if k != "calls"}
        entry["calls"] = sum(r["calls"] for r in rs)
        # Lock held: a backend in its chain transaction, not queued (at most one at a time).
        held = entry["in_transaction_idle"] + entry["running_statement"]
        entry["lock_held_share"] = min(held, 1.0)
        entry["hold_ms_per_tx"] = 1000 * min(held, 1.0) / entry["tx_per_s"] if entry["tx_per_s"] else float("nan")
        entry["rounds"] = rs
        per_p[str(procs)] = entry
    best = max(per_p.values(), key=lambda e: e["tx_per_s"])
    # With one writer nothing queues: its hold time is the lock's own cost when
    # the holder never waits for a CPU, and 1/hold the rate the lock alone admits.
    alone = per_p[str(min(args.procs))]["hold_ms_per_tx"]
    return {
        "lock_bound_tx_per_s": 1000 / alone if alone else float("nan"),
        "per_procs": per_p,
        "ceiling_tx_per_s": best["tx_per_s"],
        "ceiling_records_per_s": best["records_per_s"],
        "ceiling_governed_rps": best["tx_per_s"] / 2,  # ALLOW+PENDING, then SUCCESS
    }


def verify(env: dict[str, str]) -> dict[str, Any]:
    started = time.monotonic()
    done = manage(env, "audit", "verify", "--json", check=False)
    try:
        report_ = json.loads(done.stdout)
    except json.JSONDecodeError:
        report_ = {"stdout": done.stdout[-2000:], "stderr": done.stderr[-2000:]}
    return {"exit_code": done.returncode, "seconds": round(time.monotonic() - started, 1), "report": report_}


# --- report ------------------------------------------------------------------------------------


def report(result: dict[str, Any], args: argparse.Namespace) -> str:
    http, chain, checked = result["http"], result["chain"], result["verify"]
    lines = [
        f"\n== PostgreSQL: one app server against two ({args.workers} sync workers each, "
        f"{args.connections} connections in all) ==",
        "",
        "backends (mean number, pg_stat_activity): queued on the chain lock, queued on other locks,",
        "idle inside a transaction (the chain lock holder in Python), running a statement",
        "",
        f"{'scenario':9} {'req/s':>6} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'CPU':>5}"
        f" {'chain q':>7} {'other q':>7} {'in tx':>6} {'running':>7} {'in tx ms/append':>15}",
    ]
    for name, s in http["scenarios"].items():
        per_append = 1000 * s["in_transaction_idle"] / (2 * s["rps"]) if s["rps"] else float("nan")
        lines.append(
            f"{name:9} {s['rps']:6.0f} {s['p50_ms']:7.1f} {s['p99_ms']:7.1f} {s['errors']:6d} {100 * s['cpu_busy']:4.0f}%"
            f" {s['wait_chain_lock']:7.2f} {s['wait_other_lock']:7.2f} {s['in_transaction_idle']:6.2f}"
            f" {s['running_statement']:7.2f} {per_append:15.2f}"
        )
    split_ = [_median([r["per_server_rps"][i] for r in http["scenarios"]["two"]["rounds"]]) for i in (0, 1)]
    lines.append(f"two: per server {split_[0]:.0f} + {split_[1]:.0f} req/s")
    ratio = http["ratio_two_over_one"]
    lines += [
        "",
        f"two/one req/s        {ratio:.2f}   (target >= {TARGET}: {'met' if ratio >= TARGET else 'MISSED'})",
        f"load generator CPU   {100 * http['client_cpu_share']:.0f}% of one core while measuring",
        "",
        f"== chain head: P processes appending (ALLOW+PENDING, SUCCESS, ...), {args.chain_seconds:g} s each ==",
        "",
        f"{'P':>2} {'tx/s':>7} {'records/s':>9} {'req/s=tx/2':>10} {'p50 ms':>7} {'p99 ms':>7} {'CPU':>5}"
        f" {'chain q':>7} {'lock held':>9} {'hold ms/tx':>10}",
    ]
    for procs, e in chain["per_procs"].items():
        lines.append(
            f"{procs:>2} {e['tx_per_s']:7.0f} {e['records_per_s']:9.0f} {e['tx_per_s'] / 2:10.0f} {e['p50_ms']:7.2f}"
            f" {e['p99_ms']:7.2f} {100 * e['cpu_busy']:4.0f}% {e['wait_chain_lock']:7.2f} {100 * e['lock_held_share']:8.0f}%"
            f" {e['hold_ms_per_tx']:10.2f}"
        )
    one = http["scenarios"]["one"]["rps"]
    ceiling = chain["ceiling_governed_rps"]
    found = checked["report"]
    outcome = (
        f"clean: {found.get('records')} records, {found.get('checkpoints_checked')} checkpoints,"
        f" {found.get('in_flight')} in flight"
        if checked["exit_code"] == 0 and found.get("ok")
        else f"FAILED (exit {checked['exit_code']}): {json.dumps(found)[:500]}"
    )
    lines += [
        "",
        f"chain ceiling        {chain['ceiling_tx_per_s']:.0f} tx/s = {chain['ceiling_records_per_s']:.0f} records/s"
        f" = {ceiling:.0f} governed req/s (2 transactions each)",
        f"ceiling / one server {ceiling / one:.1f}   (app servers of the measured throughput that fit under it)",
        f"lock-bound ceiling   {chain['lock_bound_tx_per_s']:.0f} tx/s = {chain['lock_bound_tx_per_s'] / 2:.0f} governed req/s"
        f" (1 / hold time with P={min(args.procs)}: the holder never waits for a CPU)",
        f"audit verify         {outcome} in {checked['seconds']} s",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (well under two minutes)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers per server")
    parser.add_argument("--connections", type=int, default=32, help="in all; split evenly between two servers")
    parser.add_argument("--rounds", type=int, help="rounds of (one, two); default 4 quick, 8 full")
    parser.add_argument("--seconds", type=float, help="seconds per scenario per round; default 2 quick, 6 full")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per scenario; default 1.5 quick, 4 full")
    parser.add_argument(
        "--procs", default="1,2,4,8", help="numbers of appending processes for the chain head (default 1,2,4,8)"
    )
    parser.add_argument("--chain-seconds", type=float, help="seconds per P per round; default 2 quick, 5 full")
    parser.add_argument("--chain-rounds", type=int, help="rounds over --procs; default 1 quick, 3 full")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (mirrors, gunicorn logs)")
    parser.add_argument("--output", type=Path, help="JSON result file (default bench/results/scale-<timestamp>.json)")
    parser.add_argument("--chain-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.chain_worker:
        chain_worker()
        return
    args.rounds = args.rounds or (4 if args.quick else 8)
    args.seconds = args.seconds or (2.0 if args.quick else 6.0)
    args.warmup = args.warmup or (1.5 if args.quick else 4.0)
    args.chain_seconds = args.chain_seconds or (2.0 if args.quick else 5.0)
    args.chain_rounds = args.chain_rounds or (1 if args.quick else 3)
    args.procs = [int(p) for p in args.procs.split(",")]

    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="veritta-scale-"))
    try:
        with PostgresCluster() as cluster:
            url = cluster.create_database("veritta_scale")
            extra = {
                "DJANGO_SETTINGS_MODULE": "bench.settings",
                "VERITTA_RATE_LIMIT_KEY_PER_MIN": HIGH,
                "VERITTA_RATE_LIMIT_SESSION_PER_MIN": HIGH,
                "VERITTA_RATE_LIMIT_ADDRESS_PER_MIN": HIGH,
                "VERITTA_ADMIN_RATE_LIMIT_PER_MIN": HIGH,
                "LOG_LEVEL": "WARNING",
            }
            env = bench_env(tmp, url, extra)
            result = {"http": bench_http(args, tmp, env, url), "chain": bench_chain(args, env, url)}
            print("[verify] audit verify --json", flush=True)
            result["verify"] = verify(env)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(report(result, args))

    config = {k: v for k, v in vars(args).items() if k not in ("output", "chain_worker")}
    document = {
        "benchmark": "scale",
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine() | {"loadavg": os.getloadavg()},
        "config": {**config, "database": "postgres", "body_bytes": len(BODY)},
        "results": result,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    output = args.output or RESULTS / f"scale-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(
        f"\nwrote {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output} in {document['wall_seconds']} s"
    )


if __name__ == "__main__":
    main()

"""Scaling benchmark on durable PostgreSQL: one app server against two.

    python bench/scale_bench.py [--quick] [--workers 2] [--connections 32]

On a throwaway durable PostgreSQL cluster (fsync, synchronous_commit and
full_page_writes on), one database, the bench settings:

1. HTTP: governed `POST /process` (the request of bench/http_bench.py) on
   - one   one gunicorn master (--workers W), driven with C connections;
   - two   two gunicorn masters (W workers each, their own JSONL mirror) on the
           same database, C/2 connections at each, driven at the same time.
   After a warm-up the two scenarios run interleaved in short rounds (one,
   two, one, ...); the report gives medians over rounds and the median of each
   round's two/one ratio (issue 7's target: >= 1.5). While a round runs, a
   thread samples pg_stat_activity: how many backends wait on the chain's
   advisory lock, on other locks (rate-counter rows), sit inside a transaction
   between statements, or run a statement.
2. `manage.py audit verify --json` on the database afterwards: the bench must
   leave a chain that verifies.

The chain's own ceiling is bench/ingest_bench.py's; N app servers in process,
up to where the database saturates, bench/fleet_bench.py's.

Writes bench/results/scale-<timestamp>.json (or --output).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: import the project

from bench.http_bench import (  # noqa: E402
    BODY,
    Gunicorn,
    Round,
    drive_async,
    governed_env,
    machine,
    prepare_database,
    request_bytes,
)
from bench.support import audit_verify, durability_line, durable_database, pg_durability, verify_line, write_result  # noqa: E402

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
    api_key = prepare_database(env)
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
        request = request_bytes("governed", api_key, "")
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


# --- report ------------------------------------------------------------------------------------


def report(result: dict[str, Any], args: argparse.Namespace) -> str:
    http = result["http"]
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
        f"PostgreSQL           {durability_line(result['postgres'])}",
        f"audit verify         {verify_line(result['verify'])}",
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
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (mirrors, gunicorn logs)")
    parser.add_argument("--output", type=Path, help="JSON result file (default bench/results/scale-<timestamp>.json)")
    args = parser.parse_args()
    args.rounds = args.rounds or (4 if args.quick else 8)
    args.seconds = args.seconds or (2.0 if args.quick else 6.0)
    args.warmup = args.warmup or (1.5 if args.quick else 4.0)

    started = time.monotonic()
    with durable_database("scale", keep=args.keep) as (tmp, url, _cluster):
        env = governed_env(tmp, url)
        result = {"postgres": pg_durability(url), "http": bench_http(args, tmp, env, url)}
        print("[verify] audit verify --json", flush=True)
        result["verify"] = audit_verify(env)
    print(report(result, args))

    config = {k: v for k, v in vars(args).items() if k != "output"}
    write_result(
        "scale",
        result,
        config={**config, "database": "postgres", "body_bytes": len(BODY)},
        started=started,
        machine=machine() | {"loadavg": os.getloadavg()},
        output=args.output,
    )


if __name__ == "__main__":
    main()

"""Fleet simulation on durable PostgreSQL: N app servers feeding one chain,
governed requests/s as N grows, up to where the database is the limit.

    python bench/fleet_bench.py [--quick] [--servers 1,2,4,8] [--threads 2]

On a throwaway durable PostgreSQL cluster (fsync, synchronous_commit and
full_page_writes on), one database migrated and loaded as an operator does:

- N processes stand for N app servers. Each imports Verittà's WSGI entry
  point (veritta_site.wsgi: the start-up checks, the standby sequencer
  thread) on the bench settings (the production settings; rate limits out of
  reach) and runs governed `POST /process` requests through it in-process:
  the production middleware, the real gates, executor and audit write path,
  no HTTP server or socket in between. Each has --threads workers, a
  connection each (Django's connections are per thread).
- After a warm-up, each N runs for --seconds, in --rounds rounds over the
  list of N; the parent samples the chain lock (pg_locks, as
  bench/ingest_bench.py does), the growth of the chain (max(seq)), and the
  CPU time of the database's processes and of the app servers'.
- Per N: governed req/s, per server, speed-up over N=1, p50/p99 per request,
  database and app CPU in cores, lock-held share; a Markdown table for
  docs/DEPLOYMENT.md; then `audit verify --json`.

The database saturates where req/s stops growing with N while its CPU or the
lock-held share approaches its limit. On a machine with few cores the app
servers compete with the database for CPU, so the knee comes earlier than on
separate hosts: read "database CPU" beside it.

Writes bench/results/fleet-<timestamp>.json (or --output).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: import the project

from bench.http_bench import BODY, governed_env, machine, prepare_database  # noqa: E402
from bench.ingest_bench import Children, LockSampler, Step, chain_size, child, percentile_ms, wait_drained  # noqa: E402
from bench.scale_bench import CpuMeter, _median  # noqa: E402
from bench.support import audit_verify, durability_line, durable_database, pg_durability, verify_line, write_result  # noqa: E402

# A server's throughput grows "with N" while the next step adds at least this
# share of what the step before added per server; the first N below it is the knee.
GROWTH = 0.15


# --- an app server in-process ------------------------------------------------------------------


def _request_step() -> Step:
    """One governed POST /process through the WSGI application, as gunicorn
    would call it (a fresh environ per request, the response iterated and closed)."""
    from veritta_site.wsgi import application

    api_key = os.environ["BENCH_API_KEY"]
    status: list[str] = []

    def start_response(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(status_line)
        return lambda data: None

    def step() -> tuple[int, bool, bool]:
        environ = {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/process",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(BODY)),
            "HTTP_X_API_KEY": api_key,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(BODY),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        status.clear()
        response = application(environ, start_response)
        try:
            for _ in response:
                pass
        finally:
            close = getattr(response, "close", None)
            if close is not None:
                close()  # request_finished: Django's connection bookkeeping, as a server does
        ok = bool(status) and status[0].startswith("200")
        return 3, True, ok  # ALLOW, PENDING, SUCCESS

    for _ in range(4):  # warm: imports, connection, caches, the mirror file
        step()
    return step


def app_server() -> None:
    """An app server process (--app-server): requests on command."""
    import warnings

    import django

    # WhiteNoise's note that static files were never collected: nothing here serves them.
    warnings.filterwarnings("ignore", message="No directory at")
    django.setup()
    from audit.chain import CHAIN_LOCK_KEY

    child(_request_step, {"lock_key": CHAIN_LOCK_KEY})


# --- CPU of the database and of the app servers ------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (the ones that are gone count nothing)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid, *(int(p) for p in out.split())]


# --- the fleet -------------------------------------------------------------------------------------


def measure(
    servers: Children, conn: Any, url: str, postmaster: int, n: int, args: argparse.Namespace
) -> dict[str, Any]:
    apps = [p.pid for p in servers.processes[:n]]
    with CpuMeter() as cpu, LockSampler(url, servers.lock_key, args.sample_ms / 1000) as lock:
        backends = [pid for pid in children(postmaster) if pid != lock.backend_pid]
        db0, app0 = cpu_seconds(backends), cpu_seconds(apps)
        seq0, _ = chain_size(conn)
        t0 = time.perf_counter()
        chosen = servers.start(n, args.seconds, args.threads)
        time.sleep(max(0.0, t0 + args.seconds - time.perf_counter()))
        seq1, waiting = chain_size(conn)
        window = time.perf_counter() - t0
        db1, app1 = cpu_seconds(backends), cpu_seconds(apps)
    answers = servers.results(chosen)
    wait_drained(conn)
    elapsed = max(a["elapsed"] for a in answers)
    latencies = sorted(v for a in answers for v in a["latencies"])
    requests = sum(a["calls"] for a in answers)
    return {
        "rps": requests / elapsed,
        "p50_ms": percentile_ms(latencies, 0.50),
        "p99_ms": percentile_ms(latencies, 0.99),
        "errors": sum(a["errors"] for a in answers),
        "requests": requests,
        "integrated_records_per_s": (seq1 - seq0) / window,
        "intake_waiting_at_end": waiting,
        "db_cpu_cores": (db1 - db0) / window,
        "app_cpu_cores": (app1 - app0) / window,
        "machine_cpu_busy": cpu.busy,
        "lock_held_share": lock.share,
    }


def bench_fleet(args: argparse.Namespace, tmp: Path, env: dict[str, str], url: str, postmaster: int) -> dict[str, Any]:
    import psycopg

    started = time.monotonic()

    def own_mirror(i: int) -> dict[str, str]:
        # Each app server its own JSONL mirror and checkpoint copies, as separate hosts have.
        (tmp / f"server-{i}").mkdir(exist_ok=True)
        return {"VERITTA_AUDIT_LOG_PATH": str(tmp / f"server-{i}" / "audit.log")}

    servers = Children(env, max(args.servers), Path(__file__).resolve(), "--app-server", own_mirror)
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in args.servers}
    try:
        servers.results(servers.start(max(args.servers), args.warmup, args.threads))  # warm-up
        print(f"[fleet] {max(args.servers)} app servers ready and warm in {time.monotonic() - started:.0f} s")
        with psycopg.connect(url, autocommit=True) as conn:
            wait_drained(conn)
            for i in range(args.rounds):
                for n in args.servers:
                    run = measure(servers, conn, url, postmaster, n, args)
                    runs[n].append(run)
                    print(
                        f"[fleet] round {i + 1}/{args.rounds} N={n}: {run['rps']:.0f} req/s, "
                        f"p50 {run['p50_ms']:.1f} ms, db CPU {run['db_cpu_cores']:.2f} cores, "
                        f"lock held {100 * run['lock_held_share']:.0f}%, errors {run['errors']}",
                        flush=True,
                    )
    finally:
        servers.stop()
    per_n: dict[str, Any] = {}
    for n, rs in runs.items():
        entry = {k: _median([r[k] for r in rs]) for k in rs[0] if k not in ("errors", "requests")}
        entry["errors"] = sum(r["errors"] for r in rs)
        entry["requests"] = sum(r["requests"] for r in rs)
        entry["rounds"] = rs
        per_n[str(n)] = entry
    one = per_n[str(min(args.servers))]["rps"] / min(args.servers)
    knee = None
    previous: tuple[int, float] | None = None
    for n in sorted(args.servers):
        entry = per_n[str(n)]
        entry["rps_per_server"] = entry["rps"] / n
        entry["speedup"] = entry["rps"] / one if one else float("nan")
        if previous is not None and knee is None:
            added = (entry["rps"] - previous[1]) / (n - previous[0])
            if added < GROWTH * one:
                knee = previous[0]
        previous = (n, entry["rps"])
    best = max(per_n.values(), key=lambda e: e["rps"])
    return {"per_servers": per_n, "saturates_at_servers": knee, "peak_rps": best["rps"]}


# --- report ------------------------------------------------------------------------------------


def sizing_table(result: dict[str, Any], args: argparse.Namespace) -> str:
    """The Markdown table for docs/DEPLOYMENT.md."""
    rows = [
        f"| app servers ({args.threads} workers each) | governed req/s | per server | vs one server"
        " | p50 ms | p99 ms | database CPU (cores) | chain lock held |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, e in result["fleet"]["per_servers"].items():
        rows.append(
            f"| {n} | {e['rps']:,.0f} | {e['rps_per_server']:,.0f} | {e['speedup']:.2f}x | {e['p50_ms']:.1f}"
            f" | {e['p99_ms']:.1f} | {e['db_cpu_cores']:.2f} | {100 * e['lock_held_share']:.0f}% |"
        )
    return "\n".join(rows)


def report(result: dict[str, Any], args: argparse.Namespace) -> str:
    fleet = result["fleet"]
    lines = [
        f"\n== fleet: N app servers x {args.threads} workers, governed POST /process in-process, "
        f"{args.seconds:g} s windows, median of {args.rounds} round(s) ==",
        f"PostgreSQL           {durability_line(result['postgres'])}",
        "",
        f"{'N':>3} {'req/s':>7} {'per server':>10} {'vs one':>6} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
        f" {'db CPU':>6} {'app CPU':>7} {'machine':>7} {'lock held':>9} {'rec/s in chain':>14}",
    ]
    for n, e in fleet["per_servers"].items():
        lines.append(
            f"{n:>3} {e['rps']:7.0f} {e['rps_per_server']:10.0f} {e['speedup']:5.2f}x {e['p50_ms']:7.1f}"
            f" {e['p99_ms']:7.1f} {e['errors']:6d} {e['db_cpu_cores']:6.2f} {e['app_cpu_cores']:7.2f}"
            f" {100 * e['machine_cpu_busy']:6.0f}% {100 * e['lock_held_share']:8.0f}% {e['integrated_records_per_s']:14.0f}"
        )
    knee = fleet["saturates_at_servers"]
    lines += [
        "",
        f"peak                 {fleet['peak_rps']:.0f} governed req/s"
        + (
            f"; growth stops after N={knee} (the next server adds < {100 * GROWTH:.0f}% of one server's throughput)"
            if knee
            else "; still growing at the largest N"
        ),
        f"machine              {os.cpu_count()} cores shared by the database and the app servers",
        f"audit verify         {verify_line(result['verify'])}",
        "",
        "for docs/DEPLOYMENT.md:",
        "",
        sizing_table(result, args),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    parser.add_argument("--servers", default="1,2,4,8", help="numbers of app servers (default 1,2,4,8)")
    parser.add_argument("--threads", type=int, default=2, help="workers (threads, a connection each) per app server")
    parser.add_argument("--seconds", type=float, help="measuring window per N per round; default 2 quick, 8 full")
    parser.add_argument("--rounds", type=int, help="rounds over --servers; default 1 quick, 3 full")
    parser.add_argument("--warmup", type=float, help="warm-up seconds, all servers at once; default 1 quick, 4 full")
    parser.add_argument("--sample-ms", type=float, default=5.0, help="lock sampling period (default 5 ms)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (mirror, checkpoints)")
    parser.add_argument("--output", type=Path, help="JSON result file (default bench/results/fleet-<timestamp>.json)")
    parser.add_argument("--app-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.app_server:
        app_server()
        return
    args.seconds = args.seconds or (2.0 if args.quick else 8.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.warmup = args.warmup or (1.0 if args.quick else 4.0)
    args.servers = [int(n) for n in args.servers.split(",")]

    started = time.monotonic()
    with durable_database("fleet", keep=args.keep) as (tmp, url, cluster):
        env = governed_env(tmp, url)
        print("[fleet] preparing the database", flush=True)
        env["BENCH_API_KEY"] = prepare_database(env)
        assert cluster.proc is not None
        result = {"postgres": pg_durability(url), "fleet": bench_fleet(args, tmp, env, url, cluster.proc.pid)}
        print("[verify] audit verify --json", flush=True)
        result["verify"] = audit_verify(env)
    print(report(result, args))

    config = {k: v for k, v in vars(args).items() if k not in ("output", "app_server")}
    write_result(
        "fleet",
        result,
        config={**config, "database": "postgres", "body_bytes": len(BODY)},
        started=started,
        machine=machine() | {"loadavg": os.getloadavg()},
        output=args.output,
        extra={"sizing_table_markdown": sizing_table(result, args)},
    )


if __name__ == "__main__":
    main()

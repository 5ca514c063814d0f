"""Connector benchmark: a governed call through `http_call_v1` against the
same call made by the independent peer project, side by side, as a ratio.

    python bench/connector_bench.py [--quick] [--database sqlite|postgres|both]

One local upstream (bench/upstream_app.py, its own gunicorn) answers
GET /api/tickets/<id> for everyone. Scenarios, each on gunicorn with the
same flags, loaded one at a time in interleaved rounds:

  governed  POST /process {"action": "get_ticket", "ticket_id": …} on Verittà:
            gates, exact rate limits, the profile, http_call_v1 (DNS answer
            checked, pinned connection, credential injected, size and time
            bounds, digests) and three chained audit records
  peer      POST /bench/peer-call on bench/peer_project: DRF token auth,
            throttle, a serializer, requests.get to the same upstream
            (redirects off, a timeout), one ORM row, the same fields back
  direct    GET /api/tickets/<id> on the upstream itself: the ceiling

The ratio is governed/peer req/s, the median of each round's pair.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: import the project

from bench.http_bench import (  # noqa: E402
    Gunicorn,
    Round,
    _median,
    drive,
    governed_env,
    machine,
    peer_env,
    prepare_database,
    prepare_peer,
)
from bench.support import audit_verify, durability_line, pg_durability, verify_line, write_result  # noqa: E402
from tests.support.servers import PostgresCluster, free_port, wait_for_port  # noqa: E402

SCENARIOS = ("governed", "peer", "direct")
UPSTREAM_TOKEN = "bench-upstream-token-" + os.urandom(8).hex()
TICKET = "T-42"


def start_upstream(tmp: Path, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    argv = [
        sys.executable, "-m", "gunicorn", "bench.upstream_app:app", "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--backlog", "2048",
    ]  # fmt: skip
    env = {**os.environ, "UPSTREAM_TOKEN": UPSTREAM_TOKEN}
    with (tmp / "gunicorn-upstream.log").open("ab") as log:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_for_port("127.0.0.1", port, timeout=60)
    return process, port


def write_policy(tmp: Path, upstream_port: int) -> tuple[Path, Path]:
    """The shipped profiles plus a `get_ticket` action pinning a connector to the upstream."""
    from governance.connectors import connector_hash

    connectors, profiles = tmp / "connectors", tmp / "profiles"
    connectors.mkdir()
    shutil.copytree(ROOT / "governance" / "profiles", profiles)
    connector = json.loads((ROOT / "docs" / "examples" / "first-action" / "connectors" / "tickets.json").read_text())
    connector["base_url"] = f"http://127.0.0.1:{upstream_port}/api"
    (connectors / "tickets.json").write_text(json.dumps(connector))
    profile = json.loads((ROOT / "docs" / "examples" / "first-action" / "profiles" / "default.json").read_text())
    profile["actions"]["get_ticket"]["connector"]["sha256"] = connector_hash(connector)
    (profiles / "default.json").write_text(json.dumps(profile))
    return connectors, profiles


def request_bytes(scenario: str, api_key: str, token: str) -> bytes:
    if scenario == "direct":
        return (
            f"GET /api/tickets/{TICKET} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {UPSTREAM_TOKEN}\r\nAccept: application/json\r\n\r\n"
        ).encode()
    if scenario == "governed":
        path, auth, body = "/process", f"X-API-Key: {api_key}", {"action": "get_ticket", "ticket_id": TICKET}
    else:
        path, auth, body = "/bench/peer-call", f"Authorization: Token {token}", {"ticket_id": TICKET}
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n{auth}\r\n\r\n"
    )
    return head.encode() + data


def bench_database(database: str, args: argparse.Namespace, cluster: PostgresCluster | None) -> dict[str, Any]:
    from governance.profiles import shipped_fingerprint

    tmp = Path(tempfile.mkdtemp(prefix=f"veritta-connector-bench-{database}-"))
    url = cluster.create_database("veritta_bench") if cluster else f"sqlite:///{tmp / 'bench.sqlite3'}"
    peer_url = cluster.create_database("peer_bench") if cluster else f"sqlite:///{tmp / 'peer.sqlite3'}"
    upstream, upstream_port = start_upstream(tmp, args.upstream_workers)
    servers: dict[str, Gunicorn] = {}
    try:
        connectors, profiles = write_policy(tmp, upstream_port)
        env = governed_env(tmp, url) | {
            "VERITTA_CONNECTORS_DIR": str(connectors),
            "VERITTA_PROFILES_DIR": str(profiles),
            "VERITTA_PROFILES_FINGERPRINT": shipped_fingerprint(profiles),
            "TICKETS_TOKEN": UPSTREAM_TOKEN,
        }
        env_peer = peer_env(
            tmp, peer_url, {"PEER_UPSTREAM_URL": f"http://127.0.0.1:{upstream_port}/api", "PEER_UPSTREAM_TOKEN": UPSTREAM_TOKEN}
        )
        print(f"[{database}] preparing the databases", flush=True)
        api_key, token = prepare_database(env), prepare_peer(env_peer)
        servers["governed"] = Gunicorn(env, tmp, "governed", args.workers, "sync")
        servers["peer"] = Gunicorn(env_peer, tmp, "peer", args.workers, "sync", peer=True)
        for server in servers.values():
            server.wait_ready(args.workers)
        ports = {"governed": servers["governed"].port, "peer": servers["peer"].port, "direct": upstream_port}
        requests = {name: request_bytes(name, api_key, token) for name in SCENARIOS}
        for name in SCENARIOS:
            warm = drive(ports[name], requests[name], args.connections, args.warmup)
            print(f"[{database}] warm-up {name}: {warm.rps:.0f} req/s, statuses {warm.statuses}", flush=True)
        rounds: dict[str, list[Round]] = {name: [] for name in SCENARIOS}
        for i in range(args.rounds):
            for name in SCENARIOS:
                rounds[name].append(drive(ports[name], requests[name], args.connections, args.seconds))
            line = ", ".join(f"{n} {rounds[n][-1].rps:.0f}" for n in SCENARIOS)
            print(f"[{database}] round {i + 1}/{args.rounds}: {line} req/s", flush=True)
        for server in servers.values():
            server.stop()
        result: dict[str, Any] = {
            "database": database,
            "scenarios": {
                name: {
                    "rps": _median([r.rps for r in rs]),
                    "p50_ms": _median([r.percentile(0.50) for r in rs]),
                    "p99_ms": _median([r.percentile(0.99) for r in rs]),
                    "requests": sum(r.requests for r in rs),
                    "errors": sum(r.errors for r in rs),
                    "statuses": {str(k): sum(r.statuses.get(k, 0) for r in rs) for k in {k for r in rs for k in r.statuses}},
                }
                for name, rs in rounds.items()
            },
            "ratio_governed_over_peer": _median(
                [a.rps / b.rps for a, b in zip(rounds["governed"], rounds["peer"], strict=True) if b.rps]
            ),
            "ratio_governed_over_direct": _median(
                [a.rps / b.rps for a, b in zip(rounds["governed"], rounds["direct"], strict=True) if b.rps]
            ),
        }
        if cluster is not None:
            result["postgres"] = pg_durability(url)
        result["verify"] = audit_verify(env)
        return result
    finally:
        for server in servers.values():
            server.stop()
        upstream.terminate()
        upstream.wait(timeout=15)
        if args.keep:
            print(f"[{database}] kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def report(result: dict[str, Any], connections: int) -> str:
    lines = [f"\n== {result['database']} ({connections} connections) ==", ""]
    lines.append(f"{'scenario':10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, s in result["scenarios"].items():
        lines.append(f"{name:10} {s['rps']:8.0f} {s['p50_ms']:8.1f} {s['p99_ms']:8.1f} {s['errors']:7d}")
    lines += [
        "",
        f"governed/peer req/s    {result['ratio_governed_over_peer']:.2f}",
        f"governed/direct req/s  {result['ratio_governed_over_direct']:.2f}   (the upstream alone: the ceiling)",
    ]
    if "postgres" in result:
        lines.append(f"PostgreSQL             {durability_line(result['postgres'])}")
    lines.append(f"audit verify           {verify_line(result['verify'])}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--upstream-workers", type=int, default=4)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, help="default 4 quick, 10 full")
    parser.add_argument("--seconds", type=float, help="per scenario per round; default 2 quick, 8 full")
    parser.add_argument("--warmup", type=float, help="default 1.5 quick, 5 full")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    args.rounds = args.rounds or (4 if args.quick else 10)
    args.seconds = args.seconds or (2.0 if args.quick else 8.0)
    args.warmup = args.warmup or (1.5 if args.quick else 5.0)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")  # connector_hash, shipped_fingerprint
    import django

    django.setup()
    started = time.monotonic()
    results = []
    for database in ["sqlite", "postgres"] if args.database == "both" else [args.database]:
        if database == "postgres":
            with PostgresCluster(durable=True) as cluster:
                results.append(bench_database(database, args, cluster))
        else:
            results.append(bench_database(database, args, None))
    for result in results:
        print(report(result, args.connections))
    config = {k: v for k, v in vars(args).items() if k != "output"}
    write_result("connector", results, config=config, started=started, machine=machine(), output=args.output)


if __name__ == "__main__":
    main()

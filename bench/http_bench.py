"""HTTP benchmark: the governed POST /process against the DRF service a
Django team would otherwise write, and against a bare DRF view, side by side.

    python bench/http_bench.py [--quick] [--database sqlite|postgres|both]

Scenarios, each on gunicorn with the same flags, on one database server
(a SQLite file each, or one durable PostgreSQL cluster, a database each):

  governed  POST /process on Verittà (bench.settings: the production
            settings), X-API-Key (a stored vk_ key): gates, exact rate limits,
            profile, executor and three hash-chained audit records
  peer      POST /bench/peer on an independent project (bench/peer_project:
            startproject defaults plus DRF, its own settings, URLs and
            database): DRF TokenAuthentication, UserRateThrottle on the
            database cache, a serializer, the same text work, one ORM insert
  bare      POST /bench/bare on the same independent project: DRF returning
            a constant

Each scenario gets its own gunicorn master (so each one's peak worker RSS is
its own), but only one is loaded at a time: after a warm-up, the scenarios run
interleaved in short rounds (governed, peer, bare, governed, ...) so machine
noise hits all three alike, and the report gives medians over the rounds.
The load generator is asyncio in this process, one coroutine per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: import the project

from bench.support import audit_verify, bench_env, durability_line, pg_durability, verify_line, write_result  # noqa: E402
from tests.support.appserver import manage  # noqa: E402
from tests.support.servers import PostgresCluster, RedisServer, free_port, wait_for_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PEER_PROJECT = ROOT / "bench" / "peer_project"
SCENARIOS = ("governed", "peer", "bare")
TEXT = "  Verittà   governs actions:\tevery  request passes the gates and leaves a tamper-evident record.  " * 2
BODY = json.dumps({"action": "process", "text": TEXT}).encode()
# Issue 12's targets: governed/peer on each database, governed/bare on both.
TARGET_OVER_PEER = {"sqlite": 1.0, "postgres": 1.5}
TARGET_OVER_BARE = 0.25
HIGH = str(10**9)  # rate limits no benchmark can reach: no 429 distorts the numbers


# --- the servers --------------------------------------------------------------


class Gunicorn:
    """One gunicorn master serving Verittà (bench.settings), or with `peer` the
    independent peer project; the same flags for every scenario."""

    def __init__(
        self,
        env: dict[str, str],
        tmp: Path,
        name: str,
        workers: int,
        worker_class: str,
        *,
        threads: int = 1,
        peer: bool = False,
    ) -> None:
        self.env, self.name = env, name
        self.port = free_port()
        self.log_path = tmp / f"gunicorn-{name}.log"
        if peer:
            app, cwd, config = "peer_site.wsgi:application", PEER_PROJECT, []
        else:
            # Verittà's own gunicorn.conf.py (JSON access log, metrics dir), so
            # the bench measures what operators run; flags override it.
            app, cwd = "veritta_site.wsgi:application", ROOT
            config = ["-c", str(ROOT / "gunicorn.conf.py")] if (ROOT / "gunicorn.conf.py").is_file() else []
        argv = [
            sys.executable, "-m", "gunicorn", app, *config,
            "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers), "--worker-class", worker_class,
            "--threads", str(threads),
            "--timeout", "60", "--graceful-timeout", "5", "--backlog", "2048",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.ready_request = (
            b"POST /bench/bare HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
            if peer
            else b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )

    def wait_ready(self, workers: int, timeout: float = 60) -> None:
        wait_for_port("127.0.0.1", self.port, timeout=timeout)
        deadline = time.monotonic() + timeout
        while len(self.worker_pids()) < workers or not _answers_ok(self.port, self.ready_request):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn ({self.name}) did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def peak_rss_mb(self) -> list[float]:
        """VmHWM (peak resident set) of each worker, in MB."""
        peaks = []
        for pid in self.worker_pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
            peaks.append(kb / 1024)
        return peaks

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _answers_ok(port: int, request: bytes) -> bool:
    try:
        status, _ = asyncio.run(_one_request(port, request))
    except OSError:
        return False
    return status == 200


async def _one_request(port: int, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        status, _close, body = await _read_response(reader)
        return status, body
    finally:
        writer.close()


# One Django process instead of three: on a busy 2-core machine each start costs seconds.
_PREPARE = """
import io
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
call_command("governance", "load-profiles", stdout=io.StringIO())
out = io.StringIO()
call_command("sessions", "create-key", "--name", "bench", stdout=out, stderr=io.StringIO())
print(out.getvalue().split()[-1])
"""

_PREPARE_PEER = """
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token
call_command("migrate", interactive=False, verbosity=0)
call_command("createcachetable")
user, _ = get_user_model().objects.get_or_create(username="bench")
print(Token.objects.get_or_create(user=user)[0].key)
"""


def prepare_database(env: dict[str, str]) -> str:
    """Migrate and load as an operator does (tests/support/appserver.py: migrate,
    governance load-profiles); returns an API key for /process."""
    return manage(env, "shell", "-c", _PREPARE).stdout.split()[-1]


def peer_env(tmp: Path, database_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The peer project's environment: the machine's, its own settings module,
    secret and database, none of Verittà's variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERITTA_", "DJANGO_", "DATABASE_"))}
    return env | {
        "DJANGO_SETTINGS_MODULE": "peer_site.settings",
        "DJANGO_SECRET_KEY": "peer-bench-" + os.urandom(16).hex(),
        "PEER_DATABASE_URL": database_url,
        "TMPDIR": str(tmp),
        **(extra or {}),
    }


def prepare_peer(env: dict[str, str]) -> str:
    """Migrate the peer's own database, its cache table and a token user, as
    its operators would; returns the DRF token for /bench/peer."""
    argv = [sys.executable, "manage.py", "shell", "-c", _PREPARE_PEER]
    done = subprocess.run(argv, cwd=PEER_PROJECT, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"preparing the peer failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout.split()[-1]


def request_bytes(scenario: str, api_key: str, token: str) -> bytes:
    path, auth = {
        "governed": ("/process", f"X-API-Key: {api_key}\r\n"),
        "peer": ("/bench/peer", f"Authorization: Token {token}\r\n"),
        "bare": ("/bench/bare", ""),
    }[scenario]
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n{auth}\r\n"
    )
    return head.encode() + BODY


# --- the load generator ---------------------------------------------------------


@dataclass
class Round:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds spent in the round, by part

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """Latency at quantile q, in milliseconds (nearest rank)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """(status, server closes the connection, body) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    close = headers.get("connection", "").lower() == "close"
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()  # no length: the body ends with the connection
        close = True
    return status, close, body


async def _connection(port: int, request: bytes, until: float, result: Round) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        started = time.perf_counter()
        try:
            # gunicorn's sync workers close after each response; reconnecting is
            # part of what a client of that server pays, so it is inside the timing.
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            writer.write(request)
            status, close, _ = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            result.errors += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        result.latencies.append(time.perf_counter() - started)
        result.requests += 1
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if status != 200:
            result.errors += 1
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def drive_async(port: int, request: bytes, connections: int, seconds: float) -> Round:
    result = Round()
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    until = loop.time() + seconds
    await asyncio.gather(*(_connection(port, request, until, result) for _ in range(connections)))
    result.seconds = time.perf_counter() - started  # includes the requests in flight at the end
    return result


def drive(port: int, request: bytes, connections: int, seconds: float) -> Round:
    return asyncio.run(drive_async(port, request, connections, seconds))


# --- where the machine's CPU goes ----------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _process_tree_cpu_s(root_pid: int) -> float:
    """CPU seconds (user + system, with reaped children's) of a process and
    its children, as /proc has them now: a gunicorn master and its workers, a
    postmaster and its backends."""
    children = subprocess.run(["pgrep", "-P", str(root_pid)], capture_output=True, text=True).stdout.split()
    ticks = 0
    for pid in [str(root_pid), *children]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile: its time is in its parent's reaped children
        ticks += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / _CLK_TCK


def _machine_busy_s() -> float:
    """CPU seconds every core of the machine has spent busy since boot."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = Path("/proc/stat").read_text().split()[1:9]
    return sum(int(v) for v in (user, nice, system, irq, softirq, steal)) / _CLK_TCK


def _cpu_now(app_pid: int, database_pid: int | None) -> dict[str, float]:
    client = os.times()
    return {
        "app": _process_tree_cpu_s(app_pid),
        "database": _process_tree_cpu_s(database_pid) if database_pid else 0.0,
        "load generator": client.user + client.system,
        "machine": _machine_busy_s(),
    }


def measured_drive(
    server: Gunicorn, database_pid: int | None, request: bytes, connections: int, seconds: float
) -> Round:
    """drive(), with the CPU each part of the machine spent meanwhile (on
    SQLite the database's work is inside the app's processes)."""
    before = _cpu_now(server.process.pid, database_pid)
    result = drive(server.port, request, connections, seconds)
    after = _cpu_now(server.process.pid, database_pid)
    result.cpu_s = {part: after[part] - before[part] for part in before}
    return result


# --- where a request's time goes: py-spy on the workers ---------------------------

# (label, frames any of which puts a sample in it); shares are inclusive, so
# nested labels overlap their parents. Only samples inside gunicorn's
# handle_request count, so idle workers waiting in accept() do not dilute them.
PROFILE_LABELS: list[tuple[str, tuple[str, ...]]] = [
    ("governed: pipeline (process_request)", ("process_request (governance/pipeline.py",)),
    ("governed: request context (_context)", ("_context (governance/pipeline.py",)),
    ("governed: G2 API key lookup", ("api_key_valid (governance/gates.py",)),
    ("governed: G10 rate-limit counters", ("within_limits (governance/gates.py",)),
    ("governed: P2 + profile + registry", ("payload_valid (", "profile_allows (", "executor_for (")),
    ("governed: ALLOW+PENDING append", ("audit_allow (audit/services.py",)),
    ("governed: executor (thread hand-off + run)", ("result (concurrent/futures/_base.py",)),
    ("governed: SUCCESS append", ("audit_action_end (audit/services.py",)),
    ("governed: checkpoint every 1000 records", ("checkpoint_if_due (audit/checkpoints.py",)),
    ("governed: JSONL mirror write", ("append (audit/mirror.py",)),
    ("peer: view (post)", ("post (peer/views.py",)),
    ("peer: TokenAuthentication", ("authenticate (rest_framework/authentication.py",)),
    ("peer: UserRateThrottle (db cache)", ("allow_request (rest_framework/throttling.py",)),
    ("peer: ORM insert", ("create (django/db/models/query.py",)),
    ("any: BEGIN IMMEDIATE (waits for the SQLite write lock)", ("_start_transaction_under_autocommit (",)),
    ("any: COMMIT", ("commit (django/db/backends/base/base.py",)),
]
# Frames of the work each scenario is about; a sample in none of them is overhead
# every Django service pays (gunicorn, middleware, DRF dispatch, rendering).
WORK_FRAMES = (
    "process_request (governance/pipeline.py",
    "post (peer/views.py",
    "authenticate (rest_framework/authentication.py",
    "allow_request (rest_framework/throttling.py",
)
OTHER = "any: outside the work (gunicorn, middleware, DRF dispatch, rendering)"


def profile_scenario(server: Gunicorn, request: bytes, connections: int, seconds: float, out: Path) -> dict[str, Any]:
    """Load one scenario while py-spy samples all its workers (wall clock, idle
    included); returns {label: share of in-request samples}."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    argv = [py_spy, "record", "--pid", str(server.process.pid), "--subprocesses", "--idle", "--rate", "200"]
    spy = subprocess.Popen(
        [*argv, "--format", "raw", "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    time.sleep(1.0)  # let py-spy attach to every worker
    drive(server.port, request, connections, seconds)
    spy.send_signal(signal.SIGINT)  # py-spy writes its file on ctrl-c
    spy.wait(timeout=30)
    return attribute(out)


# Functions whose own lines are worth a breakdown: the pipeline's steps, and the
# chain writer's (lock, head read, seal, insert, mirror, commit).
LINE_BREAKDOWN = {
    "process_request": ROOT / "governance" / "pipeline.py",
    "chain_append": ROOT / "audit" / "chain.py",
}


def attribute(collapsed: Path) -> dict[str, Any]:
    """Shares of the in-request samples: per label, and per source line of the
    LINE_BREAKDOWN functions (read back from the source, so they follow edits)."""
    counts = {label: 0 for label, _ in PROFILE_LABELS} | {OTHER: 0}
    by_line: dict[str, dict[int, int]] = {name: {} for name in LINE_BREAKDOWN}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "handle_request (gunicorn/workers/" not in stack:
            continue
        n = int(count)
        total += n
        for label, frames in PROFILE_LABELS:
            if any(f in stack for f in frames):
                counts[label] += n
        if not any(f in stack for f in WORK_FRAMES):
            counts[OTHER] += n
        for name, source in LINE_BREAKDOWN.items():
            # A frame reads "chain_append (audit/chain.py:97)"; take the outermost one.
            marker = f"{name} ({source.parent.name}/{source.name}:"
            at = stack.find(marker)
            if at >= 0:
                lineno = int(stack[at + len(marker) :].split(")", 1)[0])
                by_line[name][lineno] = by_line[name].get(lineno, 0) + n
    lines: dict[str, list[tuple[float, str]]] = {}
    for name, hits in by_line.items():
        text = LINE_BREAKDOWN[name].read_text().splitlines()
        ranked = sorted(hits.items(), key=lambda kv: -kv[1])
        lines[name] = [
            (c / total, f"{LINE_BREAKDOWN[name].name}:{no}  {text[no - 1].strip()[:90]}")
            for no, c in ranked
            if c / total >= 0.01
        ]
    shares = {label: c / total for label, c in counts.items() if total and c}
    return {"samples": total, "shares": shares, "lines": lines}


# --- one database -------------------------------------------------------------------


def governed_env(tmp: Path, url: str) -> dict[str, str]:
    """Verittà's environment in every bench: the production settings (through
    bench.settings), rate limits out of reach, warnings only."""
    extra = {
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "VERITTA_RATE_LIMIT_KEY_PER_MIN": HIGH,
        "VERITTA_RATE_LIMIT_SESSION_PER_MIN": HIGH,
        "VERITTA_RATE_LIMIT_ADDRESS_PER_MIN": HIGH,
        "VERITTA_ADMIN_RATE_LIMIT_PER_MIN": HIGH,
        "LOG_LEVEL": "WARNING",
    }
    return bench_env(tmp, url, extra)


def bench_database(database: str, args: argparse.Namespace, cluster: PostgresCluster | None) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"veritta-bench-{database}-"))
    # Each project its own database: a file each, or a database each in the one cluster.
    url = cluster.create_database("veritta_bench") if cluster else f"sqlite:///{tmp / 'bench.sqlite3'}"
    peer_url = cluster.create_database("peer_bench") if cluster else f"sqlite:///{tmp / 'peer.sqlite3'}"
    env = governed_env(tmp, url)
    env_peer = peer_env(tmp, peer_url)
    scenarios = [*SCENARIOS, *(["governed-redis", "peer-redis"] if args.redis else [])]
    if database == "sqlite":  # what-ifs of Verittà's SQLite write path (bench/settings.py)
        scenarios += [f"governed-{variant}" for variant in args.whatif]
    servers: dict[str, Gunicorn] = {}
    redis = RedisServer() if args.redis else None
    try:
        print(f"[{database}] preparing the databases", flush=True)
        started = time.monotonic()
        api_key, token = prepare_database(env), prepare_peer(env_peer)
        for name in scenarios:
            peer = not name.startswith("governed")
            server_env_ = env_peer if peer else env
            if name.endswith("-busywait"):
                server_env_ = {**env, "BENCH_SQLITE_BUSYWAIT": "1"}
            if name.endswith("-nosync"):
                server_env_ = {**env, "BENCH_SQLITE_NOSYNC": "1"}
            if name.endswith("-nogroup"):
                server_env_ = {**env, "BENCH_NO_GROUP_COMMIT": "1"}
            if name.endswith("-redis"):
                assert redis is not None
                # The same services with their rate state in Redis instead of the database:
                # governed's G10 counters, the peer's throttle cache.
                variable = "PEER_CACHE_REDIS_URL" if peer else "VERITTA_RATE_LIMIT_URL"
                server_env_ = {**server_env_, variable: redis.start().url}
            servers[name] = Gunicorn(
                server_env_, tmp, name, args.workers, args.worker_class, threads=args.threads, peer=peer
            )
        for server in servers.values():
            server.wait_ready(args.workers)
        print(
            f"[{database}] database and {len(servers)} servers ready in {time.monotonic() - started:.0f} s", flush=True
        )
        requests = {name: request_bytes(name.split("-")[0], api_key, token) for name in scenarios}
        for name in scenarios:  # warm-up: imports, connections, caches, page cache
            warm = drive(servers[name].port, requests[name], args.connections, args.warmup)
            print(f"[{database}] warm-up {name}: {warm.rps:.0f} req/s, statuses {warm.statuses}", flush=True)
        rounds: dict[str, list[Round]] = {name: [] for name in scenarios}
        database_pid = cluster.proc.pid if cluster is not None and cluster.proc is not None else None
        cpu_before = os.times()
        for i in range(args.rounds):
            for name in scenarios:
                rounds[name].append(
                    measured_drive(servers[name], database_pid, requests[name], args.connections, args.seconds)
                )
            line = ", ".join(f"{n} {rounds[n][-1].rps:.0f}" for n in scenarios)
            print(f"[{database}] round {i + 1}/{args.rounds}: {line} req/s", flush=True)
        cpu = os.times()
        client_cpu_s = (cpu.user + cpu.system) - (cpu_before.user + cpu_before.system)
        verdict = summarize(database, rounds, {n: s.peak_rss_mb() for n, s in servers.items()})
        verdict["client_cpu_share"] = client_cpu_s / sum(r.seconds for rs in rounds.values() for r in rs)
        if args.profile:
            verdict["profile"] = {}
            for name in ("governed", "peer"):
                print(f"[{database}] profiling {name} for {args.profile:.0f} s", flush=True)
                out = tmp / f"py-spy-{name}.txt"
                verdict["profile"][name] = profile_scenario(
                    servers[name], requests[name], args.connections, args.profile, out
                )
        for server in servers.values():
            server.stop()
        if cluster is not None:
            verdict["postgres"] = pg_durability(url)
        print(f"[{database}] audit verify --json", flush=True)
        verdict["verify"] = audit_verify(env)
        return verdict
    finally:
        for server in servers.values():
            server.stop()
        if redis is not None:
            redis.stop()
        if args.keep:
            print(f"[{database}] kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(database: str, rounds: dict[str, list[Round]], rss: dict[str, list[float]]) -> dict[str, Any]:
    scenarios = {}
    for name, rs in rounds.items():
        scenarios[name] = {
            "rps": _median([r.rps for r in rs]),
            "p50_ms": _median([r.percentile(0.50) for r in rs]),
            "p99_ms": _median([r.percentile(0.99) for r in rs]),
            "requests": sum(r.requests for r in rs),
            "errors": sum(r.errors for r in rs),
            "statuses": {str(k): sum(r.statuses.get(k, 0) for r in rs) for k in {k for r in rs for k in r.statuses}},
            "peak_rss_mb_per_worker": [round(v, 1) for v in rss[name]],
            "cpu_ms_per_request": {
                part: _median([1000 * r.cpu_s[part] / r.requests for r in rs if r.requests and part in r.cpu_s])
                for part in ("app", "database", "load generator", "machine")
            },
            "rounds": [
                {"rps": r.rps, "p50_ms": r.percentile(0.5), "p99_ms": r.percentile(0.99), "errors": r.errors}
                for r in rs
            ],
        }
    gov = rounds["governed"]

    def paired(other: str) -> float:
        # Ratio of each round's pair (run seconds apart), then the median: robust to drift.
        return _median([a.rps / b.rps for a, b in zip(gov, rounds[other], strict=True) if b.rps])

    governed = scenarios["governed"]
    extra = {}
    # With Redis both sides move their rate state there; a what-if changes only
    # Verittà's SQLite write path, against the same peer.
    for variant, peer in (("redis", "peer-redis"), ("busywait", "peer"), ("nosync", "peer"), ("nogroup", "peer")):
        if f"governed-{variant}" in rounds:
            extra[f"ratio_governed_{variant}_over_{peer.replace('-', '_')}"] = _median(
                [a.rps / b.rps for a, b in zip(rounds[f"governed-{variant}"], rounds[peer], strict=True) if b.rps]
            )
    return {
        **extra,
        "database": database,
        "scenarios": scenarios,
        "ratio_governed_over_peer": paired("peer"),
        "ratio_governed_over_bare": paired("bare"),
        "governed_p99_over_p50": governed["p99_ms"] / governed["p50_ms"],
    }


# --- report -------------------------------------------------------------------------


def report(result: dict[str, Any], connections: int) -> str:
    lines = [f"\n== {result['database']} ({connections} connections) ==", ""]
    lines.append(f"{'scenario':14} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  peak RSS/worker MB")
    for name, s in result["scenarios"].items():
        rss = ", ".join(f"{v:.0f}" for v in s["peak_rss_mb_per_worker"])
        lines.append(f"{name:14} {s['rps']:8.0f} {s['p50_ms']:8.1f} {s['p99_ms']:8.1f} {s['errors']:7d}  {rss}")
    lines += ["", "CPU ms per request (median of rounds; machine = every core, all processes):"]
    lines.append(f"{'scenario':14} {'app':>7} {'database':>9} {'load gen':>9} {'machine':>8}")
    for name, s in result["scenarios"].items():
        cpu = s["cpu_ms_per_request"]
        lines.append(
            f"{name:14} {cpu['app']:7.2f} {cpu['database']:9.2f} {cpu['load generator']:9.2f} {cpu['machine']:8.2f}"
        )
    a_b, a_c, tail = (
        result["ratio_governed_over_peer"],
        result["ratio_governed_over_bare"],
        result["governed_p99_over_p50"],
    )
    want = TARGET_OVER_PEER[result["database"]]
    lines += [
        "",
        f"governed/peer req/s  {a_b:.2f}   (target >= {want}: {'met' if a_b >= want else 'MISSED'})",
        f"governed/bare req/s  {a_c:.2f}   (target >= {TARGET_OVER_BARE}: {'met' if a_c >= TARGET_OVER_BARE else 'MISSED'})",
        f"governed p99/p50     {tail:.2f}   (target <= 3.0: {'met' if tail <= 3.0 else 'MISSED'})",
        f"load generator CPU   {100 * result['client_cpu_share']:.0f}% of one core while measuring",
    ]
    if "ratio_governed_redis_over_peer_redis" in result:
        ratio = result["ratio_governed_redis_over_peer_redis"]
        lines.append(f"governed/peer req/s  {ratio:.2f}   with rate state in Redis (governed-redis/peer-redis)")
    for variant, what in (
        ("busywait", "SQLite writers waiting in SQLite's busy handler (no writer queue)"),
        ("nosync", "SQLite commits without fsync"),
        ("nogroup", "SQLite writes committed one by one (no group commit)"),
    ):
        if f"ratio_governed_{variant}_over_peer" in result:
            ratio = result[f"ratio_governed_{variant}_over_peer"]
            lines.append(f"governed/peer req/s  {ratio:.2f}   with Verittà's {what} (governed-{variant}/peer)")
    if "postgres" in result:
        lines.append(f"PostgreSQL           {durability_line(result['postgres'])}")
    lines.append(f"audit verify         {verify_line(result['verify'])}")
    for name, prof in result.get("profile", {}).items():
        lines += ["", f"where a {name} request's wall time goes (py-spy, {prof['samples']} samples, inclusive):"]
        lines += [f"  {100 * v:5.1f}%  {k}" for k, v in prof["shares"].items() if v >= 0.005]
        for function, ranked in prof["lines"].items():
            if ranked:
                lines.append(f"  by line of {function}:")
                lines += [f"    {100 * v:5.1f}%  {where}" for v, where in ranked]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    mem_kb = int(
        next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gb": round(mem_kb / 1024**2, 1),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (under two minutes for both databases)")
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class (sync, as the test servers run)")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker (with gthread)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, help="rounds of (governed, peer, bare); default 4 quick, 10 full")
    parser.add_argument("--seconds", type=float, help="seconds per scenario per round; default 2 quick, 8 full")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per scenario; default 1.5 quick, 5 full")
    parser.add_argument("--profile", type=float, default=0, metavar="SECONDS", help="then py-spy governed and peer")
    parser.add_argument("--redis", action="store_true", help="add governed and peer with their rate state in Redis")
    parser.add_argument(
        "--whatif",
        action="append",
        default=[],
        choices=["busywait", "nosync", "nogroup"],
        help="on SQLite, add governed without its writer queue / with commits without fsync / without group commit",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (database, gunicorn logs)")
    parser.add_argument("--output", type=Path, help="JSON result file (default bench/results/<timestamp>.json)")
    args = parser.parse_args()
    args.rounds = args.rounds or (4 if args.quick else 10)
    args.seconds = args.seconds or (2.0 if args.quick else 8.0)
    args.warmup = args.warmup or (1.5 if args.quick else 5.0)

    databases = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    started = time.monotonic()
    results = []
    for database in databases:
        if database == "postgres":
            with PostgresCluster(durable=True) as cluster:
                results.append(bench_database(database, args, cluster))
        else:
            results.append(bench_database(database, args, None))
    for result in results:
        print(report(result, args.connections))

    config = {k: v for k, v in vars(args).items() if k != "output"}
    write_result(
        "http",
        results,
        config={**config, "body_bytes": len(BODY)},
        started=started,
        machine=machine(),
        output=args.output,
    )


if __name__ == "__main__":
    main()

"""Chain ingestion on durable PostgreSQL: how many audit records per second
the chain integrates as writer processes are added, and how much of the time
the chain lock is held.

    python bench/ingest_bench.py [--quick] [--procs 1,2,4,8,16] [--conns-per-writer 1]

On a throwaway durable PostgreSQL cluster (fsync, synchronous_commit and
full_page_writes on), one database migrated as an operator does:

- P writer processes (Django on the bench settings), each driving
  --conns-per-writer connections from as many threads, call
  audit.chain.chain_append in a loop, alternating an ALLOW+PENDING pair and a
  SUCCESS record as a governed request does (drafts from bench/verify_bench.py),
  and stop on a whole request.
- The parent measures what reaches the chain: `max(seq)` of audit_auditrecord
  at the start and the end of the window (on the batched write path a call
  commits into the intake and a sequencer moves records into the chain, so
  calls/s at the writers and records/s in the chain can differ), and, every
  --sample-ms, whether the chain's advisory lock is held (pg_locks, granted,
  transaction- or session-level alike).
- Per P: integrated records/s, records/s and calls/s committed by the
  writers, per-call p50/p99, lock-held share, CPU; then `audit verify --json`.

Issue 12's target: >= 10,000 integrated records/s from 8 writers, the lock
held < 50% of the time. Writes bench/results/ingest-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: import the project

from bench.http_bench import governed_env, machine, prepare_database  # noqa: E402
from bench.scale_bench import CpuMeter, _median  # noqa: E402
from bench.support import audit_verify, durability_line, durable_database, pg_durability, verify_line, write_result  # noqa: E402

TARGET_RECORDS_PER_S = 10_000  # issue 12, from 8 writers
TARGET_PROCS = 8
TARGET_LOCK_HELD = 0.5


# --- the writers ----------------------------------------------------------------------------


# A step: one unit of work on this thread's connection; returns (records it
# wrote, whether a whole request ends with it, whether it succeeded).
Step = Callable[[], tuple[int, bool, bool]]


class _Connection(threading.Thread):
    """One connection of a child process: a thread that keeps its Django
    connection (Django's connections are per thread) across runs and, on
    command, repeats its step for so many seconds, stopping on a whole request."""

    def __init__(self, make_step: Callable[[], Step]) -> None:
        super().__init__(daemon=True)
        self.make_step = make_step
        self.commands: queue.Queue[float] = queue.Queue()
        self.results: queue.Queue[dict[str, Any]] = queue.Queue()
        self.start()

    def run(self) -> None:
        step = self.make_step()  # warms up: connection, first statements, the mirror file
        self.results.put({"ready": True})
        while True:
            seconds = self.commands.get()
            latencies: list[float] = []
            records = errors = 0
            started = time.perf_counter()
            deadline = started + seconds
            whole = True
            while time.perf_counter() < deadline or not whole:
                t0 = time.perf_counter()
                wrote, whole, ok = step()
                latencies.append(time.perf_counter() - t0)
                records += wrote
                errors += not ok
            elapsed = time.perf_counter() - started
            self.results.put({"latencies": latencies, "records": records, "errors": errors, "elapsed": elapsed})


def child(make_step: Callable[[], Step], hello: dict[str, Any]) -> None:
    """The loop of a child process (a writer, an app server): for each
    "run SECONDS CONNS" line on stdin, CONNS connections (a thread each) repeat
    their step for that long; prints one JSON line per run. Answers `hello`
    once ready."""
    connections: list[_Connection] = []
    print(json.dumps({"ready": os.getpid(), **hello}), flush=True)
    while line := sys.stdin.readline():
        command, *values = line.split()
        if command != "run":
            break
        seconds, conns = float(values[0]), int(values[1])
        while len(connections) < conns:
            connections.append(_Connection(make_step))
            connections[-1].results.get()  # warm
        used = connections[:conns]
        for c in used:
            c.commands.put(seconds)
        answers = [c.results.get() for c in used]
        print(
            json.dumps(
                {
                    "calls": sum(len(a["latencies"]) for a in answers),
                    "records": sum(a["records"] for a in answers),
                    "errors": sum(a["errors"] for a in answers),
                    "elapsed": max(a["elapsed"] for a in answers),
                    "latencies": [v for a in answers for v in a["latencies"]],
                }
            ),
            flush=True,
        )


def _append_step() -> Step:
    """chain_append in a loop: an ALLOW+PENDING pair, then a SUCCESS record,
    written as governance/pipeline.py writes them (audit/services.py): the
    pair in the decision transaction, not offering to sequence; the terminal
    record grouped, offering to. With several connections per writer the
    threads of a process share commits (audit/group_commit.py), as a gthread
    app server's request threads do; with one, each call commits alone."""
    from audit.chain import chain_append
    from audit.group_commit import grouped, in_chain_transaction
    from bench.verify_bench import trace_drafts

    rng = random.Random(f"{os.getpid()}-{threading.get_ident()}")

    def calls() -> Iterator[list[dict[str, Any]]]:
        while True:
            drafts = trace_drafts(rng, datetime.now(UTC))  # ts_utc is set again by chain_append
            if len(drafts) == 3:  # an allowed request (denials are one record, one call)
                yield drafts[:2]
                yield drafts[2:]

    source = calls()

    def step() -> tuple[int, bool, bool]:
        drafts = next(source)
        if len(drafts) == 2:  # ALLOW + PENDING: the terminal record follows and sequences
            in_chain_transaction(lambda: chain_append(drafts, sequence_now=False))
        else:
            grouped(lambda: chain_append(drafts))
        return len(drafts), len(drafts) == 1, True

    for _ in range(4):
        step()
    return step


def writer() -> None:
    """A writer process (--writer): Django on the bench settings, chain appends on command."""
    import django

    django.setup()
    from audit.chain import CHAIN_LOCK_KEY

    child(_append_step, {"lock_key": CHAIN_LOCK_KEY})


class Children:
    """N child processes (`script --role`), started once, run on command (the
    first P of them)."""

    def __init__(
        self,
        env: dict[str, str],
        count: int,
        script: Path | None = None,
        role: str = "--writer",
        env_of: Callable[[int], dict[str, str]] | None = None,
    ) -> None:
        """`env_of(i)`: what child i adds to `env` (its own mirror, say)."""
        argv = [sys.executable, str(script or Path(__file__).resolve()), role]
        self.processes = [
            subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env | (env_of(i) if env_of else {}),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(count)
        ]
        # The chain lock's key, as the project names it (the parent has no Django).
        self.lock_key = {self._answer(p)["lock_key"] for p in self.processes}.pop()

    @staticmethod
    def _answer(process: subprocess.Popen[str]) -> dict[str, Any]:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"writer {process.pid} exited with {process.wait()}")
        return json.loads(line)

    def start(self, procs: int, seconds: float, conns: int) -> list[subprocess.Popen[str]]:
        chosen = self.processes[:procs]
        for p in chosen:  # the same start, within a millisecond
            assert p.stdin is not None
            p.stdin.write(f"run {seconds} {conns}\n")
            p.stdin.flush()
        return chosen

    def results(self, chosen: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
        return [self._answer(p) for p in chosen]

    def stop(self) -> None:
        for p in self.processes:
            if p.poll() is None:
                assert p.stdin is not None
                p.stdin.close()  # end of input: the writer returns
        for p in self.processes:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# --- what the parent sees in the database ----------------------------------------------------


def lock_key_parts(key: int) -> tuple[int, int]:
    """pg_locks shows a bigint advisory key (audit.chain.CHAIN_LOCK_KEY) as
    classid (high 32 bits) and objid (low 32 bits), with objsubid 1."""
    return (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF


_HELD = """
SELECT EXISTS (
  SELECT 1 FROM pg_locks
  WHERE locktype = 'advisory' AND classid = %s::oid AND objid = %s::oid AND objsubid = 1 AND granted
)
"""


def lock_held(conn: Any, key: int) -> bool:
    """Whether any backend holds the advisory lock `key` (by transaction or by session)."""
    row = conn.execute(_HELD, lock_key_parts(key)).fetchone()
    return bool(row and row[0])


class LockSampler:
    """From a thread: every `interval` s, whether any backend holds the chain
    lock. pg_locks lists advisory locks held by a transaction and by a session
    alike, so the share is right for either way of taking it."""

    def __init__(self, url: str, key: int, interval: float) -> None:
        self.url, self.key, self.interval = url, key, interval
        self.held = self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LockSampler:
        import psycopg

        self._conn = psycopg.connect(self.url, autocommit=True)
        self.backend_pid = self._conn.info.backend_pid  # its own CPU is not the chain's
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.held += lock_held(self._conn, self.key)
            self.samples += 1

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self._conn.close()

    @property
    def share(self) -> float:
        return self.held / self.samples if self.samples else float("nan")


def chain_size(conn: Any) -> tuple[int, int]:
    """(newest seq in the chain, rows waiting in the intake)."""
    row = conn.execute(
        "SELECT (SELECT coalesce(max(seq), 0) FROM audit_auditrecord), (SELECT count(*) FROM audit_auditintake)"
    ).fetchone()
    return int(row[0]), int(row[1])


def wait_drained(conn: Any, timeout: float = 15.0) -> int:
    """Wait until the intake is empty (the writers' last calls sequence what
    they left); returns what is still waiting after `timeout`."""
    deadline = time.monotonic() + timeout
    while (waiting := chain_size(conn)[1]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return waiting


def percentile_ms(ordered: list[float], q: float) -> float:
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def measure(writers: Children, conn: Any, url: str, procs: int, args: argparse.Namespace) -> dict[str, Any]:
    """One window with `procs` writers: integrated records/s over exactly
    --seconds, as the parent sees max(seq) grow."""
    with CpuMeter() as cpu, LockSampler(url, writers.lock_key, args.sample_ms / 1000) as lock:
        seq0, waiting0 = chain_size(conn)
        t0 = time.perf_counter()
        chosen = writers.start(procs, args.seconds, args.conns_per_writer)
        time.sleep(max(0.0, t0 + args.seconds - time.perf_counter()))
        seq1, waiting1 = chain_size(conn)
        window = time.perf_counter() - t0
    answers = writers.results(chosen)
    left = wait_drained(conn)
    elapsed = max(a["elapsed"] for a in answers)
    latencies = sorted(v for a in answers for v in a["latencies"])
    calls = sum(a["calls"] for a in answers)
    return {
        "integrated_records_per_s": (seq1 - seq0) / window,
        "committed_records_per_s": sum(a["records"] for a in answers) / elapsed,
        "calls_per_s": calls / elapsed,
        "p50_ms": percentile_ms(latencies, 0.50),
        "p99_ms": percentile_ms(latencies, 0.99),
        "lock_held_share": lock.share,
        "lock_samples": lock.samples,
        "cpu_busy": cpu.busy,
        "intake_waiting_at_end": waiting1,
        "intake_waiting_at_start": waiting0,
        "left_in_intake_after_drain": left,
        "calls": calls,
    }


def bench_ingest(args: argparse.Namespace, env: dict[str, str], url: str) -> dict[str, Any]:
    import psycopg

    started = time.monotonic()
    writers = Children(env, max(args.procs))
    runs: dict[int, list[dict[str, Any]]] = {p: [] for p in args.procs}
    try:
        writers.results(writers.start(max(args.procs), args.warmup, args.conns_per_writer))  # warm-up
        print(f"[ingest] {max(args.procs)} writers ready and warm in {time.monotonic() - started:.0f} s", flush=True)
        with psycopg.connect(url, autocommit=True) as conn:
            wait_drained(conn)
            for i in range(args.rounds):
                for procs in args.procs:
                    run = measure(writers, conn, url, procs, args)
                    runs[procs].append(run)
                    print(
                        f"[ingest] round {i + 1}/{args.rounds} P={procs}: "
                        f"{run['integrated_records_per_s']:.0f} records/s integrated, "
                        f"{run['calls_per_s']:.0f} calls/s, lock held {100 * run['lock_held_share']:.0f}%, "
                        f"p50 {run['p50_ms']:.1f} ms",
                        flush=True,
                    )
    finally:
        writers.stop()
    per_p = {}
    for procs, rs in runs.items():
        entry = {k: _median([r[k] for r in rs]) for k in rs[0] if k not in ("calls", "left_in_intake_after_drain")}
        entry["calls"] = sum(r["calls"] for r in rs)
        entry["left_in_intake_after_drain"] = max(r["left_in_intake_after_drain"] for r in rs)
        entry["rounds"] = rs
        per_p[str(procs)] = entry
    return {"per_procs": per_p}


# --- report ------------------------------------------------------------------------------------


def report(result: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"\n== chain ingestion: P writers x {args.conns_per_writer} connection(s), "
        f"{args.seconds:g} s windows, median of {args.rounds} round(s) ==",
        f"PostgreSQL           {durability_line(result['postgres'])}",
        "",
        f"{'P':>3} {'integrated rec/s':>16} {'committed rec/s':>15} {'calls/s':>8} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'lock held':>9} {'CPU':>5} {'intake at end':>13}",
    ]
    for procs, e in result["ingest"]["per_procs"].items():
        lines.append(
            f"{procs:>3} {e['integrated_records_per_s']:16.0f} {e['committed_records_per_s']:15.0f}"
            f" {e['calls_per_s']:8.0f} {e['p50_ms']:7.2f} {e['p99_ms']:7.2f}"
            f" {100 * e['lock_held_share']:8.0f}% {100 * e['cpu_busy']:4.0f}% {e['intake_waiting_at_end']:13.0f}"
        )
    target = result["ingest"]["per_procs"].get(str(TARGET_PROCS))
    if target:
        rate, held = target["integrated_records_per_s"], target["lock_held_share"]
        met = rate >= TARGET_RECORDS_PER_S and held < TARGET_LOCK_HELD
        lines += [
            "",
            f"P={TARGET_PROCS}: {rate:.0f} records/s, lock held {100 * held:.0f}%"
            f"   (target >= {TARGET_RECORDS_PER_S:,} records/s with the lock held < {100 * TARGET_LOCK_HELD:.0f}%:"
            f" {'met' if met else 'MISSED'})",
        ]
    lines.append(f"audit verify         {verify_line(result['verify'])}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    parser.add_argument("--procs", default="1,2,4,8,16", help="numbers of writer processes (default 1,2,4,8,16)")
    parser.add_argument(
        "--conns-per-writer",
        type=int,
        default=1,
        help="connections (threads) per writer process; default 1: a writer is one sync gunicorn worker",
    )
    parser.add_argument("--seconds", type=float, help="measuring window per P per round; default 2 quick, 6 full")
    parser.add_argument("--rounds", type=int, help="rounds over --procs; default 1 quick, 3 full")
    parser.add_argument("--warmup", type=float, help="warm-up seconds, all writers at once; default 1 quick, 3 full")
    parser.add_argument("--sample-ms", type=float, default=5.0, help="lock sampling period (default 5 ms)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (mirror, checkpoints)")
    parser.add_argument("--output", type=Path, help="JSON result file (default bench/results/ingest-<timestamp>.json)")
    parser.add_argument("--writer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        writer()
        return
    args.seconds = args.seconds or (2.0 if args.quick else 6.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.warmup = args.warmup or (1.0 if args.quick else 3.0)
    args.procs = [int(p) for p in args.procs.split(",")]

    started = time.monotonic()
    with durable_database("ingest", keep=args.keep) as (tmp, url, _cluster):
        env = governed_env(tmp, url)
        print("[ingest] preparing the database", flush=True)
        prepare_database(env)
        result = {"postgres": pg_durability(url), "ingest": bench_ingest(args, env, url)}
        print("[verify] audit verify --json", flush=True)
        result["verify"] = audit_verify(env)
    print(report(result, args))

    config = {k: v for k, v in vars(args).items() if k not in ("output", "writer")}
    write_result(
        "ingest",
        result,
        config={**config, "database": "postgres"},
        started=started,
        machine=machine() | {"loadavg": os.getloadavg()},
        output=args.output,
    )


if __name__ == "__main__":
    main()

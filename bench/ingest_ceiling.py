"""What the database alone accepts: the ceiling under chain ingestion.

    python bench/ingest_ceiling.py [--clients 8] [--seconds 15]

On a throwaway durable PostgreSQL cluster (fsync, synchronous_commit and
full_page_writes on), one database migrated as an operator does, `pgbench`
(a C client, so no Python at all) runs the statements the write path's rows
need, each in its own durable transaction, from --clients connections:

  intake x1    one intake row per transaction (a lone terminal record)
  intake x2    two intake rows per transaction (an ALLOW+PENDING pair)
  chain x1     one row straight into a table shaped like the chain (every
               index of audit_auditrecord, no triggers): the direct path

Rows are Verittà's own: a body of the size a governed request's record has,
the same columns and indexes (the tables are made `LIKE` the real ones).

Every record on the batched path is inserted into the intake by its writer
and then moved into the chain by the sequencer, so records/s through the
whole path cannot pass what the intake alone accepts with the machine to
itself. Issue 12 asks for >= 10,000 records/s from 8 writer processes; this
says whether the machine can give that to any client. Writes
bench/results/ingest-ceiling-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: import the project

from bench.http_bench import governed_env, machine, prepare_database  # noqa: E402
from bench.support import durability_line, durable_database, pg_durability, write_result  # noqa: E402

# A governed request's SUCCESS record is about this long (bench/results: 900-1,250).
BODY = '{"event_type":"action_end","padding":"' + "x" * 1000 + '"}'
_INTAKE_ROW = (
    "(now(), md5(random()::text) || md5(random()::text), 'action_end', gen_random_uuid()::text,"
    f" NULL, 'SUCCESS', 'process', NULL, 'api_key', 'key_bench', '{BODY}')"
)
_INTAKE = (
    "INSERT INTO ceiling_intake (queued_at, entry_hash, event_type, trace_id, decision, status, action,"
    " reason_code, actor_kind, actor_id, body) VALUES "
)
SCRIPTS = {
    "intake x1": f"{_INTAKE}{_INTAKE_ROW};\n",
    "intake x2": f"{_INTAKE}{_INTAKE_ROW}, {_INTAKE_ROW};\n",
    "chain x1": (
        "INSERT INTO ceiling_chain (seq, record_hash, prev_hash, event_type, ts_utc, trace_id, decision, status,"
        " action, reason_code, actor_kind, actor_id, body, entry_hash)"
        " SELECT s, md5(s::text) || md5((s + 1)::text), md5(s::text) || md5((s + 2)::text), 'action_end', now(),"
        f" gen_random_uuid()::text, NULL, 'SUCCESS', 'process', NULL, 'api_key', 'key_bench', '{BODY}', NULL"
        " FROM nextval('ceiling_seq') s;\n"
    ),
}
# The whole batched path with no Python: the writers' intake rows (a pair, then
# a lone record: 1.5 rows a transaction) and, on one more connection, a
# sequencer moving the oldest 1000 waiting rows into the chain per transaction.
_MOVE = (
    "WITH moved AS (DELETE FROM ceiling_intake WHERE id IN"
    " (SELECT id FROM ceiling_intake ORDER BY id LIMIT 1000) RETURNING *)"
    " INSERT INTO ceiling_chain (seq, record_hash, prev_hash, event_type, ts_utc, trace_id, decision, status,"
    " action, reason_code, actor_kind, actor_id, body, entry_hash)"
    " SELECT nextval('ceiling_seq'), md5(id::text) || md5(entry_hash), entry_hash, event_type, queued_at, trace_id,"
    " decision, status, action, reason_code, actor_kind, actor_id, body, entry_hash FROM moved;\n"
)
ROWS_PER_TRANSACTION = {"intake x1": 1, "intake x2": 2, "chain x1": 1}
TABLES = (
    "CREATE TABLE ceiling_intake (LIKE audit_auditintake INCLUDING ALL);"
    " CREATE TABLE ceiling_chain (LIKE audit_auditrecord INCLUDING ALL);"
    " CREATE SEQUENCE ceiling_seq;"
)


def pgbench(cluster: Any, database: str, script: Path, clients: int, seconds: float) -> dict[str, float]:
    argv = [
        str(cluster.bindir / "pgbench"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "-n",
        "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(int(seconds)),
        "-f", str(script), database,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pgbench failed: {done.stderr.strip()[-500:]}")
    out = done.stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))  # type: ignore[union-attr]
    return {"transactions_per_s": tps, "latency_ms": latency}


def whole_path(cluster: Any, url: str, tmp: Path, clients: int, seconds: float) -> dict[str, float]:
    """Writers and a sequencer at once; records/s that reach the chain."""
    import psycopg

    (tmp / "pair.sql").write_text(SCRIPTS["intake x2"])
    (tmp / "lone.sql").write_text(SCRIPTS["intake x1"])
    (tmp / "move.sql").write_text(_MOVE)
    database = url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE ceiling_intake, ceiling_chain")
        count = "SELECT count(*) FROM ceiling_chain"
        before, at = conn.execute(count).fetchone()[0], time.monotonic()  # type: ignore[index]
        base = [str(cluster.bindir / "pgbench"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "-n"]
        writers = subprocess.Popen(
            [*base, "-c", str(clients), "-j", "2", "-T", str(int(seconds)),
             "-f", str(tmp / "pair.sql"), "-f", str(tmp / "lone.sql"), database],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        sequencer = subprocess.Popen(
            [*base, "-c", "1", "-T", str(int(seconds)), "-f", str(tmp / "move.sql"), database],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for run in (writers, sequencer):
            if run.wait() != 0:
                raise SystemExit(f"pgbench failed: {run.stderr.read().strip()[-500:]}")  # type: ignore[union-attr]
        after, took = conn.execute(count).fetchone()[0], time.monotonic() - at  # type: ignore[index]
        waiting = conn.execute("SELECT count(*) FROM ceiling_intake").fetchone()[0]  # type: ignore[index]
    return {"records_per_s_into_chain": (after - before) / took, "left_waiting": waiting, "seconds": took}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    started = time.monotonic()
    results: dict[str, Any] = {}
    with durable_database("ceiling", keep=args.keep) as (tmp, url, cluster):
        prepare_database(governed_env(tmp, url))  # migrated as an operator does
        durability = pg_durability(url)
        print(f"PostgreSQL {durability_line(durability)}", flush=True)
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(TABLES)
        database = url.rsplit("/", 1)[1]
        for name, sql in SCRIPTS.items():
            script = tmp / f"{name.replace(' ', '-')}.sql"
            script.write_text(sql)
            run = pgbench(cluster, database, script, args.clients, args.seconds)
            run["rows_per_s"] = run["transactions_per_s"] * ROWS_PER_TRANSACTION[name]
            results[name] = run
            print(
                f"{name:10} {run['transactions_per_s']:8.0f} transactions/s  {run['rows_per_s']:8.0f} rows/s"
                f"  latency {run['latency_ms']:.2f} ms  ({args.clients} clients)",
                flush=True,
            )
        path = whole_path(cluster, url, tmp, args.clients, args.seconds)
        results["whole path"] = path
        print(
            f"whole path {path['records_per_s_into_chain']:8.0f} records/s into the chain"
            f" ({args.clients} writers + 1 sequencer, {path['left_waiting']} left waiting)",
            flush=True,
        )
    write_result(
        "ingest-ceiling",
        {"scripts": results, "postgres": durability},
        config={"clients": args.clients, "seconds": args.seconds, "body_bytes": len(BODY)},
        started=started,
        machine=machine(),
        output=args.output,
    )


if __name__ == "__main__":
    main()

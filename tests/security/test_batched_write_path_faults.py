"""Faults of PostgreSQL's batched audit write path (audit/chain.py), through a
real gunicorn server: a sequencer killed in the middle of a batch, the chain
lock held past the merge delay (a stopped or stuck sequencer), the database
restarted under load. Each must lose no committed record, keep every receipt
a client was given, and fail closed with 503 rather than pile up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from audit.chain import CHAIN_LOCK_KEY
from conftest import API_KEY
from tests.security.test_fault_injection import Load, verify
from tests.support.appserver import ROOT
from tests.support.receipts import receipts_missing
from tests.support.servers import PostgresCluster

KEY = {"X-API-Key": API_KEY}
NOOP = {"action": "noop"}

pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="the batched write path (intake + sequencer) is PostgreSQL's; SQLite sequences every write at once",
)


def hold_chain_lock(database_url: str) -> psycopg.Connection:
    """A connection that holds the chain lock, as a sequencer stuck mid-batch does."""
    conn = psycopg.connect(database_url, autocommit=True)
    conn.execute("SELECT pg_advisory_lock(%s)", [CHAIN_LOCK_KEY])
    return conn


# Runs in `manage.py shell`: appends two records, becomes their sequencer, and
# stops for good in the middle of the batch (after the chain INSERT and the
# intake DELETE, before the commit), its lock held, until it is killed.
STUCK_SEQUENCER = r"""
import sys, time, uuid
import audit.chain as chain
from audit.records import new_record

class StuckMirror:
    def check_writable(self):
        pass

    def append(self, lines):
        print("MID-BATCH", len(lines), flush=True)
        time.sleep(600)

chain.mirror = lambda: StuckMirror()
drafts = [new_record(event_type="decision_audit", decision="ALLOW", gate="ALL", trace_id=str(uuid.uuid4())) for _ in range(2)]
receipts = chain.chain_append(drafts)  # never returns: killed mid-batch
"""


def test_a_sequencer_killed_mid_batch_loses_no_committed_record(start_app_server):
    server = start_app_server(workers=2)
    stuck = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", STUCK_SEQUENCER],
        cwd=ROOT, env=server.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert stuck.stdout is not None
        line = stuck.stdout.readline()
        assert line.startswith("MID-BATCH"), stuck.stderr.read() if stuck.poll() is not None else line
        # The stuck sequencer holds the lock: requests still answer, each with a promise.
        answers = [server.post("/process", json=NOOP, headers=KEY) for _ in range(10)]
        assert [a.status_code for a in answers] == [200] * 10
        receipts = [a.json()["audit"] for a in answers]
        assert all(r["seq"] is None and r["promise"] for r in receipts), receipts[0]
    finally:
        os.kill(stuck.pid, signal.SIGKILL)
        stuck.wait()
    # Its transaction died with it: its batch is back in the intake, and the
    # server's own sequencers put everything in the chain within the delay.
    assert receipts_missing(server, receipts, within_s=10) == []
    report = verify(server)
    assert report["ok"] and report["waiting"] == 0, report["problems"][:5]
    # The stuck process's own two records were committed before it got stuck: kept.
    assert report["records"] == 2 + 10 * 3


def test_a_lock_held_past_the_merge_delay_fails_closed_alerts_and_recovers(start_app_server, tmp_path: Path):
    # Merge delay 2 s: alert after 0.5 s of lag, refusals after 1 s.
    server = start_app_server(workers=2, env={"VERITTA_AUDIT_MAX_MERGE_DELAY_S": "2", "VERITTA_AUDIT_SEQUENCER_INTERVAL_S": "0.1"})
    holder = hold_chain_lock(server.database_url)
    try:
        statuses: list[tuple[int, dict]] = []
        started = time.monotonic()
        while time.monotonic() - started < 2.0:
            response = server.post("/process", json=NOOP, headers=KEY)
            statuses.append((response.status_code, response.json()))
        promised = [body["audit"] for status, body in statuses if status == 200]
        refused = [body for status, body in statuses if status != 200]
        # First promises, then refusals: never an unbounded queue behind the lock.
        assert promised and refused, Counter(s for s, _ in statuses)
        assert all(r["seq"] is None and r["promise"] for r in promised)
        assert {(b["status_code"], b["reason_codes"][0]) for b in refused} == {(503, "AUDIT_SINK_FAILED")}
        assert [s for s, _ in statuses] == sorted((s for s, _ in statuses), key=lambda s: s != 200), "a 200 after a refusal"
        time.sleep(1.5)  # every promise (given in the first second) is now past its 2 s deadline
        report = verify(server)
        kinds = Counter(p["kind"] for p in report["problems"])
        assert not report["ok"] and kinds["unintegrated"] >= len(promised) * 3, report
    finally:
        holder.close()  # the stuck sequencer goes away
    assert receipts_missing(server, promised, within_s=5) == []
    report = verify(server)
    assert report["ok"], report["problems"][:5]
    # The lag raised the alert (logged by the process that saw it).
    assert "audit_integration_lag" in server.log()
    # A promise turns into an inclusion proof once the record is sealed.
    receipt_file = tmp_path / "receipt.json"
    receipt_file.write_text(json.dumps(promised[0]))
    server.manage("audit", "checkpoint")
    proof = server.manage("audit", "prove", "--receipt", str(receipt_file)).stdout
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(proof)
    checked = server.manage("audit", "check-proof", str(proof_file), check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(proof)["entry_hash"] == promised[0]["entry_hash"]


@contextmanager
def own_cluster(cluster: PostgresCluster) -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of the test's own (the test kills and restarts it),
    started with an empty `veritta` database, stopped whatever happens."""
    cluster.start()
    try:
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE veritta")
        yield cluster
    finally:
        cluster.stop()


def test_the_database_restarted_mid_load_loses_no_committed_record(start_app_server):
    with own_cluster(PostgresCluster()) as cluster:
        # Limits out of reach: the load may pass a minute's key limit on a fast machine.
        limits = {"VERITTA_RATE_LIMIT_KEY_PER_MIN": "1000000000", "VERITTA_RATE_LIMIT_ADDRESS_PER_MIN": "1000000000"}
        server = start_app_server(workers=2, database_url=cluster.url("veritta"), env=limits)
        with Load(server.url, NOOP, clients=4) as load:
            time.sleep(1.5)
            cluster.kill()  # SIGKILL of the postmaster: a crash, recovered at the restart
            time.sleep(1.0)
            cluster.start()
            time.sleep(3.0)
        statuses = Counter(status for _, status, _ in load.results)
        ok = [body["audit"] for _, status, body in load.results if status == 200]
        assert statuses[200] > 10 and set(statuses) <= {200, 503}, statuses
        assert receipts_missing(server, ok, within_s=10) == []
        report = verify(server)
        assert report["waiting"] == 0 and not [p for p in report["problems"] if p["kind"] != "incomplete"], report
        server.stop()


class LazyWalWriterCluster(PostgresCluster):
    """A cluster whose WAL writer flushes asynchronous commits only every 10 s:
    a commit that did not wait for its own flush is then lost by a crash soon
    after it, rather than saved by the WAL writer's next 200 ms round."""

    def settings(self) -> dict[str, str]:
        return {**super().settings(), "wal_writer_delay": "10s"}


def test_a_seq_receipt_survives_a_database_crash_right_after_its_answer(start_app_server):
    # The sequencer commits without waiting for its WAL flush (the chain lock is
    # not held across it); the flush after it is what makes a seq receipt true.
    with own_cluster(LazyWalWriterCluster()) as cluster:
        server = start_app_server(workers=1, database_url=cluster.url("veritta"))
        # One worker, one request at a time: each sequences its own records, unless
        # the worker's sequencer timer holds the lock just then (a promise): go on
        # until an answer carries its seq.
        for _ in range(20):
            answer = server.post("/process", json=NOOP, headers=KEY)
            assert answer.status_code == 200, answer.text
            receipt = answer.json()["audit"]
            if receipt["seq"] is not None:
                break
        assert receipt["seq"] is not None, receipt
        cluster.kill()  # SIGQUIT: WAL not yet written by anyone is gone
        cluster.start()
        assert receipts_missing(server, [receipt], within_s=10) == []
        report = verify(server)
        assert report["waiting"] == 0 and report["problems"] == [], report
        server.stop()

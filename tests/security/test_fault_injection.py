"""Faults injected into a real gunicorn server while requests arrive. Verittà
must do the opposite of OPA (dropping decision logs when the sink is down)
and Kong (rate limiting failing open): refuse, execute nothing unrecorded,
and leave a chain that verifies, losing no committed record."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import requests

from conftest import API_KEY, env_for_test_profiles
from tests.support.receipts import receipts_missing
from tests.support.servers import RedisServer

KEY = {"X-API-Key": API_KEY}
NOOP = {"action": "noop"}


def verify(server) -> dict:
    result = server.manage("audit", "verify", "--json", check=False)
    return json.loads(result.stdout)


def records_for_trace(server, trace_id: str) -> list[dict]:
    result = server.manage("audit", "trace", trace_id, "--json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else []


def receipts_present(server, receipts: list[dict]) -> bool:
    return receipts_missing(server, receipts) == []


class Load:
    """Requests in a background thread until stopped; keeps every answer."""

    def __init__(self, url: str, payload: dict, clients: int = 4) -> None:
        self.url, self.payload, self.clients = url, payload, clients
        self.results: list[tuple[float, int, dict]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            try:
                response = session.post(self.url + "/process", json=self.payload, headers=KEY, timeout=30)
                body = response.json()
                self.results.append((time.monotonic(), response.status_code, body))
            except requests.RequestException:
                self.results.append((time.monotonic(), 0, {}))
                time.sleep(0.05)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def test_locked_database_fails_closed_with_audit_sink_failed(start_app_server):
    with RedisServer() as redis_server:  # keep rate counters out of the locked database
        env = {"VERITTA_RATE_LIMIT_URL": redis_server.url, "VERITTA_SQLITE_LOCK_TIMEOUT_S": "0.5", "VERITTA_DB_LOCK_TIMEOUT_S": "0.5"}
        server = start_app_server(workers=2, env=env)
        assert server.post("/process", json=NOOP, headers=KEY).status_code == 200
        if server.database_url.startswith("sqlite"):
            locker = sqlite3.connect(server.database_url.removeprefix("sqlite:///"), isolation_level="EXCLUSIVE")
            locker.execute("INSERT INTO django_migrations (app, name, applied) VALUES ('lock', 'lock', '2000-01-01')")
        else:
            # The chain and its intake (the batched write path commits records there).
            locker = psycopg.connect(server.database_url)
            locker.execute("LOCK TABLE audit_auditrecord, audit_auditintake IN ACCESS EXCLUSIVE MODE")
        try:
            answers = [server.post("/process", json=NOOP, headers=KEY) for _ in range(6)]
        finally:
            locker.rollback()
            locker.close()
        assert {a.status_code for a in answers} == {503}
        assert {a.json()["reason_codes"][0] for a in answers} == {"AUDIT_SINK_FAILED"}
        assert server.post("/process", json=NOOP, headers=KEY).status_code == 200
        report = verify(server)
        assert report["ok"], report["problems"][:5]
        # The refused requests left nothing (the sink-failure alert may add its own records).
        assert all(records_for_trace(server, a.json()["trace_id"]) == [] for a in answers)


def test_mirror_path_unwritable_fails_closed_then_recovers(start_app_server):
    server = start_app_server(workers=2)
    mirror = server.tmp / "audit.log"
    assert server.post("/process", json=NOOP, headers=KEY).status_code == 200
    mirror.rename(server.tmp / "audit.log.1")
    mirror.mkdir()  # the path now names a directory: every append fails
    refused = [server.post("/process", json=NOOP, headers=KEY) for _ in range(4)]
    assert {r.status_code for r in refused} == {503}
    mirror.rmdir()
    assert server.post("/process", json=NOOP, headers=KEY).status_code == 200
    report = verify(server)
    assert report["ok"], report["problems"][:5]
    assert all(records_for_trace(server, r.json()["trace_id"]) == [] for r in refused)


def test_redis_killed_mid_load_refuses_and_never_waves_through(start_app_server):
    redis_server = RedisServer().start()
    try:
        server = start_app_server(workers=2, env={"VERITTA_RATE_LIMIT_URL": redis_server.url})
        with Load(server.url, NOOP) as load:
            time.sleep(1.5)
            killed_at = time.monotonic()
            redis_server.kill()
            time.sleep(2.0)
        after = [(status, body) for at, status, body in load.results if at > killed_at + 0.5]
        before = [status for at, status, _ in load.results if at < killed_at]
        assert before.count(200) > 0
        assert after and all(status == 503 for status, _ in after), Counter(s for s, _ in after)
        assert {body["reason_codes"][0] for _, body in after} == {"RATE_LIMIT_UNAVAILABLE"}
        report = verify(server)
        assert report["ok"], report["problems"][:5]
    finally:
        redis_server.stop()


def test_worker_killed_mid_request_leaves_only_incomplete_traces(start_app_server):
    env = env_for_test_profiles()
    env["VERITTA_EXECUTOR_TIMEOUT_S"] = "3"  # the slow executor holds each request ~3 s
    server = start_app_server(workers=2, env=env)
    finished = [server.post("/process", json=NOOP, headers=KEY).json()["audit"] for _ in range(5)]

    def slow(_: int) -> int:
        try:
            return requests.post(server.url + "/process", json={"action": "slow"}, headers=KEY, timeout=30).status_code
        except requests.RequestException:
            return 0

    with ThreadPoolExecutor(2) as pool:
        in_flight = [pool.submit(slow, i) for i in range(2)]
        time.sleep(1.0)  # both slow requests have their PENDING committed
        for pid in server.worker_pids():
            os.kill(pid, signal.SIGKILL)
        statuses = [f.result() for f in in_flight]
    assert all(status != 200 for status in statuses)
    time.sleep(3 + 5 + 1)  # past the executor timeout and verify's in-flight margin
    report = verify(server)
    kinds = Counter(p["kind"] for p in report["problems"])
    assert set(kinds) == {"incomplete"} and kinds["incomplete"] == 2, report["problems"]
    assert receipts_present(server, finished)
    server.stop()


def test_server_restarted_mid_load_keeps_the_chain(start_app_server):
    server = start_app_server(workers=2)
    with Load(server.url, NOOP) as load:
        time.sleep(1.5)
        server.stop()  # graceful: in-flight requests finish
        time.sleep(0.5)
        server.start()
        time.sleep(1.5)
    ok = [body["audit"] for _, status, body in load.results if status == 200]
    assert len(ok) > 10
    report = verify(server)
    assert report["ok"], report["problems"][:5]
    assert receipts_present(server, ok)


@pytest.fixture
def tiny_filesystem(tmp_path: Path):
    """A 64 KiB tmpfs: the mirror's disk fills up after a few hundred records."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs; the manual procedure is in docs/RUNBOOK.md")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_on_the_mirror_fails_closed_and_loses_nothing(start_app_server, tiny_filesystem):
    env = {
        "VERITTA_AUDIT_LOG_PATH": str(tiny_filesystem / "audit.log"),
        "VERITTA_AUDIT_CHECKPOINT_DIR": str(tiny_filesystem.parent / "cp"),
        # PostgreSQL: refusals start once records have waited half a second for
        # the sequencer, whose mirror writes fail.
        "VERITTA_AUDIT_MAX_MERGE_DELAY_S": "1",
    }
    server = start_app_server(workers=2, env=env)
    answers = [server.post("/process", json=NOOP, headers=KEY) for _ in range(200)]
    statuses = Counter(a.status_code for a in answers)
    assert statuses[200] > 0 and statuses[503] > 0 and set(statuses) <= {200, 503}, statuses
    assert {a.json()["reason_codes"][0] for a in answers if a.status_code == 503} == {"AUDIT_SINK_FAILED"}
    # Room again: on PostgreSQL the records promised while the mirror was full
    # wait in the intake, and go into the chain (and the mirror) now.
    subprocess.run(["mount", "-o", "remount,size=4m", str(tiny_filesystem)], check=True)
    assert receipts_present(server, [a.json()["audit"] for a in answers if a.status_code == 200])
    # Every mirror line is whole and matches the chain: no half-written record.
    lines = (tiny_filesystem / "audit.log").read_text().splitlines()
    assert all(json.loads(line)["record_hash"] for line in lines)
    report = verify(server)
    assert report["ok"] and report["records"] == len(lines), report["problems"][:5]

"""Thousands of requests through several gunicorn workers at once, sync and
threaded (gthread, where SQLite's group commit shares commits between request
threads): the chain never forks, seq stays gapless and `audit verify` finds
nothing."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import ADMIN_KEY, API_KEY

REQUESTS = 2000
CLIENTS = 16


@pytest.mark.parametrize(("workers", "threads"), [(4, 1), (2, 8)], ids=["sync", "gthread"])
def test_concurrent_writers_never_fork_the_chain(start_app_server, workers, threads):
    unlimited = {"VERITTA_RATE_LIMIT_KEY_PER_MIN": "1000000", "VERITTA_RATE_LIMIT_ADDRESS_PER_MIN": "1000000"}
    server = start_app_server(workers=workers, threads=threads, env=unlimited)
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=CLIENTS))

    def call(i: int) -> int:
        payload = {"action": "process", "text": f"request {i}"} if i % 3 else {"action": "nope"}
        return session.post(f"{server.url}/process", json=payload, headers={"X-API-Key": API_KEY}, timeout=60).status_code

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = list(pool.map(call, range(REQUESTS)))
    allowed = sum(1 for s in statuses if s == 200)
    assert allowed == len([i for i in range(REQUESTS) if i % 3]) and statuses.count(403) == REQUESTS - allowed

    result = server.manage("audit", "verify", "--json", check=False)
    report = json.loads(result.stdout)
    assert result.returncode == 0, report["problems"][:5]
    # 3 records per allowed request, 1 per denied one, seq 1..N without a gap.
    assert report["records"] == 3 * allowed + (REQUESTS - allowed)
    assert (report["first_seq"], report["last_seq"]) == (1, report["records"])
    mirror = (server.tmp / "audit.log").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in mirror] == list(range(1, report["records"] + 1))

    if threads > 1 and server.database_url.startswith("sqlite"):
        # Request threads of one process shared commits: more writes than commits.
        metrics = requests.get(f"{server.url}/metrics", headers={"X-ADMIN-KEY": ADMIN_KEY}, timeout=30).text
        writes = _sample(metrics, "veritta_audit_group_commit_writes_sum")
        commits = _sample(metrics, "veritta_audit_group_commit_writes_count")
        assert writes == 2 * allowed + (REQUESTS - allowed)  # decision + terminal, or the DENY
        assert commits < writes


def _sample(exposition: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in exposition.splitlines() if line.startswith(name + " "))

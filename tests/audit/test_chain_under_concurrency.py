"""Thousands of requests through several gunicorn workers at once: the chain
never forks, seq stays gapless and `audit verify` finds nothing."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import requests

from conftest import API_KEY

REQUESTS = 2000
CLIENTS = 16


def test_concurrent_writers_never_fork_the_chain(start_app_server):
    unlimited = {"VERITTA_RATE_LIMIT_KEY_PER_MIN": "1000000", "VERITTA_RATE_LIMIT_ADDRESS_PER_MIN": "1000000"}
    server = start_app_server(workers=4, env=unlimited)
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

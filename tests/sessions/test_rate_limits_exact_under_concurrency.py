"""G10 is exact under concurrency: a burst of N concurrent requests against a
limit L gets exactly L successes (plus one per T = 60 s / L the burst itself
lasted: the sliding limit refills while it runs), whatever the number of
gunicorn workers, with the database or Redis as the store, and across two app
servers sharing the store. A store that goes away refuses (503), never waves
through."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import API_KEY
from tests.support.servers import RedisServer

SMOKE = b'{"action": "test_action", "event_type": "test_event"}'
BURST, LIMIT = 60, 20


def burst(urls: list[str], n: int = BURST, headers: dict[str, str] | None = None) -> tuple[Counter[int], float]:
    """n concurrent POST /process, spread round-robin over the servers' urls:
    the statuses, and how long the burst took."""
    headers = headers or {"X-API-Key": API_KEY, "Content-Type": "application/json"}

    def one(i: int) -> int:
        response = requests.post(urls[i % len(urls)] + "/process", data=SMOKE, headers=headers, timeout=60)
        if response.status_code == 429:
            assert response.json()["reason_codes"] == ["RATE_LIMIT_EXCEEDED"]
            assert response.headers["RateLimit-Policy"] == f'"key";q={LIMIT};w=60'
            assert int(response.headers["Retry-After"]) >= 1
        return response.status_code

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=n) as pool:
        counts = Counter(pool.map(one, range(n)))
    return counts, time.monotonic() - started


def assert_exactly_the_limit(counts: Counter[int], elapsed_s: float) -> None:
    """LIMIT successes, plus one per T = 60 s / LIMIT the burst lasted (on a
    slow machine the sliding limit refills while it runs); the rest 429."""
    refilled = int(elapsed_s / (60 / LIMIT))
    assert set(counts) == {200, 429} and LIMIT <= counts[200] <= LIMIT + refilled, (counts, elapsed_s)
    assert counts[200] + counts[429] == BURST


def limit_env(**extra: str) -> dict[str, str]:
    return {"VERITTA_RATE_LIMIT_KEY_PER_MIN": str(LIMIT), **extra}


@pytest.mark.parametrize("workers", [1, 4])
def test_burst_gets_exactly_the_limit_with_the_database_store(start_app_server, workers):
    server = start_app_server(workers=workers, env=limit_env())
    assert_exactly_the_limit(*burst([server.url]))


@pytest.mark.parametrize("workers", [1, 4])
def test_burst_gets_exactly_the_limit_with_the_redis_store(start_app_server, workers):
    with RedisServer() as redis_server:
        server = start_app_server(workers=workers, env=limit_env(VERITTA_RATE_LIMIT_URL=redis_server.url))
        assert_exactly_the_limit(*burst([server.url]))


def test_two_app_servers_sharing_the_database_share_the_limit(start_app_server):
    first = start_app_server(workers=3, env=limit_env())
    second = start_app_server(workers=3, env=limit_env(), database_url=first.database_url, prepare=False)
    assert_exactly_the_limit(*burst([first.url, second.url]))


def test_two_app_servers_sharing_redis_share_the_limit(start_app_server):
    with RedisServer() as redis_server:
        env = limit_env(VERITTA_RATE_LIMIT_URL=redis_server.url)
        first = start_app_server(workers=3, env=env)
        second = start_app_server(workers=3, env=env)  # its own database, the same Redis
        assert_exactly_the_limit(*burst([first.url, second.url]))


def test_redis_going_away_refuses_every_request_with_503(start_app_server):
    redis_server = RedisServer().start()
    try:
        server = start_app_server(workers=2, env=limit_env(VERITTA_RATE_LIMIT_URL=redis_server.url))
        assert burst([server.url], n=5)[0] == {200: 5}
        redis_server.kill()
        answers = [server.post("/process", data=SMOKE, headers={"X-API-Key": API_KEY}) for _ in range(10)]
        assert {a.status_code for a in answers} == {503}
        assert {a.json()["reason_codes"][0] for a in answers} == {"RATE_LIMIT_UNAVAILABLE"}
        redis_server.start()  # back on the same port: counting resumes
        assert server.post("/process", data=SMOKE, headers={"X-API-Key": API_KEY}).status_code == 200
    finally:
        redis_server.stop()

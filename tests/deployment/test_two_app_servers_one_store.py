"""The production shape: two separate gunicorn app servers on one database
(PostgreSQL in the suite's PostgreSQL run) and one Redis. Concurrent load at
both leaves one gapless chain that verifies, rate limits hold exactly across
both servers, and a revocation made through one is honoured at once by the
other."""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from conftest import ADMIN_KEY, API_KEY
from tests.support.servers import RedisServer

SESSION_LIMIT = 25


def test_two_servers_share_one_chain_one_limit_and_one_revocation(start_app_server):
    with RedisServer() as redis_server:
        env = {
            "VERITTA_RATE_LIMIT_URL": redis_server.url,
            "VERITTA_RATE_LIMIT_SESSION_PER_MIN": str(SESSION_LIMIT),
            "VERITTA_RATE_LIMIT_KEY_PER_MIN": "100000",
            "VERITTA_RATE_LIMIT_ADDRESS_PER_MIN": "100000",
            "VERITTA_AUDIT_CHECKPOINT_EVERY": "100",
        }
        first = start_app_server(workers=2, env=env)
        second = start_app_server(workers=2, env=env, database_url=first.database_url, prepare=False)
        servers = [first, second]

        opened = first.post("/sessions", json={"user_id": "u_12345"}, headers={"X-API-Key": API_KEY}).json()
        bearer = {
            "Authorization": f"Bearer {opened['token']}",
            "X-VERITTA-USER-ID": "u_12345",
            "X-VERITTA-SESSION-ID": opened["session_id"],
        }

        def key_call(i: int) -> int:
            body = {"action": "process", "text": f"load {i}"}
            return servers[i % 2].post("/process", json=body, headers={"X-API-Key": API_KEY}).status_code

        def session_call(i: int) -> int:
            return servers[i % 2].post("/process", json={"action": "noop"}, headers=bearer).status_code

        with ThreadPoolExecutor(16) as pool:
            key_statuses = Counter(pool.map(key_call, range(400)))
            started = time.monotonic()
            session_statuses = Counter(pool.map(session_call, range(60)))
            elapsed = time.monotonic() - started
        assert key_statuses == {200: 400}
        # The session limit is counted once across both servers: its burst, plus
        # one per T = 60 s / limit the calls took (the sliding limit refills).
        refilled = int(elapsed / (60 / SESSION_LIMIT))
        assert SESSION_LIMIT <= session_statuses[200] <= SESSION_LIMIT + refilled, (session_statuses, elapsed)
        assert session_statuses[200] + session_statuses[429] == 60

        # Revoke through the first server; the second refuses the very next call.
        revoked = first.post(
            "/admin/sessions/revoke", json={"session_id": opened["session_id"], "reason": "test"}, headers={"X-ADMIN-KEY": ADMIN_KEY}
        )
        assert revoked.status_code == 200
        refused = second.post("/process", json={"action": "noop"}, headers=bearer)
        assert refused.status_code == 403 and refused.json()["reason_codes"] == ["SESSION_REVOKED"]

        for server in servers:
            server.stop()
        result = first.manage("audit", "verify", "--json", check=False)
        report = json.loads(result.stdout)
        assert result.returncode == 0, report["problems"][:5]
        assert report["first_seq"] == 1 and report["last_seq"] == report["records"] >= 3 * 400
        # Every database checkpoint, plus the external copies this server wrote
        # (each server writes its own directory: see docs/DEPLOYMENT.md).
        external = len(list((first.tmp / "checkpoints").glob("*.note")))
        assert external >= 1
        assert report["checkpoints_checked"] == report["records"] // 100  # each copy counted once...
        assert report["checkpoint_copies"] == report["records"] // 100 + external  # ...of those read


def test_production_settings_pass_check_deploy_with_no_warnings(tmp_path):
    from tests.support.appserver import fresh_database_url, manage, server_env

    env = server_env(tmp_path, fresh_database_url(tmp_path))
    env.update(DJANGO_SECURE="true", DJANGO_DEBUG="false", DJANGO_ALLOWED_HOSTS="veritta.example.com",
               DJANGO_SECRET_KEY="k" * 20 + "-production-secret-key-with-enough-entropy-0123456789",
               VERITTA_BETA_API_KEY="b" * 43, VERITTA_ADMIN_API_KEY="a" * 43)  # fmt: skip
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING", check=False)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout

"""Every timestamp a client, an operator or a log reader sees has the audit
records' format (`2026-11-24T08:14:03.512345+00:00`): API answers, whether
built by hand or by a DRF serializer, and every log line of a real gunicorn
server, its access log included."""

from __future__ import annotations

import json
import re
from typing import Any

from conftest import ADMIN_KEY, API_KEY

ONE_FORMAT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
TIMESTAMP_KEYS = re.compile(r"(_at|^ts_utc|^since|^until|^hour)$")


def _timestamps(value: Any, path: str = "") -> dict[str, str]:
    """Every timestamp-named value in a JSON answer, by its path."""
    found: dict[str, str] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and TIMESTAMP_KEYS.search(key):
                found[f"{path}.{key}"] = item
            else:
                found.update(_timestamps(item, f"{path}.{key}"))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.update(_timestamps(item, f"{path}[{i}]"))
    return found


def test_api_answers_and_every_log_line_share_one_timestamp_format(start_app_server):
    server = start_app_server(workers=2)
    admin = {"X-ADMIN-KEY": ADMIN_KEY}
    opened = server.post("/sessions", json={"user_id": "u_time"}, headers={"X-API-Key": API_KEY}).json()
    answers = {
        "POST /sessions": opened,
        "GET /health": server.get("/health").json(),
        "GET /admin/health": server.get("/admin/health", headers=admin).json(),
        "GET /admin/sessions/{id}": server.get(f"/admin/sessions/{opened['session_id']}", headers=admin).json(),
        "POST /admin/sessions/revoke": server.post(
            "/admin/sessions/revoke", json={"session_id": opened["session_id"], "reason": "t"}, headers=admin
        ).json(),
        "GET /admin/audit/summary": server.get("/admin/audit/summary", headers=admin).json(),
        "GET /admin/audit/events": server.get("/admin/audit/events?limit=100", headers=admin).json(),
    }
    seen = {f"{name}{path}": value for name, answer in answers.items() for path, value in _timestamps(answer).items()}
    for required in ("POST /sessions.expires_at", "GET /admin/sessions/{id}.created_at", "GET /health.ts_utc",
                     "POST /admin/sessions/revoke.revoked_at", "GET /admin/audit/summary.window.since"):  # fmt: skip
        assert required in seen, sorted(seen)
    assert {k: v for k, v in seen.items() if not ONE_FORMAT.match(v)} == {}

    server.stop()
    lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert {line["logger"] for line in lines} >= {"gunicorn.error", "gunicorn.access"}
    assert [line for line in lines if not ONE_FORMAT.match(line["ts_utc"])] == []

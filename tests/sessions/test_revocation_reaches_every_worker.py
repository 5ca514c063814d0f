"""Through a real multi-worker gunicorn server: a session revoked through the
admin API is refused on the very next request by every worker, and no token,
key or digest appears in any answer, log line or audit record."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

from conftest import ADMIN_KEY, API_KEY

README_G4 = b'{"action": "process", "event_type": "test_event"}'


def hammer(server, headers: dict[str, str], n: int = 60) -> list[tuple[int, str]]:
    """n concurrent requests: with several workers, each of them answers some."""

    def one(_: int) -> tuple[int, str]:
        response = server.post("/process", data=README_G4, headers=headers)
        return response.status_code, (response.json().get("reason_codes") or ["OK"])[0]

    with ThreadPoolExecutor(max_workers=12) as pool:
        return list(pool.map(one, range(n)))


def test_revoked_session_is_refused_by_every_worker_on_the_next_request(start_app_server):
    server = start_app_server(workers=3)
    opened = server.post("/sessions", json={"user_id": "u_12345"}, headers={"X-API-Key": API_KEY})
    assert opened.status_code == 201
    session = opened.json()
    headers = {
        "Authorization": f"Bearer {session['token']}",
        "X-VERITTA-USER-ID": "u_12345",
        "X-VERITTA-SESSION-ID": session["session_id"],
        "Content-Type": "application/json",
    }
    # Every worker has served the session (a per-process cache would now hold it).
    assert set(hammer(server, headers)) == {(200, "OK")}
    assert len(server.worker_pids()) == 3

    revoked = server.post(
        "/admin/sessions/revoke", json={"session_id": session["session_id"], "reason": "stolen laptop"},
        headers={"X-ADMIN-KEY": ADMIN_KEY},
    )  # fmt: skip
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert set(hammer(server, headers)) == {(403, "SESSION_REVOKED")}

    again = server.post(
        "/admin/sessions/revoke", json={"session_id": session["session_id"]}, headers={"X-ADMIN-KEY": ADMIN_KEY}
    )
    assert again.status_code == 200 and again.json()["status"] == "already_revoked"

    # Nothing secret anywhere the service writes: log, audit mirror, admin answers.
    detail = server.get(f"/admin/sessions/{session['session_id']}", headers={"X-ADMIN-KEY": ADMIN_KEY})
    assert detail.status_code == 200 and detail.json()["state"] == "revoked"
    events = server.get("/admin/audit/events", params={"limit": 1000}, headers={"X-ADMIN-KEY": ADMIN_KEY})
    written = "\n".join([server.log(), (server.tmp / "audit.log").read_text(), detail.text, events.text, revoked.text])
    token_digest = hashlib.sha256(session["token"].encode()).hexdigest()
    for secret in (session["token"], token_digest, API_KEY, ADMIN_KEY, hashlib.sha256(API_KEY.encode()).hexdigest()):
        assert secret not in written
    assert "stolen laptop" not in (server.tmp / "audit.log").read_text()  # the reason is a value: digest only
    revocations = [
        json.loads(line) for line in (server.tmp / "audit.log").read_text().splitlines() if '"revoke_session"' in line
    ]
    assert [(r["event_type"], r["status"]) for r in revocations] == [
        ("decision_audit", None), ("action_audit", "PENDING"), ("action_audit", "SUCCESS"),
        ("decision_audit", None),  # the idempotent second call: ALLOW, nothing to do
    ]  # fmt: skip
    assert all(r["actor"] == {"kind": "admin_key", "id": "admin"} for r in revocations)


def test_stored_key_and_session_work_through_gunicorn_and_never_reach_the_log(start_app_server):
    server = start_app_server(workers=2)
    created = server.manage("sessions", "create-key", "--name", "agent")
    key = created.stdout.strip()
    assert key.startswith("vk_") and key not in created.stderr
    opened = server.post("/sessions", json={"user_id": "u_7"}, headers={"X-API-Key": key})
    assert opened.status_code == 201
    session = opened.json()
    answer = server.post(
        "/process", data=README_G4,
        headers={"Authorization": f"Bearer {session['token']}", "X-VERITTA-USER-ID": "u_7",
                 "X-VERITTA-SESSION-ID": session["session_id"]},
    )  # fmt: skip
    assert answer.status_code == 200
    assert server.post("/process", data=README_G4, headers={"X-API-Key": key}).status_code == 200
    written = server.log() + (server.tmp / "audit.log").read_text()
    for secret in (key, session["token"], hashlib.sha256(key.encode()).hexdigest()):
        assert secret not in written
    assert key.split("_")[1] in (server.tmp / "audit.log").read_text()  # the key's id (prefix) is the actor

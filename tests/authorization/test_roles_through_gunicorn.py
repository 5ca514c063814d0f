"""Least privilege through real multi-worker gunicorn servers (issue 17,
docs/AUTHORIZATION.md): a key limited to one role is refused every other
action at the authz gate, a session it opens cannot exceed it, a change of its
roles holds on the very next request in every worker of two servers sharing a
database, and the OWASP API1/API5 cases are refused."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import ADMIN_KEY, API_KEY

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_PROFILES = ROOT / "docs" / "examples" / "roles" / "profiles"
NOOP = {"action": "noop"}
PROCESS = {"action": "process", "text": "hello", "operation": "upper"}


def roles_env(tmp: Path | None = None) -> dict[str, str]:
    """The worked example's profiles (docs/AUTHORIZATION.md): the default profile with role rules."""
    from governance.profiles import shipped_fingerprint

    return {"VERITTA_PROFILES_DIR": str(EXAMPLE_PROFILES), "VERITTA_PROFILES_FINGERPRINT": shipped_fingerprint(EXAMPLE_PROFILES)}


def records(server, trace_id: str) -> list[dict]:
    return server.mirror_records(trace_id)


def hammer(server, body: dict, headers: dict[str, str], n: int = 24) -> set[tuple[int, str]]:
    """n concurrent requests: with several workers, each of them answers some."""

    def one(_: int) -> tuple[int, str]:
        response = server.post("/process", json=body, headers=headers)
        return response.status_code, (response.json().get("reason_codes") or ["OK"])[0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        return set(pool.map(one, range(n)))


def bearer(session: dict, user: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {session['token']}",
        "X-VERITTA-USER-ID": user,
        "X-VERITTA-SESSION-ID": session["session_id"],
    }


def test_a_key_limited_to_one_action_is_refused_every_other_and_its_session_cannot_exceed_it(
    start_app_server, tmp_path
):
    server = start_app_server(workers=2, env=roles_env(tmp_path))
    key = server.manage("sessions", "create-key", "--name", "support-bot", "--role", "support_agent").stdout.strip()
    headers = {"X-API-Key": key}

    allowed = server.post("/process", json=NOOP, headers=headers)
    assert allowed.status_code == 200
    (decision,) = [r for r in records(server, allowed.json()["trace_id"]) if r["event_type"] == "decision_audit"]
    assert "authz:role:support_agent" in decision["matched_rules"]
    assert decision["evidence"]["principal_roles"] == ["support_agent"]

    for body in (PROCESS, {"action": "test_action"}):
        refused = server.post("/process", json=body, headers=headers)
        assert refused.status_code == 403 and refused.json()["reason_codes"] == ["AUTHZ_DENIED"]
        (deny,) = records(server, refused.json()["trace_id"])
        assert (deny["decision"], deny["gate"], deny["reason_codes"]) == ("DENY", "authz", ["AUTHZ_DENIED"])
        assert deny["evidence"] == {"principal_roles": ["support_agent"], "refused_by": {"support_agent": "action_not_granted"}}
        assert key not in json.dumps(deny)

    # A session holds at most its key's roles: asking for more is refused, not trimmed.
    wider = server.post("/sessions", json={"user_id": "u_1", "roles": ["support_agent", "operator"]}, headers=headers)
    assert wider.status_code == 403 and wider.json()["reason_codes"] == ["AUTHZ_DENIED"]
    opened = server.post("/sessions", json={"user_id": "u_1"}, headers=headers)
    assert opened.status_code == 201 and opened.json()["roles"] == ["support_agent"]
    session = bearer(opened.json(), "u_1")
    assert server.post("/process", json=NOOP, headers=session).status_code == 200
    refused = server.post("/process", json=PROCESS, headers=session)
    assert refused.status_code == 403 and refused.json()["reason_codes"] == ["AUTHZ_DENIED"]

    # A session opened with no role at all can do nothing.
    empty = server.post("/sessions", json={"user_id": "u_2", "roles": []}, headers=headers)
    assert empty.status_code == 201 and empty.json()["roles"] == []
    assert server.post("/process", json=NOOP, headers=bearer(empty.json(), "u_2")).json()["reason_codes"] == ["AUTHZ_DENIED"]

    # Field limits per role: text_stats may run `process` for statistics on short texts only.
    stats_key = server.manage("sessions", "create-key", "--name", "stats", "--role", "text_stats").stdout.strip()
    stats = {"action": "process", "text": "hello", "operation": "stats"}
    assert server.post("/process", json=stats, headers={"X-API-Key": stats_key}).status_code == 200
    upper = server.post("/process", json=PROCESS, headers={"X-API-Key": stats_key})
    assert upper.status_code == 403
    (deny,) = records(server, upper.json()["trace_id"])
    assert deny["evidence"]["refused_by"] == {"text_stats": "field_limit:operation"}

    metrics = server.get("/metrics", headers={"X-ADMIN-KEY": ADMIN_KEY}).text
    (line,) = [x for x in metrics.splitlines() if x.startswith("veritta_authz_denials_total")]
    assert float(line.split()[-1]) == 6.0  # every AUTHZ_DENIED above, POST /sessions included


def test_a_role_change_holds_on_the_next_request_in_every_worker_of_two_servers(start_app_server, tmp_path):
    many = "100000"  # the hammering below is not what is under test
    limits = {f"VERITTA_RATE_LIMIT_{k}_PER_MIN": many for k in ("KEY", "SESSION", "ADDRESS")}
    env = {**roles_env(tmp_path), **limits}
    first = start_app_server(workers=2, env=env)
    second = start_app_server(workers=2, env=env, database_url=first.database_url, prepare=False)
    key = first.manage("sessions", "create-key", "--name", "agent", "--role", "operator").stdout.strip()
    prefix = key.split("_")[1]
    opened = first.post("/sessions", json={"user_id": "u_9"}, headers={"X-API-Key": key})
    session = bearer(opened.json(), "u_9")
    for server in (first, second):  # every worker has served the key and the session
        assert hammer(server, PROCESS, {"X-API-Key": key}) == {(200, "OK")}
        assert hammer(server, PROCESS, session) == {(200, "OK")}

    changed = first.post(f"/admin/keys/{prefix}/roles", json={"roles": ["support_agent"]}, headers={"X-ADMIN-KEY": ADMIN_KEY})
    assert changed.status_code == 200 and changed.json()["roles"] == ["support_agent"]
    for server in (first, second):
        assert hammer(server, PROCESS, {"X-API-Key": key}) == {(403, "AUTHZ_DENIED")}
        # The session was opened with `operator`; its key no longer holds it, so neither does the session.
        assert hammer(server, NOOP, session) == {(403, "AUTHZ_DENIED")}
        assert hammer(server, NOOP, {"X-API-Key": key}) == {(200, "OK")}

    read = second.get(f"/admin/keys/{prefix}/roles", headers={"X-ADMIN-KEY": ADMIN_KEY})
    assert read.json() == {"key_prefix": prefix, "name": "agent", "state": "active", "roles": ["support_agent"]}
    audited = [r for r in map(json.loads, (first.tmp / "audit.log").read_text().splitlines()) if r.get("action") == "set_api_key_roles"]
    assert [r.get("status") for r in audited] == [None, "PENDING", "SUCCESS"]
    assert audited[-1]["evidence"]["roles_before"] == ["operator"] and audited[-1]["evidence"]["roles"] == ["support_agent"]


def test_owasp_api1_and_api5_are_refused(start_app_server, tmp_path):
    server = start_app_server(workers=2, env=roles_env(tmp_path))
    alice = server.manage("sessions", "create-key", "--name", "alice", "--role", "support_agent").stdout.strip()
    bob = server.manage("sessions", "create-key", "--name", "bob", "--role", "operator").stdout.strip()
    bobs = server.post("/sessions", json={"user_id": "u_bob"}, headers={"X-API-Key": bob}).json()

    # API1: alice's key acting through bob's session (another principal's object).
    through = server.post("/process", json=NOOP, headers={"X-API-Key": alice, **bearer(bobs, "u_bob")})
    assert through.status_code == 403 and through.json()["reason_codes"] == ["AUTHZ_DENIED"]
    (deny,) = records(server, through.json()["trace_id"])
    assert deny["evidence"]["cause"] == "session_of_another_key"
    # API1: a session token cannot read or revoke another key's session, nor its own, through the admin API.
    alices = server.post("/sessions", json={"user_id": "u_a"}, headers={"X-API-Key": alice}).json()
    for call in (
        lambda: server.post("/admin/sessions/revoke", json={"session_id": bobs["session_id"]}, headers=bearer(alices, "u_a")),
        lambda: server.get(f"/admin/sessions/{bobs['session_id']}", headers={"X-API-Key": alice}),
    ):
        answer = call()
        assert answer.status_code == 403 and answer.json()["reason_codes"] == ["ADMIN_KEY_MISSING"]
    assert server.post("/process", json=NOOP, headers=bearer(bobs, "u_bob")).status_code == 200  # bob's still works

    # API5: another role's function, and the admin function that would widen a key.
    other_role = server.post("/process", json=PROCESS, headers={"X-API-Key": alice})
    assert other_role.status_code == 403 and other_role.json()["reason_codes"] == ["AUTHZ_DENIED"]
    prefix = alice.split("_")[1]
    widen = server.post(f"/admin/keys/{prefix}/roles", json={"roles": ["operator"]}, headers={"X-API-Key": alice})
    assert widen.status_code == 403 and widen.json()["reason_codes"] == ["ADMIN_KEY_MISSING"]
    # A session cannot open a session (and so cannot open a wider one).
    nested = server.post("/sessions", json={"user_id": "u_a", "roles": ["operator"]}, headers=bearer(alices, "u_a"))
    assert nested.status_code == 403 and nested.json()["reason_codes"] == ["MISSING_API_KEY"]
    assert server.get(f"/admin/keys/{prefix}/roles", headers={"X-ADMIN-KEY": ADMIN_KEY}).json()["roles"] == ["support_agent"]


@pytest.mark.parametrize("roles", ["", "support_agent"])
def test_bootstrap_key_holds_the_configured_roles(start_app_server, tmp_path, roles):
    server = start_app_server(workers=1, env={**roles_env(tmp_path), "VERITTA_BOOTSTRAP_KEY_ROLES": roles})
    answer = server.post("/process", json=PROCESS, headers={"X-API-Key": API_KEY})
    assert answer.status_code == 403 and answer.json()["reason_codes"] == ["AUTHZ_DENIED"]
    (deny,) = records(server, answer.json()["trace_id"])
    assert deny["evidence"]["principal_roles"] == ([roles] if roles else [])

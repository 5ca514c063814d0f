"""http_call_v1 against a real HTTP upstream started by the test: a governed
call and its records, and every hostile case refused with its own reason code
and a FAILED record, with nothing sent upstream when it is refused before
sending. The upstream's credential is a tracked secret: the leak scan after
the suite looks for it in every database, mirror, log and response."""

from __future__ import annotations

import hashlib
import json
import socket
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.campaign import LEAKS
from tests.support.upstream import Upstream

CREDENTIAL = "upstream-credential-6f1d2a9be0c34d71"
LEAKS.add_secret(CREDENTIAL)

OPERATIONS: dict[str, Any] = {
    "get_ticket": {
        "method": "GET",
        "path": "/tickets/{ticket_id}",
        "parameters": {"ticket_id": {"type": "string"}},
        "returns": ["id", "status", "title"],
    },
    "create_ticket": {"method": "POST", "path": "/tickets", "body": {"title": "title"}, "returns": ["id", "status"]},
    "slow_call": {"method": "GET", "path": "/slow"},
    "big_call": {"method": "GET", "path": "/big", "returns": ["blob"]},
    "redirect_call": {"method": "GET", "path": "/redirect"},
    "broken_call": {"method": "GET", "path": "/broken"},
}
FIELDS: dict[str, Any] = {"get_ticket": {"ticket_id": {"type": "string", "max_length": 200}}, "create_ticket": {"title": {"type": "string", "max_length": 200}}}


def connector_doc(base_url: str, *, allow_private: bool = True, **overrides: Any) -> dict[str, Any]:
    return {
        "connector_id": "tickets",
        "version": "1.0.0",
        "base_url": base_url + "/api",
        "allow_private_addresses": allow_private,
        "timeout_s": 1,
        "max_response_bytes": 65536,
        "headers": {"Accept": "application/json"},
        "credential": {"header": "Authorization", "scheme": "Bearer", "from_env": "TICKETS_TOKEN"},
        "operations": OPERATIONS,
        **overrides,
    }


def write_connector_and_profile(directory: Path, connector: dict[str, Any]) -> tuple[Path, Path]:
    """A connector file and a default profile that pins it, as an author writes them."""
    from governance.connectors import connector_hash

    connectors, profiles = directory / "connectors", directory / "profiles"
    connectors.mkdir(parents=True, exist_ok=True)
    profiles.mkdir(parents=True, exist_ok=True)
    (connectors / "tickets.json").write_text(json.dumps(connector, indent=2))
    pin = {"connector_id": "tickets", "version": "1.0.0", "sha256": connector_hash(connector)}
    profile = {
        "profile_id": "default",
        "version": "1.0.0",
        "common_fields": {"action": {"type": "string", "max_length": 64}},
        "actions": {
            name: {"executor": "http_call_v1", "min_executor_version": "1.0.0", "capabilities": ["http.call"],
                   "connector": pin, "fields": FIELDS.get(name, {})}
            for name in OPERATIONS
        },
    }
    (profiles / "default.json").write_text(json.dumps(profile, indent=2))
    return connectors, profiles


@pytest.fixture
def upstream():
    with Upstream(CREDENTIAL) as server:
        yield server


@pytest.fixture
def serve_connector(settings, tmp_path, db, audit_log, monkeypatch):
    """Returns serve(connector_doc): loads it and its profile as the active set."""
    from governance.connectors import connectors_cache_clear
    from governance.profiles import shipped_fingerprint
    from governance.registry import executor_registry
    from governance.selectors import profile_cache_clear
    from governance.services import profiles_load

    monkeypatch.setenv("TICKETS_TOKEN", CREDENTIAL)

    def serve(connector: dict[str, Any]) -> None:
        connectors, profiles = write_connector_and_profile(tmp_path, connector)
        settings.VERITTA_CONNECTORS_DIR = connectors
        settings.VERITTA_PROFILES_DIR = profiles
        settings.VERITTA_PROFILES_FINGERPRINT = shipped_fingerprint(profiles)
        connectors_cache_clear()
        executor_registry.cache_clear()
        profile_cache_clear()
        profiles_load()

    yield serve
    connectors_cache_clear()
    executor_registry.cache_clear()
    profile_cache_clear()


@pytest.fixture
def client():
    from conftest import ApiClient

    return ApiClient()


def outcome(client, audit_records, payload: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    response = client.process(payload)
    records = audit_records(response.json()["trace_id"])
    assert CREDENTIAL not in json.dumps(records) + response.content.decode()
    return response, records


def test_governed_call_returns_only_declared_fields_and_records_digests(upstream, serve_connector, client, audit_records):
    from governance.connectors import connector_hash

    connector = connector_doc(upstream.url)
    serve_connector(connector)
    response, records = outcome(client, audit_records, {"action": "get_ticket", "ticket_id": "T-42"})
    assert response.status_code == 200, response.content
    assert response.json()["result"]["output"] == {"upstream_status": 200, "response": {"id": "T-42", "status": "open", "title": "Printer"}}
    assert [(r["event_type"], r["decision"], r["status"]) for r in records] == [
        ("decision_audit", "ALLOW", None), ("action_audit", None, "PENDING"), ("action_audit", None, "SUCCESS")
    ]
    (received,) = upstream.received
    assert received["path"] == "/api/tickets/T-42" and received["authorized"] and received["host"] == f"127.0.0.1:{upstream.port}"
    sent = json.dumps({"id": "T-42", "status": "open", "internal_note": "never returned", "title": "Printer"}).encode()
    evidence = records[-1]["evidence"]
    assert evidence == {
        "connector_id": "tickets",
        "connector_version": "1.0.0",
        "connector_sha256": connector_hash(connector),
        "operation": "get_ticket",
        "request_digest": hashlib.sha256(json.dumps(["GET", "/api/tickets/T-42"]).encode() + b"\n").hexdigest(),
        "response_digest": hashlib.sha256(sent).hexdigest(),
        "response_bytes": len(sent),
        "upstream_status": 200,
    }
    assert records[-1]["executor_id"] == "http_call_v1"


def test_body_carries_only_mapped_fields(upstream, serve_connector, client, audit_records):
    serve_connector(connector_doc(upstream.url))
    response, _ = outcome(client, audit_records, {"action": "create_ticket", "title": "Printer on fire"})
    assert response.status_code == 200 and response.json()["result"]["output"]["response"] == {"id": "T-1001", "status": "created"}
    assert upstream.received[0]["body"] == {"title": "Printer on fire"} and upstream.received[0]["method"] == "POST"


@pytest.mark.parametrize(
    ("action", "status", "code", "evidence"),
    [
        ("slow_call", 504, "UPSTREAM_TIMEOUT", {}),
        ("big_call", 502, "UPSTREAM_RESPONSE_TOO_LARGE", {"limit": 65536}),
        ("redirect_call", 502, "UPSTREAM_REDIRECT_REFUSED", {"upstream_status": 302}),
        ("broken_call", 502, "UPSTREAM_ERROR_STATUS", {"upstream_status": 503}),
    ],
)
def test_hostile_or_failing_upstream_is_failed_with_its_own_code(upstream, serve_connector, client, audit_records, action, status, code, evidence):
    serve_connector(connector_doc(upstream.url))
    response, records = outcome(client, audit_records, {"action": action})
    assert response.status_code == status and response.json()["reason_codes"] == [code]
    assert [r["status"] for r in records[1:]] == ["PENDING", "FAILED"]
    failed = records[-1]
    assert failed["reason_codes"] == [code] and failed["evidence"]["connector_id"] == "tickets"
    assert evidence.items() <= failed["evidence"].items()
    assert len(upstream.received) == 1  # one attempt: never retried, never redirected


def test_redirect_is_not_followed(upstream, serve_connector, client, audit_records):
    serve_connector(connector_doc(upstream.url))
    outcome(client, audit_records, {"action": "redirect_call"})
    assert [r["path"] for r in upstream.received] == ["/api/redirect"]


def test_connection_refused_is_unreachable(serve_connector, client, audit_records):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    serve_connector(connector_doc(f"http://127.0.0.1:{closed}"))
    response, records = outcome(client, audit_records, {"action": "get_ticket", "ticket_id": "T-1"})
    assert response.status_code == 502 and response.json()["reason_codes"] == ["UPSTREAM_UNREACHABLE"]
    assert records[-1]["status"] == "FAILED"


@pytest.mark.parametrize("ticket_id", ["../admin", "..", ".", "a/b", "%2e%2e", "x?y=1", "a#b", "a b", "T-1\r\nX-Injected: 1", "é"])
def test_path_parameter_traversal_or_injection_is_refused_before_sending(upstream, serve_connector, client, audit_records, ticket_id):
    serve_connector(connector_doc(upstream.url))
    response, records = outcome(client, audit_records, {"action": "get_ticket", "ticket_id": ticket_id})
    assert response.status_code == 400 and response.json()["reason_codes"] == ["CONNECTOR_PARAMETER_INVALID"]
    assert records[-1]["status"] == "FAILED"
    evidence = records[-1]["evidence"]
    assert evidence["parameter"] == "ticket_id" and evidence["problem"] in ("not_allowed_characters", "not_a_string")
    assert set(evidence) == {"connector_id", "connector_version", "connector_sha256", "operation", "parameter", "problem"}  # no value
    assert upstream.received == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_is_refused_unless_the_connector_allows_it(upstream, serve_connector, client, audit_records, host):
    """`localhost` is refused by its DNS answer, checked when the call connects."""
    serve_connector(connector_doc(f"http://{host}:{upstream.port}", allow_private=False))
    response, records = outcome(client, audit_records, {"action": "get_ticket", "ticket_id": "T-1"})
    assert response.status_code == 502 and response.json()["reason_codes"] == ["UPSTREAM_ADDRESS_REFUSED"]
    assert records[-1]["status"] == "FAILED" and upstream.received == []


def test_connection_goes_to_the_checked_address_with_the_name_as_host(upstream, serve_connector, client, audit_records):
    serve_connector(connector_doc(f"http://localhost:{upstream.port}"))
    response, _ = outcome(client, audit_records, {"action": "get_ticket", "ticket_id": "T-7"})
    assert response.status_code == 200
    assert upstream.received[0]["host"] == f"localhost:{upstream.port}"


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True), ("2606:4700:4700::1111", True),
        ("127.0.0.1", False), ("10.1.2.3", False), ("192.168.0.1", False), ("172.16.5.4", False),
        ("169.254.169.254", False), ("::1", False), ("fe80::1", False), ("fc00::1", False),
        ("::ffff:127.0.0.1", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ],
)
def test_address_rule(address, allowed):
    from governance.http_call import address_allowed

    assert address_allowed(address, allow_private=False) is allowed


def test_private_permission_never_opens_multicast_or_unspecified():
    from governance.http_call import address_allowed

    assert address_allowed("127.0.0.1", allow_private=True)
    assert not address_allowed("0.0.0.0", allow_private=True) and not address_allowed("224.0.0.1", allow_private=True)


def test_missing_credential_refuses_before_sending(upstream, serve_connector, client, audit_records, monkeypatch):
    serve_connector(connector_doc(upstream.url))
    monkeypatch.delenv("TICKETS_TOKEN")
    response, records = outcome(client, audit_records, {"action": "get_ticket", "ticket_id": "T-1"})
    assert response.status_code == 500 and response.json()["reason_codes"] == ["CONNECTOR_UNAVAILABLE"]
    assert records[-1]["evidence"]["problem"] == "credential_unavailable" and upstream.received == []


def test_credential_from_a_secret_file(upstream, serve_connector, client, audit_records, monkeypatch):
    # Outside the test's directory, which the leak scan reads: a secret file is
    # the operator's, not something the service wrote.
    with tempfile.TemporaryDirectory() as directory:
        secret = Path(directory) / "tickets"
        secret.write_text(CREDENTIAL + "\n")
        monkeypatch.delenv("TICKETS_TOKEN")
        credential = {"header": "Authorization", "scheme": "Bearer", "from_file": str(secret)}
        serve_connector(connector_doc(upstream.url, credential=credential))
        response, _ = outcome(client, audit_records, {"action": "get_ticket", "ticket_id": "T-3"})
    assert response.status_code == 200 and upstream.received[0]["authorized"]


def test_changed_connector_makes_the_set_unservable(upstream, serve_connector, client, settings, tmp_path):
    """Like a changed profile: refused at start (the same rule) and at runtime."""
    from governance.checks import fingerprint_lock_problem
    from governance.connectors import connectors_cache_clear
    from governance.selectors import profile_cache_clear

    serve_connector(connector_doc(upstream.url))
    assert fingerprint_lock_problem(require_loaded=True) is None
    changed = connector_doc(upstream.url, timeout_s=2)
    (settings.VERITTA_CONNECTORS_DIR / "tickets.json").write_text(json.dumps(changed))
    connectors_cache_clear()
    profile_cache_clear()
    problem = fingerprint_lock_problem(require_loaded=True)
    assert problem and "does not match the sha256 its profile pins" in problem
    response = client.process({"action": "get_ticket", "ticket_id": "T-1"})
    assert response.status_code == 503 and response.json()["reason_codes"] == ["PROFILES_NOT_SERVABLE"]
    (settings.VERITTA_CONNECTORS_DIR / "tickets.json").unlink()
    connectors_cache_clear()
    profile_cache_clear()
    assert "is not in VERITTA_CONNECTORS_DIR" in fingerprint_lock_problem(require_loaded=True)
    assert upstream.received == []


def test_validate_and_explain_know_connectors(upstream, serve_connector, settings, capsys):
    from django.core.management import call_command

    from governance.connectors import connector_hash

    connector = connector_doc(upstream.url)
    serve_connector(connector)
    call_command("governance", "validate", str(settings.VERITTA_CONNECTORS_DIR / "tickets.json"))
    assert f"ok, connector tickets 1.0.0 sha256 {connector_hash(connector)}" in capsys.readouterr().out
    call_command("governance", "validate", str(settings.VERITTA_PROFILES_DIR / "default.json"))
    call_command(
        "governance", "explain", "--profile", str(settings.VERITTA_PROFILES_DIR / "default.json"),
        "--request", json.dumps({"action": "get_ticket", "ticket_id": "T-9"}),
    )
    explained = json.loads(capsys.readouterr().out.split("\n", 1)[1])  # after validate's line
    assert explained["decision"] == "ALLOW" and explained["executor"]["executor_id"] == "http_call_v1"
    assert explained["executor"]["connector"]["sha256"] == connector_hash(connector)
    assert upstream.received == []  # explain never calls the upstream


def test_validate_names_connector_problems(tmp_path):
    from django.core.management import CommandError, call_command

    bad = connector_doc("ftp://user:pw@host", timeout_s=0, allow_private_addresses="yes")
    bad["operations"] = {"x": {"method": "TRACE", "path": "/a/{id}/../b", "returns": "id"}}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(CommandError) as refused:
        call_command("governance", "validate", str(tmp_path / "bad.json"))
    for expected in ["base_url:", "timeout_s:", "allow_private_addresses:", "operations.x.method:", "operations.x.path:"]:
        assert expected in str(refused.value), expected


def test_governed_call_through_gunicorn_is_in_the_verified_chain(upstream, start_app_server, tmp_path):
    """The real server: its database, mirror and logs join the leak scan, which
    looks for the upstream credential among the secrets."""
    from conftest import API_KEY
    from governance.profiles import shipped_fingerprint

    connectors, profiles = write_connector_and_profile(tmp_path / "policy", connector_doc(upstream.url))
    server = start_app_server(env={
        "VERITTA_CONNECTORS_DIR": str(connectors),
        "VERITTA_PROFILES_DIR": str(profiles),
        "VERITTA_PROFILES_FINGERPRINT": shipped_fingerprint(profiles),
        "TICKETS_TOKEN": CREDENTIAL,
        # Every logger at its most talkative: a path parameter (a payload value,
        # tracked by the leak scan) must still reach no log line.
        "LOG_LEVEL": "DEBUG",
    })
    key = {"X-API-Key": API_KEY}
    ticket = "T-770000000000000042"  # long enough for the leak scan to track it
    ok = server.post("/process", json={"action": "get_ticket", "ticket_id": ticket}, headers=key)
    assert ok.status_code == 200 and ok.json()["result"]["output"]["response"]["id"] == ticket
    refused = server.post("/process", json={"action": "get_ticket", "ticket_id": "../tickets/admin-export"}, headers=key)
    assert refused.status_code == 400 and refused.json()["reason_codes"] == ["CONNECTOR_PARAMETER_INVALID"]
    assert [r["path"] for r in upstream.received] == [f"/api/tickets/{ticket}"] and upstream.received[0]["authorized"]
    trace = server.manage("audit", "trace", ok.json()["trace_id"], "--json", check=False)
    verified = server.manage("audit", "verify", "--json", check=False)
    assert verified.returncode == 0, verified.stdout[-2000:]
    assert json.loads(verified.stdout)["ok"]
    assert trace.returncode == 0 and [r["status"] for r in json.loads(trace.stdout)][-1] == "SUCCESS"
    assert CREDENTIAL not in trace.stdout + verified.stdout


def test_server_refuses_to_start_with_a_changed_connector(upstream, tmp_path):
    """Like a changed profile: the start-up check names the connector."""
    from governance.profiles import shipped_fingerprint
    from tests.support.appserver import AppServer

    connectors, profiles = write_connector_and_profile(tmp_path / "policy", connector_doc(upstream.url))
    env = {
        "VERITTA_CONNECTORS_DIR": str(connectors),
        "VERITTA_PROFILES_DIR": str(profiles),
        "VERITTA_PROFILES_FINGERPRINT": shipped_fingerprint(profiles),
    }
    server = AppServer(tmp_path / "srv", env=env).prepare()
    (connectors / "tickets.json").write_text(json.dumps(connector_doc(upstream.url, timeout_s=2)))
    with pytest.raises(RuntimeError) as refused:
        server.start()
    assert "does not match the sha256 its profile pins" in str(refused.value)
    assert upstream.received == []

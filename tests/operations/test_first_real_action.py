"""README "Govern your first real action": its example files are consistent
(the profile pins the connector's real hash) and its steps work: validate,
explain, serve, and a governed call to Python's http.server serving the
example's upstream, with only the declared fields returned."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from conftest import API_KEY
from tests.support.appserver import ROOT, manage, server_env
from tests.support.campaign import LEAKS
from tests.support.servers import free_port, wait_for_port

EXAMPLE = ROOT / "docs" / "examples" / "first-action"
TOKEN = "demo-token-for-the-walkthrough-test-51c2"
LEAKS.add_secret(TOKEN)


def test_example_profile_pins_the_example_connector(tmp_path):
    env = server_env(tmp_path, f"sqlite:///{tmp_path / 'unused.sqlite3'}", {"VERITTA_CONNECTORS_DIR": str(EXAMPLE / "connectors")})
    connector = manage(env, "governance", "validate", str(EXAMPLE / "connectors" / "tickets.json")).stdout
    pinned = json.loads((EXAMPLE / "profiles" / "default.json").read_text())["actions"]["get_ticket"]["connector"]["sha256"]
    assert f"sha256 {pinned}" in connector
    manage(env, "governance", "validate", str(EXAMPLE / "profiles" / "default.json"))


def test_walkthrough_governs_a_call_to_the_example_upstream(tmp_path, start_app_server):
    from governance.connectors import connector_hash
    from governance.profiles import shipped_fingerprint

    # The example's upstream on a free port (the README's 9100 may be taken here).
    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(EXAMPLE / "upstream")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        policy = tmp_path / "policy"
        shutil.copytree(EXAMPLE, policy, ignore=shutil.ignore_patterns("upstream"))
        connector = json.loads((policy / "connectors" / "tickets.json").read_text())
        connector["base_url"] = connector["base_url"].replace(":9100", f":{port}")
        (policy / "connectors" / "tickets.json").write_text(json.dumps(connector))
        profile = json.loads((policy / "profiles" / "default.json").read_text())
        profile["actions"]["get_ticket"]["connector"]["sha256"] = connector_hash(connector)
        (policy / "profiles" / "default.json").write_text(json.dumps(profile))

        env = {
            "VERITTA_PROFILES_DIR": str(policy / "profiles"),
            "VERITTA_CONNECTORS_DIR": str(policy / "connectors"),
            "VERITTA_PROFILES_FINGERPRINT": shipped_fingerprint(policy / "profiles"),
            "TICKETS_TOKEN": TOKEN,
        }
        server = start_app_server(env=env)
        explained = json.loads(server.manage(
            "governance", "explain", "--profile", str(policy / "profiles" / "default.json"),
            "--request", '{"action": "get_ticket", "ticket_id": "T-1"}',
        ).stdout)  # fmt: skip
        assert explained["decision"] == "ALLOW" and explained["executor"]["executor_id"] == "http_call_v1"

        key = {"X-API-Key": API_KEY}
        answer = server.post("/process", data='{"action": "get_ticket", "ticket_id": "T-1"}', headers=key)
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"]["output"] == {
            "upstream_status": 200, "response": {"id": "T-1", "status": "open", "title": "Printer on fire"}
        }  # fmt: skip
        refused = server.post("/process", data='{"action": "get_ticket", "ticket_id": "../admin"}', headers=key)
        assert refused.status_code == 400 and refused.json()["reason_codes"] == ["CONNECTOR_PARAMETER_INVALID"]
        trace = json.loads(server.manage("audit", "trace", answer.json()["trace_id"], "--json").stdout)
        assert [r["status"] for r in trace[1:]] == ["PENDING", "SUCCESS"]
        assert trace[-1]["evidence"]["connector_id"] == "tickets" and trace[-1]["evidence"]["upstream_status"] == 200
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)

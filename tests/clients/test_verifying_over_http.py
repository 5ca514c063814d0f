"""Proofs through a real gunicorn server, checked by the standalone verifier:
docs/VERIFYING.md's worked example run as written from a fresh virtualenv;
another client's records refused; a consistency proof between two real
checkpoints that verifies, then fails once an attacker with SQL access has
re-chained the database (triggers dropped)."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from audit.records import record_hash
from audit.triggers import drop_sql
from conftest import API_KEY
from veritta_site.canonical import canonical_json

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "clients" / "veritta_verify"))
from veritta_verify.core import ALG_ED25519, Rejected, check_consistency_document, check_inclusion, parse_key  # noqa: E402

SMOKE = {"action": "test_action", "event_type": "test_event"}


def doc_block(name: str) -> str:
    text = (ROOT / "docs" / "VERIFYING.md").read_text()
    found = re.search(rf"<!-- worked-example:{name} -->\n```bash\n(.*?)```\n<!-- worked-example:end -->", text, re.S)
    assert found, name
    return found.group(1)


def log_vkey(server: Any) -> str:
    return server.get("/audit/checkpoints/latest", headers={"X-API-Key": API_KEY}).json()["vkey"]


def sealed(server: Any) -> None:
    """The operator's side: chain what waits (PostgreSQL's intake), then seal."""
    server.manage("audit", "sequence")
    server.manage("audit", "checkpoint")


def test_the_worked_example_runs_from_a_fresh_virtualenv(start_app_server, tmp_path):
    server = start_app_server(workers=2)
    sealed(server)  # a first checkpoint, so the log key can be read
    env = {"PATH": "/usr/bin:/bin", "VERITTA": server.url, "VERITTA_API_KEY": API_KEY, "VERITTA_LOG_VKEY": log_vkey(server)}
    workdir = tmp_path / "client"
    workdir.mkdir()
    (workdir / "clients").symlink_to(ROOT / "clients")

    def run(block: str) -> subprocess.CompletedProcess[str]:
        script = "set -euo pipefail\n" + doc_block(block)
        return subprocess.run(["bash", "-c", script], cwd=workdir, env=env, capture_output=True, text=True, timeout=300)

    installed = run("client")
    assert installed.returncode == 0, installed.stderr
    # The fresh virtualenv has the verifier and cryptography, and no Django.
    probe = subprocess.run([str(workdir / "verify-env/bin/python"), "-c", "import django"], capture_output=True, text=True)
    assert probe.returncode != 0
    sealed(server)
    verified = run("verify")
    assert verified.returncode == 0 and verified.stdout.startswith("yes: record seq "), verified.stdout + verified.stderr
    trace_id = json.loads((workdir / "answer.json").read_text())["trace_id"]
    assert f"(trace {trace_id})" in verified.stdout
    for _ in range(3):
        server.post("/process", json=SMOKE, headers={"X-API-Key": API_KEY})
    sealed(server)
    grown = run("consistency")
    assert grown.returncode == 0 and grown.stdout.startswith("yes: the log "), grown.stdout + grown.stderr
    # The same command on a forged proof says no, with the reason.
    proof = json.loads((workdir / "proof.json").read_text())
    for item in proof["records"]:  # the receipt names the request's last record; forge them all
        item["proof"] = list(reversed(item["proof"])) if len(item["proof"]) > 1 else [*item["proof"], "00" * 32]
    (workdir / "forged.json").write_text(json.dumps(proof))
    argv = [str(workdir / "verify-env/bin/veritta-verify"), "inclusion", "--receipt", "answer.json", "--proof", "forged.json",
            "--checkpoint", "checkpoint.note", "--log-key", env["VERITTA_LOG_VKEY"]]  # fmt: skip
    forged = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=60)
    assert forged.returncode == 1 and forged.stdout.startswith("no: "), forged.stdout


def new_key(server: Any, name: str) -> str:
    return server.manage("sessions", "create-key", "--name", name).stdout.strip()


def attacker_sql(server: Any, statements: list[tuple[str, list[Any]]]) -> list[list[Any]]:
    """Run SQL straight on the server's database, as someone with its password would."""
    url = server.database_url
    results = []
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///") :]) as conn:
            for statement, params in statements:
                results.append(conn.execute(statement.replace("%s", "?"), params).fetchall() if params is not None else conn.execute(statement).fetchall())
        return results
    with psycopg.connect(url, autocommit=True) as conn:
        for statement, params in statements:
            cursor = conn.execute(statement, params)
            results.append(cursor.fetchall() if cursor.description else [])
    return results


def rechain_from(server: Any, first_seq: int) -> None:
    """Drop the append-only triggers, change record `first_seq`'s decision and
    recompute every hash and link after it, index columns included."""
    vendor = "sqlite" if server.database_url.startswith("sqlite") else "postgresql"
    attacker_sql(server, [(s, None) for s in drop_sql(vendor)])
    rows = attacker_sql(server, [("SELECT seq, body FROM audit_auditrecord WHERE seq >= %s ORDER BY seq", [first_seq - 1])])[0]
    prev = json.loads(rows[0][1])["record_hash"]
    updates = []
    for seq, body in rows[1:]:
        record = json.loads(body)
        if seq == first_seq:
            record["decision"] = "DENY" if record["decision"] != "DENY" else "ALLOW"
        record["prev_hash"] = prev
        record["record_hash"] = prev = record_hash(record)
        updates.append(
            (
                "UPDATE audit_auditrecord SET body = %s, record_hash = %s, prev_hash = %s, decision = %s WHERE seq = %s",
                [canonical_json(record).decode(), record["record_hash"], record["prev_hash"], record["decision"], seq],
            )
        )
    attacker_sql(server, updates)


@pytest.mark.parametrize("credential", ["key", "session"])
def test_own_proof_verifies_and_another_clients_is_refused(start_app_server, credential):
    server = start_app_server(workers=2)
    mine_key, theirs_key = new_key(server, "mine"), new_key(server, "theirs")
    headers = {"X-API-Key": mine_key}
    if credential == "session":
        session = server.post("/sessions", json={"user_id": "u_1"}, headers=headers).json()
        headers = {"Authorization": f"Bearer {session['token']}", "X-VERITTA-USER-ID": "u_1", "X-VERITTA-SESSION-ID": session["session_id"]}
    mine = server.post("/process", json=SMOKE, headers=headers).json()
    theirs = server.post("/process", json=SMOKE, headers={"X-API-Key": theirs_key}).json()
    sealed(server)
    checkpoint = server.get("/audit/checkpoints/latest", headers=headers).json()
    proof = server.get(f"/audit/proofs/inclusion/trace/{mine['trace_id']}", params={"tree_size": checkpoint["tree_size"]}, headers=headers)
    assert proof.status_code == 200, proof.text
    said = check_inclusion(mine, proof.json(), checkpoint["note"], parse_key(checkpoint["vkey"], ALG_ED25519, "key"), [])
    assert said.startswith("record seq ")
    for path in (f"trace/{theirs['trace_id']}", f"record/{theirs['audit']['record_hash'] or '0' * 64}"):
        refused = server.get(f"/audit/proofs/inclusion/{path}", headers=headers)
        assert refused.status_code == 404 and refused.json()["reason_codes"] == ["NOT_FOUND"]
    records = [json.loads(line) for line in (server.tmp / "audit.log").read_text().splitlines()]
    refusals = [r for r in records if r["endpoint"].startswith("GET /audit/proofs/inclusion/") and r["decision"] == "DENY"]
    assert len(refusals) == 2 and all(r["reason_codes"] == ["NOT_FOUND"] for r in refusals)


def test_consistency_verifies_then_fails_after_the_database_is_rechained(start_app_server):
    server = start_app_server(workers=2)
    headers = {"X-API-Key": API_KEY}
    for _ in range(3):
        server.post("/process", json=SMOKE, headers=headers)
    sealed(server)
    first = server.get("/audit/checkpoints/latest", headers=headers).json()
    for _ in range(4):
        server.post("/process", json=SMOKE, headers=headers)
    sealed(server)
    key = parse_key(first["vkey"], ALG_ED25519, "key")
    honest = server.get("/audit/proofs/consistency", params={"first": first["tree_size"]}, headers=headers).json()
    assert check_consistency_document(honest, key, [], kept=first["note"]).startswith("the log ")
    rechain_from(server, 2)  # inside the first checkpoint
    for _ in range(2):
        server.post("/process", json=SMOKE, headers=headers)
    sealed(server)  # the server goes on signing, from its stored frontier
    after = server.get("/audit/proofs/consistency", params={"first": first["tree_size"]}, headers=headers)
    assert after.status_code == 200
    with pytest.raises(Rejected, match="rewritten|not an extension"):
        check_consistency_document(after.json(), key, [], kept=first["note"])

"""A witness (`manage.py audit witness`) as a separate process, with its own
key, its own state file and no database, against a real gunicorn server: it
cosigns an honest extension (and the cosignature is served on the note,
checked by the standalone verifier and shown by `audit verify`), and refuses
a forked history, re-chained by an attacker with the triggers dropped, with
an alert on both sides."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import API_KEY
from tests.clients.test_verifying_over_http import rechain_from, sealed
from tests.support.appserver import ROOT

sys.path.insert(0, str(ROOT / "clients" / "veritta_verify"))
from veritta_verify.core import ALG_COSIGNATURE_V1, ALG_ED25519, Rejected, check_inclusion, parse_key  # noqa: E402

SMOKE = {"action": "test_action", "event_type": "test_event"}
NAME = "witness.test/w1"


class WitnessProcess:
    """The witness's own environment: no database it could use, its own files."""

    def __init__(self, home: Path, server_env: dict[str, str]) -> None:
        home.mkdir()
        self.home = home
        self.key_file, self.state_file = home / "witness.key", home / "state.json"
        self.env = {**server_env, "DATABASE_URL": f"sqlite:///{home / 'no-database-here.sqlite3'}", "VERITTA_WITNESS_API_KEY": API_KEY}

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "manage.py", "audit", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120)

    def keygen(self) -> str:
        made = self.manage("witness-keygen", "--name", NAME, "--key-file", str(self.key_file))
        assert made.returncode == 0, made.stderr
        return made.stdout.strip()

    def round(self, server: Any, log_vkey: str) -> subprocess.CompletedProcess[str]:
        return self.manage(
            "witness", "--server", server.url, "--log-key", log_vkey, "--name", NAME,
            "--key-file", str(self.key_file), "--state-file", str(self.state_file),
        )  # fmt: skip


@pytest.fixture
def witnessed(start_app_server, tmp_path) -> tuple[Any, WitnessProcess, str, str]:
    from tests.support.appserver import server_env

    witness = WitnessProcess(tmp_path / "witness", server_env(tmp_path, "sqlite:///unused"))
    witness_vkey = witness.keygen()
    server = start_app_server(workers=2, env={"VERITTA_AUDIT_WITNESSES": witness_vkey})
    headers = {"X-API-Key": API_KEY}
    for _ in range(3):
        server.post("/process", json=SMOKE, headers=headers)
    sealed(server)
    log_vkey = server.get("/audit/checkpoints/latest", headers=headers).json()["vkey"]
    return server, witness, witness_vkey, log_vkey


def latest(server: Any) -> dict[str, Any]:
    return server.get("/audit/checkpoints/latest", headers={"X-API-Key": API_KEY}).json()


def test_the_witness_cosigns_an_honest_extension(witnessed):
    server, witness, witness_vkey, log_vkey = witnessed
    first = witness.round(server, log_vkey)
    assert first.returncode == 0 and first.stdout.strip() == f"cosigned {latest(server)['tree_size']}", first.stderr
    answer = server.post("/process", json=SMOKE, headers={"X-API-Key": API_KEY}).json()
    sealed(server)
    second = witness.round(server, log_vkey)
    checkpoint = latest(server)
    assert second.returncode == 0 and second.stdout.strip() == f"cosigned {checkpoint['tree_size']}", second.stderr
    assert json.loads(witness.state_file.read_text())["tree_size"] == checkpoint["tree_size"]
    assert witness.round(server, log_vkey).stdout.strip() == f"unchanged at {checkpoint['tree_size']}"
    assert not (witness.home / "no-database-here.sqlite3").exists()  # the witness never touched a database
    # A client that requires this witness accepts the served note.
    proof = server.get(f"/audit/proofs/inclusion/trace/{answer['trace_id']}", params={"tree_size": checkpoint["tree_size"]},
                       headers={"X-API-Key": API_KEY}).json()  # fmt: skip
    keys = parse_key(log_vkey, ALG_ED25519, "log"), [parse_key(witness_vkey, ALG_COSIGNATURE_V1, "witness")]
    assert check_inclusion(answer, proof, checkpoint["note"], *keys).endswith(f"cosigned by {NAME}")
    shown = server.manage("audit", "verify")
    assert f"witness {NAME}: cosigned checkpoint {checkpoint['tree_size']} at " in shown.stdout


def test_the_witness_refuses_a_forked_history_and_both_sides_alert(witnessed):
    server, witness, witness_vkey, log_vkey = witnessed
    assert witness.round(server, log_vkey).returncode == 0
    cosigned_state = witness.state_file.read_text()
    rechain_from(server, 2)  # the attacker rewrites history under the cosigned checkpoint
    for _ in range(2):
        server.post("/process", json=SMOKE, headers={"X-API-Key": API_KEY})
    sealed(server)
    refused = witness.round(server, log_vkey)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    alert = json.loads(refused.stderr.split("ALERT ", 1)[1].splitlines()[0])
    assert alert["alert"] == "witness_refused" and alert["problem"] == "inconsistent" and alert["log_told"] is True
    assert witness.state_file.read_text() == cosigned_state  # it stays on the history it cosigned
    assert f"alert: witness {NAME} refused to cosign checkpoint {latest(server)['tree_size']}: inconsistent" in server.log()
    # No cosignature for the forked checkpoint: a client requiring the witness says no.
    checkpoint = latest(server)
    assert NAME not in checkpoint["note"].split("\n\n", 1)[1]
    with pytest.raises(Rejected, match="not cosigned by witness"):
        check_inclusion({"seq": 1, "record_hash": "0" * 64}, {"tree_size": checkpoint["tree_size"], "records": []}, checkpoint["note"],
                        parse_key(log_vkey, ALG_ED25519, "log"), [parse_key(witness_vkey, ALG_COSIGNATURE_V1, "witness")])  # fmt: skip
    shown = server.manage("audit", "verify", check=False)
    assert f"witness {NAME}: has not cosigned checkpoint {checkpoint['tree_size']}" in shown.stdout

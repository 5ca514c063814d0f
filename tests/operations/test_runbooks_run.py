"""Every `bash` block of docs/RUNBOOK.md and docs/operations/runbooks/*.md runs,
in order, against a real gunicorn server, and succeeds: the runbooks cannot rot.
So does scripts/smoke_test.sh, against a running server and starting its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from conftest import API_KEY
from tests.support.appserver import ROOT, fresh_database_url, server_env

DOCS = [ROOT / "docs" / "RUNBOOK.md", *sorted((ROOT / "docs" / "operations" / "runbooks").glob("*.md"))]
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)


def bash_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text())


def _shell_env(env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**env, **extra, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def test_the_runbooks_exist_and_have_commands():
    names = {p.name for p in DOCS}
    assert names == {"RUNBOOK.md", "security_incident.md", "traceability_audit.md", "contract_misconfiguration.md", "invariant_violation.md"}
    assert all(bash_blocks(p) for p in DOCS)


def test_every_runbook_command_runs_against_a_real_server(start_app_server):
    server = start_app_server(workers=2)
    headers = {"X-API-Key": API_KEY}
    for _ in range(40):  # a healthy day: the security SLO holds during the drills
        assert server.post("/process", json={"action": "process", "text": "hi"}, headers=headers).status_code == 200
    trace_id = server.post("/process", json={"action": "process", "text": "hi"}, headers=headers).json()["trace_id"]
    session_id = server.post("/sessions", json={"user_id": "u_runbook"}, headers=headers).json()["session_id"]
    env = _shell_env(server.env, VERITTA_URL=server.url, TRACE_ID=trace_id, SESSION_ID=session_id)

    ran = 0
    for path in DOCS:
        for number, block in enumerate(bash_blocks(path), 1):
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
            )
            where = f"{path.relative_to(ROOT)} block {number}"
            assert result.returncode == 0, f"{where} failed:\n{block}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            ran += 1
    assert ran >= 20


@pytest.mark.parametrize("mode", ["running server", "starts its own"])
def test_smoke_test_script_passes(start_app_server, tmp_path, mode):
    if mode == "running server":
        server = start_app_server(workers=2)
        env, args = _shell_env(server.env), [server.url]
    else:
        env = _shell_env(server_env(tmp_path, fresh_database_url(tmp_path)), SMOKE_SERVER_LOG=str(tmp_path / "server.log"))
        args = []
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "smoke_test.sh"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("SMOKE OK")


def test_smoke_test_script_fails_on_a_wrong_admin_key(app_server):
    env = _shell_env(app_server.env, VERITTA_ADMIN_API_KEY="not-the-admin-key")
    result = subprocess.run(["bash", "scripts/smoke_test.sh", app_server.url], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "FAILED" in result.stderr
    assert requests.get(app_server.url + "/health", timeout=5).status_code == 200

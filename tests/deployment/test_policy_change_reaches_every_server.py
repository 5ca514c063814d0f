"""The policy-change procedure of docs/POLICY_CHANGES.md, through two real
gunicorn servers on one database: `governance load-profiles` of a new version
reaches both servers within VERITTA_PROFILES_RECHECK_S — both enforce it when
their lock accepts it, both refuse when it does not — `manage.py check` says
the same as the servers, and loading the old files again (the rollback)
restores the old decisions."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ADMIN_KEY, API_KEY
from governance.profiles import profile_hash, shipped_fingerprint
from tests.support.appserver import ROOT, AppServer, manage

# The documented bound (settings.VERITTA_PROFILES_RECHECK_S, its default).
RECHECK_S = 2.0
REQUESTS_PER_SERVER = 8  # spread over the workers of each server


def _profile_versions(tmp_path: Path) -> tuple[Path, Path]:
    """The shipped profiles (1.0.0), and a 1.1.0 of `default` that no longer allows `test_action`."""
    old, new = tmp_path / "profiles-1.0.0", tmp_path / "profiles-1.1.0"
    shutil.copytree(ROOT / "governance" / "profiles", old)
    shutil.copytree(old, new)
    doc = json.loads((new / "default.json").read_text())
    doc["version"] = "1.1.0"
    del doc["actions"]["test_action"]
    (new / "default.json").write_text(json.dumps(doc))
    return old, new


def _answers(servers: list[AppServer]) -> list[tuple[int, tuple[str, ...]]]:
    """What each server answers to `test_action`, several times each."""
    answers = []
    for server in servers:
        for _ in range(REQUESTS_PER_SERVER):
            response = server.post("/process", json={"action": "test_action"}, headers={"X-API-Key": API_KEY})
            answers.append((response.status_code, tuple(response.json().get("reason_codes", []))))
    return answers


def _recorded_profile_hash(server: AppServer) -> str:
    response = server.post("/process", json={"action": "test_action"}, headers={"X-API-Key": API_KEY})
    trace = server.get(f"/admin/audit/traces/{response.json()['trace_id']}", headers={"X-ADMIN-KEY": ADMIN_KEY}).json()
    return trace["records"][0]["profile_hash"]


def _load(env: dict[str, str], directory: Path, lock: str) -> str:
    """The operator's step: `governance load-profiles` from `directory`, with `lock` in the environment."""
    result = manage({**env, "VERITTA_PROFILES_DIR": str(directory), "VERITTA_PROFILES_FINGERPRINT": lock}, "governance", "load-profiles")
    return result.stdout


def _two_servers(start_app_server, directory: Path, lock: str) -> list[AppServer]:
    env = {"VERITTA_PROFILES_DIR": str(directory), "VERITTA_PROFILES_FINGERPRINT": lock}
    first = start_app_server(workers=2, env=env)
    second = start_app_server(workers=2, env=env, database_url=first.database_url, prepare=False)
    return [first, second]


def test_a_new_version_accepted_by_the_lock_is_enforced_by_both_servers_and_rolled_back(start_app_server, tmp_path):
    old, new = _profile_versions(tmp_path)
    old_value, new_value = shipped_fingerprint(old), shipped_fingerprint(new)
    lock = f"{old_value},{new_value}"  # step 1: every server locked to both sets
    servers = _two_servers(start_app_server, old, lock)
    assert set(_answers(servers)) == {(200, ())}

    loaded = _load(servers[0].env, new, lock)  # step 2
    assert "1 activated (default 1.1.0; 1 never loaded before)" in loaded and loaded.split()[-1] == new_value
    time.sleep(RECHECK_S)
    assert set(_answers(servers)) == {(403, ("PROFILE_ACTION_MISMATCH",))}
    new_hash = profile_hash(json.loads((new / "default.json").read_text()))
    assert [_recorded_profile_hash(s) for s in servers] == [new_hash, new_hash]
    assert servers[1].manage("check").returncode == 0

    rolled_back = _load(servers[0].env, old, lock)  # rollback: the old files again
    assert "1 activated (default 1.0.0; 0 never loaded before)" in rolled_back and rolled_back.split()[-1] == old_value
    time.sleep(RECHECK_S)
    assert set(_answers(servers)) == {(200, ())}
    old_hash = profile_hash(json.loads((old / "default.json").read_text()))
    assert [_recorded_profile_hash(s) for s in servers] == [old_hash, old_hash]


def test_a_new_version_the_servers_are_not_locked_to_is_refused_by_both_and_by_check(start_app_server, tmp_path):
    old, new = _profile_versions(tmp_path)
    old_value, new_value = shipped_fingerprint(old), shipped_fingerprint(new)
    servers = _two_servers(start_app_server, old, old_value)

    # Loading a set the lock does not accept changes nothing: no half-applied change.
    with pytest.raises(subprocess.CalledProcessError) as refused:
        _load(servers[0].env, new, old_value)
    assert "not loaded, nothing changed" in refused.value.stderr
    time.sleep(RECHECK_S)
    assert set(_answers(servers)) == {(200, ())}

    # An operator whose own environment already accepts it (the servers were not
    # restarted with the new lock): both servers refuse to serve, and so does check.
    _load(servers[0].env, new, f"{old_value},{new_value}")
    time.sleep(RECHECK_S)
    assert set(_answers(servers)) == {(503, ("PROFILES_NOT_SERVABLE",))}
    check = servers[1].manage("check", check=False)
    assert check.returncode != 0 and f"active set hashes to {new_value}" in check.stderr

    _load(servers[0].env, old, old_value)  # rollback
    time.sleep(RECHECK_S)
    assert set(_answers(servers)) == {(200, ())}
    assert servers[1].manage("check").returncode == 0

"""Missing or mismatched configuration: `manage.py check` and the server
refuse to start, naming the variable; the P1.1 fingerprint lock holds."""

from __future__ import annotations

import pytest

from tests.support.appserver import ROOT, AppServer, fresh_database_url, manage, server_env


@pytest.fixture
def env(tmp_path):
    return server_env(tmp_path, fresh_database_url(tmp_path))


@pytest.mark.parametrize("name", ["VERITTA_BETA_API_KEY", "VERITTA_PROFILES_FINGERPRINT", "VERITTA_ADMIN_API_KEY"])
def test_check_fails_naming_each_missing_required_variable(env, name):
    env[name] = ""
    result = manage(env, "check", check=False)
    assert result.returncode != 0 and name in result.stderr


@pytest.mark.parametrize("name", ["VERITTA_AUDIT_SIGNING_KEY", "DJANGO_SECRET_KEY"])
def test_production_requires_signing_and_secret_keys(env, name):
    env.pop(name)
    result = manage(env, "check", check=False)
    assert result.returncode != 0 and name in result.stderr
    env["DJANGO_DEBUG"] = "true"
    assert manage(env, "check", check=False).returncode == 0  # development: a warning only


def _start_fails(server: AppServer) -> str:
    with pytest.raises(RuntimeError) as failure:
        server.start()
    return str(failure.value)


def test_server_refuses_to_start_without_a_required_variable(tmp_path):
    server = AppServer(tmp_path).prepare()
    server.env["VERITTA_BETA_API_KEY"] = ""
    assert "VERITTA_BETA_API_KEY is not set" in _start_fails(server)


def test_server_refuses_to_start_when_the_fingerprint_lock_does_not_match(tmp_path):
    server = AppServer(tmp_path).prepare()
    server.env["VERITTA_PROFILES_FINGERPRINT"] = "0" * 64
    assert "VERITTA_PROFILES_FINGERPRINT does not match the active policy profiles" in _start_fails(server)


def test_server_refuses_to_start_before_profiles_are_loaded(tmp_path):
    server = AppServer(tmp_path)
    server.manage("migrate", "--no-input", "-v0")
    assert "governance load-profiles" in _start_fails(server)


def test_server_refuses_to_start_on_an_unmigrated_database(tmp_path):
    assert "migrate" in _start_fails(AppServer(tmp_path))


def test_fingerprint_command_prints_only_the_lock_value(env):
    result = manage(env, "governance", "fingerprint")
    assert result.stdout.strip() == env["VERITTA_PROFILES_FINGERPRINT"]
    assert len(result.stdout.strip()) == 64


def test_load_profiles_is_idempotent(env):
    manage(env, "migrate", "--no-input", "-v0")
    first = manage(env, "governance", "load-profiles").stdout
    second = manage(env, "governance", "load-profiles").stdout
    assert first.startswith("profiles: 2 activated (admin 1.1.0, default 1.0.0; 2 never loaded before), 0 unchanged")
    assert second.startswith("profiles: 0 activated, 2 unchanged, 0 deactivated; active fingerprint ")
    assert second.split()[-1] == env["VERITTA_PROFILES_FINGERPRINT"]


def test_changed_profile_file_without_version_bump_is_refused(env, tmp_path):
    import json
    import shutil

    profiles = tmp_path / "profiles"
    shutil.copytree(ROOT / "governance" / "profiles", profiles)
    env["VERITTA_PROFILES_DIR"] = str(profiles)
    manage(env, "migrate", "--no-input", "-v0")
    manage(env, "governance", "load-profiles")
    doc = json.loads((profiles / "default.json").read_text())
    doc["limits"]["max_fields"] = 99
    (profiles / "default.json").write_text(json.dumps(doc))
    result = manage(env, "governance", "load-profiles", check=False)
    assert result.returncode != 0 and "without a version bump" in result.stderr


def test_tampered_profile_row_is_refused_at_request_time(api, audit_records):
    from governance.models import PolicyProfile
    from governance.selectors import profile_cache_clear

    PolicyProfile.objects.filter(profile_id="default").update(document={"profile_id": "default", "actions": {}})
    profile_cache_clear()
    response = api.process({"action": "test_action"})
    assert response.status_code == 503 and response.json()["reason_codes"] == ["PROFILES_NOT_SERVABLE"]
    (decision,) = audit_records(response.json()["trace_id"])
    assert decision["decision"] == "DENY" and "does not match its recorded hash" in decision["evidence"]["problem"]


def _profiles_with_an_action_for(executor_id: str, tmp_path) -> tuple[str, str]:
    """A copy of the shipped profiles whose default, bumped to 1.1.0, routes
    `count_me` to `executor_id`; returns (directory, its fingerprint)."""
    import json
    import shutil

    from governance.profiles import shipped_fingerprint

    profiles = tmp_path / "profiles"
    shutil.copytree(ROOT / "governance" / "profiles", profiles)
    doc = json.loads((profiles / "default.json").read_text())
    doc["version"] = "1.1.0"
    doc["actions"]["count_me"] = {"executor": executor_id, "min_executor_version": "1.0.0", "capabilities": [], "fields": {}}
    (profiles / "default.json").write_text(json.dumps(doc))
    return str(profiles), shipped_fingerprint(profiles)


def test_a_profile_naming_an_unregistered_executor_is_refused_by_load_check_and_start(tmp_path):
    directory, value = _profiles_with_an_action_for("counting_v1", tmp_path)
    server = AppServer(tmp_path / "srv", env={"VERITTA_PROFILES_DIR": directory, "VERITTA_PROFILES_FINGERPRINT": value})
    server.manage("migrate", "--no-input", "-v0")
    refused = server.manage("governance", "load-profiles", check=False)
    assert refused.returncode != 0
    assert "not loaded, nothing changed" in refused.stderr and "'counting_v1', which is not registered" in refused.stderr

    # Loaded by a server whose code registers the executor, then served by one that does not:
    with_executor = {**server.env, "VERITTA_EXTRA_EXECUTORS": "tests.executors.CountingExecutor"}
    manage(with_executor, "governance", "load-profiles")
    assert manage(with_executor, "check").returncode == 0
    check = server.manage("check", check=False)
    assert check.returncode != 0 and "'counting_v1', which is not registered" in check.stderr
    assert "'counting_v1', which is not registered" in _start_fails(server)

"""The executor contract of docs/EXECUTORS.md: its worked example runs as
written, registration is by settings, and `governance executors` lists what
is registered."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from governance.profiles import shipped_fingerprint

DOC = Path(__file__).resolve().parents[2] / "docs" / "EXECUTORS.md"


def doc_block(marker: str) -> str:
    """The fenced block that follows `<!-- example:marker -->` in the doc."""
    found = re.search(rf"<!-- example:{marker} -->\n```\w+\n(.*?)\n```", DOC.read_text(), re.S)
    assert found, f"docs/EXECUTORS.md lost its {marker} example"
    return found.group(1)


def serve(settings, directory: Path, profile_text: str, executors: list[str]) -> None:
    """Register `executors` by settings and load `profile_text` as the only profile."""
    from governance.registry import executor_registry
    from governance.selectors import profile_cache_clear
    from governance.services import profiles_load

    profiles = directory / "profiles"
    profiles.mkdir()
    (profiles / "default.json").write_text(profile_text)
    settings.VERITTA_EXECUTORS = [*settings.VERITTA_EXECUTORS, *executors]
    settings.VERITTA_PROFILES_DIR = profiles
    settings.VERITTA_PROFILES_FINGERPRINT = shipped_fingerprint(profiles)
    executor_registry.cache_clear()
    profile_cache_clear()
    profiles_load()


@pytest.fixture
def fresh_registry():
    from governance.registry import executor_registry
    from governance.selectors import profile_cache_clear

    yield
    executor_registry.cache_clear()
    profile_cache_clear()


@pytest.fixture
def worked_example(settings, tmp_path, db, audit_log, fresh_registry):
    """The doc's module on the path, registered by settings, and its profile loaded."""
    (tmp_path / "invoice_executors.py").write_text(doc_block("executor"))
    sys.path.insert(0, str(tmp_path))
    try:
        serve(settings, tmp_path, doc_block("profile"), ["invoice_executors.InvoiceTotalExecutor"])
        yield
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("invoice_executors", None)


def test_worked_example_runs_as_documented(worked_example, audit_records):
    from conftest import ApiClient

    response = ApiClient().process({"action": "invoice_total", "lines_cents": "1200,350"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["result"]["output"] == {"total_cents": 1550, "lines": 2}
    assert body["result"]["executor_id"] == "invoice_total_v1"
    success = audit_records(body["trace_id"])[-1]
    assert success["status"] == "SUCCESS" and success["evidence"] == {"lines": 2}


def test_worked_example_failure_carries_its_own_evidence(worked_example, audit_records):
    from conftest import ApiClient

    response = ApiClient().process({"action": "invoice_total", "lines_cents": "1200,-350"})
    assert response.status_code == 500 and response.json()["reason_codes"] == ["EXECUTOR_FAILED"]
    failed = audit_records(response.json()["trace_id"])[-1]
    assert failed["status"] == "FAILED" and failed["evidence"] == {"problem": "negative_line", "lines": 2}


def test_worked_example_exception_records_only_its_class(worked_example, audit_records):
    from conftest import ApiClient

    response = ApiClient().process({"action": "invoice_total", "lines_cents": "12,abc-not-a-number"})
    failed = audit_records(response.json()["trace_id"])[-1]
    assert failed["evidence"] == {"exc_class": "ValueError"}
    assert "abc-not-a-number" not in json.dumps(failed) + response.content.decode()


def test_executors_command_lists_registered_executors_with_versions_and_capabilities(worked_example, capsys):
    call_command("governance", "executors", "--json")
    listed = {e["executor_id"]: e for e in json.loads(capsys.readouterr().out)}
    assert listed["invoice_total_v1"] == {
        "executor_id": "invoice_total_v1",
        "version": "1.0.0",
        "capabilities": ["invoice.total"],
        "actions": ["invoice_total"],
        "class": "invoice_executors.InvoiceTotalExecutor",
    }
    assert listed["text_process_v1"]["capabilities"] == ["text.transform"]
    call_command("governance", "executors")
    table = capsys.readouterr().out
    assert "invoice_total_v1  1.0.0  capabilities=invoice.total  actions=invoice_total" in table


IMPOSTOR_PROFILE = json.dumps(
    {
        "profile_id": "default",
        "version": "1.0.0",
        "common_fields": {"action": {"type": "string"}},
        "actions": {"impostor": {"executor": "impostor_v1", "fields": {}}},
    }
)


def test_executor_failure_with_a_code_outside_execute_is_refused(settings, tmp_path, db, audit_log, fresh_registry, audit_records):
    """An executor cannot make its failure look like a gate's denial."""
    from conftest import ApiClient

    serve(settings, tmp_path, IMPOSTOR_PROFILE, ["tests.executors.ImpostorExecutor"])
    response = ApiClient().process({"action": "impostor"})
    assert response.status_code == 500 and response.json()["reason_codes"] == ["EXECUTOR_FAILED"]
    failed = audit_records(response.json()["trace_id"])[-1]
    assert failed["evidence"] == {"exc_class": "ExecutorFailure", "code_refused": True}

"""Idempotency-Key on POST /process (issue 19): a retried request runs once,
its first outcome is replayed with a record that points at the original, a
changed body under the same key is refused, and concurrent duplicates on a
two-worker gunicorn server execute once."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest

from conftest import API_KEY
from veritta_site.canonical import digest_of

PROCESS = {"action": "process", "text": "Pay 10 EUR to ACME", "operation": "upper"}


def _key() -> str:
    return f"retry-{uuid.uuid4()}"


def _pending(audit_records, trace_id: str) -> list[dict[str, Any]]:
    return [r for r in audit_records(trace_id) if r["status"] == "PENDING"]


def test_a_retry_with_the_same_key_and_body_is_replayed_not_run_again(api, audit_records):
    key = _key()
    first = api.process(PROCESS, HTTP_IDEMPOTENCY_KEY=key)
    again = api.process(PROCESS, HTTP_IDEMPOTENCY_KEY=key)
    assert first.status_code == 200 and "Idempotent-Replayed" not in first.headers
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    original, replay = first.json(), again.json()
    assert replay["trace_id"] != original["trace_id"]
    # The first outcome, without its output (never stored) but with its digest.
    assert replay["result"] == {
        **{k: v for k, v in original["result"].items() if k != "output"},
        "output_digest": digest_of(original["result"]["output"]),
    }
    assert replay["replay_of"] == {"trace_id": original["trace_id"], "audit": original["audit"]}
    # Ran once: one PENDING, on the original trace; the replay is one decision record.
    assert len(_pending(audit_records, original["trace_id"])) == 1
    (record,) = audit_records(replay["trace_id"])
    assert record["event_type"] == "decision_audit" and record["decision"] == "ALLOW"
    assert record["reason_codes"] == ["IDEMPOTENT_REPLAY"] and "IDEMPOTENCY:replay" in record["matched_rules"]
    assert record["evidence"] == {
        "original_trace_id": original["trace_id"], "http_status": 200, "principal_roles": ["operator"]
    }
    assert replay["audit"]["record_hash"] == record["record_hash"]


def test_the_same_key_with_another_body_is_refused_and_runs_nothing(api, audit_records):
    key = _key()
    first = api.process(PROCESS, HTTP_IDEMPOTENCY_KEY=key)
    changed = api.process({**PROCESS, "text": "Pay 1000 EUR to ACME"}, HTTP_IDEMPOTENCY_KEY=key)
    assert changed.status_code == 422 and changed.json()["reason_codes"] == ["IDEMPOTENCY_KEY_REUSED"]
    records = audit_records(changed.json()["trace_id"])
    assert [(r["decision"], r["gate"]) for r in records] == [("DENY", "idempotency")]
    assert records[0]["evidence"] == {
        "header": "Idempotency-Key", "original_trace_id": first.json()["trace_id"], "principal_roles": ["operator"]
    }


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "caf\u00e9"])
def test_a_malformed_key_is_refused_before_anything_runs(api, audit_records, key):
    response = api.process(PROCESS, HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400 and response.json()["reason_codes"] == ["IDEMPOTENCY_KEY_INVALID"]
    assert not _pending(audit_records, response.json()["trace_id"])


def test_without_a_key_every_request_runs(api, audit_records):
    traces = [api.process(PROCESS).json()["trace_id"] for _ in range(2)]
    assert all(len(_pending(audit_records, t)) == 1 for t in traces)


def test_a_key_past_its_window_runs_again(api, audit_records, settings):
    settings.VERITTA_IDEMPOTENCY_WINDOW_S = 0  # forgotten as soon as it is written
    key = _key()
    traces = [api.process(PROCESS, HTTP_IDEMPOTENCY_KEY=key).json()["trace_id"] for _ in range(2)]
    assert all(len(_pending(audit_records, t)) == 1 for t in traces)


def test_a_failed_execution_is_replayed_as_it_failed(test_profiles, audit_records):
    from conftest import ApiClient

    api, key = ApiClient(), _key()
    first = api.process({"action": "explode"}, HTTP_IDEMPOTENCY_KEY=key)
    again = api.process({"action": "explode"}, HTTP_IDEMPOTENCY_KEY=key)
    assert first.status_code == again.status_code == 500
    assert again.json()["reason_codes"] == ["EXECUTOR_FAILED"] and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["details"] == {"replay_of": {"trace_id": first.json()["trace_id"]}}
    assert not _pending(audit_records, again.json()["trace_id"])


def test_nothing_of_the_key_or_output_is_stored(api):
    from governance.models import IdempotencyKey

    key = _key()
    response = api.process(PROCESS, HTTP_IDEMPOTENCY_KEY=key)
    (row,) = IdempotencyKey.objects.all()
    stored = json.dumps([row.scope_digest, row.input_digest, row.trace_id, row.outcome])
    assert key not in stored and PROCESS["text"].upper() not in stored
    assert response.json()["result"]["output"]["text"] == PROCESS["text"].upper()


# --- through gunicorn: two workers, concurrent duplicates ------------------------------


def _fire_together(server, n: int, body: dict[str, Any], headers: dict[str, str]) -> list[Any]:
    barrier, answers = threading.Barrier(n), [None] * n

    def send(i: int) -> None:
        barrier.wait()
        answers[i] = server.post("/process", json=body, headers=headers)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def _mirror(server) -> list[dict[str, Any]]:
    server.manage("audit", "sequence")  # PostgreSQL: records still in the intake reach the chain and mirror
    return [json.loads(line) for line in (server.tmp / "audit.log").read_text().splitlines()]


def test_concurrent_duplicates_across_two_workers_execute_once(app_server_with_test_profiles):
    """`slow` holds one sync worker for the whole executor timeout (0.5 s): the
    duplicates sent with it are served meanwhile by the other worker, which
    must neither run them nor wait for them."""
    server = app_server_with_test_profiles
    headers = {"X-API-Key": API_KEY, "Idempotency-Key": _key()}
    answers = _fire_together(server, 6, {"action": "slow"}, headers)
    ran = [a for a in answers if "Idempotent-Replayed" not in a.headers and a.status_code != 409]
    assert len(ran) == 1 and ran[0].json()["reason_codes"] == ["EXECUTOR_TIMEOUT"]
    for other in answers:
        if other is ran[0]:
            continue
        codes = other.json()["reason_codes"]
        assert codes == ["IDEMPOTENCY_KEY_IN_PROGRESS"] or (
            codes == ["EXECUTOR_TIMEOUT"] and other.headers["Idempotent-Replayed"] == "true"
        ), codes
    traces = {a.json()["trace_id"] for a in answers}
    pending = [r for r in _mirror(server) if r["trace_id"] in traces and r["status"] == "PENDING"]
    assert [r["trace_id"] for r in pending] == [ran[0].json()["trace_id"]]
    # Once it has finished, a retry is a replay on whichever worker takes it.
    retry = server.post("/process", json={"action": "slow"}, headers=headers)
    assert retry.status_code == 504 and retry.headers["Idempotent-Replayed"] == "true"


def test_through_gunicorn_a_changed_body_is_refused(app_server):
    headers = {"X-API-Key": API_KEY, "Idempotency-Key": _key()}
    first = app_server.post("/process", json=PROCESS, headers=headers)
    again = app_server.post("/process", json=PROCESS, headers=headers)
    changed = app_server.post("/process", json={**PROCESS, "operation": "lower"}, headers=headers)
    assert first.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert changed.status_code == 422 and changed.json()["reason_codes"] == ["IDEMPOTENCY_KEY_REUSED"]
    traces = {r.json()["trace_id"] for r in (first, again, changed)}
    pending = [r for r in _mirror(app_server) if r["trace_id"] in traces and r["status"] == "PENDING"]
    assert len(pending) == 1

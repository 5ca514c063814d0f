"""The proof endpoints and the seeds' audit queries (issue 15), through Django:
who may read what, what each answer proves (checked with the RFC 9162
verifiers of audit.merkle against the signed note), bad input, and the
decision record every call leaves."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from audit import signed_note
from audit.checkpoints import checkpoint_create, public_vkey
from audit.merkle import leaf_hash, verify_consistency, verify_inclusion_hash
from audit.proofs import check_proof
from conftest import ADMIN_KEY, bearer

SMOKE = {"action": "test_action", "event_type": "test_event"}


@pytest.fixture
def second_key(db):
    import io

    out = io.StringIO()
    call_command("sessions", "create-key", "--name", "other", stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


ROUTES = {"trace_id": "trace", "seq": "seq", "record_hash": "record", "entry_hash": "entry"}


def inclusion(tree_size: int | None = None, **selector: object) -> str:
    """The inclusion proof route for one receipt field (and a checkpoint size)."""
    (name, value), = selector.items()
    return f"/audit/proofs/inclusion/{ROUTES[name]}/{value}" + (f"?tree_size={tree_size}" if tree_size is not None else "")


def signed(note: str) -> signed_note.Checkpoint:
    return signed_note.parse_checkpoint(signed_note.verify_note(note, public_vkey()))


def test_any_valid_credential_reads_the_latest_checkpoint_and_it_is_signed(api, open_session):
    api.process(SMOKE)
    checkpoint_create()
    session = open_session()
    for headers in ({"HTTP_X_API_KEY": api_key()}, bearer(session), {"HTTP_X_ADMIN_KEY": ADMIN_KEY}):
        response = api.get("/audit/checkpoints/latest", **headers)
        assert response.status_code == 200, response.content
        body = response.json()
        assert signed(body["note"]).size == body["tree_size"] and body["vkey"] == public_vkey()
    assert api.get("/audit/checkpoints/latest").status_code == 403
    assert api.get("/audit/checkpoints/latest", HTTP_X_API_KEY="wrong").json()["reason_codes"] == ["GATE_DENIED_INVALID_API_KEY"]


def api_key() -> str:
    from conftest import API_KEY

    return API_KEY


def test_a_client_proves_its_own_request_by_each_receipt_field(api, audit_records):
    answer = api.process(SMOKE).json()
    trace_id, receipt = answer["trace_id"], answer["audit"]
    api.process(SMOKE)  # more records after it: a real audit path
    checkpoint_create()
    selectors = [{"trace_id": trace_id}, {"seq": receipt["seq"]}, {"record_hash": receipt["record_hash"]}]
    for selector in selectors:
        response = api.get(inclusion(**selector), HTTP_X_API_KEY=api_key())
        assert response.status_code == 200, (selector, response.content)
        document = response.json()
        assert check_proof(document, vkey=public_vkey()) == []
        checkpoint = signed(document["checkpoint"])
        for item in document["records"]:
            assert item["body"]["trace_id"] == trace_id
            assert verify_inclusion_hash(
                leaf_hash(bytes.fromhex(item["record_hash"])), item["leaf_index"], checkpoint.size,
                [bytes.fromhex(h) for h in item["proof"]], checkpoint.root,
            )  # fmt: skip
    assert [r["record_hash"] for r in api.get(inclusion(seq=receipt["seq"]), HTTP_X_API_KEY=api_key()).json()["records"]] == [receipt["record_hash"]]


def test_another_clients_records_are_not_found_but_the_admin_proves_any(api, second_key):
    mine = api.process(SMOKE).json()
    theirs = api.process(SMOKE, key=second_key).json()
    checkpoint_create()
    for selector in ({"trace_id": theirs["trace_id"]}, {"seq": theirs["audit"]["seq"]}, {"record_hash": theirs["audit"]["record_hash"]}):
        refused = api.get(inclusion(**selector), HTTP_X_API_KEY=api_key())
        assert refused.status_code == 404 and refused.json()["reason_codes"] == ["NOT_FOUND"]
    # ... and the other client, the other way round
    assert api.get(inclusion(trace_id=mine["trace_id"]), HTTP_X_API_KEY=second_key).status_code == 404
    assert api.get(inclusion(trace_id=theirs["trace_id"]), HTTP_X_API_KEY=second_key).status_code == 200
    admin = api.get(inclusion(trace_id=theirs["trace_id"]), HTTP_X_ADMIN_KEY=ADMIN_KEY)
    assert admin.status_code == 200 and check_proof(admin.json(), vkey=public_vkey()) == []


def test_a_session_sees_the_records_it_made_not_those_of_its_key(api, open_session):
    session = open_session()
    by_session = api.post("/process", data=SMOKE, content_type="application/json", **bearer(session)).json()
    by_key = api.process(SMOKE).json()
    checkpoint_create()
    ok = api.get(inclusion(trace_id=by_session["trace_id"]), **bearer(session))
    assert ok.status_code == 200 and check_proof(ok.json(), vkey=public_vkey()) == []
    assert api.get(inclusion(trace_id=by_key["trace_id"]), **bearer(session)).status_code == 404


def test_proof_against_a_given_checkpoint_and_one_too_small(api):
    first = api.process(SMOKE).json()
    old = checkpoint_create()
    api.process(SMOKE)
    new = checkpoint_create()
    at_old = api.get(inclusion(trace_id=first["trace_id"], tree_size=old.tree_size), HTTP_X_API_KEY=api_key())
    assert at_old.json()["tree_size"] == old.tree_size and check_proof(at_old.json(), vkey=public_vkey()) == []
    latest = api.get(inclusion(trace_id=first["trace_id"]), HTTP_X_API_KEY=api_key()).json()
    assert latest["tree_size"] == new.tree_size
    later = api.process(SMOKE).json()
    too_small = api.get(inclusion(trace_id=later["trace_id"], tree_size=new.tree_size), HTTP_X_API_KEY=api_key())
    assert too_small.status_code == 404 and too_small.json()["details"]["problem"] == "does_not_cover_record"
    unknown = api.get(inclusion(seq=1, tree_size=new.tree_size + 1), HTTP_X_API_KEY=api_key())
    assert unknown.status_code == 404 and unknown.json()["details"]["object"] == "checkpoint"


@pytest.mark.parametrize("params", [{"tree_size": 0}, {"tree_size": -1}, {"tree_size": "x"}, {"colour": "red"}])
def test_bad_inclusion_parameters_are_400_and_recorded(api, params, audit_records):
    response = api.get(inclusion(seq=1), data=params, HTTP_X_API_KEY=api_key())
    assert response.status_code == 400 and response.json()["reason_codes"] == ["VALIDATION_ERROR"]
    last = audit_records()[-1]
    assert (last["endpoint"], last["decision"], last["gate"]) == ("GET /audit/proofs/inclusion/seq/{seq}", "DENY", "P2")


@pytest.mark.parametrize(
    "path",
    ["trace/x", "trace/" + "0" * 36, "record/ABC", "record/" + "A" * 64, "entry/" + "g" * 64, "seq/0", "nothing/1"],
)
def test_malformed_selectors_name_no_record(api, path, audit_records):
    api.process(SMOKE)
    checkpoint_create()
    response = api.get(f"/audit/proofs/inclusion/{path}", HTTP_X_API_KEY=api_key())
    assert response.status_code == 404 and response.json()["reason_codes"] == ["NOT_FOUND"]


def test_consistency_proof_between_two_checkpoints_verifies(api):
    for _ in range(3):
        api.process(SMOKE)
    old = checkpoint_create()
    for _ in range(4):
        api.process(SMOKE)
    new = checkpoint_create()
    response = api.get("/audit/proofs/consistency", data={"first": old.tree_size}, HTTP_X_API_KEY=api_key())
    assert response.status_code == 200, response.content
    body = response.json()
    a, b = signed(body["first"]["note"]), signed(body["second"]["note"])
    assert (a.size, b.size) == (old.tree_size, new.tree_size)
    proof = [bytes.fromhex(h) for h in body["proof"]]
    assert verify_consistency(a.size, b.size, proof, a.root, b.root)
    assert not verify_consistency(a.size, b.size, proof[::-1], a.root, b.root)
    same = api.get("/audit/proofs/consistency", data={"first": old.tree_size, "second": old.tree_size}, HTTP_X_API_KEY=api_key()).json()
    assert same["proof"] == []
    backwards = api.get("/audit/proofs/consistency", data={"first": new.tree_size, "second": old.tree_size}, HTTP_X_API_KEY=api_key())
    assert backwards.status_code == 400
    missing = api.get("/audit/proofs/consistency", data={"first": old.tree_size + 1}, HTTP_X_API_KEY=api_key())
    assert missing.status_code == 404


def test_every_proof_call_leaves_one_decision_record(api, audit_records):
    api.process(SMOKE)
    checkpoint_create()
    before = len(audit_records())
    api.get("/audit/checkpoints/latest", HTTP_X_API_KEY=api_key())
    api.get(inclusion(seq=1), HTTP_X_API_KEY=api_key())
    api.get(inclusion(seq=1), HTTP_X_API_KEY="wrong")
    records = audit_records()[before:]
    assert [(r["endpoint"], r["decision"], r["http_status"]) for r in records] == [
        ("GET /audit/checkpoints/latest", "ALLOW", 200),
        ("GET /audit/proofs/inclusion/seq/{seq}", "ALLOW", 200),
        ("GET /audit/proofs/inclusion/seq/{seq}", "DENY", 403),
    ]
    assert records[0]["actor"] == {"kind": "api_key", "id": "bootstrap"}


def test_traces_by_time_actor_and_decision_paginate(admin, api, second_key):
    for _ in range(3):
        api.process(SMOKE)
    api.process(SMOKE, key=second_key)
    api.process(SMOKE, key="wrong")
    seen, cursor = [], None
    while True:
        page = admin.admin_get("/admin/audit/traces", actor="bootstrap", decision="ALLOW", limit=2, **({"cursor": cursor} if cursor else {})).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 3 and all(r["event_type"] == "decision_audit" and r["endpoint"] == "POST /process" for r in seen)
    denied = admin.admin_get("/admin/audit/traces", decision="DENY").json()["items"]
    assert [r["reason_codes"] for r in denied] == [["GATE_DENIED_INVALID_API_KEY"]]
    assert admin.admin_get("/admin/audit/traces", until="2000-01-01T00:00:00Z").json()["items"] == []
    assert admin.admin_get("/admin/audit/traces", decision="MAYBE").status_code == 400


def test_violations_are_grouped_by_the_kind_of_control(admin, api, open_session):
    api.process(SMOKE, key="wrong")  # authentication
    api.process({"action": "not_in_profile"})  # policy
    api.process(SMOKE, raw=b"{not json")  # payload
    session = open_session()
    api.post("/process", data=SMOKE, content_type="application/json", **bearer(session, token="vs_" + "x" * 40))  # session
    body = admin.admin_get("/admin/audit/violations").json()
    assert body["counts"]["authentication"] == 1 and body["counts"]["policy"] == 1
    assert body["counts"]["payload"] == 1 and body["counts"]["session"] == 1
    assert body["counts"]["rate_limit"] == 0 and body["counts"]["registry"] == 0
    policy = admin.admin_get("/admin/audit/violations", kind="policy").json()
    assert [(i["control_kind"], i["record"]["reason_codes"]) for i in policy["items"]] == [("policy", ["PROFILE_ACTION_MISMATCH"])]
    first = admin.admin_get("/admin/audit/violations", limit=1).json()
    second = admin.admin_get("/admin/audit/violations", limit=1, cursor=first["next_cursor"]).json()
    assert first["items"][0]["record"]["seq"] > second["items"][0]["record"]["seq"]
    assert api.get("/admin/audit/violations", HTTP_X_API_KEY=api_key()).status_code == 403  # a client key is no admin key


@pytest.mark.parametrize(
    "path",
    ["/audit/checkpoints/99999999999999999999999", "/audit/proofs/inclusion/seq/99999999999999999999999",
     "/audit/proofs/consistency?first=99999999999999999999999", "/audit/proofs/inclusion/seq/1?tree_size=9223372036854775808"],
)  # fmt: skip
def test_numbers_beyond_the_seq_range_are_refused_not_500(api, path):
    response = api.get(path, HTTP_X_API_KEY=api_key())
    assert response.status_code in (400, 404), response.content

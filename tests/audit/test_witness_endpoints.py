"""The log's side of witnesses, through Django: which cosignatures it takes
(only from VERITTA_AUDIT_WITNESSES, only if they verify on that checkpoint),
how it serves them, and the refusal report that raises the alert."""

from __future__ import annotations

import json

import pytest

from audit import signed_note
from audit.checkpoints import checkpoint_create
from audit.models import Cosignature
from conftest import API_KEY

SMOKE = {"action": "test_action", "event_type": "test_event"}
SEED, OTHER = b"\x05" * 32, b"\x06" * 32
NAME = "witness.test/w1"


@pytest.fixture
def checkpoint(api, settings):
    settings.VERITTA_AUDIT_WITNESSES = [signed_note.cosigner_vkey(NAME, signed_note.public_key_from_seed(SEED))]
    api.process(SMOKE)
    return checkpoint_create()


def post(api, path, body, **headers):
    return api.post(path, data=json.dumps(body), content_type="application/json", HTTP_X_API_KEY=API_KEY, **headers)


def line(checkpoint, *, seed=SEED, name=NAME, body=None):
    return signed_note.cosignature_line(body or signed_note.note_text(checkpoint.note), name, seed, timestamp=1764800000)


def test_a_configured_witness_cosignature_is_kept_and_served(api, checkpoint):
    url = f"/audit/checkpoints/{checkpoint.tree_size}/cosignatures"
    taken = post(api, url, {"cosignature": line(checkpoint)})
    assert taken.status_code == 201, taken.content
    assert taken.json()["witness"] == NAME and taken.json()["cosigned_at"].startswith("2025-12-03")
    assert post(api, url, {"cosignature": line(checkpoint)}).status_code == 201  # idempotent
    assert Cosignature.objects.count() == 1
    note = api.get("/audit/checkpoints/latest", HTTP_X_API_KEY=API_KEY).json()["note"]
    vkey = signed_note.cosigner_vkey(NAME, signed_note.public_key_from_seed(SEED))
    assert signed_note.verify_cosignature(note, vkey) == 1764800000


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda cp: line(cp, seed=OTHER), 403, "WITNESS_UNKNOWN"),  # same name, another key
        (lambda cp: line(cp, name="stranger.test/w9"), 403, "WITNESS_UNKNOWN"),
        (lambda cp: line(cp, body=signed_note.checkpoint_body("veritta.local/audit", 99, bytes(32))), 403, "COSIGNATURE_INVALID"),
        (lambda cp: "— witness.test/w1 not-base64\n", 403, "COSIGNATURE_INVALID"),
        (lambda cp: "no signature line", 403, "COSIGNATURE_INVALID"),
    ],
)
def test_a_cosignature_that_is_not_a_witness_s_valid_one_is_refused_and_changes_nothing(api, checkpoint, audit_records, make, status, code):
    refused = post(api, f"/audit/checkpoints/{checkpoint.tree_size}/cosignatures", {"cosignature": make(checkpoint)})
    assert refused.status_code == status and refused.json()["reason_codes"] == [code]
    assert Cosignature.objects.count() == 0
    last = audit_records()[-1]
    assert (last["endpoint"], last["decision"], last["reason_codes"]) == ("POST /audit/checkpoints/{tree_size}/cosignatures", "DENY", [code])


def test_bad_bodies_are_400(api, checkpoint):
    url = f"/audit/checkpoints/{checkpoint.tree_size}/cosignatures"
    assert api.post(url, data=b"{not json", content_type="application/json", HTTP_X_API_KEY=API_KEY).json()["reason_codes"] == ["INVALID_JSON"]
    assert post(api, url, {"cosignature": line(checkpoint), "extra": 1}).json()["reason_codes"] == ["VALIDATION_ERROR"]
    assert post(api, "/audit/checkpoints/999/cosignatures", {"cosignature": line(checkpoint)}).status_code == 404
    assert api.post(url, data=json.dumps({"cosignature": line(checkpoint)}), content_type="application/json").status_code == 403


def test_a_refusal_report_raises_the_alert_only_for_a_configured_witness(api, checkpoint, caplog):
    with caplog.at_level("WARNING", logger="veritta.alerts"):
        told = post(api, "/audit/witness-refusals", {"witness": NAME, "tree_size": checkpoint.tree_size, "problem": "fork"})
    assert told.status_code == 202
    assert [r.getMessage() for r in caplog.records] == [f"alert: witness {NAME} refused to cosign checkpoint {checkpoint.tree_size}: fork"]
    stranger = post(api, "/audit/witness-refusals", {"witness": "stranger", "tree_size": 1, "problem": "fork"})
    assert stranger.status_code == 403 and stranger.json()["reason_codes"] == ["WITNESS_UNKNOWN"]
    assert post(api, "/audit/witness-refusals", {"witness": NAME, "tree_size": 1, "problem": "boredom"}).status_code == 400


def test_a_malformed_witness_key_in_the_settings_fails_the_system_check(settings):
    from audit.witnesses import witnesses_check

    settings.VERITTA_AUDIT_WITNESSES = ["not-a-key"]
    assert [e.id for e in witnesses_check()] == ["audit.E003"]
    settings.VERITTA_AUDIT_WITNESSES = [signed_note.vkey(NAME, signed_note.public_key_from_seed(SEED))]  # a log key, not a cosigner key
    assert [e.id for e in witnesses_check()] == ["audit.E003"]

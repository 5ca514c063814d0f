"""Tamper with a real database the way an attacker with SQL access would
(dropping the append-only triggers first), then see `audit verify` name the
exact seq and kind of each change, and find nothing on an untouched log."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.db import connection

from audit.records import record_hash
from audit.triggers import drop_sql
from veritta_site.canonical import canonical_json

SMOKE = {"action": "test_action", "event_type": "test_event"}


def verify(*args: str) -> dict:
    out = io.StringIO()
    try:
        call_command("audit", "verify", "--json", *args, stdout=out)
    except SystemExit as exit_:
        assert exit_.code == 1
    return json.loads(out.getvalue())


def findings(report: dict) -> list[tuple[int, str]]:
    return [(p["seq"], p["kind"]) for p in report["problems"]]


def sql(statement: str, params: list | None = None) -> list:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])
        return cursor.fetchall() if cursor.description else []


def body_of(seq: int) -> dict:
    return json.loads(sql("SELECT body FROM audit_auditrecord WHERE seq = %s", [seq])[0][0])


def write_body(seq: int, record: dict) -> None:
    sql("UPDATE audit_auditrecord SET body = %s WHERE seq = %s", [canonical_json(record).decode(), seq])


@pytest.fixture
def log(api):
    """Nine records (three successful requests), sealed by a checkpoint; triggers dropped."""
    for _ in range(3):
        assert api.process(SMOKE).status_code == 200
    call_command("audit", "checkpoint", stdout=io.StringIO())
    for statement in drop_sql(connection.vendor):
        sql(statement)
    return api


def test_untouched_log_verifies_clean(log):
    report = verify()
    assert report["ok"] and report["records"] == 9 and report["problems"] == []
    assert report["signatures_checked"] and report["checkpoints_checked"] == 1  # one checkpoint...
    assert report["checkpoint_copies"] == 2  # ...read from the database and from its file


def test_changed_field_is_content_at_its_seq(log):
    record = body_of(4)
    record["decision"] = "DENY"
    write_body(4, record)
    assert findings(verify()) == [(4, "content")]


def test_changed_index_column_is_content_at_its_seq(log):
    sql("UPDATE audit_auditrecord SET decision = 'DENY' WHERE seq = 7")
    assert findings(verify()) == [(7, "content")]


def test_deleted_row_is_a_gap_at_its_seq(log):
    sql("DELETE FROM audit_auditrecord WHERE seq = 5")
    found = findings(verify())
    # 5 was a PENDING: its SUCCESS at 6 lacks it. Record 6 itself is intact,
    # so its link is not blamed (exact blame, issue 18).
    assert found == [(5, "gap"), (6, "incomplete")]


def test_inserted_row_breaks_the_link_at_its_seq(log):
    forged = body_of(9)
    forged.update(seq=10, prev_hash="f" * 64, trace_id="00000000-0000-4000-8000-000000000000")
    forged["record_hash"] = record_hash(forged)
    sql(
        "INSERT INTO audit_auditrecord (seq, record_hash, prev_hash, event_type, ts_utc, trace_id, body)"
        " SELECT 10, %s, %s, event_type, ts_utc, %s, %s FROM audit_auditrecord WHERE seq = 9",
        [forged["record_hash"], forged["prev_hash"], forged["trace_id"], canonical_json(forged).decode()],
    )
    assert (10, "link") in findings(verify())


def test_swapped_rows_are_link_at_both_seqs(log):
    three, four = body_of(3), body_of(4)
    sql("UPDATE audit_auditrecord SET seq = -1 WHERE seq = 3")
    sql("UPDATE audit_auditrecord SET seq = 3 WHERE seq = 4")
    sql("UPDATE audit_auditrecord SET seq = 4 WHERE seq = -1")
    assert three and four
    # Each row holds another record (link), whose hash is not the one sealed
    # at its seq (signature); nothing else is blamed (issue 18: exact blame).
    assert findings(verify()) == [(3, "link"), (3, "signature"), (4, "link"), (4, "signature")]


def test_rechained_log_after_an_edit_is_caught_at_the_edited_seq(log):
    # The attacker edits seq 4 and recomputes every hash and link after it,
    # columns included: internally consistent, but not what was sealed.
    prev = body_of(3)["record_hash"]
    for seq in range(4, 10):
        record = body_of(seq)
        if seq == 4:
            record["decision"] = "DENY"
        record["prev_hash"] = prev
        record["record_hash"] = record_hash(record)
        prev = record["record_hash"]
        write_body(seq, record)
        sql(
            "UPDATE audit_auditrecord SET record_hash = %s, prev_hash = %s, decision = %s WHERE seq = %s",
            [record["record_hash"], record["prev_hash"], record["decision"], seq],
        )
    found = findings(verify())
    assert found[0] == (4, "signature")  # differs from the hash sealed in the external checkpoint
    assert (9, "signature") in found  # the signed root no longer matches


def test_cut_tail_after_checkpoint_is_a_gap(log):
    sql("DELETE FROM audit_auditrecord WHERE seq > 6")
    assert findings(verify()) == [(7, "gap")]


def test_forged_database_checkpoint_fails_its_signature(log, settings):
    from audit import signed_note

    other_seed = b"\x01" * 32
    body = signed_note.checkpoint_body(settings.VERITTA_AUDIT_ORIGIN, 9, b"\x00" * 32)
    forged = signed_note.sign_note(body, settings.VERITTA_AUDIT_ORIGIN, other_seed)
    sql("UPDATE audit_checkpoint SET note = %s WHERE tree_size = 9", [forged])
    assert findings(verify()) == [(9, "signature")]


def test_forged_external_checkpoint_file_fails_its_signature(log, settings):
    note_file = settings.VERITTA_AUDIT_CHECKPOINT_DIR / "000000000000009.note"
    text = note_file.read_text()
    note_file.write_text(text.replace("\n9\n", "\n8\n", 1))
    assert (8, "signature") in findings(verify())


def test_pending_without_terminal_is_incomplete_not_tampering(log, settings):
    settings.VERITTA_EXECUTOR_TIMEOUT_S = -10  # nothing counts as still running
    sql("DELETE FROM audit_auditrecord WHERE seq = 9")  # the SUCCESS of the last request
    assert findings(verify()) == [(8, "incomplete"), (9, "gap")]

"""Signed checkpoints every N records and on demand, outside the database
too; exports verified with no database; inclusion proofs checked offline."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from django.core.management import call_command

from audit import signed_note
from audit.checkpoints import public_vkey
from audit.models import Checkpoint

SMOKE = {"action": "test_action", "event_type": "test_event"}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("audit", *args, stdout=out)
    return out.getvalue()


def test_checkpoint_every_n_records_is_signed_and_written_outside(api, settings):
    settings.VERITTA_AUDIT_CHECKPOINT_EVERY = 4
    for _ in range(4):  # 12 records: checkpoints at 4, 8, 12
        api.process(SMOKE)
    assert sorted(Checkpoint.objects.values_list("tree_size", flat=True)) == [4, 8, 12]
    for size in (4, 8, 12):
        note = (settings.VERITTA_AUDIT_CHECKPOINT_DIR / f"{size:015d}.note").read_text()
        body = signed_note.verify_note(note, public_vkey())
        assert signed_note.parse_checkpoint(body).size == size
    hashes = (settings.VERITTA_AUDIT_CHECKPOINT_DIR / f"{8:015d}.hashes").read_text().split()
    assert len(hashes) == 4


def test_checkpoint_root_is_the_rfc6962_root_of_record_hashes(api):
    from audit.merkle import tree_root
    from audit.models import AuditRecord

    api.process(SMOKE)
    run("checkpoint")
    checkpoint = Checkpoint.objects.get()
    leaves = [bytes.fromhex(h) for h in AuditRecord.objects.order_by("seq").values_list("record_hash", flat=True)]
    assert checkpoint.root_hash == tree_root(leaves).hex()


def test_keygen_prints_seed_and_public_key(capsys):
    out, err = io.StringIO(), io.StringIO()
    call_command("audit", "keygen", stdout=out, stderr=err)
    import base64

    assert len(base64.b64decode(out.getvalue().strip())) == 32
    assert "+" in err.getvalue()


def test_export_then_verify_file_with_no_database(api, tmp_path, settings):
    for _ in range(3):
        api.process(SMOKE)
    run("checkpoint")
    export = tmp_path / "export.jsonl"
    call_command("audit", "export", "--output", str(export), stderr=io.StringIO())
    assert len(export.read_text().splitlines()) == 9
    # A separate process with no database configured at all.
    result = subprocess.run(
        [sys.executable, "manage.py", "audit", "verify", "--json", "--file", str(export),
         "--checkpoints", str(settings.VERITTA_AUDIT_CHECKPOINT_DIR), "--vkey", public_vkey()],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "VERITTA_ENV_FILE": "",
                                            "DATABASE_URL": "sqlite:////nonexistent/dir/db.sqlite3"},
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr
    assert report["ok"] and report["records"] == 9 and report["signatures_checked"]
    lines = export.read_text().splitlines()
    record = json.loads(lines[4])
    record["decision"] = "DENY"
    lines[4] = json.dumps(record)
    export.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [sys.executable, "manage.py", "audit", "verify", "--json", "--file", str(export)],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "VERITTA_ENV_FILE": ""},
    )  # fmt: skip
    assert result.returncode == 1
    assert [(p["seq"], p["kind"]) for p in json.loads(result.stdout)["problems"]] == [(5, "content")]


def test_export_respects_since_and_until(api, tmp_path):
    api.process(SMOKE)
    export = tmp_path / "e.jsonl"
    call_command("audit", "export", "--since", "2000-01-01", "--until", "2000-01-02", "--output", str(export), stderr=io.StringIO())
    assert export.read_text() == ""


def test_prove_gives_an_inclusion_proof_checkable_offline(api, tmp_path):
    for _ in range(5):
        api.process(SMOKE)
    trace = api.process(SMOKE).json()["trace_id"]
    api.process(SMOKE)
    run("checkpoint")
    proof = json.loads(run("prove", trace))
    assert [r["seq"] for r in proof["records"]] == [16, 17, 18]
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof))
    assert "OK" in run("check-proof", str(path))
    proof["records"][1]["record_hash"] = "0" * 64
    path.write_text(json.dumps(proof))
    with pytest.raises(SystemExit):
        run("check-proof", str(path))


def test_prove_turns_a_receipt_into_a_proof_of_its_record(api, tmp_path):
    answer = api.process({"action": "process", "event_type": "test_event", "text": "Hello World"}).json()
    receipt = tmp_path / "receipt.json"
    receipt.write_text(json.dumps(answer["audit"]))
    api.process(SMOKE)
    run("checkpoint")
    proof = json.loads(run("prove", "--receipt", str(receipt)))
    assert proof["entry_hash"] == answer["audit"]["entry_hash"] and proof["trace_id"] == answer["trace_id"]
    assert [(r["seq"], r["record_hash"]) for r in proof["records"]] == [(answer["audit"]["seq"], answer["audit"]["record_hash"])]
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof))
    assert "OK" in run("check-proof", str(path))
    # The record proven must be the receipt's: another entry hash is refused.
    proof["entry_hash"] = "0" * 64
    path.write_text(json.dumps(proof))
    with pytest.raises(SystemExit):
        run("check-proof", str(path))


def test_prove_without_a_covering_checkpoint_says_what_to_do(api):
    from django.core.management import CommandError

    trace = api.process(SMOKE).json()["trace_id"]
    with pytest.raises(CommandError, match="audit checkpoint"):
        run("prove", trace)


def test_trace_prints_the_timeline(api):
    trace = api.process(SMOKE).json()["trace_id"]
    out = run("trace", trace)
    assert "ALLOW" in out and "PENDING" in out and "SUCCESS" in out
    assert len(json.loads(run("trace", trace, "--json"))) == 3


def test_streamed_proofs_equal_the_reference_audit_paths(api):
    from audit.merkle import inclusion_proof_from_hashes, leaf_hash
    from audit.models import AuditRecord
    from audit.proofs import _inclusion_proofs

    for _ in range(13):  # 39 records: an unbalanced tree
        api.process(SMOKE)
    hashes = [leaf_hash(bytes.fromhex(h)) for h in AuditRecord.objects.order_by("seq").values_list("record_hash", flat=True)]
    for size in (1, 2, 7, 32, 39):
        indexes = sorted({0, size // 2, size - 1})
        assert _inclusion_proofs(indexes, size) == [inclusion_proof_from_hashes(i, hashes[:size]) for i in indexes]

"""`audit verify` says exactly what it checked: one checkpoint read from the
database and from its file is one checkpoint (two copies), and `--file` uses
the configured verifier key as the database check does."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

SMOKE = {"action": "test_action", "event_type": "test_event"}


def _verify(*args: str, exit_status: int = 0) -> str:
    out = io.StringIO()
    try:
        call_command("audit", "verify", *args, stdout=out, stderr=io.StringIO())
        status = 0
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    assert status == exit_status, out.getvalue()
    return out.getvalue()


@pytest.fixture
def sealed_export(api, tmp_path):
    for _ in range(2):
        assert api.process(SMOKE).status_code == 200
    call_command("audit", "checkpoint", stdout=io.StringIO())
    export = tmp_path / "export.jsonl"
    call_command("audit", "export", "--output", str(export), stderr=io.StringIO())
    return export


def test_one_checkpoint_in_the_database_and_its_file_counts_once(sealed_export):
    assert "1 checkpoints checked (2 copies: database and files)\n" in _verify()


def test_verify_file_checks_signatures_with_the_configured_key(sealed_export, settings):
    assert settings.VERITTA_AUDIT_SIGNING_KEY
    out = _verify("--file", str(sealed_export), "--checkpoints", str(settings.VERITTA_AUDIT_CHECKPOINT_DIR))
    assert "1 checkpoints checked\n" in out and "NOT checked" not in out and "OK: the audit trail verifies" in out


def test_verify_file_without_checkpoints_says_how_to_give_them(sealed_export):
    out = _verify("--file", str(sealed_export), exit_status=3)  # consistent, but unanchored
    assert "0 checkpoints checked (none found; with --file, give them with --anchor EXPORT.anchor or --checkpoints DIR)" in out
    assert "UNANCHORED: consistent, but records from 1 are not tied to a verified signed checkpoint" in out


def test_verify_file_without_a_key_says_signatures_were_not_checked(sealed_export, settings):
    settings.VERITTA_AUDIT_SIGNING_KEY = ""
    out = _verify("--file", str(sealed_export), "--checkpoints", str(settings.VERITTA_AUDIT_CHECKPOINT_DIR), exit_status=3)
    assert "1 checkpoints checked (signatures NOT checked: no verifier key" in out
    assert "UNANCHORED" in out  # an unchecked signature anchors nothing


def test_database_verify_says_which_records_no_checkpoint_seals_yet(sealed_export, api):
    assert "not yet sealed" not in _verify()  # all six sealed by the checkpoint
    assert api.process(SMOKE).status_code == 200
    out = _verify()
    assert "records 7..9 come after the newest verified checkpoint: checked link by link, not yet sealed" in out
    assert "OK: the audit trail verifies" in out  # the database is the log itself

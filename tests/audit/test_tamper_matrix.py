"""The tamper matrix (issue 18): every way of changing a sealed log we know,
applied to an export (checked offline, with its anchor or with the checkpoint
directory) and to the live database (triggers dropped, as an attacker with SQL
access would), on whichever engine the suite runs on. Each case must end in a
refusal or a not-ok status, never `ok`, and name the record that was changed
(or, for tampered checkpoint material, the file, blaming no record).

The log: 5 requests, 15 records, sealed every 4 (checkpoints 4, 8, 12) and
at 15. Record 4 (the one changed) is the ALLOW of the second request, 5 and 6
its PENDING and SUCCESS: changing a decision leaves completeness untouched, so
what is named is what the chain checks found.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from audit import signed_note
from audit.checkpoints import public_vkey
from audit.merkle import CompactRange
from audit.records import GENESIS_HASH, record_hash
from audit.triggers import drop_sql
from tests.audit import spec_verifier
from veritta_site.canonical import canonical_json

SMOKE = {"action": "test_action", "event_type": "test_event"}
CHANGED = 4
OTHER_SEED = b"\x07" * 32


def run_verify(*args: str) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    try:
        call_command("audit", "verify", "--json", *args, stdout=out, stderr=io.StringIO())
        status = 0
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    return status, json.loads(out.getvalue())


def sql(statement: str, params: list | None = None) -> list:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def sealed_log(api, settings, tmp_path):
    settings.VERITTA_AUDIT_CHECKPOINT_EVERY = 4
    for _ in range(5):
        assert api.process(SMOKE).status_code == 200
    call_command("audit", "checkpoint", stdout=io.StringIO())
    export = tmp_path / "export.jsonl"
    call_command("audit", "export", "--output", str(export), stderr=io.StringIO())
    assert len(export.read_text().splitlines()) == 15
    sizes = sorted(int(p.stem) for p in Path(settings.VERITTA_AUDIT_CHECKPOINT_DIR).glob("*.note"))
    assert sizes == [4, 8, 12, 15]
    return export


# --- tampering with a list of records (an export's lines, or the rows' bodies) -----------


def rechain(records: list[dict], start: int) -> None:
    """What a careful attacker does: renumber and re-link from index `start` on."""
    for i in range(start, len(records)):
        records[i]["seq"] = i + 1
        records[i]["prev_hash"] = records[i - 1]["record_hash"] if i else GENESIS_HASH
        records[i]["record_hash"] = record_hash(records[i])


def forged_from(record: dict) -> dict:
    forged = dict(record, trace_id="00000000-0000-4000-8000-00000000f00d", decision="ALLOW")
    forged["record_hash"] = record_hash(forged)
    return forged


C = CHANGED - 1  # its index in the list


def edit(r: list[dict]) -> None:
    r[C]["decision"] = "DENY"


def rehash_one(r: list[dict]) -> None:
    r[C]["decision"] = "DENY"
    r[C]["record_hash"] = record_hash(r[C])


def delete(r: list[dict]) -> None:
    del r[C]


def delete_tail(r: list[dict]) -> None:
    del r[C:]


def insert(r: list[dict]) -> None:
    r.insert(C, forged_from(r[C]))  # a record claiming seq 4, linked to 3; the rest untouched


def insert_rechain(r: list[dict]) -> None:
    r.insert(C, forged_from(r[C]))
    rechain(r, C)


def swap(r: list[dict]) -> None:
    r[C], r[C + 1] = r[C + 1], r[C]


def swap_rechain(r: list[dict]) -> None:
    r[C], r[C + 1] = r[C + 1], r[C]
    rechain(r, C)


def modify_rechain(r: list[dict]) -> None:
    r[C]["decision"] = "DENY"
    rechain(r, C)


def drop_first(r: list[dict]) -> None:
    del r[0]


def drop_first_rechain(r: list[dict]) -> None:
    del r[0]
    rechain(r, 0)


def duplicate(r: list[dict]) -> None:
    r.insert(C + 1, dict(r[C]))  # a second copy of 4 where 5 should be


def forged_append(r: list[dict]) -> None:
    forged = forged_from(r[-3])  # a decision record
    forged.update(seq=16, prev_hash=r[-1]["record_hash"])  # chained as the writer would
    forged["record_hash"] = record_hash(forged)
    r.append(forged)


# Each case: the tampering, and the seq the verifier must name first.
RECORD_CASES: dict[str, tuple[Callable[[list[dict]], None], int]] = {
    "edit": (edit, CHANGED),
    "rehash_one": (rehash_one, CHANGED),
    "delete": (delete, CHANGED),
    "delete_tail": (delete_tail, CHANGED),
    "insert": (insert, CHANGED),
    "insert_rechain": (insert_rechain, CHANGED),
    "swap": (swap, CHANGED),
    "swap_rechain": (swap_rechain, CHANGED),
    "modify_rechain": (modify_rechain, CHANGED),
    "drop_seq1": (drop_first, 1),
    "drop_seq1_rechain": (drop_first_rechain, 1),
    "duplicate_line": (duplicate, CHANGED + 1),
    "forged_append": (forged_append, 16),
}


def assert_not_ok_and_names(status: int, report: dict, seq: int) -> None:
    assert status != 0 and not report["ok"] and report["status"] != "ok", report
    named = [p["seq"] for p in report["problems"] if "source" not in p]
    if named:
        assert min(named) == seq, report["problems"]
        assert status == 1 and report["status"] == "failed"
    else:  # consistent, but cannot be tied to what was signed
        assert status == 3 and report["status"] == "unanchored" and report["unanchored_from"] == seq, report
    assert all("source" not in p for p in report["problems"]), "a record change blamed on checkpoint material"


def anchor_args(export: Path, anchoring: str, settings: Any) -> list[str]:
    if anchoring == "anchor":
        return ["--file", str(export), "--anchor", f"{export}.anchor"]
    return ["--file", str(export), "--checkpoints", str(settings.VERITTA_AUDIT_CHECKPOINT_DIR)]


def verify_file(*args: str) -> tuple[int, dict[str, Any]]:
    """`audit verify --file …`, after checking that the verifier written from
    docs/AUDIT_LOG_SPEC.md alone (tests/audit/spec_verifier.py) gives the same
    status and the same problems (seq, kind, file)."""
    status, report = run_verify(*args)
    options = dict(zip(args[::2], args[1::2], strict=True))
    theirs = spec_verifier.verify_export(
        Path(options["--file"]),
        public_vkey(),
        anchor=Path(options["--anchor"]) if "--anchor" in options else None,
        checkpoints=Path(options["--checkpoints"]) if "--checkpoints" in options else None,
    )
    ours = sorted({(p["seq"], p["kind"], p.get("source")) for p in report["problems"]})
    assert (report["status"], ours) == (theirs.status(), sorted(set(theirs.problems))), "the spec's verifier disagrees"
    assert report["anchored_upto"] == theirs.anchored_upto
    return status, report


@pytest.mark.parametrize("anchoring", ["anchor", "checkpoints"])
def test_untouched_export_is_ok_only_when_anchored(sealed_log, settings, anchoring):
    status, report = verify_file(*anchor_args(sealed_log, anchoring, settings))
    assert (status, report["status"], report["anchored_upto"], report["problems"]) == (0, "ok", 15, [])
    status, report = verify_file("--file", str(sealed_log))  # nothing to tie it to
    assert (status, report["ok"], report["status"], report["unanchored_from"]) == (3, False, "unanchored", 1)


@pytest.mark.parametrize("anchoring", ["anchor", "checkpoints"])
@pytest.mark.parametrize("case", sorted(RECORD_CASES))
def test_tampered_export_is_never_ok_and_names_the_changed_record(sealed_log, settings, anchoring, case):
    tamper, changed = RECORD_CASES[case]
    records = [json.loads(line) for line in sealed_log.read_text().splitlines()]
    tamper(records)
    sealed_log.write_text("".join(canonical_json(r).decode() + "\n" for r in records))
    assert_not_ok_and_names(*verify_file(*anchor_args(sealed_log, anchoring, settings)), changed)


def test_respaced_export_is_not_the_sealed_bytes(sealed_log, settings):
    lines = sealed_log.read_text().splitlines()
    lines[5] = json.dumps(json.loads(lines[5]), sort_keys=True)  # same record, other bytes
    sealed_log.write_text("\n".join(lines) + "\n")
    status, report = verify_file(*anchor_args(sealed_log, "anchor", settings))
    assert status == 1 and [(p["seq"], p["kind"]) for p in report["problems"]] == [(6, "content")]


# --- fragments (`audit export --since`) --------------------------------------------------


@pytest.fixture
def fragment(sealed_log, tmp_path):
    """Records 7..15, cut by time, with their anchor."""
    seventh = json.loads(sealed_log.read_text().splitlines()[6])
    part = tmp_path / "part.jsonl"
    call_command("audit", "export", "--since", seventh["ts_utc"], "--output", str(part), stderr=io.StringIO())
    assert json.loads(part.read_text().splitlines()[0])["seq"] == 7
    return part


def read_anchor(path: Path) -> tuple[dict, list[str]]:
    header, *hashes = path.read_text().splitlines()
    return json.loads(header), hashes


def write_anchor(path: Path, header: dict, hashes: list[str]) -> None:
    path.write_text(json.dumps(header) + "\n" + "".join(h + "\n" for h in hashes))


def fragment_verify(part: Path, *extra: str) -> tuple[int, dict]:
    return verify_file("--file", str(part), "--anchor", f"{part}.anchor", *extra)


def test_anchored_fragment_is_ok(fragment):
    status, report = fragment_verify(fragment)
    assert (status, report["status"], report["first_seq"], report["anchored_upto"]) == (0, "ok", 7, 15)


def test_fragment_without_its_anchor_is_not_a_fragment(fragment, settings):
    status, report = verify_file("--file", str(fragment), "--checkpoints", str(settings.VERITTA_AUDIT_CHECKPOINT_DIR))
    assert status == 1 and report["problems"][0]["seq"] == 1 and report["problems"][0]["kind"] == "gap"
    status, report = verify_file("--file", str(fragment))
    assert status == 1 and report["problems"][0]["seq"] == 1


@pytest.mark.parametrize(
    "case,changed",
    [("drop_first", 7), ("edit", 9), ("modify_rechain", 9), ("delete_tail", 13), ("forged_append", 16)],
)
def test_tampered_fragment_is_never_ok_and_names_the_changed_record(fragment, case, changed):
    records = [json.loads(line) for line in fragment.read_text().splitlines()]
    if case == "drop_first":
        del records[0]
    elif case == "edit":
        records[2]["status"] = "FAILED"
    elif case == "modify_rechain":
        records[2]["status"] = "FAILED"
        for i in range(2, len(records)):
            records[i]["prev_hash"] = records[i - 1]["record_hash"]
            records[i]["record_hash"] = record_hash(records[i])
    elif case == "delete_tail":
        del records[6:]
    else:
        forged_append(records)
    fragment.write_text("".join(canonical_json(r).decode() + "\n" for r in records))
    assert_not_ok_and_names(*fragment_verify(fragment), changed)


def test_fragment_with_a_rewritten_anchor_is_refused(fragment):
    """Dropping the first line and rewriting the anchor to start later: the
    extent is signed, so the anchor itself is the problem, never `ok`."""
    records = fragment.read_text().splitlines()
    fragment.write_text("\n".join(records[1:]) + "\n")
    anchor_file = Path(f"{fragment}.anchor")
    anchor, hashes = read_anchor(anchor_file)
    before = CompactRange.from_json(anchor["before"])
    before.append(bytes.fromhex(hashes[0]))
    anchor.update(first_seq=8, before=before.to_json())
    write_anchor(anchor_file, anchor, hashes[1:])
    status, report = fragment_verify(fragment)
    assert status == 1 and report["status"] == "failed"
    assert {"seq": 8, "kind": "signature", "source": str(anchor_file)} in [
        {k: p[k] for k in ("seq", "kind", "source") if k in p} for p in report["problems"]
    ]


# --- checkpoint material: the file is named, no record is blamed -------------------------


def edited_root(path: Path) -> None:
    lines = path.read_text().split("\n")
    lines[2] = "A" * 43 + "="
    path.write_text("\n".join(lines))


def edited_hashes(path: Path) -> None:
    lines = path.read_text().splitlines()
    lines[1] = "ab" * 32
    path.write_text("\n".join(lines) + "\n")


def other_key_note(path: Path, settings: Any) -> None:
    body = path.read_text().split("\n\n", 1)[0] + "\n"
    path.write_text(signed_note.sign_note(body, settings.VERITTA_AUDIT_ORIGIN, OTHER_SEED))


def assert_only_the_file_is_named(status: int, report: dict, source: str) -> None:
    assert status == 1 and not report["ok"] and report["status"] == "failed", report
    assert report["problems"] and all(p["kind"] == "signature" and p.get("source") == source for p in report["problems"]), report


@pytest.mark.parametrize("where", ["export", "database"])
@pytest.mark.parametrize("case", ["edited_root", "edited_hashes", "other_key"])
def test_tampered_checkpoint_files_are_named_and_blame_no_record(sealed_log, settings, where, case):
    suffix = ".hashes" if case == "edited_hashes" else ".note"
    target = Path(settings.VERITTA_AUDIT_CHECKPOINT_DIR) / f"{8:015d}{suffix}"
    {"edited_root": edited_root, "edited_hashes": edited_hashes}.get(case, lambda p: other_key_note(p, settings))(target)
    if where == "export":
        assert_only_the_file_is_named(*verify_file(*anchor_args(sealed_log, "checkpoints", settings)), str(target))
    else:
        assert_only_the_file_is_named(*run_verify(), str(target))


@pytest.mark.parametrize("where", ["export", "database"])
def test_forged_hashes_beside_a_failing_note_blame_no_record(sealed_log, settings, where):
    """Issue 18: a forged .hashes file next to a note whose signature fails
    gave 157 false findings. Now the note is named, and the hashes file with
    the files checked with it against the next verified root; no record."""
    directory = Path(settings.VERITTA_AUDIT_CHECKPOINT_DIR)
    note, hashes, next_hashes = (directory / f"{8:015d}.note", directory / f"{8:015d}.hashes", directory / f"{12:015d}.hashes")
    edited_root(note)
    edited_hashes(hashes)
    if where == "export":
        status, report = verify_file(*anchor_args(sealed_log, "checkpoints", settings))
        # Without the database, 8's hashes can only be checked with 12's, against 12's root.
        expected = [(8, str(note)), (12, f"{hashes}, {next_hashes}")]
    else:
        status, report = run_verify()
        # The database's copy of checkpoint 8 verifies: 8's hashes are checked alone.
        expected = [(8, str(note)), (8, str(hashes))]
    assert status == 1 and report["status"] == "failed"
    assert sorted((p["seq"], p.get("source")) for p in report["problems"]) == sorted(expected)
    assert all(p["kind"] == "signature" for p in report["problems"])


@pytest.mark.parametrize("case", ["edited_root", "edited_hashes", "other_key"])
def test_tampered_export_anchor_is_named_and_blames_no_record(sealed_log, settings, case):
    anchor_file = Path(f"{sealed_log}.anchor")
    anchor, hashes = read_anchor(anchor_file)
    note = Path(anchor_file.parent / "note")
    note.write_text(anchor["checkpoint"])
    if case == "edited_root":
        edited_root(note)
    elif case == "other_key":
        other_key_note(note, settings)
    else:
        hashes[5] = "ab" * 32
    anchor["checkpoint"] = note.read_text()
    write_anchor(anchor_file, anchor, hashes)
    status, report = verify_file(*anchor_args(sealed_log, "anchor", settings))
    assert_only_the_file_is_named(status, report, str(anchor_file))


def test_edited_database_checkpoint_root_is_named_and_blames_no_record(sealed_log):
    for statement in drop_sql(connection.vendor):
        sql(statement)
    note = sql("SELECT note FROM audit_checkpoint WHERE tree_size = 8")[0][0]
    lines = note.split("\n")
    lines[2] = "A" * 43 + "="
    sql("UPDATE audit_checkpoint SET note = %s WHERE tree_size = 8", ["\n".join(lines)])
    assert_only_the_file_is_named(*run_verify(), "database checkpoint 8")


# --- the live database --------------------------------------------------------------------


def rows() -> list[dict]:
    return [json.loads(b) for (b,) in sql("SELECT body FROM audit_auditrecord ORDER BY seq")]


def rewrite_rows(records: list[dict], *, replace: bool = True, at_positions: bool = False) -> None:
    """Write these bodies at the seq each states (or at their positions in the
    list), columns made to agree, replacing the chain's rows unless told not to."""
    if replace:
        sql("DELETE FROM audit_auditrecord")
    for position, r in enumerate(records, start=1):
        actor = r.get("actor") or {}
        sql(
            "INSERT INTO audit_auditrecord (seq, record_hash, prev_hash, event_type, ts_utc, trace_id, decision,"
            " status, action, reason_code, actor_kind, actor_id, body) VALUES"
            " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                position if at_positions else r["seq"], r["record_hash"], r["prev_hash"], r["event_type"], r["ts_utc"], r["trace_id"],
                r["decision"], r["status"], r["action"], (r["reason_codes"] or [None])[0],
                actor.get("kind"), actor.get("id"), canonical_json(r).decode(),
            ],
        )  # fmt: skip


@pytest.mark.parametrize("case", sorted(RECORD_CASES))
def test_tampered_database_is_never_ok_and_names_the_changed_record(sealed_log, case):
    for statement in drop_sql(connection.vendor):
        sql(statement)
    tamper, changed = RECORD_CASES[case]
    records = rows()
    original = [dict(r) for r in records]
    if case == "duplicate_line":
        # The table refuses a second row with a record's hash, wherever it goes.
        with pytest.raises(IntegrityError), transaction.atomic():
            rewrite_rows([dict(records[CHANGED - 1], seq=16)], replace=False)
        return
    tamper(records)
    if case in ("swap", "insert"):
        # Rows moved without re-chaining: each row's seq column is its position,
        # its body the record that was moved there (still stating its own seq).
        rewrite_rows(records, at_positions=True)
    elif case == "forged_append":
        forged = dict(records[-1], prev_hash="f" * 64)  # a record made elsewhere, not chained to the head
        forged["record_hash"] = record_hash(forged)
        rewrite_rows(original + [forged])
    else:
        rewrite_rows(records)
    assert_not_ok_and_names(*run_verify(), changed)

"""The audit verifier: re-derives every hash, link, gap, signature and
completeness fact of the chain, streaming, and names the exact `seq` of each
problem. It needs no database: `audit verify --file` feeds it an export.

Problem kinds and the seq each names (docs/AUDIT_LOG_SPEC.md §7):
  content      the record at that seq: its bytes are not the canonical JSON
               of a record whose hash is its `record_hash` (or, in the
               database, a column disagrees with the body)
  link         the position whose record is out of place: a `prev_hash` that
               is not its predecessor's hash, a record out of order, a second
               copy of a record, a row whose body has another seq
  gap          the first missing seq of each run of missing records
  signature    a record whose hash differs from the one a verified checkpoint
               sealed; or a checkpoint, hashes or anchor file that fails its
               own check (the problem then names that file, never a record)
  incomplete   a PENDING with no terminal record, or a terminal record
               without its PENDING
  approved_not_executed  a held request's last approval with no PENDING
               record after it: approved, but the action never ran (the
               server stopped in between; docs/APPROVALS.md)
  unintegrated (database only) an intake record past its merge deadline; it
               has no seq yet: the problem names its intake id and entry hash

An export is checked the same way, and is `ok` only when every record in it
is tied to a verified signed checkpoint; an export that is consistent but not
so tied is `unanchored` (its own status and exit code), never `ok`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from audit import signed_note
from audit.keyring import KeyRing, verify_checkpoint_note
from audit.merkle import CompactRange
from audit.records import GENESIS_HASH, TERMINAL_STATUSES
from veritta_site.canonical import canonical_json, sha256_hex

# Columns the database keeps beside the body; each must agree with the body.
COLUMN_FIELDS = ("record_hash", "prev_hash", "event_type", "trace_id", "decision", "status", "action")

# `audit verify`'s exit status for each outcome; 2 is left to usage errors.
EXIT_STATUS = {"ok": 0, "failed": 1, "unanchored": 3}

# How many recent record hashes (by seq) the link check remembers: enough to
# judge any local reorder without holding the log in memory.
_RECENT_HASHES = 4096
_ABSENT = object()
_RECENT_GAPS = 1024  # and how many gaps it remembers, to tell a reorder from a loss
_SEQ = re.compile(r'"seq":(\d{1,18})[,}]')


@dataclass(frozen=True)
class Problem:
    seq: int | None  # None only for `unintegrated`: the record has no seq yet
    kind: str
    detail: str
    source: str | None = None  # the file (or database checkpoint) at fault, not a record

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"seq": self.seq, "kind": self.kind, "detail": self.detail}
        if self.source is not None:
            data["source"] = self.source
        return data


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint whose signature was checked (or could not be: `verified` False)."""

    source: str
    size: int
    root: bytes
    verified: bool


@dataclass
class Report:
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints_checked: int = 0  # distinct checkpoints (tree sizes)
    checkpoint_copies: int = 0  # the notes read: the database's and the files' copies of them
    in_flight: int = 0
    waiting: int = 0  # records in the intake, within their merge deadline
    signatures_checked: bool = False
    # The highest seq up to which the records read are tied to a verified
    # signed checkpoint (0: none). An export must be tied all the way.
    anchored_upto: int = 0
    anchor_required: bool = False  # offline: the file is not the log itself
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def anchored(self) -> bool:
        return self.last_seq is not None and self.anchored_upto >= self.last_seq

    @property
    def status(self) -> str:
        """`ok`, `failed` (problems), or `unanchored`: consistent, but not every
        record could be tied to a signed checkpoint, so not shown authentic."""
        if self.problems:
            return "failed"
        if self.anchor_required and not self.anchored:
            return "unanchored"
        return "ok"

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS[self.status]

    def as_dict(self) -> dict[str, Any]:
        unanchored_from = None
        if self.anchor_required and not self.anchored and self.first_seq is not None:
            unanchored_from = max(self.anchored_upto + 1, self.first_seq)
        return {
            "ok": self.ok,
            "status": self.status,
            "records": self.records,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "anchored_upto": self.anchored_upto,
            "unanchored_from": unanchored_from,
            "checkpoints_checked": self.checkpoints_checked,
            "checkpoint_copies": self.checkpoint_copies,
            "signatures_checked": self.signatures_checked,
            "in_flight": self.in_flight,
            "waiting": self.waiting,
            "problems": [p.as_dict() for p in self.problems],
            "warnings": self.warnings,
        }


def read_checkpoint_note(note: str, source: str, vkey: str | KeyRing | None) -> SignedCheckpoint | Problem:
    """Parse a note and check its signature (under one key, or the key ring's
    key of its size: audit/keyring.py); a failure is a `signature` problem
    naming the note (its seq is the size the note claims, 0 if none)."""
    try:
        if vkey:
            body = verify_checkpoint_note(note, vkey)
        else:
            body = note.split("\n\n", 1)[0] + "\n"
        parsed = signed_note.parse_checkpoint(body)
    except (signed_note.NoteVerificationError, signed_note.CheckpointFormatError, ValueError) as exc:
        size = _size_hint(note)
        return Problem(size, "signature", f"{source}: {exc}", source=source)
    return SignedCheckpoint(source, parsed.size, parsed.root, verified=bool(vkey))


def _size_hint(note: str) -> int:
    lines = note.split("\n")
    return int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else 0


def external_checkpoints(directory: Path) -> list[tuple[str, str]]:
    """(source, note text) of every checkpoint file in the directory."""
    if not directory.is_dir():
        return []
    return [(str(p), p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.note"))]


class ChainVerifier:
    """Feed it every record in order (`feed`), then `finish`.

    `sealed` yields (seq, record hash) pairs in seq order that a verified
    checkpoint vouches for (audit/anchors.py checks them first): a record whose
    hash differs is named exactly. `start` is the Merkle state of the records
    before a fragment (from its anchor) and `extent` the (first, last) seq the
    fragment's signed anchor says it holds."""

    def __init__(
        self,
        *,
        checkpoints: Iterable[SignedCheckpoint] = (),
        sealed: Iterator[tuple[int, str]] | None = None,
        in_flight_after: datetime | None = None,
        start: CompactRange | None = None,
        extent: tuple[int, int] | None = None,
        anchor_required: bool = False,
    ) -> None:
        self.report = Report(anchor_required=anchor_required)
        self._roots: dict[int, list[SignedCheckpoint]] = {}
        for cp in checkpoints:
            self._roots.setdefault(cp.size, []).append(cp)
        # The database's and the file's copy of one checkpoint are one checkpoint, read twice.
        self.report.checkpoints_checked = len(self._roots)
        self.report.checkpoint_copies = sum(len(v) for v in self._roots.values())
        self._sealed = sealed
        self._next_sealed: tuple[int, str] | None = None
        self._sealed_disagreed = False
        self._in_flight_after = in_flight_after
        self._start = start
        self._extent = extent
        self._expected = extent[0] if extent else 1
        self._missing: list[list[int]] = []  # [first, last] runs reported as gaps, until seen
        self._hashes: dict[int, str] = {}  # record hash by seq, of the recent seqs
        self._tree: CompactRange | None = None
        self._pending: dict[str, tuple[int, str]] = {}
        # Held requests whose last approval is recorded, until their PENDING is seen.
        self._approved: dict[str, tuple[int, str]] = {}

    def problem(self, seq: int | None, kind: str, detail: str, source: str | None = None) -> None:
        self.report.problems.append(Problem(seq, kind, detail, source))

    def _sealed_hash(self, seq: int) -> str | None:
        if self._sealed is None:
            return None
        while self._next_sealed is None or self._next_sealed[0] < seq:
            nxt = next(self._sealed, None)
            if nxt is None:
                self._sealed = None
                return None
            self._next_sealed = nxt
        return self._next_sealed[1] if self._next_sealed[0] == seq else None

    def feed(self, body: str, columns: dict[str, Any] | None = None) -> None:
        """Check one record. `columns` are the database's copies of its fields
        (with `seq`); an export has none, and its seq is read from the body."""
        report = self.report
        report.records += 1
        record = _parse(body)
        body_seq = record.get("seq") if record is not None else _seq_hint(body)
        if not isinstance(body_seq, int) or isinstance(body_seq, bool):
            body_seq = None
        if columns is not None:
            seq: int = columns["seq"]
        elif body_seq is not None:
            seq = body_seq
        else:
            # A line with no seq at all (blank, cut, garbage) takes no place in
            # the order: the record expected here is named, and may still follow.
            self.problem(self._expected, "content", "line is not an audit record")
            self._tree = None
            return
        if report.first_seq is None:
            report.first_seq = seq
        if not self._place(seq):
            return  # out of place: named as a `link`, checked no further
        report.last_seq = seq
        if record is None:
            self.problem(seq, "content", "line is not a JSON audit record")
            self._tree = None
            return
        stored_hash = record.get("record_hash")
        if body_seq is None:
            self.problem(seq, "content", "record has no integer seq")
        elif body_seq != seq:
            # A row whose body is another record (a database swap or copy).
            self.problem(seq, "link", f"row {seq} holds the record of seq {body_seq!r}")
        elif (checked := _hash_and_bytes(record, body))[0] != stored_hash:
            self.problem(seq, "content", "record_hash does not match the record's content")
        elif not checked[1]:
            self.problem(seq, "content", "line is not the canonical JSON bytes of its record")
        elif columns is not None:
            self._check_columns(seq, record, columns)
        self._check_link(seq, body_seq, record)
        self._check_sealed(seq, stored_hash)
        self._check_completeness(seq, record)
        self._check_roots(seq, stored_hash)

    def _place(self, seq: int) -> bool:
        """Where this record falls: next in order (True), after missing records
        (a `gap`, True), or behind the order (False: a `link` at the position)."""
        expected = self._expected
        if seq == expected:
            if seq == 1:
                self._tree = CompactRange()
            elif self.report.last_seq is None and self._start is not None and self._start.size == seq - 1:
                self._tree = CompactRange.from_json(self._start.to_json())
            self._expected = seq + 1
            return True
        if seq > expected:
            self.problem(expected, "gap", f"records {expected}..{seq - 1} are missing")
            self._missing.append([expected, seq - 1])
            if len(self._missing) > _RECENT_GAPS:
                self._missing.pop(0)  # memory stays flat on a log full of holes
            self._tree = None  # roots after a gap cannot match; the gap is the finding
            self._expected = seq + 1
            return True
        for run in self._missing:
            if run[0] <= seq <= run[1]:
                # Not missing after all, only moved: the gap was a reorder.
                self.report.problems.remove(Problem(run[0], "gap", f"records {run[0]}..{run[1]} are missing"))
                self.problem(run[0], "link", f"record {seq} comes after record {run[1] + 1}: records out of order")
                self._missing.remove(run)
                return False
        self.problem(expected, "link", f"a record with seq {seq} stands where seq {expected} should be (duplicate or out of order)")
        return False

    def _check_columns(self, seq: int, record: dict[str, Any], columns: dict[str, Any]) -> None:
        changed = [f for f in COLUMN_FIELDS if columns.get(f) != record.get(f)]
        actor = record.get("actor") or {}
        if columns.get("actor_id") != actor.get("id") or columns.get("actor_kind") != actor.get("kind"):
            changed.append("actor")
        codes = record.get("reason_codes") or []
        if columns.get("reason_code") != (codes[0] if codes else None):
            changed.append("reason_code")
        if changed:
            self.problem(seq, "content", f"columns disagree with the record body: {', '.join(changed)}")

    def _check_link(self, seq: int, body_seq: int | None, record: dict[str, Any]) -> None:
        own = body_seq if body_seq is not None else seq
        if isinstance(record.get("record_hash"), str):
            self._hashes[own] = record["record_hash"]
            self._hashes.pop(own - _RECENT_HASHES, None)
        if body_seq != seq:
            return  # already a `link` at this position
        previous = GENESIS_HASH if seq == 1 else self._hashes.get(seq - 1)
        # The predecessor unseen (a gap, or the first record of a fragment):
        # the gap or the anchor's root is the check, not this link.
        if previous is not None and record.get("prev_hash") != previous:
            self.problem(seq, "link", "prev_hash does not match the previous record's hash")

    def _check_sealed(self, seq: int, stored_hash: Any) -> None:
        sealed = self._sealed_hash(seq)
        if sealed is not None and sealed != stored_hash:
            self._sealed_disagreed = True
            self.problem(seq, "signature", "record_hash differs from the one sealed under a signed checkpoint")

    def _check_completeness(self, seq: int, record: dict[str, Any]) -> None:
        trace = str(record.get("trace_id"))
        if record.get("reason_codes") == ["APPROVAL_GRANTED"]:
            evidence = record.get("evidence") or {}
            if isinstance(evidence, dict) and _last_approval(evidence):
                self._approved[trace] = (seq, str(record.get("ts_utc")))
        if record.get("event_type") != "action_audit":
            return
        status = record.get("status")
        self._approved.pop(trace, None)  # it ran, or was blocked when it was about to
        if status == "PENDING":
            if trace in self._pending:
                self.problem(seq, "incomplete", "second PENDING record for one trace")
            self._pending[trace] = (seq, str(record.get("ts_utc")))
        elif status in TERMINAL_STATUSES:
            if self._pending.pop(trace, None) is None and status != "BLOCKED":
                self.problem(seq, "incomplete", f"{status} record without its PENDING record")

    def _check_roots(self, seq: int, stored_hash: Any) -> None:
        if self._tree is None:
            return
        try:
            self._tree.append(bytes.fromhex(stored_hash))
        except (TypeError, ValueError):
            self._tree = None
            return
        self._compare_roots(self._tree, upto=seq)

    def _compare_roots(self, tree: CompactRange, *, upto: int) -> None:
        """Compare with every verified checkpoint of this tree's size; a match
        ties the records read so far (through `upto`) to it."""
        for cp in self._roots.get(tree.size, ()):
            if not cp.verified:
                continue  # an unchecked note vouches for nothing and blames no one
            if cp.root == tree.root():
                self.report.anchored_upto = max(self.report.anchored_upto, upto)
            elif not self._sealed_disagreed:
                # No sealed hash named the record: all that is known is that
                # something at or before this size is not what was signed.
                self.problem(tree.size, "signature", f"{cp.source}: signed root for size {cp.size} does not match the log", cp.source)

    def finish(self) -> Report:
        report = self.report
        for seq, ts in sorted(self._pending.values()):
            if self._in_flight_after is not None and _parse_ts(ts) >= self._in_flight_after:
                report.in_flight += 1  # may still be running: not a finding yet
                continue
            self.problem(seq, "incomplete", "PENDING record has no terminal record")
        for seq, ts in sorted(self._approved.values()):
            if self._in_flight_after is not None and _parse_ts(ts) >= self._in_flight_after:
                report.in_flight += 1
                continue
            self.problem(seq, "approved_not_executed", "approved by its last approver, but its action never ran (no PENDING record)")
        last = report.last_seq or (self._expected - 1)
        if self._extent is not None:
            first, final = self._extent
            if report.records == 0 or last < final:
                self.problem(max(last + 1, first), "gap", f"the export's signed extent ends at {final}, the file at {last}")
            elif last > final:
                self.problem(final + 1, "signature", f"records after {final} are outside the export's signed extent")
        else:
            newest = max((s for s, cps in self._roots.items() if any(cp.verified for cp in cps)), default=0)
            if newest > last:
                self.problem(last + 1, "gap", f"log ends at {last} but a checkpoint covers {newest} records")
        self._tie_tail()
        report.problems.sort(key=lambda p: (p.seq or 0, p.kind))
        return report

    def _tie_tail(self) -> None:
        """Records after the last checkpoint they reach are tied to the next
        one by the sealed hashes that follow them (an inclusion proof)."""
        tree, last = self._tree, self.report.last_seq
        if tree is None or last is None or self.report.anchored_upto >= last:
            return
        later = sorted(s for s, cps in self._roots.items() if s > last and any(cp.verified for cp in cps))
        if not later:
            return
        tree = CompactRange.from_json(tree.to_json())
        while tree.size < later[0]:
            sealed = self._sealed_hash(tree.size + 1)
            if sealed is None:
                return
            tree.append(bytes.fromhex(sealed))
        self._compare_roots(tree, upto=last)

    def check_intake(self, waiting: Iterable[tuple[int, str, datetime]], *, deadline_passed_before: datetime) -> None:
        """Records still in the intake (id, entry hash, queued at): within their
        merge deadline they are `waiting`; past it, each is a problem."""
        for intake_id, entry, queued_at in waiting:
            if queued_at >= deadline_passed_before:
                self.report.waiting += 1
            else:
                self.problem(
                    None,
                    "unintegrated",
                    f"intake record {intake_id} (entry {entry}) committed at {queued_at.isoformat()}"
                    " is not in the chain past its merge deadline",
                )


def _parse(body: str) -> dict[str, Any] | None:
    try:
        record = json.loads(body)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _hash_and_bytes(record: dict[str, Any], body: str) -> tuple[str, bool]:
    """The record's hash (records.record_hash) and whether `body` is exactly
    its canonical JSON, from one serialisation: the canonical form with
    `record_hash` is the hashed form with that key put back in sorted place
    (just before `seq`, whose value and those after it are never objects in
    a record). Only a body that differs is serialised again, to be sure."""
    # Taken out and put back rather than copying the dict without it: the
    # same bytes hashed, ~2-3 µs less a record (docs/PERFORMANCE.md).
    stored = record.pop("record_hash", _ABSENT)
    try:
        hashed = canonical_json(record).decode()
    finally:
        if stored is not _ABSENT:
            record["record_hash"] = stored
    digest = sha256_hex(hashed.encode())
    cut = hashed.rfind(',"seq":')
    if cut >= 0 and isinstance(stored, str) and body == f'{hashed[:cut]},"record_hash":"{stored}"{hashed[cut:]}':
        return digest, True
    return digest, canonical_json(record).decode() == body


def _seq_hint(body: str) -> int | None:
    """The seq a damaged line still states, so it is named at its own place."""
    found = _SEQ.search(body)
    return int(found.group(1)) if found else None


def _last_approval(evidence: dict[str, Any]) -> bool:
    approvals, needed = evidence.get("approvals"), evidence.get("approvals_needed")
    return isinstance(approvals, int) and isinstance(needed, int) and approvals >= needed


def _parse_ts(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def in_flight_cutoff(executor_timeout_s: float) -> datetime:
    """PENDING records newer than this may belong to requests still running."""
    return datetime.now(UTC) - timedelta(seconds=executor_timeout_s + 5)

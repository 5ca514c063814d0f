"""The audit verifier: re-derives every hash, link, gap, signature and
completeness fact of the chain, streaming, and names the exact `seq` of each
problem. It needs no database: `audit verify --file` feeds it an export.

Problem kinds (SPEC §7): content, link, gap, signature, incomplete, and
`unintegrated` (database only): a record committed to the intake of the
batched write path that is still not in the chain past its merge deadline,
so a promise of inclusion given for it is broken. It has no seq yet; the
problem names its intake id and entry hash.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from audit import signed_note
from audit.keyring import KeyRing, verify_checkpoint_note
from audit.merkle import CompactRange
from audit.records import GENESIS_HASH, TERMINAL_STATUSES, record_hash

# Columns the database keeps beside the body; each must agree with the body.
COLUMN_FIELDS = ("record_hash", "prev_hash", "event_type", "trace_id", "decision", "status", "action")


@dataclass(frozen=True)
class Problem:
    seq: int | None  # None only for `unintegrated`: the record has no seq yet
    kind: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "detail": self.detail}


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
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
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
    key of its size: audit/keyring.py); a failure is a `signature` problem."""
    try:
        if vkey:
            body = verify_checkpoint_note(note, vkey)
        else:
            body = note.split("\n\n", 1)[0] + "\n"
        parsed = signed_note.parse_checkpoint(body)
    except (signed_note.NoteVerificationError, signed_note.CheckpointFormatError, ValueError) as exc:
        size = _size_hint(note)
        return Problem(size, "signature", f"{source}: {exc}")
    return SignedCheckpoint(source, parsed.size, parsed.root, verified=bool(vkey))


def _size_hint(note: str) -> int:
    lines = note.split("\n")
    return int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else 0


def external_checkpoints(directory: Path) -> list[tuple[str, str]]:
    """(source, note text) of every checkpoint file in the directory."""
    if not directory.is_dir():
        return []
    return [(str(p), p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.note"))]


def external_hashes(directory: Path) -> Iterator[tuple[int, str]]:
    """(seq, record_hash) pairs from the `.hashes` files, in seq order.

    The file of checkpoint size S holds the hashes of the records it added,
    ending with seq S."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.hashes")):
        lines = path.read_text(encoding="utf-8").split()
        start = int(path.stem) - len(lines) + 1
        for offset, value in enumerate(lines):
            yield start + offset, value


class ChainVerifier:
    def __init__(
        self,
        *,
        checkpoints: Iterable[SignedCheckpoint] = (),
        hashes: Iterator[tuple[int, str]] | None = None,
        in_flight_after: datetime | None = None,
    ) -> None:
        self.report = Report()
        self._roots: dict[int, list[SignedCheckpoint]] = {}
        for cp in checkpoints:
            self._roots.setdefault(cp.size, []).append(cp)
        # The database's and the file's copy of one checkpoint are one checkpoint, read twice.
        self.report.checkpoints_checked = len(self._roots)
        self.report.checkpoint_copies = sum(len(v) for v in self._roots.values())
        self._hashes = hashes
        self._next_hash: tuple[int, str] | None = None
        self._in_flight_after = in_flight_after
        self._expected_seq: int | None = None
        self._prev_hash: str | None = None
        self._tree: CompactRange | None = None
        self._pending: dict[str, tuple[int, str]] = {}

    def problem(self, seq: int, kind: str, detail: str) -> None:
        self.report.problems.append(Problem(seq, kind, detail))

    def _external_hash(self, seq: int) -> str | None:
        if self._hashes is None:
            return None
        while self._next_hash is None or self._next_hash[0] < seq:
            nxt = next(self._hashes, None)
            if nxt is None:
                self._hashes = None
                return None
            self._next_hash = nxt
        return self._next_hash[1] if self._next_hash[0] == seq else None

    def feed(self, body: str, columns: dict[str, Any] | None = None) -> None:
        """Check one record. `columns` are the database's copies of its fields
        (with `seq`); an export has none, and its seq is read from the body."""
        report = self.report
        report.records += 1
        try:
            record = json.loads(body)
            stored_hash = record["record_hash"]
            computed = record_hash(record)
        except (ValueError, TypeError, KeyError, AttributeError):
            record, stored_hash, computed = None, None, None
        seq = columns["seq"] if columns is not None else (record or {}).get("seq")
        if not isinstance(seq, int):
            seq = (report.last_seq or 0) + 1
        self._check_position(seq)
        if record is None:
            self.problem(seq, "content", "record body is not a valid audit record")
            self._prev_hash = None
            return
        if record.get("seq") != seq:
            self.problem(seq, "content", f"record body says seq {record.get('seq')!r}")
        if computed != stored_hash:
            self.problem(seq, "content", "record_hash does not match the record's content")
        elif columns is not None:
            changed = [f for f in COLUMN_FIELDS if columns.get(f) != record.get(f)]
            actor = record.get("actor") or {}
            if columns.get("actor_id") != actor.get("id") or columns.get("actor_kind") != actor.get("kind"):
                changed.append("actor")
            codes = record.get("reason_codes") or []
            if columns.get("reason_code") != (codes[0] if codes else None):
                changed.append("reason_code")
            if changed:
                self.problem(seq, "content", f"columns disagree with the record body: {', '.join(changed)}")
        if self._prev_hash is not None and record.get("prev_hash") != self._prev_hash:
            self.problem(seq, "link", "prev_hash does not match the previous record's hash")
        self._prev_hash = stored_hash if isinstance(stored_hash, str) else None

        external = self._external_hash(seq)
        if external is not None and external != stored_hash:
            self.problem(seq, "content", "record_hash differs from the one sealed in the external checkpoint")

        self._check_completeness(seq, record)
        self._check_roots(seq, stored_hash)

    def _check_position(self, seq: int) -> None:
        report = self.report
        if report.first_seq is None:
            report.first_seq = seq
            self._expected_seq = seq
            # A log read from its start is checked link by link from genesis and
            # against the Merkle roots; an export from the middle cannot be.
            if seq == 1:
                self._prev_hash = GENESIS_HASH
                self._tree = CompactRange()
        report.last_seq = seq
        assert self._expected_seq is not None
        if seq > self._expected_seq:
            self.problem(self._expected_seq, "gap", f"records {self._expected_seq}..{seq - 1} are missing")
            self._tree = None  # roots after a gap cannot match; the gap is the finding
        elif seq < self._expected_seq:
            self.problem(seq, "content", "record out of order or duplicated")
        self._expected_seq = seq + 1

    def _check_completeness(self, seq: int, record: dict[str, Any]) -> None:
        if record.get("event_type") != "action_audit":
            return
        trace, status = str(record.get("trace_id")), record.get("status")
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
        for cp in self._roots.get(self._tree.size, ()):
            if cp.root != self._tree.root():
                self.problem(seq, "signature", f"{cp.source}: signed root for size {cp.size} does not match the log")

    def finish(self) -> Report:
        for seq, ts in sorted(self._pending.values()):
            if self._in_flight_after is not None and _parse_ts(ts) >= self._in_flight_after:
                self.report.in_flight += 1  # may still be running: not a finding yet
                continue
            self.problem(seq, "incomplete", "PENDING record has no terminal record")
        last = self.report.last_seq or 0
        newest = max(self._roots, default=0)
        if self.report.first_seq in (None, 1) and newest > last:
            self.problem(last + 1, "gap", f"log ends at {last} but a checkpoint covers {newest} records")
        self.report.problems.sort(key=lambda p: (p.seq or 0, p.kind))
        return self.report

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


def _parse_ts(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def in_flight_cutoff(executor_timeout_s: float) -> datetime:
    """PENDING records newer than this may belong to requests still running."""
    return datetime.now(UTC) - timedelta(seconds=executor_timeout_s + 5)

"""The chain writer: the one place audit records are appended (SPEC §6).

Appends are serialized by a per-chain lock taken inside the transaction
(PostgreSQL: an advisory transaction lock; SQLite: the database write lock,
taken at BEGIN IMMEDIATE), and the head is read under that lock, so
concurrent writers in any number of processes or servers never fork the
chain. Raw SQL rather than the ORM: this runs up to three times per
request and is the hot path (see docs/PERFORMANCE.md).

Everything the chain lock covers costs every other writer its wait, so the
time under it is kept to what ordering needs: on PostgreSQL one round trip
opens the transaction, takes the lock and reads the head, one inserts every
record of the transaction, then the commit. The canonical JSON of each record is made
before the lock (audit.records.preseal); under it the chain fields are only
spliced in and hashed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, connection, transaction

from audit.metrics import observe_appended, observe_sink_failure
from audit.mirror import mirror
from audit.records import GENESIS_HASH, Presealed, preseal, seal_presealed

logger = logging.getLogger("veritta.audit")

# Any constant works; it names "the audit chain" among advisory locks.
CHAIN_LOCK_KEY = 0x5645524954544131  # "VERITTA1"

_HEAD = "SELECT seq, record_hash FROM audit_auditrecord ORDER BY seq DESC LIMIT 1"
# Lock and head read in one round trip. Two statements, so that the head is
# read with a snapshot taken after the lock is granted (READ COMMITTED takes
# one per statement); no parameters, so psycopg sends them as one simple query
# whichever binding the connection uses.
_LOCK_THEN_HEAD_PG = f"SELECT pg_advisory_xact_lock({CHAIN_LOCK_KEY}); {_HEAD}"

_COLUMNS = (
    "seq, record_hash, prev_hash, event_type, ts_utc, trace_id, decision,"
    " status, action, reason_code, actor_kind, actor_id, body"
)
_ROW_PLACEHOLDERS = "(" + ", ".join(["%s"] * 13) + ")"


class AuditSinkError(Exception):
    """The records could not be written durably; nothing of them was kept."""


@dataclass(frozen=True)
class Receipt:
    seq: int
    record_hash: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "record_hash": self.record_hash}


@dataclass
class _Transaction:
    """The appends of one chain transaction, kept until it commits."""

    started: datetime
    head: tuple[int, str] | None = None  # read under the lock by the first append
    by_hand: bool = False  # PostgreSQL outside any atomic block: BEGIN goes with the lock
    begun: bool = False
    drafts: list[dict[str, Any]] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)


_open = threading.local()  # Django's connections are per thread, and so is this


def _head_of(row: Any) -> tuple[int, str]:
    return (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)


def chain_head(cursor: Any) -> tuple[int, str]:
    cursor.execute(_HEAD)
    return _head_of(cursor.fetchone())


def _locked_head(cursor: Any, tx: _Transaction) -> tuple[int, str]:
    if connection.vendor != "postgresql":
        return chain_head(cursor)  # SQLite: BEGIN IMMEDIATE already holds the write lock
    if tx.by_hand:
        # Set first: if the lock statement fails, the BEGIN before it has left an
        # aborted transaction open, and only a ROLLBACK ends it.
        tx.begun = True
        cursor.execute("BEGIN; " + _LOCK_THEN_HEAD_PG)
        cursor.nextset()
    else:
        cursor.execute(_LOCK_THEN_HEAD_PG)
    cursor.nextset()
    return _head_of(cursor.fetchone())


def _row(record: dict[str, Any], body: bytes, ts: datetime) -> tuple[Any, ...]:
    actor = record.get("actor") or {}
    codes = record.get("reason_codes") or []
    return (
        record["seq"],
        record["record_hash"],
        record["prev_hash"],
        record["event_type"],
        connection.ops.adapt_datetimefield_value(ts),
        record["trace_id"],
        record.get("decision"),
        record.get("status"),
        record.get("action"),
        codes[0] if codes else None,
        actor.get("kind"),
        actor.get("id"),
        body.decode("utf-8"),
    )


@contextmanager
def _database_transaction(tx: _Transaction) -> Iterator[None]:
    """Django's atomic(), except on PostgreSQL outside any atomic block. There
    the transaction is opened by hand in the round trip that takes the chain
    lock and reads the head ("BEGIN; lock; head"), one round trip less than
    atomic(), whose BEGIN psycopg sends on its own."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        with transaction.atomic():
            yield
        return
    tx.by_hand = True
    try:
        yield
    except BaseException:
        if tx.begun:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("ROLLBACK")
            except DatabaseError:
                pass  # a broken connection has no transaction left to end
        raise
    if tx.begun:
        with connection.cursor() as cursor:
            cursor.execute("COMMIT")


@contextmanager
def chain_transaction() -> Iterator[None]:
    """One database transaction for every append made inside it, and for
    whatever else the caller writes in it: one commit. On SQLite that is one
    turn on the single write lock and one fsync, which is why the pipeline puts
    its rate-limit counters in the same transaction as the decision records.

    The mirror lines are written just before the commit (if the mirror refuses,
    the rows roll back); metrics and checkpoints follow the commit. Raises
    AuditSinkError if the transaction cannot begin or commit or the mirror
    refuses: nothing of it is kept. Nested use joins the open transaction.
    """
    if getattr(_open, "tx", None) is not None:
        yield
        return
    tx = _open.tx = _Transaction(started=datetime.now(UTC))
    try:
        with _database_transaction(tx):
            try:
                yield
                if tx.lines:
                    mirror().append(tx.lines)
            finally:
                _open.tx = None  # closed before the commit: on_commit callbacks start afresh
    except (DatabaseError, OSError) as exc:
        # Observed after the rollback: an alert it raises is not part of it.
        logger.error("audit sink failed", extra={"exc_class": type(exc).__name__})
        observe_sink_failure(exc)
        raise AuditSinkError(type(exc).__name__) from exc
    finally:
        # Also when the transaction could not even begin (SQLite's BEGIN IMMEDIATE
        # timed out): a stale one would make the next append "join" nothing.
        _open.tx = None
    if tx.drafts:
        observe_appended(tx.drafts, since=tx.started)
        from audit.checkpoints import checkpoint_if_due  # late: checkpoints import the chain

        checkpoint_if_due(tx.drafts[0]["seq"], tx.drafts[-1]["seq"])


def chain_append(drafts: Sequence[dict[str, Any] | Presealed]) -> list[Receipt]:
    """Append the drafts, in order, in the open chain transaction or in one of
    their own; return receipts. The records are durable once the transaction
    has committed (at once when there is none open). Drafts may come presealed
    (audit.records.preseal), so that their canonical JSON was made before any
    lock was taken; plain drafts are presealed here, before the transaction.

    Raises AuditSinkError if the database or the mirror refuses: the
    transaction is rolled back, so no half-written record stays in the chain.
    (Inside an open chain transaction the DatabaseError itself propagates, and
    the transaction turns it into AuditSinkError once it has rolled back.)
    """
    presealed = [d if isinstance(d, Presealed) else preseal(d) for d in drafts]
    with chain_transaction():
        tx = _open.tx
        now = datetime.now(UTC)
        ts = now.isoformat(timespec="microseconds")
        with connection.cursor() as cursor:
            seq, prev_hash = tx.head if tx.head is not None else _locked_head(cursor, tx)
            rows, lines = [], []
            for draft in presealed:
                seq += 1
                body = seal_presealed(draft, seq=seq, prev_hash=prev_hash, ts_utc=ts)
                prev_hash = draft.record["record_hash"]
                rows.append(_row(draft.record, body, now))
                lines.append(body)
            # One statement for all rows: one round trip under the lock.
            values = ", ".join([_ROW_PLACEHOLDERS] * len(rows))
            cursor.execute(
                f"INSERT INTO audit_auditrecord ({_COLUMNS}) VALUES {values}",  # noqa: S608 - placeholders only
                [value for row in rows for value in row],
            )
        tx.head = (seq, prev_hash)
        tx.drafts.extend(draft.record for draft in presealed)
        tx.lines.extend(lines)
    return [Receipt(d.record["seq"], d.record["record_hash"]) for d in presealed]

"""The chain writer: the one place audit records are appended (SPEC §6).

Appends are serialized by a per-chain lock taken inside the transaction
(PostgreSQL: an advisory transaction lock; SQLite: the database write lock,
taken at BEGIN IMMEDIATE), and the head is read under that lock, so
concurrent writers in any number of processes or servers never fork the
chain. Raw SQL rather than the ORM: this runs up to three times per
request and is the hot path (see docs/PERFORMANCE.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, connection, transaction

from audit.metrics import observe_appended, observe_sink_failure
from audit.mirror import mirror
from audit.records import GENESIS_HASH, seal

logger = logging.getLogger("veritta.audit")

# Any constant works; it names "the audit chain" among advisory locks.
CHAIN_LOCK_KEY = 0x5645524954544131  # "VERITTA1"

_INSERT = (
    "INSERT INTO audit_auditrecord (seq, record_hash, prev_hash, event_type, ts_utc, trace_id, decision,"
    " status, action, reason_code, actor_kind, actor_id, body) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


class AuditSinkError(Exception):
    """The records could not be written durably; nothing of them was kept."""


@dataclass(frozen=True)
class Receipt:
    seq: int
    record_hash: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "record_hash": self.record_hash}


def chain_head(cursor: Any) -> tuple[int, str]:
    cursor.execute("SELECT seq, record_hash FROM audit_auditrecord ORDER BY seq DESC LIMIT 1")
    row = cursor.fetchone()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)


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


def chain_append(drafts: list[dict[str, Any]]) -> list[Receipt]:
    """Append the drafts, in order, in one transaction; mirror them; return receipts.

    Raises AuditSinkError if the database or the mirror refuses: the
    transaction is rolled back, so no half-written record stays in the chain.
    """
    now = datetime.now(UTC)
    ts = now.isoformat(timespec="microseconds")
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                if connection.vendor == "postgresql":
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])
                seq, prev_hash = chain_head(cursor)
                rows, lines = [], []
                for record in drafts:
                    seq += 1
                    record["ts_utc"] = ts
                    body = seal(record, seq=seq, prev_hash=prev_hash)
                    prev_hash = record["record_hash"]
                    rows.append(_row(record, body, now))
                    lines.append(body)
                cursor.executemany(_INSERT, rows)
            # Inside the transaction: if the mirror refuses, the rows roll back.
            mirror().append(lines)
    except (DatabaseError, OSError) as exc:
        logger.error("audit sink failed", extra={"exc_class": type(exc).__name__})
        observe_sink_failure(exc)
        raise AuditSinkError(type(exc).__name__) from exc
    observe_appended(drafts, since=now)
    receipts = [Receipt(r["seq"], r["record_hash"]) for r in drafts]
    from audit.checkpoints import checkpoint_if_due  # late: checkpoints import the chain

    checkpoint_if_due(receipts[0].seq, receipts[-1].seq)
    return receipts

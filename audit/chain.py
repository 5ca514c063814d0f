"""The chain writer: the one place audit records are appended (SPEC §6,
docs/ARCHITECTURE.md "The audit write path").

Two ways in, one chain:

- **Batched (PostgreSQL, a request's own writes).** A writer commits its
  records to the intake table (`audit_auditintake`) without any chain lock:
  many writers commit at once, and PostgreSQL's group commit shares their WAL
  flushes. Durable there, a PENDING record lets its executor run. Then the
  writer offers to sequence: `integrate()` tries the chain lock without
  waiting; whoever gets it moves up to INTEGRATE_BATCH intake rows into the
  chain in id order (seq, prev_hash, record_hash spliced into the presealed
  JSON), deletes them and writes the mirror, in one transaction, one commit,
  and goes again until the intake is empty. The ones that did not get the lock
  leave their rows to it: it looks at the intake again after each commit, so
  nothing is stranded (and every server process runs the same step on a timer,
  `start_sequencer`, for a sequencer that died). A writer whose records were
  sequenced in its own call gets seq receipts; otherwise an entry hash and a
  signed promise of inclusion by a deadline (audit.promises).
- **Direct (SQLite, and any caller's open transaction).** The records are
  sequenced at once under the chain lock, in the caller's transaction: on
  SQLite that lock is the database's one write lock (BEGIN IMMEDIATE), taken
  in-process with no client round trip; on PostgreSQL inside a caller's
  atomic block (console and admin writes that must commit with their
  records) an advisory transaction lock.

Raw SQL rather than the ORM: this is the hot path (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction

from audit.chain_events import events
from audit.mirror import mirror
from audit.records import GENESIS_HASH, Presealed, members_of_intake, preseal, seal_members, seal_presealed

logger = logging.getLogger("veritta.audit")

# Any constant works; it names "the audit chain" among advisory locks.
CHAIN_LOCK_KEY = 0x5645524954544131  # "VERITTA1"
# Intake rows one sequencer transaction moves into the chain at most.
INTEGRATE_BATCH = 1000

_HEAD = "SELECT seq, record_hash FROM audit_auditrecord ORDER BY seq DESC LIMIT 1"
# Direct path on PostgreSQL: lock and head read in one round trip. Two
# statements, so that the head is read with a snapshot taken after the lock is
# granted (READ COMMITTED takes one per statement); no parameters, so psycopg
# sends them as one simple query whichever binding the connection uses.
_LOCK_THEN_HEAD_PG = f"SELECT pg_advisory_xact_lock({CHAIN_LOCK_KEY}); {_HEAD}"

_COLUMNS = (
    "seq, record_hash, prev_hash, event_type, ts_utc, trace_id, decision,"
    " status, action, reason_code, actor_kind, actor_id, body, entry_hash"
)
_ROW_PLACEHOLDERS = "(" + ", ".join(["%s"] * 14) + ")"

# The copies of record fields a row keeps beside its body, in intake and chain alike.
_FIELD_COLUMNS = "event_type, trace_id, decision, status, action, reason_code, actor_kind, actor_id"
_INTAKE_COLUMNS = f"queued_at, entry_hash, {_FIELD_COLUMNS}, body"
_INTAKE_PLACEHOLDERS = "(%s::timestamptz, " + ", ".join(["%s"] * 10) + ")"
_INTEGRATE = (
    # %b: binary parameters, so a thousand bodies are sent as they are, unescaped.
    f"WITH integrated AS (DELETE FROM audit_auditintake WHERE id = ANY(%b) RETURNING id, entry_hash, {_FIELD_COLUMNS})"
    f" INSERT INTO audit_auditrecord ({_COLUMNS})"
    " SELECT v.seq, v.record_hash, v.prev_hash, i.event_type, %b, i.trace_id, i.decision, i.status, i.action,"
    " i.reason_code, i.actor_kind, i.actor_id, v.body, i.entry_hash"
    " FROM integrated i JOIN unnest(%b::bigint[], %b::bigint[], %b::text[], %b::text[], %b::text[])"
    " AS v(id, seq, record_hash, prev_hash, body) ON v.id = i.id"
)
# The sequencer's transaction commits without waiting for its WAL flush, so the
# chain lock is not held across it (it only moves records already durable in
# the intake: a crash can undo it, never lose a record). The flush follows in
# the same round trip, after the lock is released and before any seq is told
# (a receipt, a checkpoint): the statements after the COMMIT run in one
# implicit transaction that commits durably at the end of the round trip, and
# unless the WAL is already flushed past the COMMIT, it writes a transactional
# logical message, the least a transaction can write to make its own commit
# flush (PostgreSQL 15 has no "flush the WAL" function; any role may call it,
# at any wal_level). WAL is flushed in order: that covers the COMMIT before it.
_ASYNC_COMMIT = "SET LOCAL synchronous_commit = off"
_FLUSHED_THROUGH_HERE = (
    "SELECT CASE WHEN pg_current_wal_flush_lsn() < pg_current_wal_insert_lsn()"
    " THEN pg_logical_emit_message(true, 'veritta.sequenced', '') END"
)
_OLDEST_WAITING = "SELECT queued_at FROM audit_auditintake ORDER BY id LIMIT 1"
_ANY_WAITING = "SELECT EXISTS (SELECT 1 FROM audit_auditintake)"
_UNLOCK = f"SELECT pg_advisory_unlock({CHAIN_LOCK_KEY})"
# The sequencer's look, one round trip (alone, or after a writer's intake
# COMMIT): try the chain lock without waiting, note the answer, and only if it
# was got read the head and the oldest intake rows. Separate statements, so
# that the reads take their snapshots after the lock was granted (READ
# COMMITTED takes one per statement). Outside the sequencer's transaction,
# which is safe under the lock: only its holder writes the chain or takes rows
# out of the intake. The note is transaction-local: it ends with the look.
_SEQUENCING = "current_setting('veritta.sequencing', true) = 'true'"
_LOOK = (
    f"SELECT set_config('veritta.sequencing', pg_try_advisory_lock({CHAIN_LOCK_KEY})::text, true);"
    f" SELECT seq, record_hash FROM audit_auditrecord WHERE {_SEQUENCING} ORDER BY seq DESC LIMIT 1;"
    f" SELECT id, body FROM audit_auditintake WHERE {_SEQUENCING} ORDER BY id LIMIT {INTEGRATE_BATCH}"
)


@dataclass(frozen=True)
class _Look:
    """What a look that got the chain lock read: the head and the batch."""

    head: tuple[int, str]
    batch: list[tuple[int, str]]


def _read_look(cursor: Any) -> _Look | None:
    """The look's answer from `cursor`, positioned on its first result; None
    when the lock was taken by someone else."""
    locked = cursor.fetchone()[0] == "true"
    cursor.nextset()
    head = _head_of(cursor.fetchone())
    cursor.nextset()
    batch = cursor.fetchall()
    return _Look(head, batch) if locked else None


class AuditSinkError(Exception):
    """The records could not be written durably; nothing of them was kept."""


class IntegrationLagging(AuditSinkError):
    """The intake holds a record older than the write path may let wait: the
    sequencer is stopped or stuck, so new records are refused (fail closed)
    rather than piling up behind it."""


@dataclass(frozen=True)
class Receipt:
    """What a client keeps to prove later that its record was written.

    With `seq` when the record was sequenced before the answer; otherwise the
    record is durable in the intake and `as_dict` gives its entry hash with a
    signed promise to sequence it by `queued_at` + the maximum merge delay."""

    entry_hash: str
    seq: int | None = None
    record_hash: str | None = None
    queued_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.seq is not None:
            return {"seq": self.seq, "record_hash": self.record_hash, "entry_hash": self.entry_hash}
        assert self.queued_at is not None
        return events().promise(self.entry_hash, queued_at=self.queued_at)


@dataclass
class _Transaction:
    """The appends of one chain transaction, kept until it commits."""

    started: datetime
    head: tuple[int, str] | None = None  # read under the lock by the first direct append
    batched: bool = False  # PostgreSQL outside atomic: appends go to the intake
    one_statement: bool = False  # batched, and the caller makes one intake INSERT: no atomic() around it
    look: _Look | None = None  # the chain lock was got in the INSERT's round trip, and what it read
    sequence: bool = False  # an append asked for the sequencer step after the commit
    drafts: list[dict[str, Any]] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    placed: dict[int, tuple[int, str]] = field(default_factory=dict)  # intake id -> (seq, hash)
    intake_ids: dict[str, int] = field(default_factory=dict)  # entry hash -> intake id

    def settled(self, receipt: Receipt) -> Receipt:
        """A promise given inside this transaction, with its seq if the
        sequencer step after the commit placed it (audit.group_commit)."""
        intake_id = self.intake_ids.get(receipt.entry_hash)
        if receipt.seq is not None or intake_id not in self.placed:
            return receipt
        return Receipt(receipt.entry_hash, *self.placed[intake_id])

    def mark(self) -> tuple[tuple[int, str] | None, int, int]:
        """Where the appends stand: rewind() to it after rolling back to a savepoint."""
        return self.head, len(self.drafts), len(self.lines)

    def rewind(self, mark: tuple[tuple[int, str] | None, int, int]) -> None:
        self.head, drafts, lines = mark
        del self.drafts[drafts:], self.lines[lines:]


_open = threading.local()  # Django's connections are per thread, and so is this


def open_chain_transaction() -> bool:
    """Whether this thread has a chain transaction open (appends join it)."""
    return getattr(_open, "tx", None) is not None


def _head_of(row: Any) -> tuple[int, str]:
    return (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)


def chain_head(cursor: Any) -> tuple[int, str]:
    cursor.execute(_HEAD)
    return _head_of(cursor.fetchone())


def _locked_head(cursor: Any) -> tuple[int, str]:
    if connection.vendor != "postgresql":
        return chain_head(cursor)  # SQLite: BEGIN IMMEDIATE already holds the write lock
    cursor.execute(_LOCK_THEN_HEAD_PG)
    cursor.nextset()
    return _head_of(cursor.fetchone())


def _field_columns(record: dict[str, Any]) -> tuple[Any, ...]:
    actor = record.get("actor") or {}
    codes = record.get("reason_codes") or []
    return (
        record["event_type"],
        record["trace_id"],
        record.get("decision"),
        record.get("status"),
        record.get("action"),
        codes[0] if codes else None,
        actor.get("kind"),
        actor.get("id"),
    )


def _chain_row(
    *, seq: int, record_hash: str, prev_hash: str, ts: datetime, fields: Sequence[Any], body: bytes
) -> tuple[Any, ...]:
    """A row of audit_auditrecord as the direct path writes it, in _COLUMNS
    order; `fields` in _FIELD_COLUMNS order. No entry_hash: its receipt has the
    seq and record hash, so nothing looks it up by entry (models.AuditRecord)."""
    event_type, trace_id, *rest = fields
    return (
        seq,
        record_hash,
        prev_hash,
        event_type,
        connection.ops.adapt_datetimefield_value(ts),
        trace_id,
        *rest,
        body.decode("utf-8"),
        None,
    )


def _insert_rows(cursor: Any, rows: list[tuple[Any, ...]]) -> None:
    """One statement for all rows: one round trip under the lock."""
    values = ", ".join([_ROW_PLACEHOLDERS] * len(rows))
    cursor.execute(
        f"INSERT INTO audit_auditrecord ({_COLUMNS}) VALUES {values}",  # noqa: S608 - placeholders only
        [value for row in rows for value in row],
    )


def _sink_failed(exc: BaseException) -> AuditSinkError:
    """Log and count a failed write (after its rollback: an alert it raises is
    not part of it); the error to raise for it."""
    logger.error("audit sink failed", extra={"exc_class": type(exc).__name__})
    events().sink_failure(exc)
    return AuditSinkError(type(exc).__name__)


@contextmanager
def chain_transaction(*, one_statement: bool = False) -> Iterator[_Transaction]:
    """One database transaction for every append made inside it, and for
    whatever else the caller writes in it: one commit. The pipeline puts its
    rate-limit counters in the same transaction as the decision records: on
    SQLite that is one turn on the single write lock and one fsync, on
    PostgreSQL one WAL flush for the counters and the intake rows.

    On PostgreSQL outside any atomic block the appends go to the intake, and
    the sequencer step runs after the commit (`tx.placed` then maps the intake
    ids it sequenced); otherwise they are direct, sequenced at once under the
    chain lock, with the mirror lines written just before the commit (if the
    mirror refuses, the rows roll back) and checkpoints after it. Metrics
    follow the commit. Raises AuditSinkError if the transaction cannot begin
    or commit, the mirror refuses or the intake is refused: nothing of it is
    kept. Nested use joins the open transaction. `one_statement`: the caller
    makes a single intake INSERT, atomic by itself, so on the batched path no
    BEGIN/COMMIT is sent around it (one round trip instead of two).
    """
    open_tx = getattr(_open, "tx", None)
    if open_tx is not None:
        yield open_tx
        return
    batched = connection.vendor == "postgresql" and not connection.in_atomic_block
    tx = _open.tx = _Transaction(started=datetime.now(UTC), batched=batched, one_statement=batched and one_statement)
    try:
        with nullcontext() if tx.one_statement else transaction.atomic():
            try:
                yield tx
                if tx.lines:
                    mirror().append(tx.lines)
            finally:
                _open.tx = None  # closed before the commit: on_commit callbacks start afresh
    except AuditSinkError as exc:
        _sink_failed(exc)
        raise
    except (DatabaseError, OSError) as exc:
        raise _sink_failed(exc) from exc
    finally:
        # Also when the transaction could not even begin (SQLite's BEGIN IMMEDIATE
        # timed out): a stale one would make the next append "join" nothing.
        _open.tx = None
    if not tx.drafts:
        return
    events().appended(tx.drafts, since=tx.started)
    if not batched:
        events().checkpoint_due(tx.drafts[0]["seq"], tx.drafts[-1]["seq"])
    elif tx.sequence or tx.look is not None:
        tx.placed = integrate(look=tx.look)


def chain_append(drafts: Sequence[dict[str, Any] | Presealed], *, sequence_now: bool = True) -> list[Receipt]:
    """Append the drafts, in order, in the open chain transaction or in one of
    their own; return receipts. Drafts may come presealed
    (audit.records.preseal), so that their canonical JSON was made before any
    lock was taken; plain drafts are presealed here.

    Durable once the transaction has committed (at once when there is none
    open). Raises AuditSinkError if the database or the mirror refuses, or
    IntegrationLagging if the sequencer is too far behind: nothing of the
    drafts is kept. (Inside an open chain transaction the error itself
    propagates, and the transaction turns it into AuditSinkError once it has
    rolled back.) Receipts of intake rows appended inside an open transaction
    are promises: the sequencer runs only after its commit.

    `sequence_now=False`: on the batched path, do not offer to sequence after
    the commit, because another append of the same request follows soon and
    will (the pipeline's ALLOW+PENDING, before the terminal record): one round
    trip less, and larger batches. Records left so are taken by the next
    writer's or the timer's turn, well within the merge delay.
    """
    presealed = [d if isinstance(d, Presealed) else preseal(d) for d in drafts]
    with chain_transaction(one_statement=True) as tx:
        if not tx.batched:
            return _append_direct(tx, presealed)
        tx.sequence |= sequence_now
        ids = _append_to_intake(tx, presealed)
    return [
        Receipt(draft.entry_hash, *tx.placed[intake_id])
        if intake_id in tx.placed
        else Receipt(draft.entry_hash, queued_at=tx.started)
        for intake_id, draft in zip(ids, presealed, strict=True)
    ]


def _append_direct(tx: _Transaction, presealed: list[Presealed]) -> list[Receipt]:
    now = datetime.now(UTC)
    ts = now.isoformat(timespec="microseconds")
    with connection.cursor() as cursor:
        seq, prev_hash = tx.head if tx.head is not None else _locked_head(cursor)
        rows, lines = [], []
        for draft in presealed:
            seq += 1
            body = seal_presealed(draft, seq=seq, prev_hash=prev_hash, ts_utc=ts)
            rows.append(
                _chain_row(
                    seq=seq,
                    record_hash=draft.record["record_hash"],
                    prev_hash=prev_hash,
                    ts=now,
                    fields=_field_columns(draft.record),
                    body=body,
                )
            )
            prev_hash = draft.record["record_hash"]
            lines.append(body)
        _insert_rows(cursor, rows)
    tx.head = (seq, prev_hash)
    tx.drafts.extend(draft.record for draft in presealed)
    tx.lines.extend(lines)
    return [Receipt(d.entry_hash, d.record["seq"], d.record["record_hash"]) for d in presealed]


# --- the batched path: intake, then the sequencer ------------------------------------------


def max_merge_delay() -> timedelta:
    """How long a record may wait in the intake: the deadline of a promise."""
    return timedelta(seconds=settings.VERITTA_AUDIT_MAX_MERGE_DELAY_S)


def _append_to_intake(tx: _Transaction, presealed: list[Presealed]) -> list[int]:
    """Insert the records into the intake, in the open transaction; their ids.
    Refused (IntegrationLagging) when the oldest waiting record has waited half
    the merge delay: the sequencer is stopped or stuck, and the other half is
    the margin for it to keep the promises already given."""
    refuse_before = tx.started - max_merge_delay() / 2
    # This process's mirror path must open: the sequencer writes the mirror, and
    # a path that cannot open fails every batch (a stat, no write).
    mirror().check_writable()
    rows = [(tx.started, draft.entry_hash, *_field_columns(draft.record), draft.intake_text) for draft in presealed]
    values = ", ".join([_INTAKE_PLACEHOLDERS] * len(rows))
    insert = (
        f"INSERT INTO audit_auditintake ({_INTAKE_COLUMNS})"  # noqa: S608 - placeholders only
        f" SELECT * FROM (VALUES {values}) AS v"
        f" WHERE NOT EXISTS (SELECT 1 FROM ({_OLDEST_WAITING}) oldest WHERE oldest.queued_at < %s)"
        " RETURNING id"
    )
    params = [*(value for row in rows for value in row), refuse_before]
    with connection.cursor() as cursor:
        if not tx.one_statement:
            cursor.execute(insert, params)
            ids = sorted(row[0] for row in cursor.fetchall())
        else:
            # A lone INSERT: its commit and the sequencer's look (after the
            # commit, as `integrate` requires) go in the same round trip.
            look = f"; {_LOOK}" if tx.sequence else ""
            try:
                cursor.execute(f"BEGIN; {insert}; COMMIT{look}", params)
            except DatabaseError:
                _abandon_batch()  # the BEGIN's transaction is aborted, and must be ended
                raise
            cursor.nextset()
            ids = sorted(row[0] for row in cursor.fetchall())
            if tx.sequence:
                cursor.nextset()
                cursor.nextset()
                tx.look = _read_look(cursor)
    if not ids:
        if tx.look is not None:
            integrate(look=tx.look)  # holding the lock anyway: catch up, then release it
        raise IntegrationLagging("IntegrationLagging")
    tx.drafts.extend(draft.record for draft in presealed)
    tx.intake_ids.update(zip((draft.entry_hash for draft in presealed), ids, strict=True))
    return ids


def integrate(*, max_batches: int = 16, look: _Look | None = None) -> dict[int, tuple[int, str]]:
    """The sequencer's step, open to every writer: if no one holds the chain
    lock, move the intake into the chain, a batch per transaction, until it is
    empty (or max_batches, so that one caller's request is not held forever
    under a steady stream; the next writer or the timer goes on). Returns
    {intake id: (seq, record_hash)} of what this call sequenced, each batch
    durable (its WAL flushed) before it is counted.

    `look`: the caller already holds the chain lock, and read the first batch,
    in its INSERT's round trip.

    Never raises for a failed batch: the rows stay in the intake, the failure
    is logged and counted, and the next attempt takes them again. Looking at
    the intake again after its own commit is what makes "leave it to the lock
    holder" safe: a writer that failed to get the lock had committed its rows
    before it tried, so the holder's next look, after its commit, sees them.
    A batch whose flush fails is not returned (the caller's receipts stay
    promises, true whether or not the sequencing survives) and no checkpoint
    is sealed over it.
    """
    placed: dict[int, tuple[int, str]] = {}
    if connection.vendor != "postgresql":
        return placed  # SQLite: every append is sequenced at once
    for _ in range(max_batches):
        try:
            more = _integrate_batch(placed, look=look)
            look = None  # the lock was released in the batch's commit
        except (DatabaseError, OSError) as exc:
            _sink_failed(exc)
            break
        if not more:
            break
    return placed


def _integrate_batch(placed: dict[int, tuple[int, str]], *, look: _Look | None = None) -> bool:
    """One sequencer transaction, committed asynchronously and then flushed
    outside the lock (see _ASYNC_COMMIT). True when rows are waiting after its
    commit; False when the lock was taken or the intake is empty.

    The lock is session-level, tried before the transaction (_LOOK): a writer
    that finds it taken pays one round trip. It is released in the commit's
    round trip; on any failure the transaction is rolled back and the lock
    released, and if even that fails the connection is closed (PostgreSQL
    releases a session's locks with it, as it does for a killed process)."""
    with connection.cursor() as cursor:
        if look is None:
            cursor.execute(_LOOK)
            look = _read_look(cursor)
            if look is None:
                return False
        try:
            started = datetime.now(UTC)
            if not look.batch:
                cursor.execute(_UNLOCK)
                return False
            now = datetime.now(UTC)
            ts = now.isoformat(timespec="microseconds")
            seq, prev_hash = look.head
            first = seq + 1
            ids, seqs, hashes, prevs, bodies, lines, done = [], [], [], [], [], [], {}
            for intake_id, text in look.batch:
                seq += 1
                body, record_hash = seal_members(members_of_intake(text), seq=seq, prev_hash=prev_hash, ts_utc=ts)
                ids.append(intake_id)
                seqs.append(seq)
                hashes.append(record_hash)
                prevs.append(prev_hash)
                bodies.append(body.decode("utf-8"))
                lines.append(body)
                done[intake_id] = (seq, record_hash)
                prev_hash = record_hash
            # One statement, a handful of array parameters whatever the batch size:
            # the rows leave the intake and enter the chain together, the copied
            # columns taken from the intake row itself.
            # Bound server-side (psycopg's own cursor, not Django's client-side
            # one): the arrays travel as parameters, not as quoted literals; in
            # a pipeline with the transaction's start, so one round trip.
            # Django's wrapper makes psycopg's own errors DatabaseErrors, which
            # `integrate` contains (a raw one escaped it into a 500 mid-crash).
            raw = connection.connection
            with connection.wrap_database_errors, raw.pipeline(), psycopg.Cursor(raw) as bound:
                bound.execute("BEGIN")
                bound.execute(_ASYNC_COMMIT)
                bound.execute(_INTEGRATE, [ids, now, ids, seqs, hashes, prevs, bodies])
            mirror().append(lines)
            # One round trip: the commit, the unlock, the look again (rows
            # committed while the lock was held are waiting for this holder),
            # and the flush, which the round trip's end waits for.
            cursor.execute(f"COMMIT; {_UNLOCK}; {_ANY_WAITING}; {_FLUSHED_THROUGH_HERE}")
            cursor.nextset()
            cursor.nextset()
            more = bool(cursor.fetchone()[0])
        except BaseException:
            _abandon_batch()
            raise
    placed.update(done)
    events().integrated(len(look.batch), since=started)
    events().checkpoint_due(first, seq)
    return more


def _abandon_batch() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"ROLLBACK; {_UNLOCK}")
    except DatabaseError:
        connection.close()  # the session goes, and its lock with it


def oldest_waiting() -> datetime | None:
    """When the oldest record still in the intake was committed (None: empty)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(_OLDEST_WAITING)
        row = cursor.fetchone()
    return row[0] if row else None


# --- the timer: every server process is a standby sequencer ----------------------------


_sequencer_started = False
_sequencer_lock = threading.Lock()


def start_sequencer(interval_s: float | None = None) -> bool:
    """Start this process's sequencer thread (PostgreSQL only; once). Every
    `interval_s` it runs `integrate()` and watches the lag, so records are
    sequenced within the merge delay even when no request comes to do it, or
    when the process that held the lock was killed. Returns whether it runs."""
    global _sequencer_started
    interval = settings.VERITTA_AUDIT_SEQUENCER_INTERVAL_S if interval_s is None else interval_s
    if interval <= 0 or connection.vendor != "postgresql":
        return False
    with _sequencer_lock:
        if not _sequencer_started:
            threading.Thread(target=_sequencer_loop, args=(interval,), name="veritta-sequencer", daemon=True).start()
            _sequencer_started = True
    return True


def _sequencer_loop(interval: float) -> None:
    while True:
        time.sleep(interval)
        try:
            close_old_connections()
            integrate()
            watch_lag()
        except Exception:  # noqa: BLE001 - the timer must outlive any one failure
            logger.exception("sequencer step failed")
            try:
                connection.close()
            except DatabaseError:
                pass


def watch_lag() -> timedelta | None:
    """The intake's lag; raises the alert when it passes a quarter of the merge
    delay (refusals start at a half)."""
    oldest = oldest_waiting()
    if oldest is None:
        return None
    lag = datetime.now(UTC) - oldest
    if lag > max_merge_delay() / 4:
        events().integration_lag(lag)
    return lag

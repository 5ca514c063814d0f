from typing import Any

from django.db import models


class AppendOnlyError(Exception):
    """Raised when code tries to change or delete an audit row."""


class AppendOnlyModel(models.Model):
    """Rows are written once (by the chain writer) and never changed or deleted.

    The database refuses it too (triggers, see migrations); this is the ORM's
    own refusal so that a mistake fails at the line that made it.
    """

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError(f"{type(self).__name__} rows are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError(f"{type(self).__name__} rows are append-only")


class RecordColumns(models.Model):
    """The columns a record's body is copied into for indexed queries; the
    chain, its intake and the reports' rollups hold the same ones."""

    event_type = models.CharField(max_length=32)
    decision = models.CharField(max_length=8, null=True)
    status = models.CharField(max_length=8, null=True)
    action = models.CharField(max_length=64, null=True)
    reason_code = models.CharField(max_length=64, null=True)  # the first reason code
    actor_kind = models.CharField(max_length=16, null=True)
    actor_id = models.CharField(max_length=64, null=True)

    class Meta:
        abstract = True


class AuditRecord(RecordColumns, AppendOnlyModel):
    """One record of the hash chain. `body` is the canonical JSON of the whole
    record (record_hash included); the other columns are copies of its fields,
    kept for indexed queries, and `audit verify` checks that they agree."""

    seq = models.BigIntegerField(primary_key=True)
    record_hash = models.CharField(max_length=64, unique=True)  # serves: exact search by hash
    prev_hash = models.CharField(max_length=64)
    ts_utc = models.DateTimeField()
    trace_id = models.CharField(max_length=36, db_index=True)  # serves: audit trace, /admin/audit/traces
    body = models.TextField()
    # sha256 of the record without its chain fields: what an inclusion promise
    # names before the seq is known (audit.records.Presealed.entry_hash). Kept
    # only for records that went through the intake (PostgreSQL's batched
    # path), whose answer may have been a promise; null for records sequenced
    # at once (their receipt has seq and record_hash) and for those older
    # than migration 0005. Anyone can recompute it from the body.
    entry_hash = models.CharField(max_length=64, null=True)

    class Meta:
        ordering = ["-seq"]
        indexes = [
            # serves: summary/stats over a time window, by type (audit summary)
            models.Index(fields=["ts_utc", "event_type"], name="audit_ts_type"),
            # The next three are partial: a record that cannot match is not
            # indexed, so an append maintains fewer B-trees under the chain lock
            # (docs/PERFORMANCE.md). `decision = …` in a query implies IS NOT NULL,
            # so SQLite and PostgreSQL both use them for the queries they serve.
            # serves: deny breakdown by reason code over a window
            models.Index(
                fields=["event_type", "decision", "ts_utc"],
                name="audit_type_decision_ts",
                condition=models.Q(decision__isnull=False),
            ),
            # serves: completeness (PENDING without terminal) and action outcomes
            models.Index(
                fields=["event_type", "status", "ts_utc"],
                name="audit_type_status_ts",
                condition=models.Q(status__isnull=False),
            ),
            # serves: events filtered by reason code
            models.Index(
                fields=["reason_code", "seq"], name="audit_reason_seq", condition=models.Q(reason_code__isnull=False)
            ),
            # serves: events filtered by actor
            models.Index(fields=["actor_id", "seq"], name="audit_actor_seq"),
            # serves: prove by entry hash (a promise receipt); partial, so a
            # record sequenced at once (SQLite's only kind) costs no entry in it
            models.Index(
                fields=["entry_hash"], name="audit_entry_hash", condition=models.Q(entry_hash__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.event_type} {self.trace_id}"


class AuditIntake(RecordColumns):
    """A record committed durably but not yet in the chain (PostgreSQL's
    batched write path, audit/chain.py): a request writes here without the
    chain lock; the sequencer moves rows into AuditRecord in id order, many
    per lock and commit, and deletes them in the same transaction.

    `body` is the record's canonical JSON cut at its chain fields
    (audit.records.Presealed.intake_text); the other columns are the copies
    AuditRecord keeps, so the sequencer never parses JSON under the lock."""

    id = models.BigAutoField(primary_key=True)
    queued_at = models.DateTimeField()
    entry_hash = models.CharField(max_length=64)
    trace_id = models.CharField(max_length=36)
    body = models.TextField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"intake {self.id} {self.event_type} {self.trace_id}"


class Checkpoint(AppendOnlyModel):
    """A signed C2SP tlog-checkpoint over the first `tree_size` records.

    `frontier` is the Merkle compact range at that size, so the next
    checkpoint only hashes the records added since."""

    tree_size = models.BigIntegerField(unique=True)
    root_hash = models.CharField(max_length=64)
    note = models.TextField()
    frontier = models.JSONField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-tree_size"]

    def __str__(self) -> str:
        return f"checkpoint @{self.tree_size}"


class Cosignature(AppendOnlyModel):
    """A witness's cosignature (C2SP tlog-cosignature) of one checkpoint,
    checked against VERITTA_AUDIT_WITNESSES when it was received (issue 15).
    Served appended to the checkpoint's note; anyone re-checks it with the
    witness's key, so it is evidence, not trust in this table."""

    tree_size = models.BigIntegerField()
    witness = models.CharField(max_length=255)  # the key name of the witness
    line = models.TextField()  # the whole signature line, as added to the note
    cosigned_at = models.DateTimeField()  # the witness's timestamp, from the signed message
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["tree_size", "witness"]
        constraints = [models.UniqueConstraint(fields=["tree_size", "witness"], name="cosignature_once_per_witness")]

    def __str__(self) -> str:
        return f"cosignature @{self.tree_size} by {self.witness}"


class VerificationRun(models.Model):
    """One run of the chain verifier (the console's button or `audit verify`),
    kept so that "last verified" survives restarts. Not part of the chain:
    a run is a fact about the chain, checked again by the next run."""

    QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"  # FAILED: the run broke, not the chain

    started_at = models.DateTimeField()  # when it was asked for (queued), then when it started
    finished_at = models.DateTimeField(null=True)
    status = models.CharField(max_length=8, default=DONE)
    ok = models.BooleanField(null=True)  # the verdict, once done
    records = models.BigIntegerField(default=0)  # checked so far, then in all
    total = models.BigIntegerField(null=True)  # the head seq when it started: progress is records / total
    problems = models.JSONField(default=list)  # [{"seq", "kind", "detail"}], as `audit verify --json`
    warnings = models.JSONField(default=list)
    actor = models.CharField(max_length=80)  # "console:<username>" or "operator:<os user>"
    error = models.CharField(max_length=80, blank=True, default="")  # the exception class that broke a FAILED run

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            # serves: the console's chain status ("last verify": newest run first)
            models.Index(fields=["-started_at"], name="verifyrun_started"),
        ]

    def __str__(self) -> str:
        verdict = self.status
        if self.status == self.DONE and self.ok is not None:
            verdict = "ok" if self.ok else "FAILED"
        return f"verify {self.started_at:%Y-%m-%d %H:%M:%S} {verdict}"


# --- report rollups (audit/rollups.py; docs/OPERATIONS.md "Reports") -----------
# Derived from AuditRecord, never the truth: `audit rollup --rebuild` drops and
# refolds them, and `audit verify` does not read them. Each row holds the records
# with seq <= RollupState.folded_seq only, so a report adds the newer records
# read raw and is exact however far the fold lags.


class RollupState(models.Model):
    """The one row saying how far the rollups reach: every record with
    seq <= folded_seq is counted in them, no other."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    folded_seq = models.BigIntegerField(default=0)


class RollupHour(models.Model):
    """The oldest and newest ts_utc of an hour's folded records: a report may
    take an hour cut by its window from the rollups when every folded record
    of the hour lies inside the window."""

    hour = models.DateTimeField(primary_key=True)
    first_ts = models.DateTimeField()
    last_ts = models.DateTimeField()


class RollupCount(RecordColumns):
    """Records of one hour with the same indexed columns; `dims` is their
    canonical JSON, unique per hour (the columns are nullable, and NULLs are
    never equal in a unique index), so a fold adds to a row with one upsert."""

    hour = models.DateTimeField()
    dims = models.CharField(max_length=400)
    n = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "dims"], name="rollup_count_once_per_hour")]


class RollupDuration(models.Model):
    """How many terminal action records (SUCCESS, FAILED) of an hour took
    exactly `duration_us`: exact percentiles without reading bodies."""

    hour = models.DateTimeField()
    duration_us = models.BigIntegerField()
    n = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "duration_us"], name="rollup_duration_once_per_hour")]


class RollupUnpaired(models.Model):
    """A folded PENDING record whose trace had no folded terminal record yet;
    the fold that meets the terminal deletes it. What stays is the trace
    completeness SLO's numerator gap."""

    seq = models.BigIntegerField(primary_key=True)
    trace_id = models.CharField(max_length=36, db_index=True)
    ts_utc = models.DateTimeField(db_index=True)

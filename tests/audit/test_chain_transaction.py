"""The chain writer's transaction as a server runs it: outside any test
transaction, in a process of its own on a fresh database. On PostgreSQL it is
opened by hand in the round trip that takes the chain lock, on SQLite by
atomic(). Either way it commits whole, rolls back whole, and leaves the
connection with no transaction open.

On PostgreSQL a plain append takes the batched path (intake, then the
sequencer): a refused mirror or a chain lock held elsewhere leaves the
record durable in the intake with a promise receipt, and the next sequencer
turn puts it in the chain, in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.appserver import observe_in_shell

# Runs in `manage.py shell`; prints one JSON object of observations.
SCRIPT = r"""
import json, os, uuid
from pathlib import Path
from django.conf import settings
from django.db import connection
from audit import chain
from audit.chain import AuditSinkError, chain_append, chain_transaction
from audit.models import AuditRecord
from audit.records import new_record

def draft():
    return new_record(event_type="decision_audit", decision="ALLOW", gate="ALL", trace_id=str(uuid.uuid4()))

def idle():
    if connection.in_atomic_block:
        return False
    if connection.vendor == "postgresql":
        from psycopg.pq import TransactionStatus
        return connection.connection.info.transaction_status == TransactionStatus.IDLE
    return not connection.connection.in_transaction

def seqs():
    return list(AuditRecord.objects.order_by("seq").values_list("seq", flat=True))

log = Path(settings.VERITTA_AUDIT_LOG_PATH)
out = {"vendor": connection.vendor}
receipts = chain_append([draft(), draft()])
out["plain"] = {"seqs": [r.seq for r in receipts], "stored": seqs(), "idle": idle(), "lines": len(log.read_text().splitlines())}

with chain_transaction():
    first = chain_append([draft()])
    second = chain_append([draft(), draft()])
out["together"] = {"seqs": [r.seq for r in first + second], "stored": seqs(), "idle": idle()}

try:
    with chain_transaction():
        chain_append([draft()])
        chain_append([draft()])
        raise RuntimeError("the caller fails after appending")
except RuntimeError:
    pass
out["failed"] = {"stored": seqs(), "idle": idle(), "lines": len(log.read_text().splitlines())}
out["failed"]["next"] = chain_append([draft()])[0].seq

blocker = log.parent / "not-a-directory"
blocker.write_text("")
settings.VERITTA_AUDIT_LOG_PATH = blocker / "audit.log"  # its parent is a file: open() fails
try:
    with chain_transaction():
        chain_append([draft()])
    out["mirror_refused"] = {"raised": False}
except AuditSinkError:
    out["mirror_refused"] = {"raised": True, "stored": seqs(), "idle": idle()}
settings.VERITTA_AUDIT_LOG_PATH = log
out["mirror_refused"]["next"] = chain_append([draft()])[0].seq

# Another writer holds the chain lock past our lock timeout: the append fails
# closed at the lock, and the connection is usable again once it is free.
if connection.vendor == "postgresql":
    import psycopg
    from audit.chain import CHAIN_LOCK_KEY
    s = connection.settings_dict
    other = psycopg.connect(host=s["HOST"], port=s["PORT"], user=s["USER"], dbname=s["NAME"], autocommit=True)
    other.execute("SELECT pg_advisory_lock(%s)", [CHAIN_LOCK_KEY])
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '200ms'")
    release = lambda: other.execute("SELECT pg_advisory_unlock(%s)", [CHAIN_LOCK_KEY])
else:
    import sqlite3
    other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    connection.ensure_connection()
    connection.connection.execute("PRAGMA busy_timeout = 200")
    release = lambda: other.execute("ROLLBACK")
# On PostgreSQL only an append inside the caller's transaction waits for the
# chain lock (the direct path); a plain one goes to the intake (below).
from contextlib import nullcontext
from django.db import transaction
try:
    with transaction.atomic() if connection.vendor == "postgresql" else nullcontext():
        chain_append([draft()])
    out["blocked"] = {"raised": False}
except AuditSinkError:
    out["blocked"] = {"raised": True, "idle": idle(), "none_left_open": chain._open.tx is None}
release()
out["blocked"]["next"] = chain_append([draft()])[0].seq
out["blocked"]["stored"] = seqs()
out["blocked"]["next_mirrored"] = any(json.loads(line)["seq"] == out["blocked"]["next"] for line in log.read_text().splitlines())

if connection.vendor == "postgresql":
    # The sequencer's mirror write fails (the writer's own check, that the
    # path opens, passes). Alerts about it append records of their own from a
    # background thread: so records are followed here by their entry hashes.
    from audit.models import AuditIntake
    def waiting(*receipts):
        entries = set(AuditIntake.objects.values_list("entry_hash", flat=True))
        return [r.entry_hash in entries for r in receipts]
    settings.VERITTA_AUDIT_LOG_PATH = Path("/dev/full")  # opens, refuses every write (ENOSPC)
    refused = chain_append([draft()])[0]
    batched = {"refused_seq": refused.seq, "waiting": waiting(refused), "idle": idle()}
    other.execute("SELECT pg_advisory_lock(%s)", [CHAIN_LOCK_KEY])  # before an alert's append can sequence it
    settings.VERITTA_AUDIT_LOG_PATH = log
    locked_out = chain_append([draft()])[0]  # returns, with a promise, while the lock is held
    batched.update(locked_out_seq=locked_out.seq, waiting_while_locked=waiting(refused, locked_out), idle_while_locked=idle())
    release()
    last = chain_append([draft()])[0]
    # Its own turn sequences all three, unless an alert's append was holding
    # the lock that moment: then the next turn (the timer's, here by hand) does.
    import time
    for _ in range(50):
        if not any(waiting(refused, locked_out, last)):
            break
        time.sleep(0.1)
        chain.integrate()
    batched.update(waiting_after=waiting(refused, locked_out, last), stored=seqs())
    placed = dict(AuditRecord.objects.filter(entry_hash__in=[refused.entry_hash, locked_out.entry_hash, last.entry_hash]).values_list("entry_hash", "seq"))
    order = [placed.get(r.entry_hash) for r in (refused, locked_out, last)]
    batched["in_order"] = None not in order and order == sorted(order)
    mirrored = {json.loads(line)["seq"] for line in log.read_text().splitlines()}
    batched["mirrored"] = set(order) <= mirrored
    out["batched"] = batched

    # The database refuses the batch's own statement, which psycopg's cursor
    # sends (not Django's): contained like any failed batch, the writer gets a
    # promise and the record waits in the intake until a turn succeeds.
    refuse = (
        "CREATE FUNCTION veritta_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no'; END $$;"
        " CREATE TRIGGER veritta_test_refuse BEFORE INSERT ON audit_auditrecord"
        " FOR EACH ROW EXECUTE FUNCTION veritta_test_refuse()"
    )
    with connection.cursor() as cursor:
        cursor.execute(refuse)
    try:
        held = chain_append([draft()])[0]
        refused_batch = {"raised": None, "seq": held.seq, "waiting": waiting(held), "idle": idle()}
    except Exception as exc:
        held, refused_batch = None, {"raised": f"{type(exc).__module__}.{type(exc).__name__}"}
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER veritta_test_refuse ON audit_auditrecord; DROP FUNCTION veritta_test_refuse()")
    for _ in range(50):
        if held is None or not any(waiting(held)):
            break
        time.sleep(0.1)
        chain.integrate()
    refused_batch["waiting_after"] = held is not None and any(waiting(held))
    refused_batch["stored"] = seqs()
    out["refused_batch"] = refused_batch
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return observe_in_shell(Path(tmp_path_factory.mktemp("chain-tx")), SCRIPT)


def test_an_append_commits_and_leaves_no_transaction_open(observed):
    assert observed["plain"] == {"seqs": [1, 2], "stored": [1, 2], "idle": True, "lines": 2}


def test_appends_in_one_chain_transaction_commit_together(observed):
    # On PostgreSQL they go to the intake: sequenced after the commit, so their
    # receipts (given before it) are promises.
    seqs = [None, None, None] if observed["vendor"] == "postgresql" else [3, 4, 5]
    assert observed["together"] == {"seqs": seqs, "stored": [1, 2, 3, 4, 5], "idle": True}


def test_a_failure_inside_rolls_back_every_append_of_it(observed):
    # The mirror is written only at the commit, and the chain goes on from the committed head.
    assert observed["failed"] == {"stored": [1, 2, 3, 4, 5], "idle": True, "lines": 5, "next": 6}


# A sink failure raises an alert, whose own records a background thread appends
# to the chain when it can: from here on the chain may hold them too.


def _gapless(seqs: list[int]) -> bool:
    return seqs == list(range(1, len(seqs) + 1))


def test_a_refused_mirror_keeps_nothing_and_the_next_append_works(observed):
    refused = observed["mirror_refused"]
    assert refused["raised"] and refused["idle"] and refused["stored"] == [1, 2, 3, 4, 5, 6]
    assert refused["next"] >= 7


def test_a_writer_blocked_at_the_lock_fails_closed_and_leaves_no_transaction_open(observed):
    blocked = observed["blocked"]
    assert blocked["raised"] and blocked["idle"] and blocked["none_left_open"]
    assert blocked["next_mirrored"]  # the next append is a whole one again, mirror line included
    assert _gapless(blocked["stored"]) and blocked["next"] in blocked["stored"]
    assert blocked["next"] > observed["mirror_refused"]["next"]


def test_batched_appends_wait_in_the_intake_when_the_sequencer_cannot_run(observed):
    if observed["vendor"] != "postgresql":
        pytest.skip("the batched write path is PostgreSQL's")
    batched = observed["batched"]
    # A refused mirror: the record is durable in the intake, its receipt a promise.
    assert batched["refused_seq"] is None and batched["waiting"] == [True] and batched["idle"]
    # A lock held elsewhere: no wait, a promise, the intake grows.
    assert batched["locked_out_seq"] is None and batched["waiting_while_locked"] == [True, True]
    assert batched["idle_while_locked"]
    # The next turn sequences all three in commit order, mirror included, gapless.
    assert batched["waiting_after"] == [False, False, False] and batched["in_order"] and batched["mirrored"]
    assert _gapless(batched["stored"])


def test_a_batch_the_database_refuses_is_contained_and_taken_again(observed):
    if observed["vendor"] != "postgresql":
        pytest.skip("the batched write path is PostgreSQL's")
    refused = observed["refused_batch"]
    # Not raised to the writer (it was a 500 once: psycopg's error escaped the
    # sequencer step): a promise, the record waiting, no transaction left open.
    assert refused["raised"] is None, refused
    assert refused["seq"] is None and refused["waiting"] == [True] and refused["idle"]
    assert refused["waiting_after"] is False and _gapless(refused["stored"])


@pytest.mark.django_db
def test_the_chain_table_has_no_prefix_indexes():
    """Every index on the chain costs each record written; the `LIKE` prefix
    ones Django adds to indexed CharFields on PostgreSQL serve no query
    (migration 0009), so none may be there."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no varchar_pattern_ops indexes")
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'audit_auditrecord'")
        definitions = dict(cursor.fetchall())
    assert not [name for name, definition in definitions.items() if "pattern_ops" in definition]
    assert any("(trace_id)" in definition for definition in definitions.values())  # the plain one stays
    assert any("UNIQUE" in d and "(record_hash)" in d for d in definitions.values())

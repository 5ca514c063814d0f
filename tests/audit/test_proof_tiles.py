"""The tile cache the proof endpoints use (audit/proof_tiles.py): its roots
equal the reference RFC 6962 computation (audit.merkle, all leaves in memory)
for every leaf and size of a real log, it extends as the log grows, and it
empties itself when the table is re-chained under it."""

from __future__ import annotations

import pytest
from django.db import connection

from audit.merkle import consistency_proof_from_hashes, inclusion_proof_from_hashes, leaf_hash
from audit.models import AuditRecord
from audit.proof_tiles import TileCache
from audit.proofs import path_ranges
from audit.records import record_hash
from audit.transparency import consistency_ranges
from audit.triggers import drop_sql
from veritta_site.canonical import canonical_json

SMOKE = {"action": "test_action", "event_type": "test_event"}


def leaves() -> list[bytes]:
    return [leaf_hash(bytes.fromhex(h)) for h in AuditRecord.objects.order_by("seq").values_list("record_hash", flat=True)]


@pytest.fixture
def log(api):
    for _ in range(15):  # 45 records: tiles of 4 leaves, a partial right edge
        api.process(SMOKE)
    return api


def test_roots_equal_the_reference_for_every_leaf_and_size(log):
    cache, hashes = TileCache(height=2), leaves()
    for size in (1, 2, 3, 4, 5, 8, 13, 16, 31, 32, 33, 45):
        for index in range(size):
            assert cache.range_roots(path_ranges(index, 0, size), size) == inclusion_proof_from_hashes(index, hashes[:size])
        for old in range(1, size):
            assert cache.range_roots(consistency_ranges(old, size), size) == consistency_proof_from_hashes(old, hashes[:size])
    assert cache.tiles == 45 // 4


def test_the_cache_grows_with_the_log(log):
    cache = TileCache(height=2)
    cache.range_roots(path_ranges(0, 0, 45), 45)
    assert cache.tiles == 11
    log.process(SMOKE)  # 48 records: one more complete tile
    hashes = leaves()
    assert cache.range_roots(path_ranges(46, 0, 48), 48) == inclusion_proof_from_hashes(46, hashes)
    assert cache.tiles == 12


def test_a_rechained_table_empties_the_cache(log):
    cache = TileCache(height=2)
    honest = cache.range_roots(path_ranges(40, 0, 45), 45)
    for statement in drop_sql(connection.vendor):
        with connection.cursor() as cursor:
            cursor.execute(statement)
    # The attacker edits seq 3 and re-chains every record after it.
    rows = list(AuditRecord.objects.order_by("seq").values_list("seq", "body"))
    prev = None
    with connection.cursor() as cursor:
        for seq, body in rows:
            record = __import__("json").loads(body)
            if seq >= 3:
                if seq == 3:
                    record["http_status"] = 299
                record["prev_hash"] = prev
                record["record_hash"] = record_hash(record)
                cursor.execute(
                    "UPDATE audit_auditrecord SET body = %s, record_hash = %s, prev_hash = %s WHERE seq = %s",
                    [canonical_json(record).decode(), record["record_hash"], record["prev_hash"], seq],
                )
            prev = record["record_hash"]
    now = cache.range_roots(path_ranges(40, 0, 45), 45)
    assert now != honest and now == inclusion_proof_from_hashes(40, leaves())

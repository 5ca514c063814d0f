"""bench/ingest_bench.py reads the chain lock's held share from pg_locks: it
must see the lock whether a transaction or a session holds it, and only
while it is held (a performance figure, never asserted; this is its probe)."""

import psycopg
import pytest

from audit.chain import CHAIN_LOCK_KEY
from bench.ingest_bench import lock_held, lock_key_parts
from tests.support.servers import PostgresCluster


@pytest.fixture(scope="module")
def pg_url():
    with PostgresCluster() as cluster:
        yield cluster.url()


def test_key_splits_into_classid_and_objid():
    assert lock_key_parts(CHAIN_LOCK_KEY) == (0x56455249, 0x54544131)


def test_session_level_lock_is_seen_while_held(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as holder, psycopg.connect(pg_url, autocommit=True) as probe:
        assert not lock_held(probe, CHAIN_LOCK_KEY)
        holder.execute("SELECT pg_try_advisory_lock(%s)", (CHAIN_LOCK_KEY,))
        assert lock_held(probe, CHAIN_LOCK_KEY)
        holder.execute("SELECT pg_advisory_unlock(%s)", (CHAIN_LOCK_KEY,))
        assert not lock_held(probe, CHAIN_LOCK_KEY)


def test_transaction_level_lock_is_seen_until_commit(pg_url):
    with psycopg.connect(pg_url) as holder, psycopg.connect(pg_url, autocommit=True) as probe:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (CHAIN_LOCK_KEY,))
        assert lock_held(probe, CHAIN_LOCK_KEY)
        holder.commit()
        assert not lock_held(probe, CHAIN_LOCK_KEY)


def test_another_advisory_lock_is_not_the_chain_lock(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as holder, psycopg.connect(pg_url, autocommit=True) as probe:
        holder.execute("SELECT pg_advisory_lock(%s)", (CHAIN_LOCK_KEY + 1,))
        assert not lock_held(probe, CHAIN_LOCK_KEY)

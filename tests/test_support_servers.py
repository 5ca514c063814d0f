"""Self-test of the throwaway server helpers in tests/support/servers.py."""

import socket

import psycopg
import pytest
import redis

from tests.support.servers import PostgresCluster, RedisServer


def test_redis_server_answers_and_dies_on_kill():
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url, socket_timeout=5)
        assert client.ping()
        client.set("veritta", "ok")
        assert client.get("veritta") == b"ok"
        client.close()

        server.kill()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    assert server.tmpdir is None  # stop() via __exit__ cleaned up


def test_postgres_cluster_accepts_connections():
    with PostgresCluster() as cluster:
        with psycopg.connect(cluster.url(), connect_timeout=10) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        url = cluster.create_database("veritta_extra")
        with psycopg.connect(url, connect_timeout=10) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (
                "veritta_extra",
            )


def test_postgres_cluster_is_durable_only_when_asked():
    show = "SELECT current_setting('fsync'), current_setting('synchronous_commit'), current_setting('full_page_writes')"
    with PostgresCluster(durable=True) as cluster:
        with psycopg.connect(cluster.url(), connect_timeout=10) as conn:
            assert conn.execute(show).fetchone() == ("on", "on", "on")
    with PostgresCluster() as cluster:  # the tests' default: no fsync
        with psycopg.connect(cluster.url(), connect_timeout=10) as conn:
            assert conn.execute(show).fetchone() == ("off", "on", "off")

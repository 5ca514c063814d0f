"""Exact rate limits over fixed one-minute windows (gate G10).

A counter is incremented by one atomic operation of the shared store and the
count it returns decides, so the limit is exact however many worker processes
and app servers share the store:

- the database (default): `INSERT … ON CONFLICT … DO UPDATE SET count = count + 1
  RETURNING count`, one statement, no read-modify-write (SQLite >= 3.35, PostgreSQL);
- Redis, when VERITTA_RATE_LIMIT_URL is set: a Lua script doing INCR + PEXPIRE.

If the store cannot be reached the request is refused (RATE_LIMIT_UNAVAILABLE),
never waved through. Buckets name a key prefix, a session id or a keyed digest
of the client address (audit.services.client_digest), never a secret or an address.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection, transaction

logger = logging.getLogger("veritta.ratelimit")

WINDOW_S = 60


class RateLimitUnavailable(Exception):
    """The counter store could not be reached or did not answer."""


@dataclass(frozen=True)
class Usage:
    scope: str  # "key" | "session" | "address" | "admin": the policy name in the headers
    limit: int
    count: int
    reset_s: int  # seconds until the window ends

    @property
    def exceeded(self) -> bool:
        return self.count > self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    def headers(self) -> dict[str, str]:
        """IETF draft-ietf-httpapi-ratelimit-headers fields, plus Retry-After when exceeded."""
        headers = {
            "RateLimit-Policy": f'"{self.scope}";q={self.limit};w={WINDOW_S}',
            "RateLimit": f'"{self.scope}";r={self.remaining};t={self.reset_s}',
        }
        if self.exceeded:
            headers["Retry-After"] = str(self.reset_s)
        return headers


class DatabaseStore:
    _PURGE = "DELETE FROM sessions_app_ratecounter WHERE minute < %s"

    def increment(self, buckets: list[str], window: int) -> list[int]:
        """Increment every bucket with ONE statement: one write transaction per
        request, whatever the number of limits (docs/PERFORMANCE.md: on SQLite
        each write transaction is a turn on the single write lock)."""
        sql = (
            "INSERT INTO sessions_app_ratecounter (bucket, minute, count) VALUES "
            + ", ".join(["(%s, %s, 1)"] * len(buckets))
            + " ON CONFLICT (bucket, minute) DO UPDATE SET count = sessions_app_ratecounter.count + 1"
            " RETURNING bucket, count"
        )
        params = [value for bucket in buckets for value in (bucket, window)]
        # Inside a transaction (the pipeline's decision transaction on SQLite) a
        # savepoint keeps a failure here from spoiling it: the DENY is still written.
        contained = transaction.atomic() if connection.in_atomic_block else nullcontext()
        try:
            with contained, connection.cursor() as cursor:
                cursor.execute(sql, params)
                counts = dict(cursor.fetchall())  # RETURNING order is unspecified
                if 1 in counts.values():
                    # First hit of a new window: drop the windows that have passed
                    # (an indexed range delete, once per bucket and minute).
                    cursor.execute(self._PURGE, [window - 1])
        except DatabaseError as exc:
            raise RateLimitUnavailable(type(exc).__name__) from exc
        return [int(counts[bucket]) for bucket in buckets]


class RedisStore:
    # INCR and PEXPIRE in one atomic script per key: a counter never outlives
    # its window by more than one window, and no client sees it without expiry.
    _SCRIPT = """
local counts = {}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('PEXPIRE', key, ARGV[1]) end
  counts[i] = count
end
return counts
"""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._script = self._redis.register_script(self._SCRIPT)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)

    def ping(self) -> None:
        """Raise RateLimitUnavailable unless Redis answers (for /admin/health)."""
        try:
            self._redis.ping()
        except self._errors as exc:
            raise RateLimitUnavailable(type(exc).__name__) from exc

    def increment(self, buckets: list[str], window: int) -> list[int]:
        keys = [f"veritta:rl:{bucket}:{window}" for bucket in buckets]
        try:
            return [int(c) for c in self._script(keys=keys, args=[2 * WINDOW_S * 1000])]
        except self._errors as exc:
            raise RateLimitUnavailable(type(exc).__name__) from exc


_stores: dict[str, DatabaseStore | RedisStore] = {}
_stores_lock = threading.Lock()


def store() -> DatabaseStore | RedisStore:
    """The configured store (one Redis connection pool per process and URL;
    redis-py makes a new pool after fork)."""
    url = settings.VERITTA_RATE_LIMIT_URL
    if not url:
        return DatabaseStore()
    with _stores_lock:
        if url not in _stores:
            _stores[url] = RedisStore(url)
        return _stores[url]


def rate_hits(checks: list[tuple[str, str, int]], *, in_database: bool = False) -> list[Usage]:
    """Count one request against each `scope:ident` in the current minute, in
    one operation of the store (the database's, with in_database). Raises
    RateLimitUnavailable if it does not answer."""
    now = time.time()
    window = int(now // WINDOW_S)
    buckets = [f"{scope}:{ident}"[:80] for scope, ident, _ in checks]
    counts = (DatabaseStore() if in_database else store()).increment(buckets, window)
    reset_s = max(1, math.ceil((window + 1) * WINDOW_S - now))
    return [
        Usage(scope=scope, limit=limit, count=count, reset_s=reset_s)
        for (scope, _, limit), count in zip(checks, counts, strict=True)
    ]


def rate_hit(*, scope: str, ident: str, limit: int) -> Usage:
    return rate_hits([(scope, ident, limit)])[0]


def store_name() -> str:
    return "redis" if settings.VERITTA_RATE_LIMIT_URL else "database"


def counters_share_audit_transaction() -> bool:
    """Whether the counters should be written in the same transaction as the
    decision records: whenever the counters are in the database. On SQLite
    every write transaction is a turn on the single write lock and an fsync;
    on PostgreSQL the decision records go to the intake, which takes no chain
    lock, so the counter rows are held only for that one commit and its WAL
    flush is shared. (docs/PERFORMANCE.md)"""
    return store_name() == "database"


def limits_enforce(*, checks: list[tuple[str, str, int]], in_database: bool = False) -> list[Usage]:
    """Count the request against each (scope, ident, limit) at once; raise
    VerittaError at the first limit exceeded, in order, or if the store is down.

    Every counter has counted the request: a refused request still uses its
    key's, session's and address's budget, as a client retrying against a
    limit should. `in_database` counts in the database even when Redis is
    configured: for /admin/health, which must be able to say Redis is down."""
    from veritta_site.errors import VerittaError

    try:
        usages = rate_hits(checks, in_database=in_database)
    except RateLimitUnavailable as exc:
        logger.error("rate limit store unavailable", extra={"store": store_name(), "exc_class": str(exc)})
        raise VerittaError("RATE_LIMIT_UNAVAILABLE", evidence={"store": store_name(), "exc_class": str(exc)}) from exc
    for usage in usages:
        if usage.exceeded:
            info = {"scope": usage.scope, "limit": usage.limit, "window_s": WINDOW_S, "retry_after_s": usage.reset_s}
            raise VerittaError("RATE_LIMIT_EXCEEDED", evidence=info, details=info, headers=usage.headers())
    return usages


def tightest(usages: list[Usage]) -> dict[str, str]:
    """The RateLimit headers of the limit closest to running out."""
    return min(usages, key=lambda u: u.remaining).headers() if usages else {}

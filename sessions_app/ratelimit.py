"""Exact sliding rate limits (gate G10), and the counts alerts keep per minute.

Limits are a GCRA (generic cell rate algorithm, as Envoy, redis-cell and
Stripe use): each bucket keeps one time, its "theoretical arrival time"
(TAT). A limit of L per W = 60 s spaces requests T = W / L apart and allows
a burst of L: a request at `now` is admitted iff max(TAT, now) + T - now <= W,
and then TAT becomes max(TAT, now) + T. The budget refills continuously, one
request every T, so there is no window boundary to burst across: in any
interval of d seconds at most L + d / T requests pass, never 2 L at once.

A bucket is updated by one atomic operation of the shared store and its
answer decides, so the limit is exact however many worker processes and app
servers share the store:

- the database (default): one conditional upsert for all of a request's
  buckets, `INSERT … ON CONFLICT (bucket) DO UPDATE SET tat = … WHERE … <= W
  RETURNING bucket, tat` (SQLite >= 3.35, PostgreSQL): the rows it returns
  were admitted;
- Redis, when VERITTA_RATE_LIMIT_URL is set: one Lua script on Redis's clock.

A bucket that refuses is left as it was (a refused request does not use the
budget it exceeded; Retry-After says exactly when the next one passes); the
others a request was within do count it. If the store cannot be reached the
request is refused (RATE_LIMIT_UNAVAILABLE), never waved through. Buckets name
a key prefix, a session id or a keyed digest of the client address
(audit.services.client_digest), never a secret or an address.

Counts (`minute_count`), for alert thresholds such as "N authentication failures
within a minute" (audit/alerts.py), are kept per clock minute and read as the
sum of this minute and the one before: any N events within 60 s are counted
together whichever minute boundary they straddle (an attacker cannot spread
2 N - 2 failures across one unseen), at the price of also counting N events
spread over up to two minutes.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction

logger = logging.getLogger("veritta.ratelimit")

WINDOW_S = 60


class RateLimitUnavailable(Exception):
    """The counter store could not be reached or did not answer."""


@dataclass(frozen=True)
class Admission:
    """One limit's answer for one request (GCRA; times in microseconds)."""

    scope: str  # "key" | "session" | "address" | "admin": the policy name in the headers
    limit: int
    admitted: bool
    tat_us: int  # the bucket's TAT after this request (unchanged if refused)
    now_us: int

    @property
    def interval_us(self) -> int:
        return interval_us(self.limit)

    @property
    def exceeded(self) -> bool:
        return not self.admitted

    @property
    def remaining(self) -> int:
        """Requests that would pass right now."""
        return max(0, (WINDOW_US - (self.tat_us - self.now_us)) // self.interval_us)

    @property
    def reset_s(self) -> int:
        """Seconds until the whole budget is back."""
        return max(0, math.ceil((self.tat_us - self.now_us) / 1_000_000))

    @property
    def retry_after_s(self) -> int:
        """Seconds until a request would pass (0 if one would now)."""
        wait_us = max(self.tat_us, self.now_us) + self.interval_us - WINDOW_US - self.now_us
        return max(1, math.ceil(wait_us / 1_000_000)) if wait_us > 0 else 0

    def headers(self) -> dict[str, str]:
        """IETF draft-ietf-httpapi-ratelimit-headers fields, plus Retry-After when exceeded."""
        headers = {
            "RateLimit-Policy": f'"{self.scope}";q={self.limit};w={WINDOW_S}',
            "RateLimit": f'"{self.scope}";r={self.remaining};t={self.retry_after_s if self.exceeded else self.reset_s}',
        }
        if self.exceeded:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


WINDOW_US = WINDOW_S * 1_000_000


def interval_us(limit: int) -> int:
    """T: how far apart a limit of `limit` per window spaces requests (at
    least 1 µs: a limit above 60,000,000 a minute is as good as none)."""
    return max(1, WINDOW_US // limit)


# The GCRA step for every bucket of a request in one statement. The VALUES row
# is a fresh bucket (admitted, TAT = now + T) and carries T and now for the
# update, which runs only where the request is admitted: the rows returned.
_ADMIT = (
    "INSERT INTO sessions_app_ratelimitstate (bucket, tat_us, interval_us, seen_us) VALUES {values}"
    " ON CONFLICT (bucket) DO UPDATE SET"
    " tat_us = {greatest}(sessions_app_ratelimitstate.tat_us, excluded.seen_us) + excluded.interval_us,"
    " interval_us = excluded.interval_us, seen_us = excluded.seen_us"
    " WHERE {greatest}(sessions_app_ratelimitstate.tat_us, excluded.seen_us) + excluded.interval_us"
    " - excluded.seen_us <= " + str(WINDOW_US) + " RETURNING bucket, tat_us"
)
_REFUSED_TATS = "SELECT bucket, tat_us FROM sessions_app_ratelimitstate WHERE bucket IN ({marks})"
# A bucket whose TAT has passed is the same as none: dropped now and then.
_PURGE_STATES = "DELETE FROM sessions_app_ratelimitstate WHERE tat_us < %s"
PURGE_EVERY = 1000  # admissions per process between purges


_SAVEPOINT = "veritta_limits"


class _ContainedCursor:
    """A cursor whose statements each run in a savepoint of their own, sent
    with the statement: on PostgreSQL a savepoint is a round trip, and three
    per statement were a quarter of a request's. A failed statement is rolled
    back to its savepoint, so the transaction around it goes on."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        try:
            self._cursor.execute(f"SAVEPOINT {_SAVEPOINT}; {sql}; RELEASE SAVEPOINT {_SAVEPOINT}", params)
        except DatabaseError:
            self._cursor.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}; RELEASE SAVEPOINT {_SAVEPOINT}")
            raise
        self._cursor.nextset()  # the statement's own result

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())


@contextmanager
def _store_cursor() -> Iterator[Any]:
    """A cursor for the store's statements. Inside a transaction (the pipeline's
    decision transaction) a savepoint keeps a failure here from spoiling it:
    the DENY is still written (on SQLite Django's savepoint, which costs no
    round trip). Any database error is RateLimitUnavailable."""
    contained = connection.in_atomic_block and connection.vendor == "postgresql"
    savepoint = transaction.atomic() if connection.in_atomic_block and not contained else nullcontext()
    try:
        with savepoint, connection.cursor() as cursor:
            yield _ContainedCursor(cursor) if contained else cursor
    except DatabaseError as exc:
        raise RateLimitUnavailable(type(exc).__name__) from exc


class DatabaseStore:
    _PURGE = "DELETE FROM sessions_app_ratecounter WHERE minute < %s"

    _PREVIOUS = "SELECT bucket, count FROM sessions_app_ratecounter WHERE minute = %s AND bucket IN ({marks})"

    def increment(self, buckets: list[str], window: int) -> list[int]:
        """Count one event in every bucket in minute `window` with ONE write
        statement, and return each bucket's events in this minute and the one
        before (see the module's docstring)."""
        sql = (
            "INSERT INTO sessions_app_ratecounter (bucket, minute, count) VALUES "
            + ", ".join(["(%s, %s, 1)"] * len(buckets))
            + " ON CONFLICT (bucket, minute) DO UPDATE SET count = sessions_app_ratecounter.count + 1"
            " RETURNING bucket, count"
        )
        params = [value for bucket in buckets for value in (bucket, window)]
        with _store_cursor() as cursor:
            cursor.execute(sql, params)
            counts = dict(cursor.fetchall())  # RETURNING order is unspecified
            if 1 in counts.values():
                # First hit of a new window: drop the windows before the one
                # before (an indexed range delete, once per bucket and minute).
                cursor.execute(self._PURGE, [window - 1])
            cursor.execute(self._PREVIOUS.format(marks=", ".join(["%s"] * len(buckets))), [window - 1, *buckets])
            previous = dict(cursor.fetchall())
        return [int(counts[bucket]) + int(previous.get(bucket, 0)) for bucket in buckets]

    _admissions = 0

    def admit(self, buckets: list[tuple[str, int]], now_us: int) -> dict[str, tuple[bool, int]]:
        """GCRA for every (bucket, interval_us) in one statement: {bucket: (admitted, tat_us)}."""
        greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
        sql = _ADMIT.format(values=", ".join(["(%s, %s, %s, %s)"] * len(buckets)), greatest=greatest)
        params = [v for bucket, t in buckets for v in (bucket, now_us + t, t, now_us)]
        with _store_cursor() as cursor:
            cursor.execute(sql, params)
            answers = {bucket: (True, int(tat)) for bucket, tat in cursor.fetchall()}
            refused = [bucket for bucket, _ in buckets if bucket not in answers]
            if refused:
                cursor.execute(_REFUSED_TATS.format(marks=", ".join(["%s"] * len(refused))), refused)
                answers.update({bucket: (False, int(tat)) for bucket, tat in cursor.fetchall()})
            DatabaseStore._admissions += 1
            if DatabaseStore._admissions % PURGE_EVERY == 0:
                cursor.execute(_PURGE_STATES, [now_us])
        return answers


class RedisStore:
    # INCR and PEXPIRE in one atomic script, per bucket: KEYS are pairs (this
    # minute's key, the one before's); the answer is their sum. A counter
    # lives two windows (the next minute still reads it), never without expiry.
    _SCRIPT = """
local counts = {}
for i = 1, #KEYS, 2 do
  local count = redis.call('INCR', KEYS[i])
  if count == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
  counts[#counts + 1] = count + tonumber(redis.call('GET', KEYS[i + 1]) or '0')
end
return counts
"""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._script = self._redis.register_script(self._SCRIPT)
        self._admit = self._redis.register_script(self._ADMIT)
        self.last_now_us = 0
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)

    # The GCRA step for every key, on Redis's own clock (one clock for every
    # app server): ARGV = window, then each key's interval, in microseconds.
    _ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local answers = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[i + 1])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  if tat + interval - now <= window then
    tat = tat + interval
    redis.call('SET', key, string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
    answers[i] = {1, string.format('%d', tat), string.format('%d', now)}
  else
    answers[i] = {0, string.format('%d', tat), string.format('%d', now)}
  end
end
return answers
"""

    def admit(self, buckets: list[tuple[str, int]], now_us: int) -> dict[str, tuple[bool, int]]:
        """As DatabaseStore.admit; `now_us` is replaced by Redis's clock (see admissions())."""
        keys = [f"veritta:gcra:{bucket}" for bucket, _ in buckets]
        try:
            rows = self._admit(keys=keys, args=[WINDOW_US, *(t for _, t in buckets)])
        except self._errors as exc:
            raise RateLimitUnavailable(type(exc).__name__) from exc
        self.last_now_us = int(rows[0][2]) if rows else now_us
        return {bucket: (row[0] == 1, int(row[1])) for (bucket, _), row in zip(buckets, rows, strict=True)}

    def ping(self) -> None:
        """Raise RateLimitUnavailable unless Redis answers (for /admin/health)."""
        try:
            self._redis.ping()
        except self._errors as exc:
            raise RateLimitUnavailable(type(exc).__name__) from exc

    def increment(self, buckets: list[str], window: int) -> list[int]:
        keys = [f"veritta:rl:{bucket}:{minute}" for bucket in buckets for minute in (window, window - 1)]
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


def minute_count(scope: str, ident: str) -> int | None:
    """One event of `scope:ident` and the count within the last minute (this
    clock minute and the one before); None when the store does not answer
    (audit.alerts counts through this)."""
    try:
        return store().increment([f"{scope}:{ident}"[:80]], int(time.time() // WINDOW_S))[0]
    except RateLimitUnavailable:
        return None


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


def admissions(checks: list[tuple[str, str, int]], *, in_database: bool = False) -> list[Admission]:
    """Admit one request against each (scope, ident, limit), in one operation of
    the store (the database's, with in_database). Raises RateLimitUnavailable."""
    chosen = DatabaseStore() if in_database else store()
    now_us = time.time_ns() // 1000
    buckets = [(f"{scope}:{ident}"[:80], interval_us(limit)) for scope, ident, limit in checks]
    answers = chosen.admit(buckets, now_us)
    if isinstance(chosen, RedisStore):
        now_us = chosen.last_now_us
    return [
        Admission(scope=scope, limit=limit, admitted=answers[bucket][0], tat_us=answers[bucket][1], now_us=now_us)
        for (scope, _, limit), (bucket, _) in zip(checks, buckets, strict=True)
    ]


def limits_enforce(*, checks: list[tuple[str, str, int]], in_database: bool = False) -> list[Admission]:
    """Admit the request against each (scope, ident, limit) at once; raise
    VerittaError at the first limit exceeded, in order, or if the store is down.
    A limit of 0 or less refuses everything without asking the store.

    The limits the request was within count it even when another refuses it
    (so a refused request still uses its key's, session's and address's budget
    where it had one); the limit it exceeded is left as it was. `in_database`
    counts in the database even when Redis is configured: for /admin/health,
    which must be able to say Redis is down."""
    from veritta_site.errors import VerittaError

    closed = next(((scope, limit) for scope, _, limit in checks if limit <= 0), None)
    if closed:
        info = {"scope": closed[0], "limit": closed[1], "window_s": WINDOW_S}
        raise VerittaError("RATE_LIMIT_EXCEEDED", evidence=info, details=info)
    try:
        results = admissions(checks, in_database=in_database)
    except RateLimitUnavailable as exc:
        logger.error("rate limit store unavailable", extra={"store": store_name(), "exc_class": str(exc)})
        raise VerittaError("RATE_LIMIT_UNAVAILABLE", evidence={"store": store_name(), "exc_class": str(exc)}) from exc
    for result in results:
        if result.exceeded:
            info = {"scope": result.scope, "limit": result.limit, "window_s": WINDOW_S, "retry_after_s": result.retry_after_s}
            raise VerittaError("RATE_LIMIT_EXCEEDED", evidence=info, details=info, headers=result.headers())
    return results


def tightest(results: list[Admission]) -> dict[str, str]:
    """The RateLimit headers of the limit closest to running out."""
    return min(results, key=lambda r: r.remaining).headers() if results else {}

"""Settings of the benchmark server: the production settings, plus the peer
app (`bench.peer`) that stands for what a Django team would otherwise write.

The governed pipeline and the peer views run in one settings module, one
database and one gunicorn configuration, so their numbers compare."""

import os

from veritta_site.settings import *  # noqa: F403
from veritta_site.settings import DATABASES, INSTALLED_APPS, REST_FRAMEWORK

INSTALLED_APPS = [*INSTALLED_APPS, "rest_framework.authtoken", "bench.peer"]
ROOT_URLCONF = "bench.urls"

# The peer's throttle state lives in Django's database cache, so every worker
# shares it (a local-memory cache would give each worker its own limit).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "bench_cache",
    }
}
# `http_bench.py --redis` also runs the peer with its cache in Redis, to compare
# with the governed service whose rate counters are in Redis.
if os.environ.get("BENCH_CACHE_REDIS_URL"):
    CACHES["default"] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ["BENCH_CACHE_REDIS_URL"],
    }

# DRF's throttle keeps one timestamp per request in its window and rewrites
# that list on every request, so a one-minute window at a few hundred req/s
# would pickle thousands of floats per request. A one-second window with an
# unreachable rate is the kindest honest setting: never a 429, smallest list.
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"user": "1000000/s"}}

# `http_bench.py --whatif-flock`: SQLite writers queue on a blocking OS lock
# (bench/sqlite_flock) instead of SQLite's sleeping busy handler.
if os.environ.get("BENCH_SQLITE_FLOCK") and DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["ENGINE"] = "bench.sqlite_flock"
# `http_bench.py --whatif nosync`: SQLite commits without fsync (WAL,
# synchronous=NORMAL), to see how much of a write transaction is the fsync.
if os.environ.get("BENCH_SQLITE_NOSYNC") and "sqlite" in DATABASES["default"]["ENGINE"]:
    options = DATABASES["default"]["OPTIONS"]
    options["init_command"] = options["init_command"].replace("synchronous=FULL", "synchronous=NORMAL")

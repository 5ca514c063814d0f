"""Settings of the governed benchmark server: Verittà's production settings,
plus two measuring devices of `http_bench.py --whatif` that change only the
SQLite write path. (The peer and bare baselines are a project of their own,
bench/peer_project/, with nothing of these settings.)"""

import os

from veritta_site.settings import *  # noqa: F403
from veritta_site.settings import DATABASES

# `http_bench.py --whatif flock`: SQLite writers queue on a blocking OS lock
# (bench/sqlite_flock) instead of SQLite's sleeping busy handler.
if os.environ.get("BENCH_SQLITE_FLOCK") and DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["ENGINE"] = "bench.sqlite_flock"
# `http_bench.py --whatif nosync`: SQLite commits without fsync (WAL,
# synchronous=NORMAL), to see how much of a write transaction is the fsync.
if os.environ.get("BENCH_SQLITE_NOSYNC") and "sqlite" in DATABASES["default"]["ENGINE"]:
    options = DATABASES["default"]["OPTIONS"]
    options["init_command"] = options["init_command"].replace("synchronous=FULL", "synchronous=NORMAL")

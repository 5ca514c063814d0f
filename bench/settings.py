"""Settings of the governed benchmark server: Verittà's production settings,
plus measuring devices of `http_bench.py --whatif` that change only the
SQLite write path. (The peer and bare baselines are a project of their own,
bench/peer_project/, with nothing of these settings.)"""

import os

from veritta_site.settings import *  # noqa: F403
from veritta_site.settings import DATABASES

# `http_bench.py --whatif busywait`: Django's own SQLite backend, whose writers
# wait in SQLite's sleeping busy handler instead of Verittà's writer queue
# (veritta_site/sqlite_queued), to measure what the queue gives.
if os.environ.get("BENCH_SQLITE_BUSYWAIT") and DATABASES["default"]["ENGINE"] == "veritta_site.sqlite_queued":
    DATABASES["default"]["ENGINE"] = "django.db.backends.sqlite3"
# `http_bench.py --whatif nosync`: SQLite commits without fsync (WAL,
# synchronous=NORMAL), to see how much of a write transaction is the fsync.
if os.environ.get("BENCH_SQLITE_NOSYNC") and "sqlite" in DATABASES["default"]["ENGINE"]:
    options = DATABASES["default"]["OPTIONS"]
    options["init_command"] = options["init_command"].replace("synchronous=FULL", "synchronous=NORMAL")
# `http_bench.py --whatif nogroup`: each request thread commits its own writes
# (audit.group_commit off), to measure what group commit gives threaded workers.
if os.environ.get("BENCH_NO_GROUP_COMMIT"):
    VERITTA_AUDIT_GROUP_COMMIT = False

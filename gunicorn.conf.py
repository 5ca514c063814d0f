"""gunicorn settings for Verittà, read from the environment.

    GUNICORN_BIND     default 127.0.0.1:8000
    WEB_CONCURRENCY   worker processes, default 2 x cores + 1
    GUNICORN_TIMEOUT  seconds before a silent worker is restarted, default 30
                      (keep it above VERITTA_EXECUTOR_TIMEOUT_S)
"""

import json
import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
# Bounds on what a client may send before Django sees it (hostile input).
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

accesslog = "-"
# One JSON object per line, with the trace id the response carries.
access_log_format = json.dumps(
    {
        "ts_utc": "%(t)s",
        "logger": "gunicorn.access",
        "method": "%(m)s",
        "path": "%(U)s",
        "status": "%(s)s",
        "bytes": "%(B)s",
        "duration_us": "%(D)s",
        "trace_id": "%({x-trace-id}o)s",
    }
)

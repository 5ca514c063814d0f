"""gunicorn settings for Verittà, read from the environment.

    GUNICORN_BIND     default 127.0.0.1:8000; or VERITTA_HOST / VERITTA_PORT (not both)
    WEB_CONCURRENCY   worker processes, default 2 x cores + 1 (sync), one per core (threads)
    GUNICORN_THREADS  request threads per worker, default 1 (sync workers); above 1,
                      gthread workers: recommended on SQLite (docs/DEPLOYMENT.md)
    GUNICORN_CONTROL_SOCKET  path of gunicorn's control socket; unset: no socket
    GUNICORN_TIMEOUT  seconds before a silent worker is restarted, default 30
                      (keep it above VERITTA_EXECUTOR_TIMEOUT_S)
    PROMETHEUS_MULTIPROC_DIR  where workers keep their /metrics samples; default a
                      fresh temp dir per server, removed when the server exits

Logs are JSON lines: the access log (stdout) and gunicorn's own error log and
every Django logger (stderr), with the trace id of the request when there is one.
"""

import json
import multiprocessing
import os
import shutil
import tempfile
import uuid

import gunicorn.util
from gunicorn.glogging import Logger


class JsonAccessLogger(Logger):
    """gunicorn's logger, with each access line encoded by json.dumps, with the
    trace id the response carries."""

    def access(self, resp, req, environ, request_time):  # noqa: ANN001, ANN201 - gunicorn hook
        if not self.access_log_enabled:
            return
        from veritta_site.timestamps import utc_timestamp  # late: the config loads before the app's path is set
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        trace_id = next((value for name, value in resp.headers if name.lower() == "x-trace-id"), None)
        line = {
            "ts_utc": utc_timestamp(),  # the app logs' format
            "logger": "gunicorn.access",
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "status": int(status) if str(status).isdigit() else str(status),
            "bytes": getattr(resp, "sent", None),
            "duration_us": request_time.seconds * 1_000_000 + request_time.microseconds,
            "trace_id": trace_id,
        }
        try:
            self.access_log.info(json.dumps(line, ensure_ascii=True, default=str))
        except Exception:  # noqa: BLE001 - as gunicorn's own access(): never fail the request
            self.exception("access log line could not be written")



def _bind(environ: dict[str, str]) -> str:
    """GUNICORN_BIND, or VERITTA_HOST:VERITTA_PORT (the seeds' names for the
    same thing). Both at once, or a port that is not one, refuse to start with
    a message that names the variable: a setting is never silently ignored."""
    host, port = environ.get("VERITTA_HOST", ""), environ.get("VERITTA_PORT", "")
    if environ.get("GUNICORN_BIND") and (host or port):
        raise SystemExit("GUNICORN_BIND and VERITTA_HOST/VERITTA_PORT are both set: keep one (docs/CONFIGURATION.md)")
    if environ.get("GUNICORN_BIND"):
        return environ["GUNICORN_BIND"]
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise SystemExit("VERITTA_PORT must be a TCP port number, 1-65535")
    host = host or "127.0.0.1"
    return f"[{host}]:{port or 8000}" if ":" in host else f"{host}:{port or 8000}"


bind = _bind(dict(os.environ))
# Threaded workers let the request threads of a process share their audit
# commits (audit/group_commit.py), which sync workers cannot: measured the
# better choice on SQLite, and sync workers on PostgreSQL (docs/PERFORMANCE.md).
# A threaded process runs Python on one core at a time, hence one per core.
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
worker_class = "gthread" if threads > 1 else "sync"
_default_workers = multiprocessing.cpu_count() if threads > 1 else multiprocessing.cpu_count() * 2 + 1
workers = int(os.environ.get("WEB_CONCURRENCY", _default_workers))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
# Bounds on what a client may send before Django sees it (hostile input).
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

# What gunicorn itself answers, before Django sees the request (a request line
# or headers over the limits above, a request it cannot parse), is the error
# envelope too, with a code from veritta_site/errors.py's catalogue (imported
# there, not here: this file loads before Django; a test keeps the two in
# step). No audit record is written: no gate saw the request.
SERVER_ERROR_CODES = {
    400: "BAD_REQUEST",
    403: "FORBIDDEN",
    414: "REQUEST_LINE_TOO_LONG",
    417: "EXPECTATION_FAILED",
    431: "REQUEST_HEADERS_TOO_LARGE",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
}


def write_envelope(sock, status_int, reason, mesg):  # noqa: ANN001, ANN201 - gunicorn.util.write_error's signature
    """gunicorn.util.write_error, answering the envelope instead of an HTML page.
    gunicorn's own message is left out: it quotes the request."""
    trace_id = str(uuid.uuid4())
    body = json.dumps(
        {
            "status_code": status_int,
            "reason_codes": [SERVER_ERROR_CODES.get(status_int, "BAD_REQUEST")],
            "trace_id": trace_id,
            "message": reason,
            "details": None,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-Trace-Id: {trace_id}\r\nCache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\n\r\n"
    )
    gunicorn.util.write_nonblock(sock, head.encode("latin1") + body)


gunicorn.util.write_error = write_envelope  # the workers call it as util.write_error

# gunicorn's control socket (runtime worker management through `gunicornc`) is
# off: by default it sits in $XDG_RUNTIME_DIR or $HOME/.gunicorn, one path for
# every gunicorn that user runs. Set GUNICORN_CONTROL_SOCKET to a path in a
# directory only this service can reach to turn it on.
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
else:
    control_socket_disable = True

accesslog = "-"
logger_class = JsonAccessLogger
# The access log is one JSON object per line, built by a JSON encoder
# (JsonAccessLogger below) rather than by templating a format string: a path
# with %0a or a backslash in it cannot split a line or break its JSON.

# gunicorn's own logs (start, workers, errors) as JSON lines too; the access
# line is already JSON (JsonAccessLogger), so it is written as is.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "veritta_site.logging.JsonFormatter"},
        "access": {"format": "%(message)s"},
    },
    "filters": {"trace": {"()": "veritta_site.logging.TraceIdFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["trace"], "stream": "ext://sys.stderr"},
        "error_console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
        "access_console": {"class": "logging.StreamHandler", "formatter": "access", "stream": "ext://sys.stdout"},
    },
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False, "qualname": "gunicorn.error"},
        "gunicorn.access": {"level": "INFO", "handlers": ["access_console"], "propagate": False, "qualname": "gunicorn.access"},
    },
}

# /metrics in prometheus_client multiprocess mode: every worker writes its samples
# under one directory per server, and a scrape sums them (audit/metrics.py). Set
# before any worker imports prometheus_client; made here unless the operator chose one.
def _remove_dirs_of_dead_masters(parent: str) -> None:
    # A master killed outright (SIGKILL) cannot remove its directory: the next one does.
    for name in os.listdir(parent):
        parts = name.split("-")
        if len(parts) != 4 or parts[:2] != ["veritta", "metrics"] or not parts[2].isdigit():
            continue
        try:
            os.kill(int(parts[2]), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's


if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _remove_dirs_of_dead_masters(tempfile.gettempdir())
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"veritta-metrics-{os.getpid()}-")
    os.environ["VERITTA_METRICS_DIR_OWNED"] = "1"


def on_starting(server):  # noqa: ANN001, ANN201 - gunicorn hook
    # Samples of a previous run of this server must not be added to this one's.
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


def post_fork(server, worker):  # noqa: ANN001, ANN201 - gunicorn hook
    # Python warnings raised while the app loads become JSON log lines too.
    import logging

    logging.captureWarnings(True)


def child_exit(server, worker):  # noqa: ANN001, ANN201 - gunicorn hook
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # noqa: ANN001, ANN201 - gunicorn hook
    if os.environ.get("VERITTA_METRICS_DIR_OWNED") == "1":
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)

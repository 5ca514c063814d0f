"""The local upstream of bench/connector_bench.py: a WSGI ticket API served by
its own gunicorn, answering GET /api/tickets/<id> with a small JSON object
when the bearer token is right (401 otherwise)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

EXPECTED = "Bearer " + os.environ.get("UPSTREAM_TOKEN", "")


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if environ.get("HTTP_AUTHORIZATION") != EXPECTED:
        status, payload = "401 Unauthorized", {"error": "unauthorized"}
    elif path.startswith("/api/tickets/"):
        ticket = path.rsplit("/", 1)[1]
        status, payload = "200 OK", {"id": ticket, "status": "open", "title": "Printer on fire", "assignee_email": "x@example.com"}
    else:
        status, payload = "404 Not Found", {"error": "no route"}
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]

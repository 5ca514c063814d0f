"""Trace ids (SPEC §5, docs/SECURITY.md finding S1): the server owns the trace
id it records. Every request gets a fresh UUID4; a client's own id is kept
only as the record's parent (`parent_trace`): its W3C `traceparent` when
valid, otherwise its `X-Trace-ID` when it is a canonical UUID. Adopting the
client's id let any client put two requests under one trace id, which made
`audit verify` fail for good and could mark another request's orphaned
PENDING record complete. The current trace id lives in a context variable so
every log line of a request can carry it."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

current_trace_id: ContextVar[str] = ContextVar("veritta_trace_id", default="")

# Only the canonical 8-4-4-4-12 form is kept: anything else (braces, urn:,
# CR/LF injection, over-long values) is ignored.
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TRACEPARENT_RE = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def new_trace_id() -> str:
    return str(uuid.uuid4())


def parent_trace_from_headers(traceparent: str | None, x_trace_id: str | None) -> str | None:
    """The caller's correlation id, recorded as the parent and never as the trace id."""
    if traceparent and _TRACEPARENT_RE.match(traceparent) and not traceparent.startswith("ff"):
        return traceparent
    if x_trace_id and _UUID_RE.match(x_trace_id):
        return str(uuid.UUID(x_trace_id))
    return None

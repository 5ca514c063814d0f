"""Trace ids (SPEC §5): adopt a valid X-Trace-ID, otherwise mint a UUID4; keep
a valid W3C `traceparent` as the parent. The current trace id lives in a
context variable so every log line of a request can carry it."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

current_trace_id: ContextVar[str] = ContextVar("veritta_trace_id", default="")

# Only the canonical 8-4-4-4-12 form is adopted: anything else (braces, urn:,
# CR/LF injection, over-long values) is ignored and a fresh id is minted.
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TRACEPARENT_RE = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def trace_id_from_header(value: str | None) -> str:
    if value and _UUID_RE.match(value):
        return str(uuid.UUID(value))
    return str(uuid.uuid4())


def traceparent_from_header(value: str | None) -> str | None:
    if value and _TRACEPARENT_RE.match(value) and not value.startswith("ff"):
        return value
    return None

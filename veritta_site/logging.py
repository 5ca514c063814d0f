"""Structured JSON logs: one object per line, with the trace id of the request
being served. Messages never carry payload values, keys or tokens."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from veritta_site.timestamps import utc_timestamp
from veritta_site.tracing import current_trace_id

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "trace_id"}


class TraceIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.trace_id = current_trace_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts_utc": utc_timestamp(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": getattr(record, "trace_id", "") or None,
        }
        # Extra fields passed with `extra=` (ids and codes only, by convention).
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            # The class only: tracebacks can quote local values.
            line["exc_class"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return json.dumps(line, default=str)

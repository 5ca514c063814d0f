"""Structured JSON logs: one object per line, with the trace id of the request
being served. Messages never carry payload values, keys or tokens."""

from __future__ import annotations

import json
import logging
import traceback
from datetime import UTC, datetime
from pathlib import Path

from veritta_site.timestamps import utc_timestamp
from veritta_site.tracing import current_trace_id

FRAMES_LOGGED = 6
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
            # Where it was raised (file, line, function of the last frames): no values.
            frames = traceback.extract_tb(record.exc_info[2])[-FRAMES_LOGGED:]
            line["exc_at"] = [f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in frames]
        return json.dumps(line, default=str)

"""The one timestamp format of every answer and log line: ISO 8601 in UTC
with microseconds and an explicit `+00:00`, e.g. `2026-11-24T08:14:03.512345+00:00`.

It is the format of the audit records' `ts_utc` (audit/chain.py), which is
hashed and never changes; API answers, logs, alerts and gunicorn's access log
use it too, so that one value compares and sorts the same wherever it appears."""

from __future__ import annotations

from datetime import UTC, datetime

# What DRF's DateTimeField renders (REST_FRAMEWORK["DATETIME_FORMAT"]; datetimes
# are converted to TIME_ZONE, which is UTC, before formatting).
DRF_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+00:00"


def utc_timestamp(value: datetime | None = None) -> str:
    """`value` (default: now) in the one format; a naive value is taken as UTC."""
    value = value or datetime.now(UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")

"""Receipts of POST /process answers, checked against the chain as a client
would: by entry hash (every receipt has one), and by seq and record hash when
the receipt has them. A promise receipt's record may still be in the intake
(PostgreSQL's batched write path): it must be in the chain within the delay."""

from __future__ import annotations

import json
import time
from typing import Any

from audit.records import entry_hash


def chain_entries(server: Any) -> dict[str, dict[str, Any]]:
    """Entry hash -> record, for every record in the server's chain."""
    exported = server.manage("audit", "export").stdout
    records = [json.loads(line) for line in exported.splitlines() if line]
    return {entry_hash(r): r for r in records}


def receipts_missing(server: Any, receipts: list[dict[str, Any]], *, within_s: float = 10.0) -> list[dict[str, Any]]:
    """The receipts whose record is not in the chain after waiting up to within_s."""
    deadline = time.monotonic() + within_s
    while True:
        entries = chain_entries(server)
        missing = []
        for receipt in receipts:
            record = entries.get(receipt["entry_hash"])
            if record is None or (
                receipt["seq"] is not None and (record["seq"], record["record_hash"]) != (receipt["seq"], receipt["record_hash"])
            ):
                missing.append(receipt)
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.25)


def committed_statuses(database_url: str, trace_id: str) -> list[tuple[str, str | None, str | None]]:
    """(event_type, decision, status) of the trace's records committed to the
    database, in the chain or in the intake, read over a connection of our own."""
    query = (
        "SELECT event_type, decision, status FROM audit_auditrecord WHERE trace_id = {p}"
        " UNION ALL SELECT event_type, decision, status FROM audit_auditintake WHERE trace_id = {p}"
    )
    if database_url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            return [tuple(row) for row in conn.execute(query.format(p="?"), [trace_id, trace_id])]
    import psycopg

    with psycopg.connect(database_url) as conn:
        return [tuple(row) for row in conn.execute(query.format(p="%s"), [trace_id, trace_id])]

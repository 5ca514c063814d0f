"""The database-level append-only guarantee: triggers that refuse UPDATE and
DELETE of audit rows (and TRUNCATE on PostgreSQL, where they are set to fire
ALWAYS, even for replication roles). Created by migration 0002; checked by
the `audit.E001` system check."""

from __future__ import annotations

from typing import Any

APPEND_ONLY_TABLES = ("audit_auditrecord", "audit_checkpoint")

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION veritta_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit rows are append-only (% on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;
"""


def trigger_names(table: str, vendor: str) -> list[str]:
    if vendor == "postgresql":
        return [f"{table}_no_update_delete", f"{table}_no_truncate"]
    return [f"{table}_no_update", f"{table}_no_delete"]


def create_sql(vendor: str) -> list[str]:
    statements: list[str] = []
    if vendor == "postgresql":
        statements.append(PG_FUNCTION)
        for table in APPEND_ONLY_TABLES:
            row, trunc = trigger_names(table, vendor)
            statements += [
                f"CREATE TRIGGER {row} BEFORE UPDATE OR DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION veritta_refuse_change()",
                f"CREATE TRIGGER {trunc} BEFORE TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION veritta_refuse_change()",
                f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {row}",
                f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trunc}",
            ]
    elif vendor == "sqlite":
        for table in APPEND_ONLY_TABLES:
            upd, dele = trigger_names(table, vendor)
            statements += [
                f"CREATE TRIGGER {upd} BEFORE UPDATE ON {table} BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END",
                f"CREATE TRIGGER {dele} BEFORE DELETE ON {table} BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END",
            ]
    else:
        raise NotImplementedError(f"append-only triggers are not written for {vendor}")
    return statements


def drop_sql(vendor: str) -> list[str]:
    statements = []
    for table in APPEND_ONLY_TABLES:
        for name in trigger_names(table, vendor):
            statements.append(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if vendor == "postgresql" else ""))
    return statements


def missing_or_disabled(connection: Any) -> list[str]:
    """Names of expected triggers that are absent, or not set to fire always."""
    vendor = connection.vendor
    problems = []
    with connection.cursor() as cursor:
        for table in APPEND_ONLY_TABLES:
            for name in trigger_names(table, vendor):
                if vendor == "postgresql":
                    cursor.execute(
                        "SELECT tgenabled FROM pg_trigger WHERE tgname = %s AND tgrelid = %s::regclass", [name, table]
                    )
                    row = cursor.fetchone()
                    if row is None:
                        problems.append(f"{name} is missing")
                    elif row[0] != "A":
                        problems.append(f"{name} is not enabled ALWAYS (state {row[0]!r})")
                else:
                    cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = %s", [name])
                    if cursor.fetchone() is None:
                        problems.append(f"{name} is missing")
    return problems

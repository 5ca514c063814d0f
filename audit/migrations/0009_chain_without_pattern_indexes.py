"""Drop the `varchar_pattern_ops` indexes PostgreSQL got beside the chain's
`record_hash` (unique) and `trace_id` (indexed) columns.

Django adds such a `…_like` index to every indexed CharField on PostgreSQL,
for `LIKE 'x%'` lookups; nothing looks these columns up by prefix (the
console and the admin API search exact values, audit/admin.py), so each was
only a cost on every record written (docs/PERFORMANCE.md, "Where the two
cores go"). The model is unchanged: its plain indexes stay. SQLite has none.
"""

from django.db import migrations

_PATTERN_INDEXES = (
    "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    " AND tablename = 'audit_auditrecord' AND indexdef LIKE '%%varchar_pattern_ops%%'"
)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(_PATTERN_INDEXES)
        names = [row[0] for row in cursor.fetchall()]
    for name in names:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


def restore(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in ("record_hash", "trace_id"):
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "audit_auditrecord_{column}_like"'
            f' ON audit_auditrecord ("{column}" varchar_pattern_ops)'
        )


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0008_report_rollups"),
    ]

    operations = [migrations.RunPython(drop, restore)]

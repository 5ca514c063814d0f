"""Append-only in the database itself: see audit/triggers.py."""

from django.db import migrations

from audit.triggers import create_sql, drop_sql


def create(apps, schema_editor):  # type: ignore[no-untyped-def]
    for statement in create_sql(schema_editor.connection.vendor):
        schema_editor.execute(statement, None)


def drop(apps, schema_editor):  # type: ignore[no-untyped-def]
    for statement in drop_sql(schema_editor.connection.vendor):
        schema_editor.execute(statement, None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]
    operations = [migrations.RunPython(create, drop)]

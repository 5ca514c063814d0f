"""Audit rows cannot be changed or deleted: not by the ORM, not by raw SQL
(database triggers), and a system check fails if the triggers are gone."""

from __future__ import annotations

import pytest
from django.core import checks
from django.db import DatabaseError, connection, transaction

from audit.models import AppendOnlyError, AuditRecord
from audit.triggers import drop_sql, missing_or_disabled

SMOKE = {"action": "test_action", "event_type": "test_event"}


@pytest.fixture
def record(api) -> AuditRecord:
    api.process(SMOKE)
    return AuditRecord.objects.order_by("seq").first()


def test_orm_refuses_to_save_an_existing_record(record):
    record.decision = "DENY"
    with pytest.raises(AppendOnlyError):
        record.save()


def test_orm_refuses_to_delete_a_record(record):
    with pytest.raises(AppendOnlyError):
        record.delete()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditrecord SET decision = 'DENY'",
        "DELETE FROM audit_auditrecord",
        "UPDATE audit_checkpoint SET note = ''",
    ],
)
def test_database_refuses_update_and_delete(record, statement):
    from django.core.management import call_command

    call_command("audit", "checkpoint", "--json", stdout=open("/dev/null", "w"))
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
    assert AuditRecord.objects.filter(decision="DENY").count() == 0


def test_queryset_bulk_delete_is_refused_by_the_database(record):
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditRecord.objects.all().delete()
    assert AuditRecord.objects.exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="TRUNCATE and ALWAYS triggers exist on PostgreSQL only")
def test_postgresql_refuses_truncate_and_triggers_fire_always(record):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE audit_auditrecord")
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT tgenabled FROM pg_trigger WHERE tgname LIKE 'audit_%%'")
        assert cursor.fetchall() == [("A",)]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="trigger states exist on PostgreSQL only")
def test_system_check_fails_when_a_trigger_is_disabled(db):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditrecord DISABLE TRIGGER audit_auditrecord_no_update_delete")
    errors = [m for m in checks.run_checks() if m.id == "audit.E001"]
    assert errors and "not enabled ALWAYS" in errors[0].msg


def test_system_check_fails_when_triggers_are_missing(db):
    assert missing_or_disabled(connection) == []
    assert not [m for m in checks.run_checks() if m.id == "audit.E001"]
    with connection.cursor() as cursor:
        for statement in drop_sql(connection.vendor):
            cursor.execute(statement)
    errors = [m for m in checks.run_checks() if m.id == "audit.E001"]
    assert len(errors) == 4

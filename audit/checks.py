from __future__ import annotations

from typing import Any

from django.core.checks import Error, register
from django.db import DatabaseError, connection

from audit.triggers import missing_or_disabled


@register()
def append_only_triggers_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    try:
        tables = set(connection.introspection.table_names())
    except DatabaseError as exc:
        return [Error(f"database unreachable: {type(exc).__name__}", id="audit.E002")]
    if "audit_auditrecord" not in tables:
        return []  # not migrated yet; the server start refuses unmigrated databases
    return [
        Error(f"audit append-only trigger {problem}", hint="Run `python manage.py migrate audit`.", id="audit.E001")
        for problem in missing_or_disabled(connection)
    ]

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register
from django.db import DatabaseError, connection

from audit.scrape import TOKEN_SHA256_RE
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


@register()
def metrics_token_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """The scrape credential is configured as its sha256, never the token itself."""
    value = settings.VERITTA_METRICS_TOKEN_SHA256
    if value and not TOKEN_SHA256_RE.fullmatch(value.lower()):
        hint = "Set the sha256 hex of the token: python -c 'import hashlib,sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest())' TOKEN"
        return [Error("VERITTA_METRICS_TOKEN_SHA256 is not 64 hex characters", hint=hint, id="veritta.E004")]
    return []

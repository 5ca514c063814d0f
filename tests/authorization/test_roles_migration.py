"""Keys and sessions made before roles existed keep working: migration
0006_principal_roles gives them the documented default role `operator`
(docs/DEPLOYMENT.md, "Upgrading to roles")."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("sessions_app", "0005_gcra_rate_limit_state")]
AFTER = [("sessions_app", "0006_principal_roles")]


@pytest.mark.django_db(transaction=True)
def test_rows_made_before_roles_get_operator():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    now = timezone.now()
    old.get_model("sessions_app", "ApiKey").objects.create(name="legacy", prefix="abcd1234", digest="0" * 64, created_at=now)
    old.get_model("sessions_app", "Session").objects.create(
        session_id="sess_legacy", user_id="u_1", token_digest="0" * 64, created_at=now, created_by="abcd1234",
        expires_at=now,
    )  # fmt: skip
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps
    assert new.get_model("sessions_app", "ApiKey").objects.get(prefix="abcd1234").roles == ["operator"]
    assert new.get_model("sessions_app", "Session").objects.get(session_id="sess_legacy").roles == ["operator"]
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())  # the rest of the tests run on the latest schema

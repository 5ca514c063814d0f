"""Keys and sessions made before roles existed keep working: migration
0006_principal_roles gives them the documented default role `operator`
(docs/DEPLOYMENT.md, "Upgrading to roles"). Run as an operator upgrades: on a
fresh database of this run's engine, through manage.py."""

from __future__ import annotations

import json

from tests.support.appserver import fresh_database_url, manage, server_env

BEFORE_ROLES = (
    "from django.db import connection; from django.utils import timezone; now = timezone.now(); c = connection.cursor(); "
    "c.execute('INSERT INTO sessions_app_apikey (name, prefix, digest, created_at) VALUES (%s, %s, %s, %s)', "
    "['legacy', 'abcd1234', '0' * 64, now]); "
    "c.execute('INSERT INTO sessions_app_session (session_id, user_id, token_digest, created_at, created_by, expires_at, "
    "revoked_by, revoked_reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)', "
    "['sess_legacy', 'u_1', '0' * 64, now, 'abcd1234', now, '', ''])"
)
READ = (
    "import json; from sessions_app.models import ApiKey, Session; "
    "print(json.dumps([ApiKey.objects.get(prefix='abcd1234').roles, Session.objects.get(pk='sess_legacy').roles]))"
)


def test_rows_made_before_roles_get_operator(tmp_path):
    env = server_env(tmp_path, fresh_database_url(tmp_path))
    manage(env, "migrate", "--no-input", "-v0")
    manage(env, "migrate", "sessions_app", "0005_gcra_rate_limit_state", "--no-input", "-v0")
    manage(env, "shell", "--no-imports", "-c", BEFORE_ROLES)
    manage(env, "migrate", "--no-input", "-v0")
    read = manage(env, "shell", "--no-imports", "-c", READ)
    assert json.loads(read.stdout) == [["operator"], ["operator"]]

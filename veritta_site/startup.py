"""The checks a server runs before it takes its first request."""

from __future__ import annotations

import sys

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.migrations.executor import MigrationExecutor


def startup_problems() -> list[str]:
    from governance.checks import fingerprint_lock_problem

    problems = [
        f"{m.id}: {m.msg}" for m in checks.run_checks(include_deployment_checks=False) if m.is_serious()
    ]
    connection = connections["default"]
    if MigrationExecutor(connection).migration_plan(MigrationExecutor(connection).loader.graph.leaf_nodes()):
        problems.append("database migrations are not applied: run `python manage.py migrate`")
        return problems
    lock = fingerprint_lock_problem(require_loaded=True)
    if lock:
        problems.append(f"governance.E001: {lock}")
    return problems


def assert_ready_to_serve() -> None:
    problems = startup_problems()
    # A forked worker must not share the connection used for these checks.
    connections.close_all()
    if problems:
        for problem in problems:
            print(f"Verittà refuses to start: {problem}", file=sys.stderr)
        raise ImproperlyConfigured("; ".join(problems))

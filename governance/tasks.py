"""Background work of the governance app, run by `manage.py db_worker --queue-name verify,approvals`."""

from __future__ import annotations

from django_tasks import task

from governance.approvals import expire_due


@task(queue_name="approvals")
def approvals_expire() -> None:
    """Expire the held requests past their expires_at. Enqueued, to run then,
    for each request that starts waiting; a request already decided is left as is."""
    expire_due()

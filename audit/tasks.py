"""Background work of the audit app, run by `manage.py db_worker --queue-name verify`."""

from __future__ import annotations

from django_tasks import task

from audit.services import verification_run_execute


@task(queue_name="verify")
def verify_chain(run_id: int) -> None:
    """Verify the whole chain for the queued VerificationRun `run_id`."""
    verification_run_execute(run_id=run_id)

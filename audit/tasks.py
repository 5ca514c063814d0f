"""Background work of the audit app, run by `manage.py db_worker --queue-name verify`."""

from __future__ import annotations

from django.utils import timezone
from django_tasks import task

from audit.models import VerificationRun
from audit.verification_runs import verification_run_execute


@task(queue_name="verify")
def verify_chain(run_id: int) -> None:
    """Verify the whole chain for the queued VerificationRun `run_id`."""
    verification_run_execute(run_id=run_id)


def verification_run_start(*, actor: str) -> VerificationRun:
    """Queue a whole-chain verify for the background worker (verify_chain below);
    the returned run shows its status and progress as the worker goes."""
    run = VerificationRun.objects.create(started_at=timezone.now(), status=VerificationRun.QUEUED, actor=actor[:80])
    verify_chain.enqueue(run_id=run.pk)
    return run

"""Executors that exist only to drive the pipeline's failure paths in tests."""

from __future__ import annotations

import time
from typing import Any

from governance.executors import ActionRequest, Executor


class SlowExecutor(Executor):
    executor_id = "slow_v1"
    version = "1.0.0"
    actions = frozenset({"slow"})

    def execute(self, request: ActionRequest) -> dict[str, Any]:
        # Sleeps far past any test timeout, but stops once its deadline passes
        # so abandoned threads do not pile up.
        while request.time_left() > -1:
            time.sleep(0.05)
        return {"late": True}


class ExplodingExecutor(Executor):
    executor_id = "explode_v1"
    version = "1.0.0"
    actions = frozenset({"explode"})

    def execute(self, request: ActionRequest) -> dict[str, Any]:
        raise RuntimeError("executor blew up")


class BadOutputExecutor(Executor):
    executor_id = "bad_output_v1"
    version = "1.0.0"
    actions = frozenset({"bad_output"})

    def execute(self, request: ActionRequest) -> dict[str, Any]:
        return ["not", "an", "object"]  # type: ignore[return-value]




class PlainExecutor(Executor):
    """Handles the actions whose profile rules ask for more than it has."""

    executor_id = "plain_v1"
    version = "1.2.0"
    actions = frozenset({"needs_v2", "needs_capability", "counted"})

    def execute(self, request: ActionRequest) -> dict[str, Any]:
        return {"ran": True}


class CountingExecutor(Executor):
    """Counts its runs, so a test can prove it did not run."""

    executor_id = "counting_v1"
    version = "1.0.0"
    actions = frozenset({"count_me"})
    runs = 0

    def execute(self, request: ActionRequest) -> dict[str, Any]:
        type(self).runs += 1
        return {"runs": type(self).runs}


class PendingWitnessExecutor(Executor):
    """Looks for its own PENDING record from a fresh database connection: it
    sees it only if the record was committed before the executor started."""

    executor_id = "witness_v1"
    version = "1.0.0"
    actions = frozenset({"witness"})

    def execute(self, request: ActionRequest) -> dict[str, Any]:
        from django.db import connection

        from audit.models import AuditIntake, AuditRecord

        try:
            # In the chain, or committed to the intake of the batched write path.
            seen = any(
                model.objects.filter(trace_id=request.trace_id, status="PENDING").exists()
                for model in (AuditRecord, AuditIntake)
            )
        finally:
            connection.close()  # this thread's own connection
        return {"pending_seen": seen}


class ExitingExecutor(Executor):
    """Raises SystemExit, a BaseException that is no Exception."""

    executor_id = "exit_v1"
    version = "1.0.0"
    actions = frozenset({"exit"})

    def execute(self, request: ActionRequest) -> dict[str, Any]:
        raise SystemExit(3)


class SinkBreakingExecutor(Executor):
    """Runs, then leaves the audit sink broken: the mirror path becomes a
    directory, so the terminal record cannot be written (a disk failing while
    an executor runs). The test repairs it."""

    executor_id = "sink_breaker_v1"
    version = "1.0.0"
    actions = frozenset({"break_sink"})

    def execute(self, request: ActionRequest) -> dict[str, Any]:
        from pathlib import Path

        from django.conf import settings

        mirror = Path(settings.VERITTA_AUDIT_LOG_PATH)
        mirror.rename(mirror.with_name(mirror.name + ".moved"))
        mirror.mkdir()
        return {"ran": True}


class PaymentExecutor(Executor):
    """A payment stand-in for four-eyes approval: each run appends its trace id
    to pay_runs.log next to the audit mirror, so a test across server processes
    (and a server killed mid-way) can count how often each request ran."""

    executor_id = "pay_v1"
    version = "1.0.0"
    actions = frozenset({"pay"})

    def execute(self, request: ActionRequest) -> dict[str, Any]:
        from pathlib import Path

        from django.conf import settings

        here = Path(settings.VERITTA_AUDIT_LOG_PATH).parent
        with open(here / "pay_runs.log", "a") as runs:
            runs.write(request.trace_id + "\n")
        if request.payload.get("memo") == "wait-for-release":
            # Holds the worker mid-payment so a test can kill it there.
            while not (here / "pay_release").exists() and request.time_left() > -30:
                time.sleep(0.05)
        return {"paid": True, "amount": request.payload.get("amount")}


class ImpostorExecutor(Executor):
    """Fails with a gate's reason code, which an executor may not use."""

    executor_id = "impostor_v1"
    version = "1.0.0"
    actions = frozenset({"impostor"})

    def execute(self, request: ActionRequest) -> dict[str, Any]:
        from governance.executors import ExecutorFailure

        raise ExecutorFailure("GATE_DENIED_INVALID_API_KEY")


TEST_EXECUTORS = ",".join(
    f"tests.executors.{name}" for name in ("SlowExecutor", "ExplodingExecutor", "BadOutputExecutor", "PlainExecutor", "CountingExecutor", "PendingWitnessExecutor",
                                              "ExitingExecutor", "SinkBreakingExecutor", "PaymentExecutor")
)

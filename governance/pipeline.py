"""The /process pipeline: gates in SPEC §4 order, then the audited execution.

    P0 size -> G0 credential -> G2 API key -> G4 session -> G10 rate limits -> P2 payload
      -> profile -> authz (roles) -> registry -> idempotency -> ALLOW + PENDING (one transaction)
      -> execute under timeout -> terminal record

P2, profile, authz and registry only compute: they are evaluated before G10 opens its
write transaction and their outcome is applied after it, so a request is
answered and recorded exactly as in the order above.

G2 runs when X-API-Key is sent, G4 when Authorization is sent (G0 makes sure one
of them is), so every request passes at least one credential gate. A request
denied by G0/G2/G4 also counts against its client address limit (G10), and is
answered 429 instead once that address is over its limit.

Any gate that raises something other than a VerittaError denies with
GATE_EXCEPTION and the exception's class in the evidence (seed 002 gap 10):
a gate is never skipped and never allows by accident.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from django.conf import settings
from django.http import HttpRequest

from audit.chain import Receipt
from audit.services import (
    RequestContext,
    allow_records,
    audit_action_end,
    audit_allow,
    audit_deny,
    in_audit_transaction,
)
from governance import approvals, gates, idempotency
from governance.decision import G10_RULE, Denied, PolicyDecision, policy_evaluate, run_gate
from governance.executors import ActionRequest, ExecutionResult, Executor, ExecutorFailure
from governance.outcomes import Outcome
from governance.selectors import profile_active
from sessions_app.ratelimit import counters_share_audit_transaction
from veritta_site.canonical import digest_of
from veritta_site.errors import CATALOGUE, VerittaError, envelope

logger = logging.getLogger("veritta.pipeline")
T = TypeVar("T")

# Executors run in worker threads so that a slow one can be abandoned at its
# deadline. A thread that overruns keeps its slot until it returns; when all
# slots are busy, new work waits in the queue and times out like any other.
_executor_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="veritta-executor")


def failed_credential_counted(denied: Denied, *, client: str | None) -> Denied:
    """A credential denial also counts against the client's address; once the
    address is over its limit the answer becomes 429 at G10, so guessing keys
    or tokens is throttled. Returns the denial to raise."""
    try:
        run_gate("G10", gates.address_within_limit_after_failure, client=client)
    except Denied as throttled:
        throttled.error.evidence["credential_denied"] = {"gate": denied.gate, "code": denied.error.code}
        return throttled
    return denied


def error_outcome(trace_id: str, error: VerittaError) -> Outcome:
    body = envelope(error.status, [error.code], trace_id, error.message, error.details)
    return Outcome(error.status, body, dict(error.headers))


def _context(request: HttpRequest) -> RequestContext:
    try:
        profile = profile_active(settings.VERITTA_POLICY_PROFILE)
        profile_id, profile_hash = profile.profile_id, profile.sha256
    except LookupError:
        # Still recorded, with a hash that names the missing profile: never empty.
        profile_id, profile_hash = settings.VERITTA_POLICY_PROFILE, "0" * 64
    return RequestContext.for_request(
        request, endpoint="POST /process", profile_id=profile_id, profile_hash=profile_hash
    )


def _in_decision_transaction(work: Callable[[], T]) -> T:
    """The G10 counters and the decision records in one write transaction where
    that saves a commit (sessions_app.ratelimit.counters_share_audit_transaction):
    on SQLite a request then makes two write transactions, not three, and
    shares them with the other requests of its process writing at that moment
    (audit.group_commit)."""
    return in_audit_transaction(work) if counters_share_audit_transaction() else work()


def _denied(ctx: RequestContext, denied: Denied) -> Outcome:
    audit_deny(ctx, gate=denied.gate, error=denied.error, blocked=denied.gate == "registry")
    return error_outcome(ctx.trace_id, denied.error)


@dataclass
class _Admitted:
    """What the decision transaction leaves to the rest of the request."""

    limit_headers: dict[str, str]
    claim: idempotency.Claim
    payload: dict[str, Any]
    executor: Executor
    held: dict[str, Any] | None = None


def process_request(request: HttpRequest) -> Outcome:
    ctx = _context(request)
    matched = ctx.matched_rules
    try:
        try:
            body = run_gate("P0", gates.read_body_within_limit, request)
        except Denied as denied:
            return _denied(ctx, denied)
        matched.append("P0:size_within_limit")
        parsed = gates.parse_input(body)
        ctx.input_digest, ctx.digest_kind = parsed.digest, parsed.digest_kind
        try:
            key_actor, session_actor = client_credentials(request, ctx)
        except Denied as denied:
            refused = denied  # the handler's own name is unbound when it ends
            # the address counter and the DENY
            return _in_decision_transaction(
                lambda: _denied(ctx, failed_credential_counted(refused, client=ctx.client))
            )
        # P2, profile and registry only compute, so they are evaluated before
        # the write transaction opens (on SQLite it holds the one write lock);
        # their outcome is applied after G10, in the order of SPEC §4.
        checked = _policy_decision(request, parsed, ctx.roles or [])
        # So are the ALLOW and PENDING records they lead to, should G10 allow.
        allow = None if checked.denied or checked.approval else allow_records(checked.applied_to(ctx), pending=True)

        def decide() -> Outcome | _Admitted:
            try:
                limit_headers = run_gate(
                    "G10", gates.within_limits, key_actor=key_actor, session_actor=session_actor, client=ctx.client
                )
                matched.append(G10_RULE)
                payload, executor = checked.apply(ctx)
                # Last: a key is claimed only by a request that may run.
                claim = run_gate("idempotency", idempotency.claim, request, ctx, payload)
            except Denied as denied:
                return _denied(ctx, denied)
            if claim.original is not None:
                outcome = idempotency.replayed(ctx, claim.original)
                outcome.headers = {**limit_headers, **outcome.headers}
                return outcome
            admitted = _Admitted(limit_headers, claim, payload, executor)
            try:
                if checked.approval is not None:  # every gate allowed; a person decides if it runs
                    admitted.held = approvals.hold(ctx, payload, checked.approval)
                else:
                    audit_allow(ctx, pending=True, prepared=allow)  # committed before the executor may run
            except VerittaError as error:
                idempotency.release(claim)  # nothing ran: a retry may run it
                if error.code == "APPROVAL_UNAVAILABLE":  # cannot be held: refused, and recorded
                    return _denied(ctx, Denied("approval", error))
                raise
            return admitted

        decided = _in_decision_transaction(decide)
        if isinstance(decided, Outcome):
            return decided
        if decided.held is not None:
            outcome = Outcome(202, {"status_code": 202, "trace_id": ctx.trace_id, "approval": decided.held})
            idempotency.complete(decided.claim, outcome)
            outcome.headers = {**decided.limit_headers, **outcome.headers}
            return outcome
        try:
            outcome = execute_allowed(ctx, decided.executor, decided.payload, checked.rule)
        except VerittaError as error:  # executed, outcome unrecorded: a retry must not run it again
            outcome = error_outcome(ctx.trace_id, error)
        idempotency.complete(decided.claim, outcome)
        outcome.headers = {**decided.limit_headers, **outcome.headers}
        return outcome
    except VerittaError as error:  # the audit sink failed: nothing ran without its record
        return error_outcome(ctx.trace_id, error)


def _policy_decision(request: HttpRequest, parsed: gates.ParsedInput, roles: list[str]) -> PolicyDecision:
    return policy_evaluate(
        request, parsed, profile_source=lambda: profile_active(settings.VERITTA_POLICY_PROFILE), roles=roles
    )


def client_credentials(
    request: HttpRequest, ctx: RequestContext, *, session_gate: Callable[[HttpRequest], dict[str, Any]] = gates.session_valid
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """G0, then G2 and/or G4: the key actor and the session actor (None when
    that credential was not sent), the principal's roles on `ctx`; a key sent
    with a session must be the key that opened it. Raises Denied. Every
    endpoint a client credential reaches runs this (edge.audit_flows too), and
    `governance explain` (with the read-only G4 as `session_gate`)."""
    matched = ctx.matched_rules
    key_actor = session_actor = None
    run_gate("G0", gates.credential_present, request)
    matched.append("G0:credential_present")
    if request.META.get("HTTP_X_API_KEY"):
        key_actor = run_gate("G2", gates.api_key_valid, request)
        ctx.actor = {"kind": key_actor["kind"], "id": key_actor["id"]}
        matched.append("G2:api_key_valid")
    if request.META.get("HTTP_AUTHORIZATION"):
        session_actor = run_gate("G4", session_gate, request)
        ctx.actor = {"kind": session_actor["kind"], "id": session_actor["id"]}
        matched.append("G4:session_valid")
    ctx.roles = gates.principal_roles(key_actor, session_actor)
    if key_actor is not None and session_actor is not None:
        run_gate("authz", gates.session_of_key, key_actor, session_actor)
    return key_actor, session_actor


def execute_allowed(ctx: RequestContext, executor: Executor, payload: dict[str, Any], rule: dict[str, Any]) -> Outcome:
    """Run an allowed action whose PENDING record is committed; record its end."""
    timeout = settings.VERITTA_EXECUTOR_TIMEOUT_S
    started = time.monotonic()
    request = ActionRequest(
        action=payload["action"],
        payload=MappingProxyType(dict(payload)),  # read-only: executors cannot mutate the input
        trace_id=ctx.trace_id,
        deadline=started + timeout,
        rule=MappingProxyType(dict(rule)),
    )
    future = _executor_pool.submit(_contained, executor.execute, request)
    evidence: dict[str, Any] = {}
    try:
        result = future.result(timeout=timeout)
        if isinstance(result, ExecutionResult):
            output, evidence = result.output, dict(result.evidence)
        else:
            output = result
        if not isinstance(output, dict):
            raise TypeError("executor output is not a JSON object")
        # Computed even when not recorded: it proves the output is JSON.
        output_digest = digest_of(output) if settings.VERITTA_AUDIT_DIGEST_ENABLED else _json_or_raise(output)
    except FutureTimeout:
        future.cancel()
        error = VerittaError("EXECUTOR_TIMEOUT", evidence={"timeout_s": str(timeout)})
        _action_end(ctx, status="FAILED", error=error, duration_us=_elapsed_us(ctx.started))
        return error_outcome(ctx.trace_id, error)
    except ExecutorFailure as failure:
        error = _failure_error(failure)
        _action_end(ctx, status="FAILED", error=error, duration_us=_elapsed_us(ctx.started))
        return error_outcome(ctx.trace_id, error)
    except Exception as exc:  # noqa: BLE001 - any executor failure is a FAILED record
        exc_class = exc.exc_class if isinstance(exc, ExecutorAborted) else type(exc).__name__
        error = VerittaError("EXECUTOR_FAILED", evidence={"exc_class": exc_class})
        _action_end(ctx, status="FAILED", error=error, duration_us=_elapsed_us(ctx.started))
        return error_outcome(ctx.trace_id, error)
    receipt = _action_end(
        ctx, status="SUCCESS", output_digest=output_digest, duration_us=_elapsed_us(ctx.started), evidence=evidence
    )
    return Outcome(200, _success_body(ctx, output, receipt))


def _failure_error(failure: ExecutorFailure) -> VerittaError:
    """An executor's own failure code, if it is one an executor may use (the
    catalogue's "execute" codes); any other is EXECUTOR_FAILED, fail closed."""
    reason = CATALOGUE.get(failure.code)
    if reason is None or reason.where != "execute" or not reason.status:
        return VerittaError("EXECUTOR_FAILED", evidence={"exc_class": "ExecutorFailure", "code_refused": True})
    return VerittaError(failure.code, evidence=failure.evidence)


class ExecutorAborted(Exception):
    """An executor raised a BaseException that is no Exception (SystemExit,
    KeyboardInterrupt): contained as an executor failure, so it cannot take the
    worker's request down without an envelope or a record (docs/SECURITY.md S6)."""

    def __init__(self, exc_class: str) -> None:
        self.exc_class = exc_class
        super().__init__(exc_class)


def _contained(execute: Callable[[ActionRequest], Any], request: ActionRequest) -> Any:
    try:
        return execute(request)
    except Exception:
        raise
    except BaseException as exc:  # noqa: BLE001 - only the executor's own, in its own thread
        raise ExecutorAborted(type(exc).__name__) from None


# The executor has run when its terminal record is written: if that record
# cannot be written, the sink's usual "nothing was executed" would be false.
OUTCOME_UNRECORDED = "The action was executed, but its outcome could not be recorded durably; audit verify reports it"


def _action_end(ctx: RequestContext, **fields: Any) -> Receipt:
    try:
        return audit_action_end(ctx, **fields)
    except VerittaError as error:
        if error.code != "AUDIT_SINK_FAILED":
            raise
        details = {"executed": True, "outcome_recorded": False}
        raise VerittaError(
            "AUDIT_SINK_FAILED", evidence=error.evidence, details=details, message=OUTCOME_UNRECORDED
        ) from error


def _json_or_raise(output: dict[str, Any]) -> str | None:
    """VERITTA_AUDIT_DIGEST_ENABLED=false: no output digest is recorded (None),
    but the output must still be JSON, as with digests on."""
    digest_of(output)
    return None


def _elapsed_us(started: float) -> int:
    return int((time.monotonic() - started) * 1_000_000)


def _success_body(ctx: RequestContext, output: dict[str, Any], receipt: Receipt) -> dict[str, Any]:
    return {
        "status_code": 200,
        "trace_id": ctx.trace_id,
        "result": {
            "action": ctx.action_fields["action"],
            "status": "SUCCESS",
            "executor_id": ctx.action_fields["executor_id"],
            "executor_version": ctx.action_fields["executor_version"],
            "output": output,
        },
        "audit": receipt.as_dict(),
    }

"""Writes of the audit trail: the decision and action records of a request.

A RequestContext is made once per governed request; every record of that
request is built from it, so trace id, input digest, actor and profile are
the same values in all of them (seed 002 gaps 3 and 4).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings
from django.http import HttpRequest

from audit.chain import AuditSinkError, Receipt, chain_append, chain_transaction
from audit.group_commit import grouped, in_chain_transaction
from audit.records import ACTION, DECISION, Presealed, new_record, preseal
from veritta_site.errors import VerittaError
from veritta_site.proxies import client_address

logger = logging.getLogger("veritta.audit")
T = TypeVar("T")

ANONYMOUS = {"kind": "anonymous", "id": None}


def client_digest(address: str | None) -> str | None:
    """A keyed digest of the client address: correlates without storing it."""
    if not address:
        return None
    mac = hmac.new(settings.SECRET_KEY.encode(), address.encode(), hashlib.sha256).hexdigest()
    return "ip_" + mac[:16]


@dataclass
class RequestContext:
    trace_id: str
    endpoint: str
    profile_id: str
    profile_hash: str
    parent_trace: str | None = None
    client: str | None = None
    client_address: str | None = None  # in memory only, for per-address limits
    actor: dict[str, Any] = field(default_factory=lambda: dict(ANONYMOUS))
    input_digest: str | None = None
    digest_kind: str = "unread"
    matched_rules: list[str] = field(default_factory=list)
    action_fields: dict[str, Any] = field(default_factory=dict)
    # The principal's roles once its credentials passed (docs/AUTHORIZATION.md):
    # every decision record after that names them in its evidence.
    roles: list[str] | None = None
    # time.monotonic() at the request's arrival: a terminal record's duration_us
    # covers the whole request (gates, waits for locks, the executor).
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def for_request(cls, request: HttpRequest, *, endpoint: str, profile_id: str, profile_hash: str) -> RequestContext:
        address = client_address(request)
        return cls(
            trace_id=request.trace_id,  # type: ignore[attr-defined]
            parent_trace=getattr(request, "traceparent", None),
            endpoint=endpoint,
            profile_id=profile_id,
            profile_hash=profile_hash,
            client=client_digest(address),
            client_address=address,
            started=getattr(request, "started_monotonic", None) or time.monotonic(),
        )

    def _common(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "parent_trace": self.parent_trace,
            "endpoint": self.endpoint,
            "actor": self.actor,
            "client": self.client,
            "input_digest": self.input_digest,
            "digest_kind": self.digest_kind,
            "profile_id": self.profile_id,
            "profile_hash": self.profile_hash,
        }

    def decision_record(
        self, *, decision: str, gate: str, http_status: int, error: VerittaError | None
    ) -> dict[str, Any]:
        return new_record(
            event_type=DECISION,
            decision=decision,
            gate=gate,
            http_status=http_status,
            matched_rules=list(self.matched_rules),
            reason_codes=[error.code] if error else [],
            evidence=self._decision_evidence(error),
            action=self.action_fields.get("action"),
            **self._common(),
        )

    def _decision_evidence(self, error: VerittaError | None) -> dict[str, Any]:
        evidence = dict(error.evidence) if error else {}
        if self.roles is not None:
            evidence["principal_roles"] = list(self.roles)
        return evidence

    def action_record(self, *, status: str, error: VerittaError | None = None, **extra: Any) -> dict[str, Any]:
        """Every action record has the same fields (seed 002 gap 8)."""
        codes = [error.code] if error else (["EXECUTION_ATTEMPT"] if status == "PENDING" else [])
        evidence = extra.pop("evidence", None) or {}  # a SUCCESS record's evidence, from its executor
        return new_record(
            event_type=ACTION,
            status=status,
            reason_codes=codes,
            evidence=dict(error.evidence) if error else dict(evidence),
            **self.action_fields,
            **extra,
            **self._common(),
        )


def sink_failure(exc: AuditSinkError) -> VerittaError:
    return VerittaError("AUDIT_SINK_FAILED", evidence={"exc_class": str(exc)})


@contextmanager
def audit_transaction() -> Iterator[None]:
    """The records appended inside, and whatever else is written inside, commit
    together or not at all (audit.chain.chain_transaction). Raises
    VerittaError(AUDIT_SINK_FAILED) if that cannot be done."""
    try:
        with chain_transaction():
            yield
    except AuditSinkError as exc:
        raise sink_failure(exc) from exc


def in_audit_transaction(work: Callable[[], T]) -> T:
    """Run `work` in a chain transaction shared with other request threads'
    writes where that saves commits (audit.group_commit); returns its result
    once committed. Raises VerittaError(AUDIT_SINK_FAILED) if it cannot commit."""
    try:
        return in_chain_transaction(work)
    except AuditSinkError as exc:
        raise sink_failure(exc) from exc


def audit_deny(ctx: RequestContext, *, gate: str, error: VerittaError, blocked: bool = False) -> Receipt:
    """Record a denial (and the BLOCKED action, for registry denials).

    Raises VerittaError(AUDIT_SINK_FAILED) if it cannot be written: the
    request is then refused with 503 rather than with an unrecorded denial.
    """
    records = [ctx.decision_record(decision="DENY", gate=gate, http_status=error.status, error=error)]
    if blocked:
        records.append(ctx.action_record(status="BLOCKED", error=error))
    try:
        return chain_append(records)[-1]
    except AuditSinkError as exc:
        raise sink_failure(exc) from exc


def allow_records(ctx: RequestContext, *, pending: bool, http_status: int = 200) -> list[Presealed]:
    """ALLOW, and with it the PENDING action record, presealed: made before a
    lock is taken, from a context that already holds what the gates matched."""
    records = [ctx.decision_record(decision="ALLOW", gate="ALL", http_status=http_status, error=None)]
    if pending:
        records.append(ctx.action_record(status="PENDING"))
    return [preseal(record) for record in records]


def audit_allow(
    ctx: RequestContext, *, pending: bool, http_status: int = 200, prepared: list[Presealed] | None = None
) -> Receipt:
    """Record ALLOW, and with it the PENDING action record, in one transaction:
    both are committed before the executor may run (seed 002 gaps 2 and 5).
    `prepared`: the same records made earlier by allow_records."""
    records = prepared if prepared is not None else allow_records(ctx, pending=pending, http_status=http_status)
    try:
        # With PENDING, the terminal record follows and offers to sequence them all.
        return chain_append(records, sequence_now=not pending)[-1]
    except AuditSinkError as exc:
        raise sink_failure(exc) from exc


def audit_action_end(ctx: RequestContext, *, status: str, error: VerittaError | None = None, **extra: Any) -> Receipt:
    record = preseal(ctx.action_record(status=status, error=error, **extra))  # before any lock
    try:
        return grouped(lambda: chain_append([record])[0])
    except AuditSinkError as exc:
        raise sink_failure(exc) from exc

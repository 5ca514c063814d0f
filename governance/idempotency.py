"""`Idempotency-Key` on POST /process: a retried request runs once.

The semantics of Stripe's API and of the IETF draft
"The Idempotency-Key HTTP Header Field" (docs/IDEMPOTENCY.md):

- the first request with a key *claims* it, by inserting a row whose unique
  column is the digest of (caller, key): of two concurrent duplicates, on any
  worker or server, exactly one insert succeeds and only that one executes;
- a later request with the same key and the same input digest, within
  VERITTA_IDEMPOTENCY_WINDOW_S, gets the first outcome replayed, and its own
  decision record names the original trace;
- the same key with another input is refused (422 IDEMPOTENCY_KEY_REUSED),
  and while the first is still running a duplicate is refused
  (409 IDEMPOTENCY_KEY_IN_PROGRESS): neither executes anything.

Only digests, ids and codes are stored: never the key, the payload or the
executor's output (a replay returns the output's digest, not the output).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from audit.chain import AuditSinkError, chain_append
from audit.services import sink_failure
from governance.models import IdempotencyKey
from governance.outcomes import Outcome
from veritta_site.canonical import canonical_json, digest_of, sha256_hex
from veritta_site.errors import VerittaError, envelope

if TYPE_CHECKING:
    from audit.services import RequestContext
logger = logging.getLogger("veritta.idempotency")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
REPLAY_RULE = "IDEMPOTENCY:replay"
# The draft leaves the syntax to the resource; Stripe allows 255 characters.
# Visible ASCII only, so the key is the same bytes on every worker and log.
KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")


@dataclass
class Claim:
    """The outcome of the idempotency gate: the row this request owns (it runs
    the action), or the finished original it replays. Both None: no key."""

    row: IdempotencyKey | None = None
    original: IdempotencyKey | None = None


NO_KEY = Claim()


def presented_key(request: HttpRequest) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not KEY_RE.fullmatch(key):
        raise VerittaError(
            "IDEMPOTENCY_KEY_INVALID", evidence={"header": HEADER}, details={"header": HEADER, "max_length": 255}
        )
    return key


def scope_digest(actor: dict[str, Any], key: str) -> str:
    """A key is the caller's own: the same key from another credential is another key."""
    return sha256_hex(canonical_json([actor.get("kind"), actor.get("id"), key]))


def claim(request: HttpRequest, ctx: RequestContext, payload: dict[str, Any]) -> Claim:
    """The idempotency gate, after every other gate has allowed. Raises
    VerittaError for a key reused with another input or still running."""
    key = presented_key(request)
    if key is None:
        return NO_KEY
    scope = scope_digest(ctx.actor, key)
    # Computed here whatever VERITTA_AUDIT_DIGEST_ENABLED says: it is compared,
    # not recorded.
    input_digest = digest_of(payload)
    now = timezone.now()
    IdempotencyKey.objects.filter(expires_at__lte=now).delete()  # past the window: forgotten
    try:
        with transaction.atomic():
            row = IdempotencyKey.objects.create(
                scope_digest=scope,
                input_digest=input_digest,
                trace_id=ctx.trace_id,
                created_at=now,
                expires_at=now + timedelta(seconds=settings.VERITTA_IDEMPOTENCY_WINDOW_S),
            )
        return Claim(row=row)
    except IntegrityError:
        pass
    original = IdempotencyKey.objects.filter(scope_digest=scope).first()
    if original is None:  # forgotten between our insert and this read: let the client retry
        raise VerittaError("IDEMPOTENCY_KEY_IN_PROGRESS", evidence={"header": HEADER}, headers={"Retry-After": "1"})
    evidence = {"header": HEADER, "original_trace_id": original.trace_id}
    if original.input_digest != input_digest:
        raise VerittaError("IDEMPOTENCY_KEY_REUSED", evidence=evidence, details={"header": HEADER})
    if original.state != IdempotencyKey.DONE:
        raise VerittaError(
            "IDEMPOTENCY_KEY_IN_PROGRESS", evidence=evidence, details={"header": HEADER}, headers={"Retry-After": "1"}
        )
    return Claim(original=original)


def release(claim: Claim) -> None:
    """The claimed request did not get to run (its records could not be
    written): free the key so that a retry may run it."""
    if claim.row is None:
        return
    try:
        IdempotencyKey.objects.filter(pk=claim.row.pk, state=IdempotencyKey.RUNNING).delete()
    except Exception:  # noqa: BLE001 - inside a failed transaction the rollback frees it anyway
        logger.warning("idempotency key not released", extra={"trace": claim.row.trace_id})


def complete(claim: Claim, outcome: Outcome) -> None:
    """Keep what a replay needs of the claimed request's outcome (ids, codes,
    digests and the receipt; never the output itself)."""
    if claim.row is None:
        return
    body = outcome.body
    if outcome.status == 200:
        result = {k: v for k, v in body["result"].items() if k != "output"}
        if settings.VERITTA_AUDIT_DIGEST_ENABLED:
            result["output_digest"] = digest_of(body["result"]["output"])
        kept: dict[str, Any] = {"result": result, "audit": body.get("audit")}
    elif outcome.status == 202:  # held for approval: a replay names the same held request
        kept = {"approval": {"id": body["approval"]["id"]}}
    else:
        kept = {"reason_codes": body["reason_codes"], "message": body["message"], "details": body.get("details")}
    try:
        IdempotencyKey.objects.filter(pk=claim.row.pk).update(
            state=IdempotencyKey.DONE, http_status=outcome.status, outcome=kept
        )
    except Exception:  # noqa: BLE001 - the answer is given anyway; retries then get 409
        logger.exception("idempotency outcome not kept", extra={"trace": claim.row.trace_id})


def replayed(ctx: RequestContext, original: IdempotencyKey) -> Outcome:
    """The original outcome, answered again, after a decision record of this
    request that points at the original (its trace and its receipt)."""
    kept = original.outcome
    status = original.http_status or 500
    replay_of = {"trace_id": original.trace_id}
    if kept.get("audit"):
        replay_of["audit"] = kept["audit"]
    ctx.matched_rules.append(REPLAY_RULE)
    marker = VerittaError("IDEMPOTENT_REPLAY", evidence={"original_trace_id": original.trace_id, "http_status": status})
    record = ctx.decision_record(decision="ALLOW", gate="ALL", http_status=status, error=marker)
    try:
        receipt = chain_append([record])[0]
    except AuditSinkError as exc:
        raise sink_failure(exc) from exc
    headers = {REPLAYED_HEADER: "true"}
    if status == 200:
        body = {
            "status_code": 200,
            "trace_id": ctx.trace_id,
            "result": kept["result"],
            "audit": receipt.as_dict(),
            "replay_of": replay_of,
        }
        return Outcome(200, body, headers)
    if status == 202:
        body = {"status_code": 202, "trace_id": ctx.trace_id, "approval": kept["approval"], "replay_of": replay_of}
        return Outcome(202, body, headers)
    details = {**(kept.get("details") or {}), "replay_of": replay_of}
    return Outcome(status, envelope(status, kept["reason_codes"], ctx.trace_id, kept["message"], details), headers)

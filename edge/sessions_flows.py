"""The gate chains of the endpoints this app serves, built from the same
pieces as /process (governance.pipeline): run_gate, Denied, audited denials.

    POST /sessions:  P0 size -> G0 X-API-Key -> G2 API key -> G10 limits -> P2 body
                       -> ALLOW + PENDING open_session -> SUCCESS
    /admin/...:      P0 size -> G0 X-ADMIN-KEY -> G2 admin key -> G10 admin limit
                       -> P2 parameters -> the operation -> its decision record

A failed credential also counts against the client address limit (G10), as on
/process. Every request leaves exactly one decision record.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.http import HttpRequest
from rest_framework import serializers

from audit.profile_hashes import profile_hash_of
from audit.services import RequestContext, audit_allow, audit_deny
from governance import gates
from governance.pipeline import G10_RULE, Denied, Outcome, error_outcome, failed_credential_counted, run_gate
from sessions_app.ratelimit import limits_enforce, tightest
from sessions_app.services import session_open
from veritta_site.errors import VerittaError
from veritta_site.timestamps import utc_timestamp

ADMIN_ACTOR = {"kind": "admin_key", "id": "admin"}
T = TypeVar("T")


def _credentials(ctx: RequestContext, checks: list[tuple[str, Callable[..., Any]]], request: HttpRequest) -> None:
    """Run the credential gates in order; the actor and roles they prove go on `ctx`."""
    for rule, check in checks:
        gate = rule.split(":")[0]
        result = run_gate(gate, check, request)
        if isinstance(result, dict):
            ctx.actor = {"kind": result["kind"], "id": result["id"]}
            if "roles" in result:
                ctx.roles = list(result["roles"])
        ctx.matched_rules.append(rule)


def gated_input(
    request: HttpRequest,
    ctx: RequestContext,
    *,
    credentials: Callable[[], T],
    within_limits: Callable[[T], dict[str, str]],
    parse: Callable[[Any], dict[str, Any]],
    p2_rule: str = "P2:parameters_valid",
    body_required: bool = False,
) -> tuple[T, dict[str, str], dict[str, Any]]:
    """The front every gate chain of the edge shares, in SPEC §4 order: P0 size
    -> the body parsed (its digest on `ctx`) -> the credential gates (a denial
    also counts against the client address) -> G10
    limits -> the body's JSON -> P2 `parse`. Returns (what the credential gates
    proved, the limit headers, the validated input); raises Denied. An empty
    body is the empty input unless `body_required`; a body that is not JSON
    is refused after G10, so that it counts against the limits."""
    body = run_gate("P0", gates.read_body_within_limit, request)
    ctx.matched_rules.append("P0:size_within_limit")
    parsed = gates.parse_input(body)
    ctx.input_digest, ctx.digest_kind = parsed.digest, parsed.digest_kind
    try:
        proved = credentials()
    except Denied as denied:
        # A failed credential also counts against the client address (G10), as on /process.
        raise failed_credential_counted(denied, client=ctx.client)  # noqa: B904 - it may be `denied` itself
    headers = run_gate("G10", within_limits, proved)
    ctx.matched_rules.append(G10_RULE)
    if (body or body_required) and parsed.problem is not None:
        info = {"problem": parsed.problem}
        raise Denied("P2", VerittaError("INVALID_JSON", evidence=info, details=info))
    data = run_gate("P2", parse, parsed.payload)
    ctx.matched_rules.append(p2_rule)
    return proved, headers, data


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """P2 with a DRF serializer: names the fields in error, never their values.
    Fields the serializer does not declare are refused, not ignored."""
    if not isinstance(data, dict):
        raise VerittaError("INVALID_JSON", evidence={"problem": "not_an_object"}, details={"problem": "not_an_object"})
    unknown = sorted(set(data) - set(serializer_class().fields))
    if unknown:
        details = {"fields": [n[:64] for n in unknown[:20]], "problem": "unknown"}
        evidence = {**gates.unknown_fields_evidence(unknown), "problem": "unknown"}
        raise VerittaError("VALIDATION_ERROR", evidence=evidence, details=details)
    # DRF's CharField turns 0 into "0"; a field documented as a string takes only strings.
    not_strings = sorted(
        name
        for name, field in serializer_class().fields.items()
        if isinstance(field, serializers.CharField) and name in data and not isinstance(data[name], str)
    )
    if not_strings:
        info = {"fields": not_strings, "problem": "not_a_string"}
        raise VerittaError("VALIDATION_ERROR", evidence=info, details=info)
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        info = {"fields": sorted(str(k) for k in serializer.errors)}
        raise VerittaError("VALIDATION_ERROR", evidence=info, details=info)
    return dict(serializer.validated_data)


# --- POST /sessions -------------------------------------------------------------


def _api_key_present(request: HttpRequest) -> None:
    # A session cannot open sessions: only X-API-Key counts here.
    if not request.META.get("HTTP_X_API_KEY"):
        raise VerittaError("MISSING_API_KEY", evidence={"header": "X-API-Key"}, details={"header": "X-API-Key"})


SESSION_OPENER_GATES = [("G0:credential_present", _api_key_present), ("G2:api_key_valid", gates.api_key_valid)]


def session_roles_within_key(asked: list[str] | None, held: list[str]) -> list[str]:
    """A session holds the roles asked for, all of them the key's; none asked:
    all the key's. Asking for more is refused, never trimmed."""
    if asked is None:
        return sorted(held)
    beyond = sorted(set(asked) - set(held))
    if beyond:
        raise VerittaError(
            "AUTHZ_DENIED",
            evidence={"roles": sorted(held), "asked_beyond_key": beyond[:20]},
            details={"roles": sorted(held)},
        )
    return sorted(set(asked))


def session_open_request(request: HttpRequest, *, input_serializer: type[serializers.Serializer]) -> Outcome:
    ctx = RequestContext.for_request(
        request,
        endpoint="POST /sessions",
        profile_id=settings.VERITTA_POLICY_PROFILE,
        profile_hash=profile_hash_of(settings.VERITTA_POLICY_PROFILE),
    )
    try:
        try:
            _, headers, data = gated_input(
                request,
                ctx,
                credentials=lambda: _credentials(ctx, SESSION_OPENER_GATES, request),
                within_limits=lambda _: gates.within_limits(key_actor=ctx.actor, session_actor=None, client=ctx.client),
                parse=lambda payload: validated(input_serializer, payload),
                p2_rule="P2:payload_valid",
                body_required=True,
            )
            roles = run_gate("authz", session_roles_within_key, data.get("roles"), ctx.roles or [])
            ctx.matched_rules.append("authz:session_roles_within_key")
        except Denied as denied:
            audit_deny(ctx, gate=denied.gate, error=denied.error)
            return error_outcome(ctx.trace_id, denied.error)
        session, token = session_open(
            ctx=ctx, user_id=data["user_id"], ttl_s=data.get("ttl_s") or settings.VERITTA_SESSION_TTL_S, roles=roles
        )
    except VerittaError as error:  # the audit sink failed, or the session could not be stored
        return error_outcome(ctx.trace_id, error)
    answer = {
        "session_id": session.session_id,
        "user_id": session.user_id,
        "roles": list(session.roles),
        "token": token,
        "created_at": utc_timestamp(session.created_at),
        "expires_at": utc_timestamp(session.expires_at),
        "trace_id": ctx.trace_id,
    }
    return Outcome(201, answer, {**headers, "Cache-Control": "no-store"})


# --- the admin API -------------------------------------------------------------------


def _admin_key_present(request: HttpRequest) -> None:
    if not request.META.get("HTTP_X_ADMIN_KEY"):
        raise VerittaError("ADMIN_KEY_MISSING", evidence={"header": "X-ADMIN-KEY"}, details={"header": "X-ADMIN-KEY"})


# During an admin key rotation the previous key is accepted too, under its own
# actor id, so the audit trail shows who still uses it (docs/DEPLOYMENT.md).
PREVIOUS_ADMIN_ACTOR = {"kind": "admin_key", "id": "admin_previous"}


def _admin_key_valid(request: HttpRequest) -> dict[str, Any]:
    configured = settings.VERITTA_ADMIN_API_KEY
    if not configured:
        raise VerittaError("SERVER_MISCONFIGURED", evidence={"setting": "VERITTA_ADMIN_API_KEY"})
    presented = request.META.get("HTTP_X_ADMIN_KEY", "").encode("utf-8", "surrogatepass")
    current = hmac.compare_digest(presented, configured.encode())
    previous_key = settings.VERITTA_ADMIN_API_KEY_PREVIOUS
    # Both compared every time: which one matched takes no other time.
    previous = hmac.compare_digest(presented, (previous_key or "\0" * len(configured)).encode()) and bool(previous_key)
    if current:
        return dict(ADMIN_ACTOR)
    if previous:
        return dict(PREVIOUS_ADMIN_ACTOR)
    raise VerittaError("ADMIN_KEY_INVALID", evidence={"header": "X-ADMIN-KEY"})


ADMIN_GATES = [("G0:admin_key_present", _admin_key_present), ("G2:admin_key_valid", _admin_key_valid)]


# Health reports on Redis, so its limit is counted where Redis being down cannot refuse it.
HEALTH_RATE_BUCKET = "health"


def _admin_within_limit(bucket: str) -> dict[str, str]:
    checks = [("admin", bucket, settings.VERITTA_ADMIN_RATE_LIMIT_PER_MIN)]
    return tightest(limits_enforce(checks=checks, in_database=bucket == HEALTH_RATE_BUCKET))


def admin_request(
    request: HttpRequest,
    *,
    endpoint: str,
    parse: Callable[[Any], dict[str, Any]],
    perform: Callable[[RequestContext, dict[str, Any]], Outcome],
    records_own_decision: bool = False,
    reports_sink: bool = False,
    rate_bucket: str = "admin",
    credential_gates: list[tuple[str, Callable[..., Any]]] | None = None,
) -> Outcome:
    """Run one admin API operation behind the admin gates.

    `parse` gets the parsed JSON body (or None) and returns the validated input
    (gate P2); `perform` does the operation and returns its answer, or raises
    VerittaError (NOT_FOUND, ...), which is recorded as the request's denial.
    An operation that writes its own decision record (a revocation writes
    ALLOW + PENDING before it acts) says so with `records_own_decision`.
    `reports_sink` (health only): an answer whose decision record could not be
    written is still given, since it reports that very failure.
    `rate_bucket`: the admin limit is counted per bucket; session revocation,
    the emergency brake, has its own, so no amount of reads (/metrics scrapes,
    audit queries) can use up the limit it needs (docs/SECURITY.md S7).
    `credential_gates`: other gates than the admin key's (the metrics scrape
    credential, audit/scrape.py).
    """
    ctx = RequestContext.for_request(
        request, endpoint=endpoint, profile_id="admin", profile_hash=profile_hash_of("admin")
    )
    try:
        try:
            _, headers, data = gated_input(
                request,
                ctx,
                credentials=lambda: _credentials(ctx, credential_gates or ADMIN_GATES, request),
                within_limits=lambda _: _admin_within_limit(rate_bucket),
                parse=parse,
            )
        except Denied as denied:
            audit_deny(ctx, gate=denied.gate, error=denied.error)
            return error_outcome(ctx.trace_id, denied.error)
        try:
            outcome = run_gate("admin", perform, ctx, data)
        except Denied as denied:
            error = denied.error
            # A service that records its own decision has done so, unless it
            # failed in an unforeseen way (GATE_EXCEPTION).
            if error.code != "AUDIT_SINK_FAILED" and (not records_own_decision or error.code == "GATE_EXCEPTION"):
                audit_deny(ctx, gate="object" if error.code == "NOT_FOUND" else denied.gate, error=error)
            return error_outcome(ctx.trace_id, error)
        if not records_own_decision:
            try:
                audit_allow(ctx, pending=False, http_status=outcome.status)
            except VerittaError:
                if not reports_sink:
                    raise
    except VerittaError as error:  # the audit sink failed: no answer without its record
        return error_outcome(ctx.trace_id, error)
    outcome.headers = {**headers, "Cache-Control": "no-store", **outcome.headers}
    return outcome

"""The one catalogue of reason codes, the typed error that carries them, and the
one place that renders the error envelope (SPEC §5) for every path.

`docs/ERROR_ENVELOPE.md` and the OpenAPI document are rendered from CATALOGUE;
a test fails if any response carries a code that is not in it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

logger = logging.getLogger("veritta.errors")


@dataclass(frozen=True)
class Reason:
    status: int
    message: str
    where: str


CATALOGUE: dict[str, Reason] = {
    # P0
    "PAYLOAD_TOO_LARGE": Reason(413, "Request body exceeds the configured maximum size", "P0 size"),
    # G0 / G2
    "MISSING_API_KEY": Reason(403, "Missing required header: X-API-Key", "G0 credential"),
    "GATE_DENIED_INVALID_API_KEY": Reason(403, "Invalid API key", "G2 API key"),
    # G4
    "SESSION_INVALID": Reason(403, "Session is not valid", "G4 session"),
    "SESSION_REVOKED": Reason(403, "Session has been revoked", "G4 session"),
    "SESSION_EXPIRED": Reason(403, "Session has expired", "G4 session"),
    # G10
    "RATE_LIMIT_EXCEEDED": Reason(429, "Rate limit exceeded", "G10 rate limit"),
    "RATE_LIMIT_UNAVAILABLE": Reason(503, "Rate limit store unavailable; request refused", "G10 rate limit"),
    # P2
    "INVALID_JSON": Reason(400, "Request body is not a valid JSON object", "P2 payload"),
    "VALIDATION_ERROR": Reason(400, "Request validation failed", "P2 payload"),
    "UNSUPPORTED_MEDIA_TYPE": Reason(415, "Unsupported Content-Type; send application/json", "P2 payload"),
    # profile
    "PROFILE_ACTION_MISMATCH": Reason(403, "Action not allowed by the active policy profile", "profile"),
    "UNKNOWN_FIELDS_PRESENT": Reason(403, "Payload has fields the policy profile does not allow", "profile"),
    "ADMIN_SIGNAL_FORBIDDEN": Reason(403, "Payload carries a forbidden privilege field", "profile"),
    "EXTERNAL_FIELDS_NOT_ALLOWED": Reason(403, "Payload carries external-target fields", "profile"),
    "LIMIT_EXCEEDED": Reason(403, "Payload exceeds a policy profile limit", "profile"),
    "PROFILES_NOT_SERVABLE": Reason(
        503, "The active policy profiles are not a set this server may serve; request refused", "profile"
    ),
    # authz (docs/AUTHORIZATION.md)
    "AUTHZ_DENIED": Reason(403, "No role of this credential allows the request", "authz"),
    # registry
    "UNKNOWN_ACTION": Reason(422, "No registered executor handles this action", "registry"),
    "EXECUTOR_NOT_FOUND": Reason(422, "The executor named by the profile is not registered", "registry"),
    "ACTION_VERSION_INVALID": Reason(400, "action_version must be a semantic version (MAJOR.MINOR.PATCH)", "registry"),
    "EXECUTOR_VERSION_MISMATCH": Reason(409, "Executor version does not satisfy the required version", "registry"),
    "CAPABILITY_MISMATCH": Reason(409, "Executor lacks a capability the profile requires", "registry"),
    # idempotency (governance/idempotency.py)
    "IDEMPOTENCY_KEY_INVALID": Reason(400, "Idempotency-Key must be 1 to 255 visible ASCII characters", "idempotency"),
    "IDEMPOTENCY_KEY_REUSED": Reason(
        422, "Idempotency-Key was already used with a different request body", "idempotency"
    ),
    "IDEMPOTENCY_KEY_IN_PROGRESS": Reason(
        409, "A request with this Idempotency-Key is still being processed; retry later", "idempotency"
    ),
    # execute / audit
    "EXECUTOR_TIMEOUT": Reason(504, "Executor exceeded its time limit", "execute"),
    "EXECUTOR_FAILED": Reason(500, "Executor failed", "execute"),
    "AUDIT_SINK_FAILED": Reason(503, "Audit record could not be written durably; nothing was executed", "audit"),
    # execute: http_call_v1 and its connector (docs/CONNECTORS.md)
    "CONNECTOR_PARAMETER_INVALID": Reason(400, "A path parameter is not one allowed path segment; nothing was sent upstream", "execute"),
    "CONNECTOR_UNAVAILABLE": Reason(500, "The action's connector or its credential is unavailable; nothing was sent upstream", "execute"),
    "UPSTREAM_ADDRESS_REFUSED": Reason(502, "The upstream resolves to an address the connector may not reach; nothing was sent", "execute"),
    "UPSTREAM_UNREACHABLE": Reason(502, "The upstream could not be reached", "execute"),
    "UPSTREAM_TIMEOUT": Reason(504, "The upstream did not answer in time", "execute"),
    "UPSTREAM_REDIRECT_REFUSED": Reason(502, "The upstream answered with a redirect, which is never followed", "execute"),
    "UPSTREAM_ERROR_STATUS": Reason(502, "The upstream answered with a non-2xx status", "execute"),
    "UPSTREAM_RESPONSE_TOO_LARGE": Reason(502, "The upstream's response exceeds the connector's size limit", "execute"),
    "UPSTREAM_RESPONSE_INVALID": Reason(502, "The upstream's response is not the JSON object the operation returns from", "execute"),
    # any gate
    "GATE_EXCEPTION": Reason(500, "A gate failed to decide; request denied", "any gate"),
    "SERVER_MISCONFIGURED": Reason(500, "A required setting is missing; request denied", "any gate"),
    # admin API
    "ADMIN_KEY_MISSING": Reason(403, "Missing required header: X-ADMIN-KEY", "admin G0"),
    "ADMIN_KEY_INVALID": Reason(403, "Invalid admin key", "admin G2"),
    "METRICS_TOKEN_INVALID": Reason(403, "Invalid or missing metrics scrape credential", "admin G2 (metrics scrape)"),
    "SERVICE_DEGRADED": Reason(503, "A dependency of the service is failing; see details", "admin health"),
    # witnesses (docs/VERIFYING.md)
    "WITNESS_UNKNOWN": Reason(403, "Not a witness of this log (VERITTA_AUDIT_WITNESSES)", "witness"),
    "COSIGNATURE_INVALID": Reason(403, "The cosignature does not verify on this checkpoint", "witness"),
    # generic HTTP
    "FORBIDDEN": Reason(403, "Forbidden", "routing"),
    "NOT_FOUND": Reason(404, "Not found", "routing"),
    "METHOD_NOT_ALLOWED": Reason(405, "Method not allowed", "routing"),
    "NOT_ACCEPTABLE": Reason(406, "Not acceptable", "routing"),
    "BAD_REQUEST": Reason(400, "Bad request", "routing"),
    "INTERNAL_ERROR": Reason(500, "Internal error", "any"),
    # answered by the HTTP server (gunicorn.conf.py) before the application sees the request
    "REQUEST_LINE_TOO_LONG": Reason(414, "Request line longer than the server accepts", "HTTP server"),
    "REQUEST_HEADERS_TOO_LARGE": Reason(431, "Request headers larger or more than the server accepts", "HTTP server"),
    "EXPECTATION_FAILED": Reason(417, "Expect header the server does not support", "HTTP server"),
    "NOT_IMPLEMENTED": Reason(501, "Transfer coding the server does not support", "HTTP server"),
    # audit only: the console's login form answers itself
    "CONSOLE_LOGIN_FAILED": Reason(0, "Console login with a wrong username or password", "console login"),
    # audit-only marker: carried by PENDING action records, never by a response
    "EXECUTION_ATTEMPT": Reason(0, "Marker on the PENDING record written before an executor runs", "audit"),
    # four-eyes approval (docs/APPROVALS.md)
    "APPROVAL_UNAVAILABLE": Reason(503, "Held payloads cannot be sealed or opened; nothing was executed", "approval"),
    "APPROVAL_NOT_FOUND": Reason(404, "No held request with this id for this credential", "approval"),
    "APPROVAL_NOT_APPROVER": Reason(403, "The approver is not in the group this request needs", "approval"),
    "APPROVAL_OWN_REQUEST": Reason(403, "The requester cannot approve or reject their own request", "approval"),
    "APPROVAL_ALREADY_DECIDED": Reason(409, "This approver has already decided on this request", "approval"),
    "APPROVAL_NOT_WAITING": Reason(409, "The request is no longer waiting for approval", "approval"),
    "APPROVAL_REASON_REQUIRED": Reason(400, "A reason (1 to 500 characters) and an approver are required", "approval"),
    "APPROVAL_HELD": Reason(0, "Marker on the decision record of a request held for approval", "approval"),
    "APPROVAL_GRANTED": Reason(0, "Marker on the record of one approver's approval", "approval"),
    "APPROVAL_REJECTED": Reason(0, "Marker on the record of a rejection: the request never runs", "approval"),
    "APPROVAL_EXPIRED": Reason(0, "Marker on the record of a request that waited too long: it never runs", "approval"),
    "HELD_PAYLOAD_DELETED": Reason(0, "Marker on the record saying a held payload was deleted", "approval"),
    "HELD_ANSWER_DELETED": Reason(0, "Marker on the record saying an executed held request's sealed answer was deleted after its retention", "approval"),
    # audit-only marker: the decision record of a replayed Idempotency-Key request
    "IDEMPOTENT_REPLAY": Reason(0, "Marker on the decision record of a request answered by replay", "idempotency"),
}


def catalogue_markdown() -> str:
    """The catalogue as the table in docs/ERROR_ENVELOPE.md (a test keeps them equal)."""
    rows = ["| code | HTTP | where | message |", "|---|---|---|---|"]
    rows += [f"| `{code}` | {r.status or '—'} | {r.where} | {r.message} |" for code, r in CATALOGUE.items()]
    return "\n".join(rows)


class VerittaError(Exception):
    """An application error with a stable reason code from CATALOGUE.

    `evidence` names what failed (fields, limits) and goes to the audit record;
    `details` is what the client may see. Neither ever holds a payload value.
    """

    def __init__(
        self,
        code: str,
        *,
        evidence: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
        message: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if code not in CATALOGUE:
            # A code outside the catalogue is a programming error: fail loudly in
            # tests, but still deny (the caller renders INTERNAL_ERROR).
            raise KeyError(f"reason code not in catalogue: {code}")
        reason = CATALOGUE[code]
        self.code = code
        self.status = status or reason.status
        self.message = message or reason.message
        self.evidence = evidence or {}
        self.details = details or {}
        self.headers = headers or {}
        super().__init__(code)


def envelope(status: int, codes: list[str], trace_id: str, message: str, details: Any = None) -> dict[str, Any]:
    return {
        "status_code": status,
        "reason_codes": codes,
        "trace_id": trace_id,
        "message": message,
        "details": details if details else None,
    }


def _code_for_drf(exc: drf_exceptions.APIException) -> str:
    if isinstance(exc, drf_exceptions.NotFound):
        return "NOT_FOUND"
    if isinstance(exc, drf_exceptions.MethodNotAllowed):
        return "METHOD_NOT_ALLOWED"
    if isinstance(exc, drf_exceptions.NotAcceptable):
        return "NOT_ACCEPTABLE"
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):
        return "UNSUPPORTED_MEDIA_TYPE"
    if isinstance(exc, drf_exceptions.ParseError):
        return "INVALID_JSON"
    if isinstance(exc, drf_exceptions.ValidationError):
        return "VALIDATION_ERROR"
    if isinstance(exc, drf_exceptions.Throttled):
        return "RATE_LIMIT_EXCEEDED"
    return "BAD_REQUEST" if exc.status_code < 500 else "INTERNAL_ERROR"


def _validation_fields(detail: Any) -> dict[str, Any] | None:
    # Field names and DRF's error codes only: never the rejected values.
    if isinstance(detail, dict):
        return {"fields": sorted(str(k) for k in detail)}
    return None


def drf_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's EXCEPTION_HANDLER: every API error leaves in the envelope."""
    request = context.get("request")
    trace_id = getattr(request, "trace_id", "") if request is not None else ""
    if isinstance(exc, VerittaError):
        body = envelope(exc.status, [exc.code], trace_id, exc.message, exc.details)
        return Response(body, status=exc.status, headers=exc.headers)
    if isinstance(exc, drf_exceptions.APIException):
        code = _code_for_drf(exc)
        status = exc.status_code
        details = _validation_fields(exc.detail) if code == "VALIDATION_ERROR" else None
        message = CATALOGUE[code].message
        return Response(envelope(status, [code], trace_id, message, details), status=status)
    if isinstance(exc, Http404):
        return Response(envelope(404, ["NOT_FOUND"], trace_id, CATALOGUE["NOT_FOUND"].message), status=404)
    logger.exception("uncaught exception in API view", extra={"exc_class": type(exc).__name__})
    body = envelope(500, ["INTERNAL_ERROR"], trace_id, CATALOGUE["INTERNAL_ERROR"].message)
    return Response(body, status=500)


def envelope_response(body: dict[str, Any], *, status: int) -> JsonResponse:
    """An envelope outside DRF, rendered compact like DRF's JSONRenderer renders the rest."""
    return JsonResponse(body, status=status, json_dumps_params={"separators": (",", ":"), "ensure_ascii": False})


def error_response(request: HttpRequest, code: str, *, status: int | None = None) -> HttpResponse:
    """An error outside DRF: the envelope; or, for a person's browser in the
    console, the same status, message and trace id as a console page."""
    reason = CATALOGUE[code]
    status = status or reason.status
    trace_id = getattr(request, "trace_id", "")
    if request.path.startswith("/console/") and "text/html" in request.headers.get("Accept", ""):
        title = code.replace("_", " ").capitalize()
        context = {"status": status, "title": title, "message": reason.message, "trace_id": trace_id}
        return TemplateResponse(request, "console/error.html", context, status=status).render()
    return envelope_response(envelope(status, [code], trace_id, reason.message), status=status)


def _plain(request: HttpRequest, code: str) -> HttpResponse:
    return error_response(request, code)


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _plain(request, "BAD_REQUEST")


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _plain(request, "NOT_FOUND")


def handler500(request: HttpRequest) -> HttpResponse:
    return _plain(request, "INTERNAL_ERROR")

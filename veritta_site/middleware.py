"""Request-wide middleware: the trace id every record and response carries."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from veritta_site.errors import CATALOGUE, error_response
from veritta_site.tracing import current_trace_id, new_trace_id, parent_trace_from_headers


class TraceIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # The request's arrival: terminal records measure the whole request from here.
        request.started_monotonic = time.monotonic()  # type: ignore[attr-defined]
        request.trace_id = new_trace_id()  # type: ignore[attr-defined]
        # Read by the audit writer as the record's `parent_trace`.
        request.traceparent = parent_trace_from_headers(  # type: ignore[attr-defined]
            request.META.get("HTTP_TRACEPARENT"), request.META.get("HTTP_X_TRACE_ID")
        )
        token = current_trace_id.set(request.trace_id)  # type: ignore[attr-defined]
        try:
            response = self.get_response(request)
        finally:
            current_trace_id.reset(token)
        response["X-Trace-ID"] = request.trace_id  # type: ignore[attr-defined]
        return response


# The code an error response gets when it was produced outside our views
# (Django's own 400/403/404/500 paths, the technical pages of DEBUG mode).
_CODE_FOR_STATUS = {400: "BAD_REQUEST", 403: "FORBIDDEN", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}


class ErrorEnvelopeMiddleware:
    """Every error response of every path leaves in the envelope (SPEC §5),
    whatever produced it: a response of 400 or more that is not already JSON
    is replaced, so no stack trace or framework page ever reaches a client
    (a browser in the console gets it as a page: errors.error_response)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code < 400 or response.get("Content-Type", "").startswith("application/json"):
            return response
        code = _CODE_FOR_STATUS.get(response.status_code, "INTERNAL_ERROR" if response.status_code >= 500 else "BAD_REQUEST")
        status = response.status_code if response.status_code in _CODE_FOR_STATUS else CATALOGUE[code].status
        replacement = error_response(request, code, status=status)
        if "Allow" in response:
            replacement["Allow"] = response["Allow"]
        return replacement

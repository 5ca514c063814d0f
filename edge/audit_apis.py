"""The audit part of the admin API (X-ADMIN-KEY): summary, events, traces and
the latest signed checkpoint. Read-only; every request passes the admin gates
and leaves its own decision record (edge.sessions_flows.admin_request)."""

from __future__ import annotations

import json
import re
from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from prometheus_client import CONTENT_TYPE_LATEST
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from audit.checkpoints import SigningKeyError, public_vkey
from audit.metrics import metrics_exposition
from audit.records import ACTION, DECISION, TERMINAL_STATUSES
from audit.reports import audit_summary
from audit.scrape import SCRAPE_GATES, presents_scrape_token
from audit.selectors import audit_events_page, audit_records_for_trace, checkpoint_latest
from audit.services import RequestContext
from edge.sessions_apis import ADMIN_KEY_HEADER, TRACE_HEADER, GovernedApi, no_parameters, query_parameters, respond
from edge.sessions_flows import admin_request
from governance.pipeline import Outcome
from veritta_site.errors import VerittaError
from veritta_site.schema import ERROR_RESPONSES


def _parameters(serializer_class: type[serializers.Serializer]) -> list[Any]:
    # A serializer in `parameters` becomes typed query parameters (enums,
    # bounds, formats), so the document says exactly what the view accepts.
    return [ADMIN_KEY_HEADER, TRACE_HEADER, serializer_class]


# Trace ids are UUIDs; anything else is unknown without asking the database
# (PostgreSQL refuses NUL bytes in a query, for one).
TRACE_ID_RE = re.compile(r"[0-9A-Fa-f-]{1,36}")


def _record() -> serializers.DictField:
    return serializers.DictField(help_text="A whole audit record (docs/AUDIT_LOG_SPEC.md).")


class AuditSummaryApi(GovernedApi):
    """Decisions, denials by reason code and records by type over the last days."""

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "AuditSummaryInput"

        days = serializers.IntegerField(required=False, default=1, min_value=1, max_value=7, help_text="1..7")
        limit = serializers.IntegerField(
            required=False, default=10000, min_value=100, max_value=50000, help_text="Newest records counted, 100..50000."
        )
        event_type = serializers.ChoiceField(required=False, choices=[DECISION, ACTION])

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "AuditSummaryOutput"

        window = inline_serializer(
            "AuditSummaryWindow",
            {
                "days": serializers.IntegerField(),
                "since": serializers.DateTimeField(),
                "until": serializers.DateTimeField(),
                "limit": serializers.IntegerField(),
                "event_type": serializers.CharField(allow_null=True),
                "events": serializers.IntegerField(),
                "truncated": serializers.BooleanField(help_text="True if `limit` cut the window short."),
            },
        )
        decisions = serializers.DictField(child=serializers.IntegerField(), help_text="{ALLOW, DENY}")
        deny_breakdown = serializers.DictField(child=serializers.IntegerField(), help_text="Denials by reason code.")
        events_by_type = serializers.DictField(child=serializers.IntegerField())
        ts_utc = serializers.DateTimeField()

    @extend_schema(
        operation_id="admin_audit_summary",
        parameters=_parameters(InputSerializer),
        responses={200: OutputSerializer, **ERROR_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        def perform(ctx: RequestContext, data: dict[str, Any]) -> Outcome:
            return Outcome(200, audit_summary(days=data["days"], limit=data["limit"], event_type=data.get("event_type")))

        return respond(
            admin_request(
                request._request, endpoint="GET /admin/audit/summary", parse=query_parameters(request, self.InputSerializer), perform=perform
            )
        )


class AuditEventListApi(GovernedApi):
    """Audit records, newest first, filtered; paginate with `next_cursor`."""

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "AuditEventListInput"

        trace_id = serializers.RegexField(r"^[0-9a-fA-F-]{1,36}$", required=False)
        event_type = serializers.ChoiceField(required=False, choices=[DECISION, ACTION])
        decision = serializers.ChoiceField(required=False, choices=["ALLOW", "DENY"])
        status = serializers.ChoiceField(required=False, choices=["PENDING", *TERMINAL_STATUSES])
        reason_code = serializers.RegexField(r"^[A-Z_]{1,64}$", required=False)
        actor = serializers.RegexField(r"^[\w.@+:-]{1,81}$", required=False, help_text="An actor id, or `kind:id`.")
        since = serializers.DateTimeField(required=False, help_text="ISO 8601, inclusive.")
        until = serializers.DateTimeField(required=False, help_text="ISO 8601, exclusive.")
        cursor = serializers.IntegerField(required=False, min_value=1, help_text="`next_cursor` of the previous page.")
        limit = serializers.IntegerField(required=False, default=100, min_value=1, max_value=1000)

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "AuditEventListOutput"

        items = serializers.ListField(child=_record())
        next_cursor = serializers.IntegerField(allow_null=True)

    @extend_schema(
        operation_id="admin_audit_events",
        parameters=_parameters(InputSerializer),
        responses={200: OutputSerializer, **ERROR_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        def perform(ctx: RequestContext, data: dict[str, Any]) -> Outcome:
            bodies, next_cursor = audit_events_page(filters=data, cursor=data.get("cursor"), limit=data["limit"])
            return Outcome(200, {"items": [json.loads(b) for b in bodies], "next_cursor": next_cursor})

        return respond(
            admin_request(
                request._request, endpoint="GET /admin/audit/events", parse=query_parameters(request, self.InputSerializer), perform=perform
            )
        )


class AuditTraceApi(GovernedApi):
    """Every record of one request, in seq order."""

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "AuditTraceOutput"

        trace_id = serializers.CharField()
        records = serializers.ListField(child=_record())

    @extend_schema(
        operation_id="admin_audit_trace",
        parameters=[ADMIN_KEY_HEADER, TRACE_HEADER],
        responses={200: OutputSerializer, **ERROR_RESPONSES},
    )
    def get(self, request: Request, trace_id: str) -> Response:
        def perform(ctx: RequestContext, data: dict[str, Any]) -> Outcome:
            records = audit_records_for_trace(trace_id=trace_id) if TRACE_ID_RE.fullmatch(trace_id) else []
            if not records:
                raise VerittaError("NOT_FOUND", evidence={"object": "trace"})
            return Outcome(200, {"trace_id": trace_id, "records": [json.loads(r.body) for r in records]})

        return respond(
            admin_request(request._request, endpoint="GET /admin/audit/traces/{trace_id}", parse=no_parameters, perform=perform)
        )


class CheckpointLatestApi(GovernedApi):
    """The newest signed checkpoint and the key that verifies it."""

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "CheckpointLatestOutput"

        tree_size = serializers.IntegerField()
        root_hash = serializers.CharField()
        note = serializers.CharField(help_text="The C2SP signed note.")
        vkey = serializers.CharField(help_text="Verifier key `name+keyid+base64`.")

    @extend_schema(
        operation_id="admin_audit_checkpoint_latest",
        parameters=[ADMIN_KEY_HEADER, TRACE_HEADER],
        responses={200: OutputSerializer, **ERROR_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        def perform(ctx: RequestContext, data: dict[str, Any]) -> Outcome:
            checkpoint = checkpoint_latest()
            if checkpoint is None:
                raise VerittaError("NOT_FOUND", evidence={"object": "checkpoint"})
            try:
                vkey = public_vkey()
            except SigningKeyError as exc:
                raise VerittaError("SERVER_MISCONFIGURED", evidence={"setting": "VERITTA_AUDIT_SIGNING_KEY"}) from exc
            body = {"tree_size": checkpoint.tree_size, "root_hash": checkpoint.root_hash, "note": checkpoint.note, "vkey": vkey}
            return Outcome(200, body)

        return respond(
            admin_request(request._request, endpoint="GET /admin/audit/checkpoints/latest", parse=no_parameters, perform=perform)
        )


METRICS_ADMIN_KEY_HEADER = OpenApiParameter(
    "X-ADMIN-KEY", str, OpenApiParameter.HEADER, required=False, description="The admin key, or instead:"
)
METRICS_AUTHORIZATION_HEADER = OpenApiParameter(
    "Authorization", str, OpenApiParameter.HEADER, required=False,
    description="`Bearer <token>` whose sha256 is VERITTA_METRICS_TOKEN_SHA256: the read-only scrape credential.",
)  # fmt: skip


class MetricsApi(GovernedApi):
    """Prometheus metrics of every worker (text exposition format, docs/OPERATIONS.md)."""

    @extend_schema(
        operation_id="metrics",
        parameters=[METRICS_ADMIN_KEY_HEADER, METRICS_AUTHORIZATION_HEADER, TRACE_HEADER],
        responses={(200, "text/plain"): OpenApiTypes.STR, **ERROR_RESPONSES},
    )
    def get(self, request: Request) -> HttpResponse | Response:
        def perform(ctx: RequestContext, data: dict[str, Any]) -> Outcome:
            return Outcome(200, {"exposition": metrics_exposition()})

        # Prometheus's own read-only credential, or the admin key (audit/scrape.py).
        scrape = presents_scrape_token(request._request)
        outcome = admin_request(
            request._request,
            endpoint="GET /metrics",
            parse=no_parameters,
            perform=perform,
            credential_gates=SCRAPE_GATES if scrape else None,
            rate_bucket="metrics" if scrape else "admin",
        )
        if outcome.status != 200:
            return respond(outcome)
        response = HttpResponse(outcome.body["exposition"], content_type=CONTENT_TYPE_LATEST)
        for name, value in outcome.headers.items():
            response[name] = value
        return response

"""HTTP views of governance: /process, /health and four-eyes approval. Thin:
they call the pipeline and the approval flows."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from edge.approval_flows import approval_read
from edge.sessions_flows import admin_request, validated
from governance.approval_flows import VERDICTS, approval_decide
from governance.gates import ACTION_NAME_RE
from governance.pipeline import process_request
from veritta_site.errors import VerittaError
from veritta_site.schema import ERROR_RESPONSES, ErrorEnvelopeSerializer
from veritta_site.semver import SEMVER_RE
from veritta_site.timestamps import utc_timestamp


class ProcessApi(APIView):
    """Run an action through the gates, the executor and the audit trail."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []
    # The pipeline reads and parses the body itself, within the size limit.
    parser_classes: list[type] = []

    class InputSerializer(serializers.Serializer):
        action = serializers.RegexField(ACTION_NAME_RE.pattern, help_text="An action the active policy profile allows.")
        action_version = serializers.RegexField(
            SEMVER_RE.pattern, required=False, help_text="Semantic version the executor must satisfy."
        )
        event_type = serializers.CharField(required=False, max_length=64)
        text = serializers.CharField(required=False, max_length=4096, help_text="Input of the `process` action.")
        operation = serializers.ChoiceField(
            required=False, choices=["normalize", "upper", "lower", "reverse", "stats"]
        )

    class OutputSerializer(serializers.Serializer):
        status_code = serializers.IntegerField()
        trace_id = serializers.UUIDField()
        result = inline_serializer(
            "ProcessResult",
            {
                "action": serializers.CharField(),
                "status": serializers.CharField(),
                "executor_id": serializers.CharField(),
                "executor_version": serializers.CharField(),
                "output": serializers.DictField(),
            },
        )
        # Sequenced before the answer: seq and record_hash. Still in the intake
        # (PostgreSQL's batched write path): nulls, with the signed promise to
        # sequence the entry by integrate_by (docs/AUDIT_LOG_SPEC.md, "Receipts").
        audit = inline_serializer(
            "AuditReceipt",
            {
                "seq": serializers.IntegerField(allow_null=True),
                "record_hash": serializers.CharField(allow_null=True),
                "entry_hash": serializers.CharField(),
                "integrate_by": serializers.CharField(required=False),
                "promise": serializers.CharField(required=False, allow_null=True),
            },
        )

    @extend_schema(
        operation_id="process",
        # The view has no DRF parser (the pipeline reads the body itself), so
        # the media type is named here for the document.
        request={"application/json": InputSerializer},
        responses={200: OutputSerializer, **ERROR_RESPONSES},
        parameters=[
            OpenApiParameter("X-API-Key", str, OpenApiParameter.HEADER, required=False),
            OpenApiParameter("X-Trace-ID", str, OpenApiParameter.HEADER, required=False),
            OpenApiParameter("traceparent", str, OpenApiParameter.HEADER, required=False),
        ],
    )
    def post(self, request: Request) -> Response:
        outcome = process_request(request._request)
        return Response(outcome.body, status=outcome.status, headers=outcome.headers)


class HealthApi(APIView):
    """Liveness only: says the process answers, nothing about its internals."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []

    @extend_schema(
        operation_id="health",
        responses={
            200: inline_serializer("Health", {"status": serializers.CharField(), "ts_utc": serializers.DateTimeField()}),
            405: OpenApiResponse(ErrorEnvelopeSerializer),
        },
    )
    def get(self, request: Request) -> Response:
        return Response({"status": "ok", "ts_utc": utc_timestamp()})


class ApprovalReadApi(APIView):
    """A held request's state, and once executed its answer: with the credential that asked."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []
    parser_classes: list[type] = []

    @extend_schema(operation_id="approval_read", responses={200: dict, **ERROR_RESPONSES})
    def get(self, request: Request, approval_id: str) -> Response:
        outcome = approval_read(request._request, approval_id)
        return Response(outcome.body, status=outcome.status, headers={"Cache-Control": "no-store", **outcome.headers})


class ApprovalDecideApi(APIView):
    """An approver approves or rejects a held request, with a reason (admin API)."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []
    parser_classes: list[type] = []

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ApprovalDecideInput"

        approver = serializers.CharField(max_length=150, help_text="The approver's console username.")
        reason = serializers.RegexField(r"^[^\x00-\x1f\x7f]+$", max_length=500, help_text="Why: mandatory.")

    @extend_schema(operation_id="admin_approval_decide", request={"application/json": InputSerializer},
                   responses={200: dict, **ERROR_RESPONSES})
    def post(self, request: Request, approval_id: str, verdict: str) -> Response:
        def parse(data: Any) -> dict[str, Any]:
            if verdict not in VERDICTS:
                raise VerittaError("NOT_FOUND")
            try:
                return validated(self.InputSerializer, data if data is not None else {})
            except VerittaError as error:
                raise VerittaError("APPROVAL_REASON_REQUIRED", evidence=error.evidence) from error

        def perform(ctx: Any, data: dict[str, Any]) -> Any:
            return approval_decide(approval_id[:40], approver=data["approver"], verdict=VERDICTS[verdict],
                                   reason=data["reason"], ctx=ctx)

        outcome = admin_request(request._request, endpoint=f"POST /admin/approvals/{{id}}/{verdict[:8]}", parse=parse, perform=perform)
        return Response(outcome.body, status=outcome.status, headers=outcome.headers)

"""HTTP views of the proofs for outsiders and the seeds' audit queries (issue 15).

    GET /audit/checkpoints/latest           any valid credential
    GET /audit/checkpoints/{tree_size}      any valid credential
    GET /audit/proofs/inclusion             a client: its own records; the admin key: any
    GET /audit/proofs/consistency           any valid credential
    POST /audit/checkpoints/{n}/cosignatures   a witness of VERITTA_AUDIT_WITNESSES
    POST /audit/witness-refusals            a witness of VERITTA_AUDIT_WITNESSES
    GET /admin/audit/traces                 admin key: requests by time range, actor, decision
    GET /admin/audit/violations             admin key: denials grouped by kind of control

Thin: the gates are in audit.flows (and sessions_app.flows for the admin
API), the answers in audit.transparency and audit.queries.
"""

from __future__ import annotations

import json
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from audit.checkpoints import SigningKeyError, public_vkey
from audit.flows import reader_request
from audit.queries import KINDS, traces_page, violations_page
from audit.services import RequestContext
from audit.transparency import Owners, checkpoint_at, checkpoint_document, consistency_document, inclusion_document
from audit.witness_client import REFUSAL_PROBLEMS
from audit.witnesses import cosignature_accept, witness_refusal_report
from governance.pipeline import Outcome
from sessions_app.apis import ADMIN_KEY_HEADER, TRACE_HEADER, GovernedApi, no_parameters, query_parameters, respond
from sessions_app.flows import admin_request, validated
from veritta_site.errors import VerittaError
from veritta_site.schema import ERROR_RESPONSES
from veritta_site.timestamps import utc_timestamp

HEX64 = r"^[0-9a-f]{64}$"

# Any one of these credentials reads the proof endpoints.
READER_HEADERS = [
    OpenApiParameter("X-API-Key", str, OpenApiParameter.HEADER, required=False, description="A client API key."),
    OpenApiParameter("Authorization", str, OpenApiParameter.HEADER, required=False, description="`Bearer vs_…` session token."),
    OpenApiParameter("X-VERITTA-USER-ID", str, OpenApiParameter.HEADER, required=False),
    OpenApiParameter("X-VERITTA-SESSION-ID", str, OpenApiParameter.HEADER, required=False),
    OpenApiParameter("X-ADMIN-KEY", str, OpenApiParameter.HEADER, required=False, description="The admin key: any record."),
    TRACE_HEADER,
]


def _vkey() -> str:
    try:
        return public_vkey()
    except SigningKeyError as exc:
        raise VerittaError("SERVER_MISCONFIGURED", evidence={"setting": "VERITTA_AUDIT_SIGNING_KEY"}) from exc


def _ok(body: dict[str, Any]) -> Outcome:
    return Outcome(200, body)


class CheckpointOutputSerializer(serializers.Serializer):
    class Meta:
        ref_name = "SignedCheckpoint"

    tree_size = serializers.IntegerField()
    root_hash = serializers.CharField(help_text="Hex RFC 6962 root of the first tree_size record hashes.")
    note = serializers.CharField(help_text="The C2SP signed note, with any witness cosignatures.")
    vkey = serializers.CharField(help_text="The log's verifier key `name+keyid+base64`.")


class PublicCheckpointLatestApi(GovernedApi):
    """The newest signed checkpoint, for any client with a valid credential."""

    @extend_schema(operation_id="audit_checkpoint_latest", parameters=READER_HEADERS, responses={200: CheckpointOutputSerializer, **ERROR_RESPONSES})
    def get(self, request: Request) -> Response:
        def perform(ctx: RequestContext, data: dict[str, Any], owners: Owners) -> Outcome:
            return _ok(checkpoint_document(checkpoint_at(None), _vkey()))

        return respond(reader_request(request._request, endpoint="GET /audit/checkpoints/latest", parse=no_parameters, perform=perform))


class PublicCheckpointApi(GovernedApi):
    """The signed checkpoint of one tree size."""

    @extend_schema(operation_id="audit_checkpoint", parameters=READER_HEADERS, responses={200: CheckpointOutputSerializer, **ERROR_RESPONSES})
    def get(self, request: Request, tree_size: int) -> Response:
        def perform(ctx: RequestContext, data: dict[str, Any], owners: Owners) -> Outcome:
            return _ok(checkpoint_document(checkpoint_at(tree_size), _vkey()))

        return respond(
            reader_request(request._request, endpoint="GET /audit/checkpoints/{tree_size}", parse=no_parameters, perform=perform)
        )


class InclusionProofApi(GovernedApi):
    """RFC 6962 inclusion proof of a request's records in a signed checkpoint.

    Name the records by exactly one of trace_id, seq, record_hash or
    entry_hash (a receipt's fields); a client sees only the records of its own
    requests (its API key or session), anyone else's are not found."""

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "InclusionProofInput"

        trace_id = serializers.RegexField(r"^[0-9a-fA-F-]{36}$", required=False, help_text="Every record of the request.")
        seq = serializers.IntegerField(required=False, min_value=1)
        record_hash = serializers.RegexField(HEX64, required=False)
        entry_hash = serializers.RegexField(HEX64, required=False, help_text="From a receipt with `seq: null` (a promise).")
        tree_size = serializers.IntegerField(
            required=False, min_value=1, help_text="The checkpoint to prove against; default the latest."
        )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            named = [k for k in ("trace_id", "seq", "record_hash", "entry_hash") if attrs.get(k) is not None]
            if len(named) != 1:
                raise serializers.ValidationError({"selector": "name exactly one of trace_id, seq, record_hash, entry_hash"})
            return attrs

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "InclusionProofOutput"

        tree_size = serializers.IntegerField()
        checkpoint = serializers.CharField(help_text="The signed note the proofs are against.")
        vkey = serializers.CharField()
        records = serializers.ListField(
            child=serializers.DictField(),
            help_text="Each: seq, leaf_index, record_hash, proof (hex, leaf side first), body (the whole record).",
        )

    @extend_schema(
        operation_id="audit_proof_inclusion",
        parameters=[*READER_HEADERS, InputSerializer],
        responses={200: OutputSerializer, **ERROR_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        def perform(ctx: RequestContext, data: dict[str, Any], owners: Owners) -> Outcome:
            return _ok(inclusion_document(data, data.get("tree_size"), owners, _vkey()))

        return respond(
            reader_request(
                request._request,
                endpoint="GET /audit/proofs/inclusion",
                parse=query_parameters(request, self.InputSerializer),
                perform=perform,
            )
        )


class ConsistencyProofApi(GovernedApi):
    """RFC 6962 consistency proof: the checkpoint of size `second` (default the
    latest) extends the one of size `first`."""

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ConsistencyProofInput"

        first = serializers.IntegerField(min_value=0, help_text="Size of the older signed checkpoint.")
        second = serializers.IntegerField(required=False, min_value=0, help_text="Size of the newer one; default the latest.")

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ConsistencyProofOutput"

        first = CheckpointOutputSerializer()
        second = CheckpointOutputSerializer()
        proof = serializers.ListField(child=serializers.CharField(), help_text="Hex node hashes, RFC 6962 §2.1.2 order.")

    @extend_schema(
        operation_id="audit_proof_consistency",
        parameters=[*READER_HEADERS, InputSerializer],
        responses={200: OutputSerializer, **ERROR_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        def perform(ctx: RequestContext, data: dict[str, Any], owners: Owners) -> Outcome:
            return _ok(consistency_document(data["first"], data.get("second"), _vkey()))

        return respond(
            reader_request(
                request._request,
                endpoint="GET /audit/proofs/consistency",
                parse=query_parameters(request, self.InputSerializer),
                perform=perform,
            )
        )


class _WindowInput(serializers.Serializer):
    since = serializers.DateTimeField(required=False, help_text="ISO 8601, inclusive.")
    until = serializers.DateTimeField(required=False, help_text="ISO 8601, exclusive.")
    cursor = serializers.IntegerField(required=False, min_value=1, help_text="`next_cursor` of the previous page.")
    limit = serializers.IntegerField(required=False, default=100, min_value=1, max_value=1000)


class AuditTraceListApi(GovernedApi):
    """Requests (their decision records), newest first, by time range, actor and decision."""

    class InputSerializer(_WindowInput):
        class Meta:
            ref_name = "AuditTraceListInput"

        actor = serializers.RegexField(r"^[\w.@+:-]{1,81}$", required=False, help_text="An actor id, or `kind:id`.")
        decision = serializers.ChoiceField(required=False, choices=["ALLOW", "DENY"])

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "AuditTraceListOutput"

        items = serializers.ListField(child=serializers.DictField(), help_text="Decision records, one a request.")
        next_cursor = serializers.IntegerField(allow_null=True)

    @extend_schema(
        operation_id="admin_audit_traces",
        parameters=[ADMIN_KEY_HEADER, TRACE_HEADER, InputSerializer],
        responses={200: OutputSerializer, **ERROR_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        def perform(ctx: RequestContext, data: dict[str, Any]) -> Outcome:
            bodies, next_cursor = traces_page(
                since=data.get("since"),
                until=data.get("until"),
                actor=data.get("actor"),
                decision=data.get("decision"),
                cursor=data.get("cursor"),
                limit=data["limit"],
            )
            return _ok({"items": [json.loads(b) for b in bodies], "next_cursor": next_cursor})

        return respond(
            admin_request(
                request._request, endpoint="GET /admin/audit/traces", parse=query_parameters(request, self.InputSerializer), perform=perform
            )
        )


class AuditViolationListApi(GovernedApi):
    """Denials, newest first, counted by the kind of control that refused them."""

    class InputSerializer(_WindowInput):
        class Meta:
            ref_name = "AuditViolationListInput"

        kind = serializers.ChoiceField(required=False, choices=list(KINDS), help_text="Only denials by this kind of control.")

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "AuditViolationListOutput"

        counts = serializers.DictField(child=serializers.IntegerField(), help_text=f"Denials in the window by kind: {', '.join(KINDS)}.")
        items = serializers.ListField(child=serializers.DictField(), help_text="Each: `control_kind` and the denial `record`.")
        next_cursor = serializers.IntegerField(allow_null=True)

    @extend_schema(
        operation_id="admin_audit_violations",
        parameters=[ADMIN_KEY_HEADER, TRACE_HEADER, InputSerializer],
        responses={200: OutputSerializer, **ERROR_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        def perform(ctx: RequestContext, data: dict[str, Any]) -> Outcome:
            page = violations_page(
                since=data.get("since"), until=data.get("until"), kind=data.get("kind"), cursor=data.get("cursor"), limit=data["limit"]
            )
            return _ok({"counts": page["counts"], "items": page["items"], "next_cursor": page["next_cursor"]})

        return respond(
            admin_request(
                request._request,
                endpoint="GET /admin/audit/violations",
                parse=query_parameters(request, self.InputSerializer),
                perform=perform,
            )
        )


# --- witnesses (audit/witnesses.py) ---------------------------------------------------------


class CosignatureCreateApi(GovernedApi):
    """A witness hands in its cosignature (C2SP tlog-cosignature) of a checkpoint.

    Accepted only from a witness in VERITTA_AUDIT_WITNESSES and only if it
    verifies on that checkpoint; then served appended to the checkpoint's note.
    The witness authenticates with any valid credential; the cosignature
    proves itself."""

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "CosignatureInput"

        cosignature = serializers.CharField(
            max_length=1000, trim_whitespace=False, help_text="One signature line `— <witness> <base64>`, newline-terminated."
        )

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "CosignatureOutput"

        tree_size = serializers.IntegerField()
        witness = serializers.CharField()
        cosigned_at = serializers.DateTimeField()

    @extend_schema(
        operation_id="audit_cosignature_create",
        parameters=READER_HEADERS,
        request={"application/json": InputSerializer},
        responses={201: OutputSerializer, **ERROR_RESPONSES},
    )
    def post(self, request: Request, tree_size: int) -> Response:
        def perform(ctx: RequestContext, data: dict[str, Any], owners: Owners) -> Outcome:
            kept = cosignature_accept(tree_size=tree_size, line=data["cosignature"])
            return Outcome(201, {"tree_size": kept.tree_size, "witness": kept.witness, "cosigned_at": utc_timestamp(kept.cosigned_at)})

        return respond(
            reader_request(
                request._request,
                endpoint="POST /audit/checkpoints/{tree_size}/cosignatures",
                parse=lambda payload: validated(self.InputSerializer, payload),
                perform=perform,
            )
        )


class WitnessRefusalApi(GovernedApi):
    """A witness reports that it refused a checkpoint of this log (a fork, a
    rollback, a consistency proof that does not verify): raises the
    `witness_refused` alert (docs/OPERATIONS.md)."""

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "WitnessRefusalInput"

        witness = serializers.CharField(max_length=255, help_text="The witness's key name, as in VERITTA_AUDIT_WITNESSES.")
        tree_size = serializers.IntegerField(min_value=0, help_text="The size of the checkpoint refused.")
        problem = serializers.ChoiceField(choices=list(REFUSAL_PROBLEMS))

    @extend_schema(
        operation_id="audit_witness_refusal",
        parameters=READER_HEADERS,
        request={"application/json": InputSerializer},
        responses={202: inline_serializer("WitnessRefusalOutput", {"reported": serializers.BooleanField()}), **ERROR_RESPONSES},
    )
    def post(self, request: Request) -> Response:
        def perform(ctx: RequestContext, data: dict[str, Any], owners: Owners) -> Outcome:
            witness_refusal_report(witness=data["witness"], tree_size=data["tree_size"], problem=data["problem"])
            return Outcome(202, {"reported": True})

        return respond(
            reader_request(
                request._request,
                endpoint="POST /audit/witness-refusals",
                parse=lambda payload: validated(self.InputSerializer, payload),
                perform=perform,
            )
        )

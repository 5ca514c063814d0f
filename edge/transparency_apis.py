"""HTTP views of the proofs for outsiders and the seeds' audit queries (issue 15).

    GET /audit/checkpoints/latest           any valid credential
    GET /audit/checkpoints/{tree_size}      any valid credential
    GET /audit/proofs/inclusion/{trace|seq|record|entry}/{value}
                                            a client: its own records; the admin key: any
    GET /audit/proofs/consistency           any valid credential
    POST /audit/checkpoints/{n}/cosignatures   a witness of VERITTA_AUDIT_WITNESSES
    POST /audit/witness-refusals            a witness of VERITTA_AUDIT_WITNESSES
    GET /admin/audit/traces                 admin key: requests by time range, actor, decision
    GET /admin/audit/violations             admin key: denials grouped by kind of control

Thin: the gates are in edge.audit_flows (and edge.sessions_flows for the admin
API), the answers in audit.transparency and audit.queries.
"""

from __future__ import annotations

import json
import re
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from audit.checkpoints import SigningKeyError, public_vkey
from audit.queries import KINDS, traces_page, violations_page
from audit.services import RequestContext
from audit.transparency import Owners, checkpoint_at, checkpoint_document, consistency_document, inclusion_document
from audit.witness_client import REFUSAL_PROBLEMS
from audit.witnesses import cosignature_accept, witness_refusal_report
from edge.audit_flows import reader_request
from edge.sessions_apis import ADMIN_KEY_HEADER, TRACE_HEADER, GovernedApi, no_parameters, query_parameters, respond
from edge.sessions_flows import admin_request, validated
from governance.pipeline import Outcome
from veritta_site.errors import VerittaError
from veritta_site.schema import ERROR_RESPONSES
from veritta_site.timestamps import utc_timestamp

MAX_SEQ = 2**63 - 1  # the seq column's range: a larger number names nothing, and must not reach the database

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
            return _ok(checkpoint_document(checkpoint_at(tree_size if tree_size <= MAX_SEQ else -1), _vkey()))

        return respond(
            reader_request(request._request, endpoint="GET /audit/checkpoints/{tree_size}", parse=no_parameters, perform=perform)
        )


class InclusionProofOutputSerializer(serializers.Serializer):
    class Meta:
        ref_name = "InclusionProofOutput"

    tree_size = serializers.IntegerField()
    checkpoint = serializers.CharField(help_text="The signed note the proofs are against.")
    vkey = serializers.CharField()
    records = serializers.ListField(
        child=serializers.DictField(),
        help_text="Each: seq, leaf_index, record_hash, proof (hex, leaf side first), body (the whole record).",
    )


class InclusionProofInputSerializer(serializers.Serializer):
    class Meta:
        ref_name = "InclusionProofInput"

    tree_size = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_SEQ, help_text="The checkpoint to prove against; default the latest."
    )


# What each route names the records by, and what a well-formed value looks like
# (anything else names no record: 404, without asking the database).
SELECTORS = {
    "trace_id": re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
    "record_hash": re.compile(r"[0-9a-f]{64}"),
    "entry_hash": re.compile(r"[0-9a-f]{64}"),
}


class InclusionProofApi(GovernedApi):
    """RFC 6962 inclusion proof of records in a signed checkpoint (the given
    `tree_size`, or the latest), the records named by one of a receipt's
    fields, one route each. A client sees only the records of its own
    requests (its API key or session); anyone else's are not found."""

    selector = ""  # set by each route's subclass
    route = ""

    def _get(self, request: Request, value: Any) -> Response:
        def perform(ctx: RequestContext, data: dict[str, Any], owners: Owners) -> Outcome:
            if self.selector == "seq":
                named = value if 1 <= value <= MAX_SEQ else None
            else:
                named = value if SELECTORS[self.selector].fullmatch(value) else None
            if named is None:
                raise VerittaError("NOT_FOUND", evidence={"object": "record"}, details={"object": "record"})
            return _ok(inclusion_document({self.selector: named}, data.get("tree_size"), owners, _vkey()))

        return respond(
            reader_request(
                request._request,
                endpoint=f"GET /audit/proofs/inclusion/{self.route}",
                parse=query_parameters(request, InclusionProofInputSerializer),
                perform=perform,
            )
        )


def _inclusion_schema(operation_id: str) -> Any:
    return extend_schema(
        operation_id=operation_id,
        parameters=[*READER_HEADERS, InclusionProofInputSerializer],
        responses={200: InclusionProofOutputSerializer, **ERROR_RESPONSES},
    )


class InclusionByTraceApi(InclusionProofApi):
    """Inclusion proof of every record of one request (its trace id)."""

    selector, route = "trace_id", "trace/{trace_id}"

    @_inclusion_schema("audit_proof_inclusion_by_trace")
    def get(self, request: Request, trace_id: str) -> Response:
        return self._get(request, trace_id)


class InclusionBySeqApi(InclusionProofApi):
    """Inclusion proof of the record at one seq (a receipt's `seq`)."""

    selector, route = "seq", "seq/{seq}"

    @_inclusion_schema("audit_proof_inclusion_by_seq")
    def get(self, request: Request, seq: int) -> Response:
        return self._get(request, seq)


class InclusionByRecordHashApi(InclusionProofApi):
    """Inclusion proof of the record with this record hash (a receipt's `record_hash`)."""

    selector, route = "record_hash", "record/{record_hash}"

    @_inclusion_schema("audit_proof_inclusion_by_record_hash")
    def get(self, request: Request, record_hash: str) -> Response:
        return self._get(request, record_hash)


class InclusionByEntryHashApi(InclusionProofApi):
    """Inclusion proof of the record with this entry hash (a promise receipt's `entry_hash`)."""

    selector, route = "entry_hash", "entry/{entry_hash}"

    @_inclusion_schema("audit_proof_inclusion_by_entry_hash")
    def get(self, request: Request, entry_hash: str) -> Response:
        return self._get(request, entry_hash)


class ConsistencyProofApi(GovernedApi):
    """RFC 6962 consistency proof: the checkpoint of size `second` (default the
    latest) extends the one of size `first`."""

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ConsistencyProofInput"

        first = serializers.IntegerField(min_value=0, max_value=MAX_SEQ, help_text="Size of the older signed checkpoint.")
        second = serializers.IntegerField(
            required=False, min_value=0, max_value=MAX_SEQ, help_text="Size of the newer one; default the latest."
        )

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
            min_length=1, max_length=1000, trim_whitespace=False, help_text="One signature line `— <witness> <base64>`, newline-terminated."
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
            kept = cosignature_accept(tree_size=tree_size if tree_size <= MAX_SEQ else -1, line=data["cosignature"])
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

        witness = serializers.CharField(min_length=1, max_length=255, trim_whitespace=False, help_text="The witness's key name, as in VERITTA_AUDIT_WITNESSES.")
        tree_size = serializers.IntegerField(min_value=0, max_value=MAX_SEQ, help_text="The size of the checkpoint refused.")
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

"""Every API address, wired to the edge's views. The site includes this module
by name (veritta_site/urls.py imports no app)."""

from django.urls import path

from edge.audit_apis import AuditEventListApi, AuditSummaryApi, AuditTraceApi, CheckpointLatestApi, MetricsApi
from edge.governance_apis import ApprovalDecideApi, ApprovalReadApi, HealthApi, ProcessApi
from edge.sessions_apis import (
    AdminHealthApi,
    ApiKeyRolesApi,
    SessionCreateApi,
    SessionDetailApi,
    SessionListApi,
    SessionRevokeApi,
)
from edge.transparency_apis import (
    AuditTraceListApi,
    AuditViolationListApi,
    ConsistencyProofApi,
    CosignatureCreateApi,
    InclusionByEntryHashApi,
    InclusionByRecordHashApi,
    InclusionBySeqApi,
    InclusionByTraceApi,
    PublicCheckpointApi,
    PublicCheckpointLatestApi,
    WitnessRefusalApi,
)

urlpatterns = [
    # governance
    path("process", ProcessApi.as_view(), name="process"),
    path("health", HealthApi.as_view(), name="health"),
    path("approvals/<str:approval_id>", ApprovalReadApi.as_view(), name="approval-read"),
    path("admin/approvals/<str:approval_id>/<str:verdict>", ApprovalDecideApi.as_view(), name="admin-approval-decide"),
    # sessions
    path("sessions", SessionCreateApi.as_view(), name="sessions-create"),
    path("admin/sessions", SessionListApi.as_view(), name="admin-sessions-list"),
    path("admin/sessions/revoke", SessionRevokeApi.as_view(), name="admin-sessions-revoke"),
    path("admin/sessions/<str:session_id>", SessionDetailApi.as_view(), name="admin-sessions-detail"),
    path("admin/keys/<str:prefix>/roles", ApiKeyRolesApi.as_view(), name="admin-keys-roles"),
    path("admin/health", AdminHealthApi.as_view(), name="admin-health"),
    # audit
    path("admin/audit/summary", AuditSummaryApi.as_view(), name="admin-audit-summary"),
    path("admin/audit/events", AuditEventListApi.as_view(), name="admin-audit-events"),
    path("admin/audit/traces", AuditTraceListApi.as_view(), name="admin-audit-traces"),
    path("admin/audit/violations", AuditViolationListApi.as_view(), name="admin-audit-violations"),
    # Proofs for outsiders (issue 15): any valid credential; a client's own records only.
    path("audit/checkpoints/latest", PublicCheckpointLatestApi.as_view(), name="audit-checkpoint-latest"),
    path("audit/checkpoints/<int:tree_size>", PublicCheckpointApi.as_view(), name="audit-checkpoint"),
    path("audit/checkpoints/<int:tree_size>/cosignatures", CosignatureCreateApi.as_view(), name="audit-cosignature-create"),
    path("audit/witness-refusals", WitnessRefusalApi.as_view(), name="audit-witness-refusals"),
    path("audit/proofs/inclusion/trace/<str:trace_id>", InclusionByTraceApi.as_view(), name="audit-proof-inclusion-trace"),
    path("audit/proofs/inclusion/seq/<int:seq>", InclusionBySeqApi.as_view(), name="audit-proof-inclusion-seq"),
    path("audit/proofs/inclusion/record/<str:record_hash>", InclusionByRecordHashApi.as_view(), name="audit-proof-inclusion-record"),
    path("audit/proofs/inclusion/entry/<str:entry_hash>", InclusionByEntryHashApi.as_view(), name="audit-proof-inclusion-entry"),
    path("audit/proofs/consistency", ConsistencyProofApi.as_view(), name="audit-proof-consistency"),
    path("admin/audit/traces/<str:trace_id>", AuditTraceApi.as_view(), name="admin-audit-trace"),
    path("metrics", MetricsApi.as_view(), name="metrics"),
    path("admin/audit/checkpoints/latest", CheckpointLatestApi.as_view(), name="admin-audit-checkpoint-latest"),
]

from django.urls import path

from audit.apis import AuditEventListApi, AuditSummaryApi, AuditTraceApi, CheckpointLatestApi, MetricsApi
from audit.transparency_apis import (
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

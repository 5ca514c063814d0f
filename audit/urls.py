from django.urls import path

from audit.apis import AuditEventListApi, AuditSummaryApi, AuditTraceApi, CheckpointLatestApi, MetricsApi

urlpatterns = [
    path("admin/audit/summary", AuditSummaryApi.as_view(), name="admin-audit-summary"),
    path("admin/audit/events", AuditEventListApi.as_view(), name="admin-audit-events"),
    path("admin/audit/traces/<str:trace_id>", AuditTraceApi.as_view(), name="admin-audit-trace"),
    path("metrics", MetricsApi.as_view(), name="metrics"),
    path("admin/audit/checkpoints/latest", CheckpointLatestApi.as_view(), name="admin-audit-checkpoint-latest"),
]

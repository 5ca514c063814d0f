from django.urls import path

from governance.apis import ApprovalDecideApi, ApprovalReadApi, HealthApi, ProcessApi

urlpatterns = [
    path("process", ProcessApi.as_view(), name="process"),
    path("health", HealthApi.as_view(), name="health"),
    path("approvals/<str:approval_id>", ApprovalReadApi.as_view(), name="approval-read"),
    path("admin/approvals/<str:approval_id>/<str:verdict>", ApprovalDecideApi.as_view(), name="admin-approval-decide"),
]

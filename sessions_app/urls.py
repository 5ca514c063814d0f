from django.urls import path

from sessions_app.apis import AdminHealthApi, SessionCreateApi, SessionDetailApi, SessionListApi, SessionRevokeApi

urlpatterns = [
    path("sessions", SessionCreateApi.as_view(), name="sessions-create"),
    path("admin/sessions", SessionListApi.as_view(), name="admin-sessions-list"),
    path("admin/sessions/revoke", SessionRevokeApi.as_view(), name="admin-sessions-revoke"),
    path("admin/sessions/<str:session_id>", SessionDetailApi.as_view(), name="admin-sessions-detail"),
    path("admin/health", AdminHealthApi.as_view(), name="admin-health"),
]

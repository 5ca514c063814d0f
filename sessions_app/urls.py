from django.urls import path

from sessions_app.apis import (
    AdminHealthApi,
    ApiKeyRolesApi,
    SessionCreateApi,
    SessionDetailApi,
    SessionListApi,
    SessionRevokeApi,
)

urlpatterns = [
    path("sessions", SessionCreateApi.as_view(), name="sessions-create"),
    path("admin/sessions", SessionListApi.as_view(), name="admin-sessions-list"),
    path("admin/sessions/revoke", SessionRevokeApi.as_view(), name="admin-sessions-revoke"),
    path("admin/sessions/<str:session_id>", SessionDetailApi.as_view(), name="admin-sessions-detail"),
    path("admin/keys/<str:prefix>/roles", ApiKeyRolesApi.as_view(), name="admin-keys-roles"),
    path("admin/health", AdminHealthApi.as_view(), name="admin-health"),
]

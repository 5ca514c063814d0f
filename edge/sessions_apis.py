"""HTTP views of the sessions app: POST /sessions and the session and health
operations of the admin API. Thin: the gates are in edge.sessions_flows, the
rules in services and selectors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.services import RequestContext
from edge.sessions_flows import HEALTH_RATE_BUCKET, admin_request, session_open_request, validated
from governance.pipeline import Outcome
from sessions_app.health import health_report
from sessions_app.models import ApiKey, Session
from sessions_app.selectors import ROLE_NAME_RE, STORED_PREFIX_RE, roles_of, session_get, sessions_of_key
from sessions_app.services import api_key_set_roles, session_revoke
from veritta_site.errors import CATALOGUE, VerittaError, envelope
from veritta_site.schema import ERROR_RESPONSES
from veritta_site.timestamps import utc_timestamp

USER_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}$"
SESSION_ID_RE = r"^[A-Za-z0-9_-]{1,40}$"

ADMIN_KEY_HEADER = OpenApiParameter("X-ADMIN-KEY", str, OpenApiParameter.HEADER, required=True)
TRACE_HEADER = OpenApiParameter("X-Trace-ID", str, OpenApiParameter.HEADER, required=False)


def respond(outcome: Outcome) -> Response:
    return Response(outcome.body, status=outcome.status, headers=outcome.headers)


def no_parameters(data: Any) -> dict[str, Any]:
    return {}


def query_parameters(
    request: Request, serializer_class: type[serializers.Serializer]
) -> Callable[[Any], dict[str, Any]]:
    """Validate the query string (last value of a repeated parameter)."""
    params = dict(request.query_params.items())
    return lambda _body: validated(serializer_class, params)


class GovernedApi(APIView):
    """No DRF authentication, permissions or parsers: the gates of edge.sessions_flows
    check credentials, and the body is read by them within the size limit."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []
    parser_classes: list[type] = []


def session_state(session: Session) -> str:
    if session.revoked_at is not None:
        return "revoked"
    if session.expires_at <= datetime.now(UTC):
        return "expired"
    return "active"


class SessionCreateApi(GovernedApi):
    """Open a session for a user. The bearer token is in this answer only."""

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "SessionCreateInput"

        user_id = serializers.RegexField(USER_ID_RE, max_length=64, help_text="Your user's id, e.g. u_12345.")
        ttl_s = serializers.IntegerField(
            required=False,
            min_value=60,
            max_value=settings.VERITTA_SESSION_TTL_MAX_S,
            help_text="Lifetime in seconds (default VERITTA_SESSION_TTL_S, at most VERITTA_SESSION_TTL_MAX_S).",
        )
        roles = serializers.ListField(
            child=serializers.RegexField(ROLE_NAME_RE),
            required=False,
            max_length=20,
            help_text="Roles the session holds: some of the key's (default: all of them). Asking for one the key lacks is AUTHZ_DENIED.",
        )

        def validate_ttl_s(self, value: int) -> int:
            # max_value above documents the bound read at start; this reads it now.
            if value > settings.VERITTA_SESSION_TTL_MAX_S:
                raise serializers.ValidationError("too long")
            return value

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "SessionCreateOutput"

        session_id = serializers.CharField()
        user_id = serializers.CharField()
        roles = serializers.ListField(child=serializers.CharField())
        token = serializers.CharField(
            help_text="`vs_…`: send as `Authorization: Bearer`. Shown once, stored only as a hash."
        )
        created_at = serializers.DateTimeField()
        expires_at = serializers.DateTimeField()
        trace_id = serializers.UUIDField()

    @extend_schema(
        operation_id="sessions_create",
        request={"application/json": InputSerializer},
        responses={201: OutputSerializer, **ERROR_RESPONSES},
        parameters=[OpenApiParameter("X-API-Key", str, OpenApiParameter.HEADER, required=True), TRACE_HEADER],
    )
    def post(self, request: Request) -> Response:
        return respond(session_open_request(request._request, input_serializer=self.InputSerializer))


class SessionOutputSerializer(serializers.Serializer):
    session_id = serializers.CharField()
    user_id = serializers.CharField()
    state = serializers.ChoiceField(choices=["active", "revoked", "expired"])
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(help_text="Id of the API key that opened it.")
    expires_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    revoked_by = serializers.CharField(allow_blank=True)
    revoked_reason = serializers.CharField(allow_blank=True)
    roles = serializers.ListField(
        child=serializers.CharField(), help_text="Roles it was opened with; it acts with those its key still holds."
    )


class SessionRevokeApi(GovernedApi):
    """Revoke a session. Idempotent: a revoked session answers `already_revoked`."""

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "SessionRevokeInput"

        session_id = serializers.RegexField(SESSION_ID_RE, max_length=40)
        # Printable text only: control characters have no place in an audit reason.
        reason = serializers.RegexField(
            r"^[^\x00-\x1f\x7f]*$", required=False, allow_blank=True, max_length=200, default=""
        )

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "SessionRevokeOutput"

        session_id = serializers.CharField()
        status = serializers.ChoiceField(choices=["revoked", "already_revoked"])
        revoked_at = serializers.DateTimeField()
        trace_id = serializers.UUIDField()

    @extend_schema(
        operation_id="admin_sessions_revoke",
        request={"application/json": InputSerializer},
        responses={200: OutputSerializer, **ERROR_RESPONSES},
        parameters=[ADMIN_KEY_HEADER, TRACE_HEADER],
    )
    def post(self, request: Request) -> Response:
        def perform(ctx: RequestContext, data: dict[str, Any]) -> Outcome:
            result = session_revoke(
                session_id=data["session_id"], actor=dict(ctx.actor), reason=data["reason"], ctx=ctx
            )
            body = {
                "session_id": result.session_id,
                "status": result.status,
                "revoked_at": utc_timestamp(result.revoked_at),
                "trace_id": ctx.trace_id,
            }
            return Outcome(200, body)

        return respond(
            admin_request(
                request._request,
                endpoint="POST /admin/sessions/revoke",
                parse=lambda data: validated(self.InputSerializer, data if data is not None else {}),
                perform=perform,
                records_own_decision=True,
                rate_bucket="revoke",
            )
        )


class SessionDetailApi(GovernedApi):
    """A session's metadata: never its token or the token's hash."""

    OutputSerializer = SessionOutputSerializer

    @extend_schema(
        operation_id="admin_sessions_detail",
        responses={200: SessionOutputSerializer, **ERROR_RESPONSES},
        parameters=[ADMIN_KEY_HEADER, TRACE_HEADER],
    )
    def get(self, request: Request, session_id: str) -> Response:
        def perform(ctx: RequestContext, data: dict[str, Any]) -> Outcome:
            session = session_get(session_id=session_id[:40])
            if session is None:
                raise VerittaError("NOT_FOUND", evidence={"object": "session"})
            return Outcome(200, _session_body(session))

        return respond(
            admin_request(
                request._request, endpoint="GET /admin/sessions/{session_id}", parse=no_parameters, perform=perform
            )
        )


class SessionListApi(GovernedApi):
    """The sessions one API key opened, newest first (never a token or its hash):
    what to check after revoking a key, which revokes them all."""

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "SessionListInput"

        created_by = serializers.RegexField(
            r"^[A-Za-z0-9]{1,16}$", max_length=16, help_text="The key's prefix (vk_<prefix>_…), or `bootstrap`."
        )
        limit = serializers.IntegerField(required=False, default=100, min_value=1, max_value=1000, help_text="1..1000")

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "SessionListOutput"

        created_by = serializers.CharField()
        sessions = SessionOutputSerializer(many=True)

    @extend_schema(
        operation_id="admin_sessions_list",
        parameters=[ADMIN_KEY_HEADER, TRACE_HEADER, InputSerializer],
        responses={200: OutputSerializer, **ERROR_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        def perform(ctx: RequestContext, data: dict[str, Any]) -> Outcome:
            sessions = sessions_of_key(created_by=data["created_by"], limit=data["limit"])
            return Outcome(200, {"created_by": data["created_by"], "sessions": [_session_body(s) for s in sessions]})

        return respond(
            admin_request(
                request._request,
                endpoint="GET /admin/sessions",
                parse=query_parameters(request, self.InputSerializer),
                perform=perform,
            )
        )


def _session_body(session: Session) -> dict[str, Any]:
    fields = {name: getattr(session, name) for name in SessionOutputSerializer().fields.keys() if name != "state"}
    return dict(SessionOutputSerializer({**fields, "state": session_state(session)}).data)


class ApiKeyRolesApi(GovernedApi):
    """A stored API key's roles: read them, or replace them (audited as
    `set_api_key_roles`; effective on the key's and its sessions' next request)."""

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ApiKeyRolesInput"

        roles = serializers.ListField(
            child=serializers.RegexField(ROLE_NAME_RE, max_length=32), max_length=20, allow_empty=True
        )

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ApiKeyRolesOutput"

        key_prefix = serializers.CharField()
        name = serializers.CharField()
        state = serializers.ChoiceField(choices=["active", "expiring", "expired", "revoked"])
        roles = serializers.ListField(child=serializers.CharField())

    @staticmethod
    def _body(prefix: str) -> dict[str, Any]:
        # Not a prefix we issue: unknown without asking the database (PostgreSQL refuses NUL bytes).
        key = ApiKey.objects.filter(prefix=prefix).first() if STORED_PREFIX_RE.fullmatch(prefix) else None
        if key is None:
            raise VerittaError("NOT_FOUND", evidence={"object": "api_key"})
        return {"key_prefix": key.prefix, "name": key.name, "state": key.state_at(timezone.now()), "roles": roles_of(key.roles)}

    @extend_schema(
        operation_id="admin_keys_roles_read",
        responses={200: OutputSerializer, **ERROR_RESPONSES},
        parameters=[ADMIN_KEY_HEADER, TRACE_HEADER],
    )
    def get(self, request: Request, prefix: str) -> Response:
        return respond(
            admin_request(
                request._request,
                endpoint="GET /admin/keys/{prefix}/roles",
                parse=no_parameters,
                perform=lambda ctx, data: Outcome(200, self._body(prefix)),
            )
        )

    @extend_schema(
        operation_id="admin_keys_roles_set",
        request={"application/json": InputSerializer},
        responses={200: OutputSerializer, **ERROR_RESPONSES},
        parameters=[ADMIN_KEY_HEADER, TRACE_HEADER],
    )
    def post(self, request: Request, prefix: str) -> Response:
        def perform(ctx: RequestContext, data: dict[str, Any]) -> Outcome:
            if not api_key_set_roles(prefix=prefix, roles=data["roles"], actor=dict(ctx.actor), ctx=ctx):
                raise VerittaError("NOT_FOUND", evidence={"object": "api_key"})
            return Outcome(200, self._body(prefix))

        return respond(
            admin_request(
                request._request,
                endpoint="POST /admin/keys/{prefix}/roles",
                parse=lambda data: validated(self.InputSerializer, data if data is not None else {}),
                perform=perform,
                records_own_decision=True,
                rate_bucket="revoke",
            )
        )


class AdminHealthApi(GovernedApi):
    """Readiness for operators: every part a governed request depends on, with a status each."""

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "AdminHealthOutput"

        status = serializers.ChoiceField(choices=["ok", "degraded"])
        db = serializers.CharField(help_text="ok | unavailable: the database answered a query")
        triggers = serializers.CharField(help_text="ok | missing | unknown: the append-only triggers are in place")
        audit_sink = serializers.CharField(
            help_text="ok | unavailable | low_space: the JSONL mirror is writable and its disk has VERITTA_AUDIT_SINK_MIN_FREE_MB"
        )
        audit_sink_free_mb = serializers.IntegerField(required=False, help_text="free space on the mirror's disk")
        redis = serializers.CharField(help_text="ok | unavailable | not_configured: the rate counters' Redis answers")
        checkpoint = serializers.CharField(
            help_text="ok | stale | unknown: no record waited over VERITTA_AUDIT_CHECKPOINT_MAX_AGE_S to be sealed"
        )
        checkpoint_age_s = serializers.FloatField(
            allow_null=True, required=False, help_text="age of the newest checkpoint"
        )
        unsealed_records = serializers.IntegerField(required=False, help_text="records no checkpoint covers yet")
        integration = serializers.CharField(
            help_text="ok | lagging | unknown | not_used (SQLite): no record waited in the intake past a quarter of the merge delay"
        )
        integration_lag_s = serializers.FloatField(
            allow_null=True, help_text="how long the oldest intake record has waited"
        )
        ts_utc = serializers.DateTimeField()

    @extend_schema(
        operation_id="admin_health",
        responses={200: OutputSerializer, **ERROR_RESPONSES},
        parameters=[ADMIN_KEY_HEADER, TRACE_HEADER],
        description="503 SERVICE_DEGRADED (the same report in `details`) when a check fails.",
    )
    def get(self, request: Request) -> Response:
        def perform(ctx: RequestContext, data: dict[str, Any]) -> Outcome:
            report = health_report()
            if report["status"] == "ok":
                return Outcome(200, report)
            reason = CATALOGUE["SERVICE_DEGRADED"]
            return Outcome(503, envelope(503, ["SERVICE_DEGRADED"], ctx.trace_id, reason.message, report))

        return respond(
            admin_request(
                request._request,
                endpoint="GET /admin/health",
                parse=no_parameters,
                perform=perform,
                reports_sink=True,
                rate_bucket=HEALTH_RATE_BUCKET,
            )
        )

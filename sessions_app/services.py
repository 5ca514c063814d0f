"""Writes of the sessions app: API keys, sessions and their revocation.

Every state change here is an audited action (SPEC §6): the decision record
and the PENDING action record are committed before the change is made, and
the terminal record after it, like any executor run of /process.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from audit.chain import AuditSinkError, chain_append
from audit.profile_hashes import profile_hash_of
from audit.services import RequestContext, audit_deny, sink_failure
from sessions_app.models import ApiKey, Session
from sessions_app.selectors import (
    KEY_PREFIX,
    ROLE_NAME_RE,
    SESSION_ID_PREFIX,
    STORED_PREFIX_RE,
    TOKEN_PREFIX,
    roles_of,
    secret_digest,
    session_get,
)
from veritta_site.errors import VerittaError

# last_seen_at is a hint for operators, not a security property: refresh it at
# most once a minute so that a busy session does not write on every request.
LAST_SEEN_RESOLUTION = timedelta(seconds=60)
MAX_ROLES = 20


def operator_context(*, endpoint: str, actor: dict[str, Any]) -> RequestContext:
    """An audit context for an admin operation that did not come over HTTP
    (a management command, the console)."""
    return RequestContext(
        trace_id=str(uuid.uuid4()),
        endpoint=endpoint,
        profile_id="admin",
        profile_hash=profile_hash_of("admin"),
        actor=dict(actor),
        digest_kind="empty",
    )


def _append(records: list[dict[str, Any]]) -> None:
    try:
        chain_append(records)
    except AuditSinkError as exc:
        raise sink_failure(exc) from exc


def _begin(ctx: RequestContext, *, action: str, evidence: dict[str, Any]) -> None:
    """ALLOW + PENDING in one transaction, before the change is made."""
    ctx.action_fields = {"action": action}
    decision = ctx.decision_record(decision="ALLOW", gate="ALL", http_status=200, error=None)
    pending = ctx.action_record(status="PENDING")
    pending["evidence"] = dict(evidence)
    _append([decision, pending])


def _end(ctx: RequestContext, *, evidence: dict[str, Any], error: VerittaError | None = None) -> None:
    record = ctx.action_record(status="FAILED" if error else "SUCCESS", error=error)
    record["evidence"] = {**evidence, **record["evidence"]}
    _append([record])


# --- API keys -----------------------------------------------------------------


DEFAULT_KEY_ROLES = ["operator"]  # docs/AUTHORIZATION.md: what a key made without --role holds


def roles_checked(roles: list[str]) -> list[str]:
    """Role names as they are stored: sorted, unique, each a valid name (VALIDATION_ERROR otherwise)."""
    bad = [r for r in roles if not isinstance(r, str) or not ROLE_NAME_RE.match(r)]
    if bad or len(roles) > MAX_ROLES:
        raise VerittaError(
            "VALIDATION_ERROR", evidence={"fields": ["roles"], "problem": "invalid"}, details={"fields": ["roles"]}
        )
    return sorted(set(roles))


def api_key_create(
    *, name: str, expires_at: datetime | None = None, roles: list[str] | None = None
) -> tuple[ApiKey, str]:
    """A new stored key. Returns the row and the key itself, which exists only
    in this return value: print it once, it cannot be recovered."""
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey.objects.create(
        name=name,
        prefix=prefix,
        digest=secret_digest(key),
        created_at=timezone.now(),
        expires_at=expires_at,
        roles=roles_checked(DEFAULT_KEY_ROLES if roles is None else roles),
    )
    return row, key


def api_key_set_roles(
    *, prefix: str, roles: list[str], actor: dict[str, Any] | None = None, ctx: RequestContext | None = None
) -> bool:
    """Replace a stored key's roles, audited as the action `set_api_key_roles`
    (the old and new roles in its evidence). Effective on the key's and its
    sessions' next request in every worker: G2/G4 read them from the row.
    False if there is no active key with that prefix."""
    roles = roles_checked(roles)
    actor = actor or {"kind": "operator", "id": "manage.py"}
    ctx = ctx or operator_context(endpoint="set_api_key_roles", actor=actor)
    ctx.action_fields = {"action": "set_api_key_roles"}
    known = STORED_PREFIX_RE.fullmatch(prefix)
    row = ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True).first() if known else None
    if row is None:
        audit_deny(
            ctx, gate="object", error=VerittaError("NOT_FOUND", evidence={"object": "api_key", "key_prefix": prefix})
        )
        return False
    ctx.matched_rules.append("object:api_key_found")
    evidence = {"key_prefix": prefix, "roles_before": roles_of(row.roles), "roles": roles}
    _begin(ctx, action="set_api_key_roles", evidence=evidence)
    try:
        ApiKey.objects.filter(pk=row.pk).update(roles=roles)
    except DatabaseError as exc:
        error = VerittaError("INTERNAL_ERROR", evidence={"exc_class": type(exc).__name__})
        _end(ctx, evidence=evidence, error=error)
        raise error from exc
    _end(ctx, evidence=evidence)
    return True


def api_key_expire(*, prefix: str, expires_at: datetime, actor: dict[str, Any] | None = None) -> bool:
    """Give an active stored key an expiry: the end of a rotation's overlap,
    when its successor is in use (docs/DEPLOYMENT.md, "Rotating keys"). An
    expiry is only ever brought forward. Audited as the action `expire_api_key`;
    False if there is no active key with that prefix."""
    actor = actor or {"kind": "operator", "id": "manage.py"}
    ctx = operator_context(endpoint="expire_api_key", actor=actor)
    ctx.action_fields = {"action": "expire_api_key"}
    evidence = {"key_prefix": prefix, "expires_at": expires_at.isoformat()}
    active = ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True)
    if not active.exists():
        audit_deny(
            ctx, gate="object", error=VerittaError("NOT_FOUND", evidence={"object": "api_key", "key_prefix": prefix})
        )
        return False
    ctx.matched_rules.append("object:api_key_found")
    _begin(ctx, action="expire_api_key", evidence=evidence)
    try:
        later_or_none = Q(expires_at__isnull=True) | Q(expires_at__gt=expires_at)
        changed = active.filter(later_or_none).update(expires_at=expires_at)
    except DatabaseError as exc:
        error = VerittaError("INTERNAL_ERROR", evidence={"exc_class": type(exc).__name__})
        _end(ctx, evidence=evidence, error=error)
        raise error from exc
    _end(ctx, evidence={**evidence, "outcome": "expiry_set" if changed else "already_expiring_sooner"})
    return True


def api_key_revoke(*, prefix: str, actor: dict[str, Any] | None = None, reason: str = "") -> bool:
    """Revoke a stored key and, in the same transaction, every active session
    it opened (docs/SECURITY.md S2: a session must not outlive its key);
    False if there is no active key with that prefix.

    Audited like a session revocation: the action `revoke_api_key` (ALLOW +
    PENDING, then SUCCESS with the number of sessions revoked) when a key is
    revoked, a DENY NOT_FOUND otherwise. The reason goes to the audit evidence
    (there is no column for it); each session row records the key's revocation
    as its own (`revoked_by`, `revoked_reason`)."""
    actor = actor or {"kind": "operator", "id": "manage.py"}
    ctx = operator_context(endpoint="revoke_api_key", actor=actor)
    ctx.action_fields = {"action": "revoke_api_key"}
    evidence = {"key_prefix": prefix, "reason": reason[:200]}
    if not ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True).exists():
        audit_deny(
            ctx, gate="object", error=VerittaError("NOT_FOUND", evidence={"object": "api_key", "key_prefix": prefix})
        )
        return False
    ctx.matched_rules.append("object:api_key_found")
    _begin(ctx, action="revoke_api_key", evidence=evidence)
    now = timezone.now()
    try:
        with transaction.atomic():
            changed = ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True).update(revoked_at=now)
            sessions = Session.objects.filter(created_by=prefix, revoked_at__isnull=True).update(
                revoked_at=now,
                revoked_by=f"{actor.get('kind')}:{actor.get('id')}"[:64],
                revoked_reason=f"API key vk_{prefix} revoked"[:200],
            )
    except DatabaseError as exc:
        error = VerittaError("INTERNAL_ERROR", evidence={"exc_class": type(exc).__name__})
        _end(ctx, evidence=evidence, error=error)
        raise error from exc
    outcome = "revoked" if changed else "already_revoked"
    _end(ctx, evidence={**evidence, "outcome": outcome, "sessions_revoked": sessions})
    return bool(changed)


# --- sessions -------------------------------------------------------------------


def session_open(*, ctx: RequestContext, user_id: str, ttl_s: int, roles: list[str]) -> tuple[Session, str]:
    """Open a session for `user_id`, audited as the action `open_session`.

    Returns the row and the bearer token, which exists only in this return
    value (only its digest is stored)."""
    session_id = SESSION_ID_PREFIX + secrets.token_hex(12)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    evidence = {"session_id": session_id, "ttl_s": ttl_s, "roles": list(roles)}
    _begin(ctx, action="open_session", evidence=evidence)
    now = timezone.now()
    try:
        session = Session.objects.create(
            session_id=session_id,
            user_id=user_id,
            token_digest=secret_digest(token),
            created_at=now,
            created_by=str(ctx.actor.get("id") or "")[:64],
            expires_at=now + timedelta(seconds=ttl_s),
            roles=list(roles),
        )
    except DatabaseError as exc:
        error = VerittaError("INTERNAL_ERROR", evidence={"exc_class": type(exc).__name__})
        _end(ctx, evidence=evidence, error=error)
        raise error from exc
    _end(ctx, evidence=evidence)
    return session, token


def session_touch(*, session: Session) -> None:
    now = timezone.now()
    if session.last_seen_at is None or now - session.last_seen_at >= LAST_SEEN_RESOLUTION:
        Session.objects.filter(session_id=session.session_id).update(last_seen_at=now)


@dataclass(frozen=True)
class RevokeResult:
    session_id: str
    status: str  # "revoked" | "already_revoked"
    revoked_at: datetime


def session_revoke(
    *, session_id: str, actor: dict[str, Any], reason: str, ctx: RequestContext | None = None
) -> RevokeResult:
    """Revoke a session: the one rule the admin API, `manage.py sessions revoke`
    and the console all call.

    Idempotent: revoking a revoked session changes nothing and answers
    `already_revoked`. Writes the request's decision record itself (ALLOW, or
    DENY for an unknown session) and, when it revokes, the action records
    `revoke_session` PENDING then SUCCESS, with the admin as actor.
    Raises VerittaError(NOT_FOUND) for an unknown session.
    """
    ctx = ctx or operator_context(endpoint="manage.py sessions revoke", actor=actor)
    ctx.actor = dict(actor)
    ctx.action_fields = {"action": "revoke_session"}
    evidence = {"session_id": session_id}
    session = session_get(session_id=session_id)
    if session is None:
        error = VerittaError("NOT_FOUND", evidence={"object": "session"})
        audit_deny(ctx, gate="object", error=error)
        raise error
    if session.revoked_at is not None:
        ctx.matched_rules.append("object:session_found")
        _append([ctx.decision_record(decision="ALLOW", gate="ALL", http_status=200, error=None)])
        return RevokeResult(session_id, "already_revoked", session.revoked_at)
    ctx.matched_rules.append("object:session_found")
    _begin(ctx, action="revoke_session", evidence=evidence)
    now = timezone.now()
    revoked_by = f"{actor.get('kind')}:{actor.get('id')}"[:64]
    try:
        changed = Session.objects.filter(session_id=session_id, revoked_at__isnull=True).update(
            revoked_at=now, revoked_by=revoked_by, revoked_reason=reason[:200]
        )
    except DatabaseError as exc:
        error = VerittaError("INTERNAL_ERROR", evidence={"exc_class": type(exc).__name__})
        _end(ctx, evidence=evidence, error=error)
        raise error from exc
    if not changed:  # revoked concurrently between our read and our write
        _end(ctx, evidence={**evidence, "outcome": "already_revoked"})
        session.refresh_from_db(fields=["revoked_at"])
        assert session.revoked_at is not None
        return RevokeResult(session_id, "already_revoked", session.revoked_at)
    _end(ctx, evidence={**evidence, "outcome": "revoked"})
    return RevokeResult(session_id, "revoked", now)

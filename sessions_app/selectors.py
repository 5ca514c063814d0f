"""Reads of the sessions app: authenticating stored API keys and sessions.

Keys and tokens are looked up by their visible prefix or session id and
compared by digest in constant time; when nothing matches, the same digest
and comparison are done against a dummy, so timing does not tell an unknown
prefix from a wrong secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Exists, JSONField, OuterRef, Subquery
from django.utils import timezone

from sessions_app.models import ApiKey, Session
from veritta_site.errors import VerittaError

KEY_PREFIX = "vk_"
TOKEN_PREFIX = "vs_"
SESSION_ID_PREFIX = "sess_"
# What session ids look like (`sess_` + 24 hex); anything else is unknown
# without asking the database (PostgreSQL refuses NUL bytes in a query, for one).
SESSION_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,40}")
# Compared against when no row matched: never equal to a real sha256 digest
# of a presented secret (it is not a digest of anything we issue).
DUMMY_DIGEST = "0" * 64
# What a stored key's prefix looks like (anything else is unknown without a query).
STORED_PREFIX_RE = re.compile(r"[A-Za-z0-9]{1,16}")
# What a role name looks like (docs/AUTHORIZATION.md).
ROLE_NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")


def roles_of(stored: Any) -> list[str]:
    """Role names as stored on a row. A JSON column read through raw SQL or a
    subquery may come back as text; anything that is not a list of names
    counts as no role at all (fail closed)."""
    if isinstance(stored, str):
        try:
            stored = json.loads(stored)
        except ValueError:
            return []
    if not isinstance(stored, list):
        return []
    return sorted({r for r in stored if isinstance(r, str) and ROLE_NAME_RE.match(r)})


def secret_digest(secret: str) -> str:
    """sha256 hex of a key or token. Unkeyed on purpose: the secrets are 256-bit
    random values, so a plain hash cannot be reversed, and it does not depend on
    DJANGO_SECRET_KEY (which development generates per process)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _digests_equal(presented: str, stored: str) -> bool:
    return hmac.compare_digest(secret_digest(presented).encode(), stored.encode())


def api_key_prefix(presented: str) -> str | None:
    """The lookup prefix of a `vk_<prefix>_<secret>` key, None if it is not one."""
    if not presented.startswith(KEY_PREFIX):
        return None
    prefix, sep, secret = presented[len(KEY_PREFIX) :].partition("_")
    if not sep or not secret or not (1 <= len(prefix) <= 16) or not prefix.isalnum():
        return None
    return prefix


# Raw SQL on a cursor: G2 runs on every request, and compiling the ORM query,
# then building a model instance from the row, cost more than running it
# (docs/PERFORMANCE.md). `prefix` is unique. Revocation and expiry are read
# from the row on every request (no cache), the expiry compared by the
# database exactly as the ORM's `expires_at__lte=now` would.
_KEY_BY_PREFIX = (
    "SELECT prefix, digest, roles, revoked_at IS NOT NULL, expires_at IS NOT NULL AND expires_at <= %s"
    " FROM sessions_app_apikey WHERE prefix = %s"
)


@dataclass(frozen=True)
class StoredKey:
    """What G2 needs of an active stored key: its prefix (the actor id) and roles."""

    prefix: str
    roles: Any  # as stored: read through roles_of


def api_key_authenticate(*, presented: str) -> StoredKey | None:
    """The active stored key equal to `presented`, or None."""
    prefix = api_key_prefix(presented)
    row = None
    if prefix:
        with connection.cursor() as cursor:
            cursor.execute(_KEY_BY_PREFIX, [connection.ops.adapt_datetimefield_value(timezone.now()), prefix])
            row = cursor.fetchone()
    matches = _digests_equal(presented, row[1] if row else DUMMY_DIGEST)
    if row is None or not matches or row[3]:
        return None
    if row[4]:
        return None  # past its rotation's overlap
    return StoredKey(prefix=row[0], roles=row[2])


def session_authenticate(*, session_id: str, user_id: str, token: str) -> Session:
    """The session these credentials prove, or VerittaError.

    Unknown session, wrong token and wrong user are one answer to the client
    (SESSION_INVALID); the precise cause goes to the audit evidence only.
    Revocation and expiry are told only to a caller who proved the token, and
    are read from the database on every request: no process caches them, so a
    revocation holds on the very next request in every worker.
    """
    session = _session_for_gate(session_id=session_id)
    token_ok = _digests_equal(token, session.token_digest if session else DUMMY_DIGEST)
    if session is None:
        raise VerittaError("SESSION_INVALID", evidence={"cause": "unknown_session"})
    if not token_ok:
        raise VerittaError("SESSION_INVALID", evidence={"cause": "wrong_token"})
    if not hmac.compare_digest(user_id.encode(), session.user_id.encode()):
        raise VerittaError("SESSION_INVALID", evidence={"cause": "wrong_user"})
    if session.revoked_at is not None:
        raise VerittaError("SESSION_REVOKED", evidence={"session_id": session.session_id})
    if session.key_revoked:  # type: ignore[attr-defined]
        # Revoking a key revokes its sessions; this holds also for a session
        # opened while its key was being revoked.
        raise VerittaError("SESSION_REVOKED", evidence={"session_id": session.session_id, "cause": "api_key_revoked"})
    if session.expires_at <= timezone.now():
        raise VerittaError("SESSION_EXPIRED", evidence={"session_id": session.session_id})
    return session


def _session_for_gate(*, session_id: str) -> Session | None:
    """The session, annotated with whether the key that opened it is revoked
    and with that key's roles now (one query)."""
    if not SESSION_ID_RE.fullmatch(session_id):
        return None
    revoked_key = ApiKey.objects.filter(prefix=OuterRef("created_by"), revoked_at__isnull=False)
    opener_roles = ApiKey.objects.filter(prefix=OuterRef("created_by")).values("roles")[:1]
    return (
        Session.objects.filter(session_id=session_id)
        .annotate(key_revoked=Exists(revoked_key), opener_roles=Subquery(opener_roles, output_field=JSONField()))
        .first()
    )


def sessions_of_key(*, created_by: str, limit: int) -> list[Session]:
    """The newest sessions one API key opened (its prefix, or "bootstrap")."""
    return list(Session.objects.filter(created_by=created_by).order_by("-created_at")[:limit])


def session_get(*, session_id: str) -> Session | None:
    if not SESSION_ID_RE.fullmatch(session_id):
        return None
    return Session.objects.filter(session_id=session_id).first()

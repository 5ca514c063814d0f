"""The gates of POST /process (SPEC §4). Each gate either returns (allow) or
raises VerittaError with its reason code and evidence (deny). Evidence names
fields and limits, never the values the client sent."""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from governance.executors import Executor
from governance.profiles import Profile
from governance.registry import executor_registry
from sessions_app.ratelimit import limits_enforce, tightest
from sessions_app.selectors import api_key_authenticate, roles_of, session_authenticate
from sessions_app.services import session_touch
from veritta_site.canonical import canonical_json, sha256_hex
from veritta_site.errors import VerittaError
from veritta_site.redact import keyed_digest
from veritta_site.semver import parse_semver

ACTION_NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
# curl -d sends application/x-www-form-urlencoded unless told otherwise; the
# seed's runbook examples rely on that, so a JSON body is accepted under it.
ACCEPTED_CONTENT_TYPES = {"", "application/json", "application/x-www-form-urlencoded", "text/plain"}
MAX_EVIDENCE_NAMES = 20


def _names(names: set[str] | list[str]) -> list[str]:
    """Field names for evidence: sorted, bounded in number and length."""
    return [n[:64] for n in sorted(names)[:MAX_EVIDENCE_NAMES]]


def unknown_fields_evidence(names: set[str] | list[str]) -> dict[str, object]:
    """Field names no profile knows are the client's text, not ours: the trail
    keeps their keyed digests and count, never the names (the sender's
    answer still lists them)."""
    digests = sorted({keyed_digest("field_", n) for n in names})
    return {"field_digests": digests[:MAX_EVIDENCE_NAMES], "count": len(names)}


# --- P0: size, before the body is read -------------------------------------


def read_body_within_limit(request: HttpRequest) -> bytes:
    limit = settings.VERITTA_MAX_PAYLOAD_SIZE
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared:
        length = int(declared) if declared.isdigit() else -1
        if length < 0:
            raise VerittaError("VALIDATION_ERROR", evidence={"header": "Content-Length"})
        if length > limit:
            raise VerittaError("PAYLOAD_TOO_LARGE", evidence={"limit": limit, "content_length": length})
        return request.body
    if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        # No length announced: read at most limit + 1 bytes, and stop there.
        stream = request.META["wsgi.input"]  # WSGIRequest.META is the WSGI environ
        data = b""
        while len(data) <= limit:
            chunk = stream.read(limit + 1 - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) > limit:
            raise VerittaError("PAYLOAD_TOO_LARGE", evidence={"limit": limit, "chunked": True})
        return data
    return b""


# --- the input, parsed and digested once per request (seed 002 gaps 1, 4) ---


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey("duplicate key")
    return obj


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


@dataclass(frozen=True)
class ParsedInput:
    payload: Any
    problem: str | None  # why the body is not JSON, if it is not
    digest: str | None
    digest_kind: str


def parse_input(body: bytes) -> ParsedInput:
    """Parse the body strictly and compute its one input digest.

    JSON: sha256 of the canonical JSON of the parsed body; otherwise sha256 of
    the raw bytes. `digest_kind` says which, so a digest is never missing.
    """
    enabled = settings.VERITTA_AUDIT_DIGEST_ENABLED

    def raw(problem: str, kind: str = "raw") -> ParsedInput:
        return ParsedInput(None, problem, sha256_hex(body) if enabled else None, kind if enabled else "disabled")

    if not body:
        return raw("empty_body", "empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return raw("invalid_utf8")
    try:
        payload = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except _DuplicateKey:
        return raw("duplicate_keys")
    except RecursionError:
        return raw("too_deeply_nested")
    except ValueError:
        return raw("not_json")
    try:
        canonical = canonical_json(payload)
    except (UnicodeEncodeError, ValueError, RecursionError):
        return raw("invalid_unicode")
    return ParsedInput(payload, None, sha256_hex(canonical) if enabled else None, "json" if enabled else "disabled")


# --- G0 / G2 / G4: credentials --------------------------------------------------


def credential_present(request: HttpRequest) -> None:
    if not request.META.get("HTTP_X_API_KEY") and not request.META.get("HTTP_AUTHORIZATION"):
        raise VerittaError("MISSING_API_KEY", evidence={"header": "X-API-Key"}, details={"header": "X-API-Key"})


def api_key_valid(request: HttpRequest) -> dict[str, Any]:
    """Returns the actor of a valid key: the bootstrap key (constant-time
    compare) or an active stored `vk_…` key (sessions_app, by prefix and digest)."""
    configured = settings.VERITTA_BETA_API_KEY
    if not configured:
        raise VerittaError("SERVER_MISCONFIGURED", evidence={"setting": "VERITTA_BETA_API_KEY"})
    presented = request.META.get("HTTP_X_API_KEY", "")
    if hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), configured.encode()):
        return {"kind": "api_key", "id": "bootstrap", "roles": bootstrap_roles()}
    stored = api_key_authenticate(presented=presented)
    if stored is not None:
        return {"kind": "api_key", "id": stored.prefix, "roles": roles_of(stored.roles)}
    raise VerittaError("GATE_DENIED_INVALID_API_KEY", evidence={"header": "X-API-Key"})


def session_valid(request: HttpRequest) -> dict[str, Any]:
    """G4: `Authorization: Bearer vs_…` with X-VERITTA-USER-ID and
    X-VERITTA-SESSION-ID. Returns the session actor, and marks the session seen."""
    actor, session = _session_checked(request)
    session_touch(session=session)
    return actor


def session_valid_readonly(request: HttpRequest) -> dict[str, Any]:
    """G4 as `governance explain` runs it: the same checks, nothing written."""
    return _session_checked(request)[0]


def _session_checked(request: HttpRequest) -> tuple[dict[str, Any], Any]:
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise VerittaError("SESSION_INVALID", evidence={"cause": "not_bearer", "header": "Authorization"})
    for header in ("X-VERITTA-USER-ID", "X-VERITTA-SESSION-ID"):
        if not request.META.get("HTTP_" + header.replace("-", "_")):
            raise VerittaError("SESSION_INVALID", evidence={"cause": "missing_header", "header": header})
    session = session_authenticate(
        session_id=request.META["HTTP_X_VERITTA_SESSION_ID"],
        user_id=request.META["HTTP_X_VERITTA_USER_ID"],
        token=token,
    )
    # A session never holds more than its opener holds now: removing a role
    # from the key takes it from the key's sessions on their next request too.
    opener_roles = bootstrap_roles() if session.created_by == "bootstrap" else roles_of(session.opener_roles)  # type: ignore[attr-defined]
    roles = sorted(set(roles_of(session.roles)) & set(opener_roles))
    return {"kind": "session", "id": session.session_id, "roles": roles, "opened_by": session.created_by}, session


# --- roles (docs/AUTHORIZATION.md) ---------------------------------------------


def bootstrap_roles() -> list[str]:
    """The roles of the bootstrap key from the environment (VERITTA_BOOTSTRAP_KEY_ROLES)."""
    return sorted({r.strip() for r in settings.VERITTA_BOOTSTRAP_KEY_ROLES.split(",") if r.strip()})


def principal_roles(*actors: dict[str, Any] | None) -> list[str]:
    """The roles a request acts with: those every credential it sent holds (a
    key and a session opened by another key narrow each other, never widen)."""
    held = [set(a["roles"]) for a in actors if a is not None]
    return sorted(set.intersection(*held)) if held else []


# --- G10: rate limits -------------------------------------------------------------


def within_limits(
    *, key_actor: dict[str, Any] | None, session_actor: dict[str, Any] | None, client: str | None
) -> dict[str, str]:
    """Per key, per session and per client address; returns the RateLimit headers
    of the tightest limit. Raises RATE_LIMIT_EXCEEDED / RATE_LIMIT_UNAVAILABLE."""
    checks = []
    if key_actor is not None:
        checks.append(("key", str(key_actor["id"]), settings.VERITTA_RATE_LIMIT_KEY_PER_MIN))
    if session_actor is not None:
        checks.append(("session", str(session_actor["id"]), settings.VERITTA_RATE_LIMIT_SESSION_PER_MIN))
        # Bearer only: the key that opened the session pays too, so opening
        # many sessions cannot multiply a key's budget.
        # (G4 read it with the session row: no query here.)
        opener = session_actor.get("opened_by") if key_actor is None else None
        if opener:
            checks.append(("key", opener, settings.VERITTA_RATE_LIMIT_KEY_PER_MIN))
    checks.append(("address", client or "unknown", settings.VERITTA_RATE_LIMIT_ADDRESS_PER_MIN))
    return tightest(limits_enforce(checks=checks))


def address_within_limit_after_failure(*, client: str | None) -> None:
    """A failed credential counts against its client address too, so that key
    and token guessing is throttled. Raises RATE_LIMIT_EXCEEDED when the address
    is over its limit; if the store is down the credential denial stands."""
    try:
        limits_enforce(checks=[("address", client or "unknown", settings.VERITTA_RATE_LIMIT_ADDRESS_PER_MIN)])
    except VerittaError as error:
        if error.code == "RATE_LIMIT_EXCEEDED":
            raise
        # RATE_LIMIT_UNAVAILABLE: the request is denied anyway, by its credential.


# --- P2: the payload --------------------------------------------------------


def payload_valid(request: HttpRequest, parsed: ParsedInput) -> dict[str, Any]:
    content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if content_type not in ACCEPTED_CONTENT_TYPES and not content_type.endswith("+json"):
        raise VerittaError("UNSUPPORTED_MEDIA_TYPE", evidence={"header": "Content-Type"})
    if parsed.problem is not None:
        raise VerittaError("INVALID_JSON", evidence={"problem": parsed.problem}, details={"problem": parsed.problem})
    payload = parsed.payload
    if not isinstance(payload, dict):
        raise VerittaError("INVALID_JSON", evidence={"problem": "not_an_object"}, details={"problem": "not_an_object"})
    action = payload.get("action")
    if not isinstance(action, str) or not ACTION_NAME_RE.match(action):
        problem = "required" if action is None else "invalid"
        raise VerittaError(
            "VALIDATION_ERROR",
            evidence={"fields": ["action"], "problem": problem},
            details={"fields": ["action"], "problem": problem},
        )
    for name in ("action_version", "event_type"):
        if name in payload and not isinstance(payload[name], str):
            raise VerittaError(
                "VALIDATION_ERROR",
                evidence={"fields": [name], "problem": "not_a_string"},
                details={"fields": [name], "problem": "not_a_string"},
            )
    return payload


# --- profile ------------------------------------------------------------------


def _field_problem(name: str, spec: dict[str, Any], value: Any) -> VerittaError | None:
    kind = spec.get("type", "string")
    expected = {"string": str, "integer": int, "boolean": bool}.get(kind, str)
    if not isinstance(value, expected) or (kind == "integer" and isinstance(value, bool)):
        return VerittaError(
            "VALIDATION_ERROR", evidence={"fields": [name], "expected": kind}, details={"fields": [name]}
        )
    if "enum" in spec and value not in spec["enum"]:
        return VerittaError(
            "VALIDATION_ERROR", evidence={"fields": [name], "problem": "not_allowed_value"}, details={"fields": [name]}
        )
    if isinstance(value, str) and len(value) > spec.get("max_length", len(value)):
        limit = {"field": name, "limit": "max_length", "max": spec["max_length"]}
        return VerittaError("LIMIT_EXCEEDED", evidence=limit, details=limit)
    if kind == "integer" and not spec.get("min", value) <= value <= spec.get("max", value):
        limit = {"field": name, "limit": "range", "min": spec.get("min"), "max": spec.get("max")}
        return VerittaError("LIMIT_EXCEEDED", evidence=limit, details=limit)
    return None


def profile_allows(payload: dict[str, Any], profile: Profile, matched: list[str]) -> dict[str, Any]:
    """Checks the payload against the profile; returns the action's rule."""
    doc = profile.document
    keys = set(payload)
    lowered = {k.lower(): k for k in keys}
    forbidden = {lowered[f] for f in doc.get("forbidden_fields", []) if f in lowered}
    if forbidden:
        raise VerittaError(
            "ADMIN_SIGNAL_FORBIDDEN", evidence={"fields": _names(forbidden)}, details={"fields": _names(forbidden)}
        )
    matched.append("profile:no_admin_signals")
    external = {lowered[f] for f in doc.get("external_fields", []) if f in lowered}
    if external:
        raise VerittaError(
            "EXTERNAL_FIELDS_NOT_ALLOWED", evidence={"fields": _names(external)}, details={"fields": _names(external)}
        )
    matched.append("profile:no_external_fields")
    rule = profile.actions.get(payload["action"])
    if rule is None:
        raise VerittaError("PROFILE_ACTION_MISMATCH", evidence={"field": "action"})
    matched.append("profile:action_allowed")
    specs = {**doc.get("common_fields", {}), **rule.get("fields", {})}
    unknown = keys - set(specs)
    if unknown:
        raise VerittaError(
            "UNKNOWN_FIELDS_PRESENT", evidence=unknown_fields_evidence(unknown), details={"fields": _names(unknown)}
        )
    matched.append("profile:known_fields")
    max_fields = doc.get("limits", {}).get("max_fields")
    if max_fields is not None and len(keys) > max_fields:
        limit = {"limit": "max_fields", "max": max_fields}
        raise VerittaError("LIMIT_EXCEEDED", evidence=limit, details=limit)
    for name in sorted(keys):
        problem = _field_problem(name, specs[name], payload[name])
        if problem is not None:
            raise problem
    matched.append("profile:field_rules")
    return rule


# --- authz: the principal's roles against the profile's role rules -----------


def _grant_refusal(grant: dict[str, Any], payload: dict[str, Any], rule: dict[str, Any]) -> str | None:
    """Why one role rule does not allow this request, or None if it does."""
    actions = grant.get("actions", [])
    if "*" not in actions and payload["action"] not in actions:
        return "action_not_granted"
    if "executors" in grant and rule.get("executor") not in grant["executors"]:
        return "executor_not_granted"
    connector = rule.get("connector")
    if "connectors" in grant and connector is not None:
        connector_id = connector.get("connector_id") if isinstance(connector, dict) else connector
        if connector_id not in grant["connectors"]:
            return "connector_not_granted"
    for name, spec in sorted(grant.get("fields", {}).items()):
        if name in payload and _field_problem(name, spec, payload[name]) is not None:
            return f"field_limit:{name}"
    return None


def role_allows(
    payload: dict[str, Any], rule: dict[str, Any], profile: Profile, roles: list[str], matched: list[str]
) -> str | None:
    """The authz gate: some role of the principal must allow the request.
    A profile without `roles` lets every principal do what it allows (as
    before roles existed). Returns the allowing role; raises AUTHZ_DENIED with
    each role's refusal otherwise."""
    role_rules = profile.document.get("roles")
    if role_rules is None:
        matched.append("authz:profile_has_no_role_rules")
        return None
    refusals: dict[str, str] = {}
    allowing: list[str] = []
    for role in roles:
        grant = role_rules.get(role)
        refusal = "role_not_in_profile" if grant is None else _grant_refusal(grant, payload, rule)
        if refusal is None:
            allowing.append(role)
        else:
            refusals[role] = refusal
    if allowing:
        # A role that may do it without approval is the one that allows; a
        # principal holding only roles that need approval waits for it.
        at_once = [r for r in allowing if payload["action"] not in role_rules[r].get("approval", {})]
        role = (at_once or allowing)[0]
        matched.append(f"authz:role:{role}")
        return role
    # The roles themselves are in every decision record's principal_roles.
    evidence = {"refused_by": {r: refusals[r] for r in _names(list(refusals))}}
    raise VerittaError("AUTHZ_DENIED", evidence=evidence, details={"roles": _names(roles)})


def session_of_key(key_actor: dict[str, Any], session_actor: dict[str, Any]) -> None:
    """A key sent with a session must be the key that opened it (OWASP API1: a
    key does not act through another principal's session)."""
    if session_actor["opened_by"] != key_actor["id"]:
        raise VerittaError("AUTHZ_DENIED", evidence={"cause": "session_of_another_key"})


# --- registry -----------------------------------------------------------------


def executor_for(payload: dict[str, Any], rule: dict[str, Any], matched: list[str]) -> Executor:
    executor_id = rule.get("executor")
    executor = executor_registry().get(str(executor_id))
    if executor is None:
        raise VerittaError("EXECUTOR_NOT_FOUND", evidence={"executor_id": executor_id})
    matched.append("registry:executor_found")
    if payload["action"] not in executor.actions:
        raise VerittaError("UNKNOWN_ACTION", evidence={"executor_id": executor.executor_id})
    matched.append("registry:action_routed")
    have = parse_semver(executor.version)
    assert have is not None  # the registry only holds semver executors
    if "action_version" in payload:
        wanted = parse_semver(payload["action_version"])
        if wanted is None:
            raise VerittaError("ACTION_VERSION_INVALID", evidence={"fields": ["action_version"]})
        if wanted[0] != have[0] or have < wanted:
            raise VerittaError(
                "EXECUTOR_VERSION_MISMATCH",
                evidence={"requested": payload["action_version"], "executor_version": executor.version},
            )
    minimum = parse_semver(rule.get("min_executor_version", "0.0.0"))
    if minimum is None or have < minimum:
        raise VerittaError(
            "EXECUTOR_VERSION_MISMATCH",
            evidence={"min_executor_version": rule.get("min_executor_version"), "executor_version": executor.version},
        )
    matched.append("registry:version")
    missing = set(rule.get("capabilities", [])) - executor.capabilities
    if missing:
        raise VerittaError("CAPABILITY_MISMATCH", evidence={"missing": sorted(missing)})
    matched.append("registry:capabilities")
    return executor

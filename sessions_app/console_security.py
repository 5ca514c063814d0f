"""The human console's protections: login throttling with audited failures,
and the security headers of its pages.

Login throttle: after VERITTA_CONSOLE_LOGIN_MAX_FAILURES failed logins for one
identity, or from one client address, within VERITTA_CONSOLE_LOGIN_WINDOW_S,
further attempts for it are refused (without checking the password) until the
oldest of those failures leaves the window. Failures are counted in the
database (sessions_app.LoginFailure), so every worker and app server sees the
same count.

The identity is the username as Django logs in with it (stripped, NFKC: " root"
and full-width "ｒｏｏｔ" are "root") when such a user exists, otherwise a keyed
digest of that normalised name: what was typed is never stored, so a password
typed into the username box does not end up in the trail (docs/SECURITY.md S4,
S9). The throttle is exact under concurrency: an attempt is counted (a row is
inserted) before the password is checked, and it goes on only if, counted with
every attempt in flight, the limit is not passed; a good password removes its
row. Every failure and every refusal is a decision_audit DENY with the identity
as the actor; failures carry CONSOLE_LOGIN_FAILED, an authentication failure
for veritta_authn_failures_total and the auth_incident alert.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from audit.profile_hashes import profile_hash_of
from audit.services import RequestContext, audit_allow, audit_deny, client_digest
from sessions_app.models import LoginFailure
from veritta_site.errors import VerittaError
from veritta_site.proxies import client_address
from veritta_site.redact import keyed_digest

LOGIN_ENDPOINT = "POST /console/login/"


def console_identity(normalised: str) -> str:
    """What a login attempt is throttled and recorded as (see the module docstring)."""
    from django.contrib.auth import get_user_model

    if normalised and get_user_model()._default_manager.filter(username=normalised).exists():
        return normalised[:64]
    return keyed_digest("unknown_", normalised)


def login_retry_after(*, username: str, client: str, exclude: int | None = None) -> int:
    """Seconds until a login for this identity and client may be tried again; 0 if now.

    Two indexed counts over the window, (username, at) and (client, at); the
    attempt `exclude` (the caller's own) is not counted."""
    window = timedelta(seconds=settings.VERITTA_CONSOLE_LOGIN_WINDOW_S)
    since = timezone.now() - window
    limit = settings.VERITTA_CONSOLE_LOGIN_MAX_FAILURES
    waits = [0]
    for recent in (
        LoginFailure.objects.filter(username=username, at__gte=since),
        LoginFailure.objects.filter(client=client, at__gte=since),
    ):
        # The limit-th newest failure is the one whose leaving the window frees a try.
        counted = recent if exclude is None else recent.exclude(pk=exclude)
        times = list(counted.order_by("-at").values_list("at", flat=True)[:limit])
        if len(times) >= limit:
            waits.append(int((times[-1] + window - timezone.now()).total_seconds()) + 1)
    return max(waits)


def login_attempt_begin(*, username: str, client: str) -> tuple[int, int]:
    """Count an attempt before its password is checked: returns (its row, seconds
    to wait). The row is committed before counting, so of any attempts running
    at once, the last to commit sees them all: no more than the limit can pass.
    A refused attempt's row is removed (a refusal is not a failure)."""
    now = timezone.now()
    # Keep the table small: failures that left the window count for nothing.
    LoginFailure.objects.filter(at__lt=now - timedelta(seconds=settings.VERITTA_CONSOLE_LOGIN_WINDOW_S)).delete()
    row = LoginFailure.objects.create(at=now, username=username, client=client)
    wait = login_retry_after(username=username, client=client, exclude=row.pk)
    if wait:
        row.delete()
    return row.pk, wait


def login_attempt_succeeded(*, attempt: int) -> None:
    LoginFailure.objects.filter(pk=attempt).delete()


def _login_context(request: HttpRequest, identity: str) -> RequestContext:
    ctx = RequestContext.for_request(request, endpoint=LOGIN_ENDPOINT, profile_id="admin", profile_hash=profile_hash_of("admin"))
    ctx.actor = {"kind": "console", "id": identity}
    ctx.digest_kind = "unread"  # the form holds a password: no digest of it is kept
    return ctx


class ConsoleAuthenticationForm(AdminAuthenticationForm):
    """The admin's login form, throttled and audited."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "throttled": "Too many failed logins. Try again in %(minutes)s minute(s).",
    }

    def clean(self) -> dict[str, Any]:
        request = self.request
        assert request is not None
        # The name exactly as authentication will see it (UsernameField: strip, NFKC).
        normalised = self.fields["username"].to_python(str(self.data.get("username", ""))[:1000]) or ""
        identity = console_identity(normalised)
        client = client_digest(client_address(request)) or "unknown"
        attempt, wait = login_attempt_begin(username=identity, client=client)
        if wait:
            error = VerittaError("RATE_LIMIT_EXCEEDED", evidence={"scope": "console_login", "retry_after_s": wait})
            audit_deny(_login_context(request, identity), gate="console_login", error=error)
            raise forms.ValidationError(
                self.error_messages["throttled"], code="throttled", params={"minutes": max(1, round(wait / 60))}
            )
        try:
            cleaned = super().clean()
            if self.get_user() is None:  # a field was invalid (a name too long): nobody logged in
                raise self.get_invalid_login_error()
        except forms.ValidationError:
            error = VerittaError("CONSOLE_LOGIN_FAILED", evidence={"cause": "invalid_login"})
            audit_deny(_login_context(request, identity), gate="console_login", error=error)
            raise
        login_attempt_succeeded(attempt=attempt)
        ctx = _login_context(request, identity)
        ctx.matched_rules.append("console_login:password")
        audit_allow(ctx, pending=False, http_status=302)  # the login view answers a success with a redirect
        return cleaned


# --- security headers ----------------------------------------------------------------

# No inline script or style anywhere in the console (the admin's own
# JavaScript is all in static files; our charts are inline SVG with
# presentation attributes, which CSP does not govern).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeadersMiddleware:
    """Content-Security-Policy and friends on every response that lacks them.

    X-Frame-Options and Referrer-Policy come from Django's own middleware
    (settings X_FRAME_OPTIONS, SECURE_REFERRER_POLICY); console pages are
    also kept out of shared caches."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if request.path.startswith("/console/"):
            response.headers.setdefault("Cache-Control", "no-store, private")
        return response

"""The human console's protections: login throttling with audited failures,
and the security headers of its pages.

Login throttle: after VERITTA_CONSOLE_LOGIN_MAX_FAILURES failed logins for one
username, or from one client address, within VERITTA_CONSOLE_LOGIN_WINDOW_S,
further attempts for it are refused (without checking the password) until the
oldest of those failures leaves the window. Failures are counted in the
database (sessions_app.LoginFailure), so every worker and app server sees the
same count. Every failure and every refusal is a decision_audit DENY with the
username as typed (truncated to 64) as the actor, never the password.
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

from audit.services import RequestContext, audit_allow, audit_deny, client_digest
from sessions_app.models import LoginFailure
from sessions_app.services import profile_hash_of
from veritta_site.errors import VerittaError

LOGIN_ENDPOINT = "POST /console/login/"


def login_retry_after(*, username: str, client: str) -> int:
    """Seconds until a login for this username and client may be tried again; 0 if now.

    Two indexed counts over the window, (username, at) and (client, at)."""
    window = timedelta(seconds=settings.VERITTA_CONSOLE_LOGIN_WINDOW_S)
    since = timezone.now() - window
    limit = settings.VERITTA_CONSOLE_LOGIN_MAX_FAILURES
    waits = [0]
    for recent in (
        LoginFailure.objects.filter(username=username, at__gte=since),
        LoginFailure.objects.filter(client=client, at__gte=since),
    ):
        # The limit-th newest failure is the one whose leaving the window frees a try.
        times = list(recent.order_by("-at").values_list("at", flat=True)[:limit])
        if len(times) >= limit:
            waits.append(int((times[-1] + window - timezone.now()).total_seconds()) + 1)
    return max(waits)


def login_failure_record(*, username: str, client: str) -> None:
    now = timezone.now()
    LoginFailure.objects.create(at=now, username=username, client=client)
    # Keep the table small: failures that left the window count for nothing.
    LoginFailure.objects.filter(at__lt=now - timedelta(seconds=settings.VERITTA_CONSOLE_LOGIN_WINDOW_S)).delete()


def _login_context(request: HttpRequest, username: str) -> RequestContext:
    ctx = RequestContext.for_request(request, endpoint=LOGIN_ENDPOINT, profile_id="admin", profile_hash=profile_hash_of("admin"))
    ctx.actor = {"kind": "console", "id": username[:64]}
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
        username = str(self.data.get("username", ""))[:64]
        client = client_digest(request.META.get("REMOTE_ADDR")) or "unknown"
        wait = login_retry_after(username=username, client=client)
        if wait:
            error = VerittaError("RATE_LIMIT_EXCEEDED", evidence={"scope": "console_login", "retry_after_s": wait})
            audit_deny(_login_context(request, username), gate="console_login", error=error)
            raise forms.ValidationError(
                self.error_messages["throttled"], code="throttled", params={"minutes": max(1, round(wait / 60))}
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            login_failure_record(username=username, client=client)
            error = VerittaError("FORBIDDEN", evidence={"cause": "invalid_login"})
            audit_deny(_login_context(request, username), gate="console_login", error=error)
            raise
        ctx = _login_context(request, username)
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

"""Start-up checks shared by `manage.py check` and every server start
(veritta_site/wsgi.py): a missing required setting names its variable."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

# (variable, when it is required)
REQUIRED = (
    ("VERITTA_BETA_API_KEY", "always"),
    ("VERITTA_PROFILES_FINGERPRINT", "always"),
    ("VERITTA_ADMIN_API_KEY", "always"),
    ("VERITTA_AUDIT_SIGNING_KEY", "production"),
    ("DJANGO_SECRET_KEY", "production"),
)


def _value(name: str) -> str:
    if name == "DJANGO_SECRET_KEY":
        return settings.SECRET_KEY if settings.SECRET_KEY_FROM_ENV else ""
    return str(getattr(settings, name, "") or "")


@register()
def required_settings_check(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    messages: list[Error | Warning] = []
    for name, when in REQUIRED:
        if _value(name):
            continue
        if when == "always" or not settings.DEBUG:
            messages.append(Error(f"{name} is not set (required)", hint=f"Set {name} in the environment.", id="veritta.E001"))
        else:
            messages.append(Warning(f"{name} is not set (required in production)", id="veritta.W001"))
    return messages


# Shared secrets a client presents: long enough that guessing is hopeless
# (`scripts/run` makes 43-character ones; `secrets.token_urlsafe(32)`).
MIN_KEY_LENGTH = 32
PRESENTED_KEYS = ("VERITTA_BETA_API_KEY", "VERITTA_ADMIN_API_KEY", "VERITTA_ADMIN_API_KEY_PREVIOUS")


@register(Tags.security, deploy=True)
def key_length_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """`check --deploy` refuses short API and admin keys (docs/SECURITY.md S10)."""
    return [
        Error(
            f"{name} is shorter than {MIN_KEY_LENGTH} characters",
            hint=f"Use a random value, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))' for {name}.",
            id="veritta.E002",
        )
        for name in PRESENTED_KEYS
        if 0 < len(_value(name)) < MIN_KEY_LENGTH
    ]


def webhook_url_problem(url: str) -> str | None:
    """Why an alert webhook URL cannot be used, or None. Only http(s) with a
    host: urllib would open file:// and other schemes too."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    return None


# Standard Webhooks: "whsec_" and base64 of 24 to 64 random bytes.
WEBHOOK_SECRET_PREFIX = "whsec_"
WEBHOOK_SECRET_BYTES = (24, 64)


def webhook_secret_problem(secret: str) -> str | None:
    """Why an alert webhook signing secret cannot be used, or None."""
    if not secret:
        return "is not set (alerts are signed; required with VERITTA_ALERT_WEBHOOK_URL)"
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        return f"must start with {WEBHOOK_SECRET_PREFIX}"
    try:
        raw = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    except ValueError:
        return "is not base64 after whsec_"
    low, high = WEBHOOK_SECRET_BYTES
    return None if low <= len(raw) <= high else f"must hold {low} to {high} bytes"


@register()
def webhook_url_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    url = settings.VERITTA_ALERT_WEBHOOK_URL
    if not url:
        return []
    errors = []
    if problem := webhook_url_problem(url):
        errors.append(Error(f"VERITTA_ALERT_WEBHOOK_URL {problem}", id="veritta.E003"))
    if problem := webhook_secret_problem(settings.VERITTA_ALERT_WEBHOOK_SECRET):
        errors.append(
            Error(
                f"VERITTA_ALERT_WEBHOOK_SECRET {problem}",
                hint="python -c \"import base64, secrets; print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\"",
                id="veritta.E013",
            )
        )
    return errors


@register()
def trusted_proxies_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """A proxy setting that cannot be read refuses to start: guessing would
    either trust spoofed headers or lump every client into one bucket."""
    from veritta_site.proxies import HEADERS, trusted_networks

    errors = []
    try:
        trusted_networks(tuple(settings.VERITTA_TRUSTED_PROXIES))
    except ValueError as exc:
        errors.append(Error(f"VERITTA_TRUSTED_PROXIES: {exc}", hint="A comma-separated list of CIDRs.", id="veritta.E010"))
    if settings.VERITTA_TRUSTED_PROXY_HEADER not in HEADERS:
        errors.append(Error("VERITTA_TRUSTED_PROXY_HEADER must be X-Forwarded-For or Forwarded", id="veritta.E011"))
    if settings.VERITTA_TRUSTED_PROXY_HOPS < 1:
        errors.append(Error("VERITTA_TRUSTED_PROXY_HOPS must be 1 or more", id="veritta.E012"))
    return errors

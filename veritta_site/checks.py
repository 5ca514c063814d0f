"""Start-up checks shared by `manage.py check` and every server start
(veritta_site/wsgi.py): a missing required setting names its variable."""

from __future__ import annotations

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


@register()
def webhook_url_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    url = settings.VERITTA_ALERT_WEBHOOK_URL
    problem = webhook_url_problem(url) if url else None
    return [Error(f"VERITTA_ALERT_WEBHOOK_URL {problem}", id="veritta.E003")] if problem else []


@register()
def metrics_token_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """The scrape credential is configured as its sha256, never the token itself."""
    from audit.scrape import TOKEN_SHA256_RE

    value = settings.VERITTA_METRICS_TOKEN_SHA256
    if value and not TOKEN_SHA256_RE.fullmatch(value.lower()):
        hint = "Set the sha256 hex of the token: python -c 'import hashlib,sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest())' TOKEN"
        return [Error("VERITTA_METRICS_TOKEN_SHA256 is not 64 hex characters", hint=hint, id="veritta.E004")]
    return []

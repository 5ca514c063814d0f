"""Start-up checks shared by `manage.py check` and every server start
(veritta_site/wsgi.py): a missing required setting names its variable."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register

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

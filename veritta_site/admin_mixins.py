"""Shared pieces of the console's ModelAdmins."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


class NoWritesMixin:
    """No add, change or delete through the console, for anyone, superusers
    included: audit rows, sessions, keys and profiles change only through
    their services (revocation) or their commands (load-profiles)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

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


# The suffixes a plain field filter (`list_filter = ("ok",)`, a relation's
# `("groups",)`) puts in the query string.
_FIELD_FILTER_LOOKUPS = ("", "__exact", "__isnull", "__id__exact")


class OfferedFiltersOnlyMixin:
    """The query string may use only the filters the page offers (docs/SECURITY.md
    S3). Django's default lets any local field be filtered with any lookup, so a
    view-only user could read a token or key digest one character at a time
    (`?token_digest__startswith=…`) or run unindexed `?body__regex=` scans.
    Anything else is refused (400, in the error envelope)."""

    def lookup_allowed(self, lookup: str, value: Any, request: HttpRequest | None = None) -> bool:
        offered: set[str] = set()
        for item in self.get_list_filter(request) if request is not None else self.list_filter:  # type: ignore[attr-defined]
            if isinstance(item, (list, tuple)):
                item = item[0]
            if isinstance(item, str):
                offered.update(item + suffix for suffix in _FIELD_FILTER_LOOKUPS)
            elif parameter := getattr(item, "parameter_name", None):
                offered.add(parameter)
            else:  # a ListFilter of several parameters (audit's time range)
                offered.update(getattr(item, "parameters", ()))
        return lookup in offered

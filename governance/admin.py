"""The console's policy profiles: read-only, with their fingerprints.

Profiles are loaded from the repo (`manage.py governance load-profiles`) and
locked by VERITTA_PROFILES_FINGERPRINT; the console only shows them."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from governance.models import PolicyProfile
from governance.selectors import profiles_active_fingerprint, profiles_lock_values
from veritta_site.admin_mixins import NoWritesMixin, OfferedFiltersOnlyMixin


@admin.register(PolicyProfile)
class PolicyProfileAdmin(OfferedFiltersOnlyMixin, NoWritesMixin, admin.ModelAdmin):
    list_display = ("profile_id", "version", "active", "sha256", "loaded_at")
    list_filter = ("active",)
    ordering = ("profile_id", "-loaded_at")
    actions = None
    fields = ("profile_id", "version", "active", "sha256", "loaded_at", "pretty_document")
    readonly_fields = fields

    @admin.display(description="document")
    def pretty_document(self, obj: PolicyProfile) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.document, indent=2, sort_keys=True, ensure_ascii=False))

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        active = profiles_active_fingerprint()
        locked = settings.VERITTA_PROFILES_FINGERPRINT
        extra_context = {**(extra_context or {}), "active_fingerprint": active, "locked_fingerprint": locked,
                         "fingerprint_matches": active in profiles_lock_values()}  # fmt: skip
        return super().changelist_view(request, extra_context)

"""The console's sessions and stored API keys: list, search, revoke.

Nothing here is edited, added or deleted through the admin. Revocation is the
one destructive operation; it has its own permissions (`revoke_session`,
`revoke_apikey`), a confirmation page that asks for a reason (like Django's
delete_selected), and calls the one rule in sessions_app.services with the
console user as actor, so it is audited like every other revocation and
holds on the very next API request (G4 reads the session on every request).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote, unquote
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from sessions_app.console_security import ConsoleAuthenticationForm
from sessions_app.models import ApiKey, Session
from sessions_app.selectors import roles_of
from sessions_app.services import api_key_revoke, api_key_set_roles, session_revoke
from veritta_site.admin_mixins import NoWritesMixin, OfferedFiltersOnlyMixin
from veritta_site.errors import VerittaError


def console_actor(request: HttpRequest) -> dict[str, str]:
    return {"kind": "console", "id": request.user.get_username()[:64]}


class RevokeForm(forms.Form):
    reason = forms.CharField(
        max_length=200,
        strip=True,
        help_text="Recorded with the revocation and in the audit trail (at most 200 characters).",
    )


class RolesForm(forms.Form):
    roles = forms.RegexField(
        regex=r"^\s*([a-z][a-z0-9_.-]{0,31}(\s*,\s*[a-z][a-z0-9_.-]{0,31})*)?\s*$",
        required=False,
        max_length=700,
        help_text="Comma-separated role names (lowercase letters, digits, _ . -); empty: no role at all.",
    )

    def role_list(self) -> list[str]:
        return [r.strip() for r in self.cleaned_data["roles"].split(",") if r.strip()]


class RevocableAdmin(OfferedFiltersOnlyMixin, NoWritesMixin, admin.ModelAdmin):
    """Read-only, plus a "revoke" action and button behind `revoke_permission`."""

    revoke_permission = ""  # "app_label.codename"
    actions = ["revoke_selected"]
    show_facets = admin.ShowFacets.NEVER  # no COUNT per filter choice

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(self.revoke_permission)

    def revoke_one(self, request: HttpRequest, obj: Any, reason: str) -> str:
        """Revoke one object through its service; returns "revoked" or "already_revoked"."""
        raise NotImplementedError

    # --- the list action, with its confirmation page ---

    @admin.action(permissions=["revoke"], description="Revoke selected %(verbose_name_plural)s")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        form = RevokeForm(request.POST if request.POST.get("post") else None)
        if form.is_valid():
            self._revoke_all(request, list(queryset), form.cleaned_data["reason"])
            return None  # back to the list
        return self._confirmation(request, list(queryset), form, bulk=True)

    def _revoke_all(self, request: HttpRequest, objects: Iterable[Any], reason: str) -> None:
        outcomes: dict[str, int] = {}
        for obj in objects:
            try:
                outcome = self.revoke_one(request, obj, reason)
            except VerittaError as error:
                outcome = error.code
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        summary = ", ".join(f"{n} {outcome.replace('_', ' ')}" for outcome, n in sorted(outcomes.items()))
        level = messages.SUCCESS if set(outcomes) <= {"revoked", "already_revoked"} else messages.ERROR
        self.message_user(request, f"{str(self.opts.verbose_name_plural).capitalize()}: {summary}.", level)

    def _confirmation(
        self, request: HttpRequest, objects: list[Any], form: RevokeForm, *, bulk: bool
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Are you sure?",
            "opts": self.opts,
            "objects": objects,
            "form": form,
            "bulk": bulk,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "objects_name": self.opts.verbose_name_plural if len(objects) != 1 else self.opts.verbose_name,
        }
        return TemplateResponse(request, "admin/sessions_app/revoke_confirmation.html", context)

    # --- the button on an object's page ---

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_revoke"
        return [
            path("<path:object_id>/revoke/", self.admin_site.admin_view(self.revoke_view), name=name),
            *super().get_urls(),
        ]

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_revoke_permission(request):
            raise PermissionDenied
        obj = get_object_or_404(self.model, pk=unquote(object_id))  # the admin quotes pks in URLs
        form = RevokeForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            self._revoke_all(request, [obj], form.cleaned_data["reason"])
            url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[quote(obj.pk)])
            return HttpResponseRedirect(url)
        return self._confirmation(request, [obj], form, bulk=False)

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> HttpResponse:
        context["has_revoke_permission"] = self.has_revoke_permission(request)
        return super().render_change_form(request, context, *args, **kwargs)


class SessionStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "active"), ("revoked", "revoked"), ("expired", "expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Session]) -> QuerySet[Session]:
        now = timezone.now()
        states: dict[str | None, Callable[[QuerySet[Session]], QuerySet[Session]]] = {
            "active": lambda qs: qs.filter(revoked_at__isnull=True, expires_at__gt=now),
            "revoked": lambda qs: qs.filter(revoked_at__isnull=False),
            "expired": lambda qs: qs.filter(revoked_at__isnull=True, expires_at__lte=now),
        }
        return states[self.value()](queryset) if self.value() in states else queryset


def session_state(obj: Session) -> str:
    if obj.revoked_at is not None:
        return "revoked"
    return "expired" if obj.expires_at <= timezone.now() else "active"


@admin.register(Session)
class SessionAdmin(RevocableAdmin):
    revoke_permission = "sessions_app.revoke_session"
    list_display = (
        "session_id", "user_id", "state", "created_by", "created_at", "expires_at", "last_seen_at", "revoked_at", "revoked_by",
    )  # fmt: skip
    list_filter = (SessionStateFilter,)
    search_fields = ("=session_id", "=user_id", "=created_by")
    search_help_text = "Exact match: a session id (sess_…), a user id, or the prefix of the API key that opened it."
    ordering = ("-created_at",)
    fields = (
        "session_id", "user_id", "state", "roles", "created_at", "created_by", "expires_at", "last_seen_at",
        "revoked_at", "revoked_by", "revoked_reason",
    )  # fmt: skip
    readonly_fields = fields  # never the token digest

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Session], search_term: str
    ) -> tuple[QuerySet[Session], bool]:
        term = search_term.strip()
        # The primary key and the (user_id | created_by, created_at) indexes: no LIKE scan.
        if not term:
            return queryset, False
        return queryset.filter(Q(session_id=term) | Q(user_id=term) | Q(created_by=term.removeprefix("vk_"))), False

    @admin.display(description="state")
    def state(self, obj: Session) -> str:
        return session_state(obj)

    def revoke_one(self, request: HttpRequest, obj: Model, reason: str) -> str:
        assert isinstance(obj, Session)
        return session_revoke(session_id=obj.session_id, actor=console_actor(request), reason=reason).status


class ApiKeyStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(state, state) for state in ("active", "expiring", "expired", "revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        now = timezone.now()
        live = queryset.filter(revoked_at__isnull=True)
        states = {
            "active": live.filter(expires_at__isnull=True),
            "expiring": live.filter(expires_at__gt=now),  # a rotation's overlap
            "expired": live.filter(expires_at__lte=now),
            "revoked": queryset.filter(revoked_at__isnull=False),
        }
        return states.get(self.value() or "", queryset)


@admin.register(ApiKey)
class ApiKeyAdmin(RevocableAdmin):
    revoke_permission = "sessions_app.revoke_apikey"
    list_display = ("key_prefix", "name", "state", "role_names", "created_at", "expires_at", "revoked_at")
    list_filter = (ApiKeyStateFilter,)
    search_fields = ("=prefix", "=name")
    search_help_text = "Exact match: a key prefix (the part after vk_) or a name."
    ordering = ("-created_at",)
    fields = ("key_prefix", "name", "state", "role_names", "created_at", "expires_at", "revoked_at")
    readonly_fields = fields  # never the digest; roles change through the audited "Roles…" page
    set_roles_permission = "sessions_app.set_apikey_roles"

    @admin.display(description="roles")
    def role_names(self, obj: ApiKey) -> str:
        return ", ".join(roles_of(obj.roles)) or "(none)"

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_roles"
        return [
            path("<path:object_id>/roles/", self.admin_site.admin_view(self.roles_view), name=name),
            *super().get_urls(),
        ]

    def roles_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Replace a key's roles through the one audited rule, the console user as actor."""
        if not request.user.has_perm(self.set_roles_permission):
            raise PermissionDenied
        obj = get_object_or_404(ApiKey, pk=unquote(object_id))
        form = RolesForm(request.POST if request.method == "POST" else None, initial={"roles": ", ".join(roles_of(obj.roles))})
        if form.is_valid():
            if api_key_set_roles(prefix=obj.prefix, roles=form.role_list(), actor=console_actor(request)):
                self.message_user(request, f"Roles of vk_{obj.prefix}_…: {', '.join(sorted(set(form.role_list()))) or '(none)'}.")
            else:
                self.message_user(request, "The key is revoked: its roles were not changed.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:sessions_app_apikey_change", args=[quote(obj.pk)]))
        context = {**self.admin_site.each_context(request), "title": "Roles", "opts": self.opts, "object": obj, "form": form}
        return TemplateResponse(request, "admin/sessions_app/roles_form.html", context)

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> HttpResponse:
        context["has_set_roles_permission"] = request.user.has_perm(self.set_roles_permission)
        return super().render_change_form(request, context, *args, **kwargs)

    @admin.display(description="key")
    def key_prefix(self, obj: ApiKey) -> str:
        return f"vk_{obj.prefix}_…"

    @admin.display(description="state")
    def state(self, obj: ApiKey) -> str:
        return obj.state_at(timezone.now())

    def revoke_one(self, request: HttpRequest, obj: Model, reason: str) -> str:
        assert isinstance(obj, ApiKey)
        revoked = api_key_revoke(prefix=obj.prefix, actor=console_actor(request), reason=reason)
        return "revoked" if revoked else "already_revoked"


# Django's own console users and groups: the same rule on filters (a
# `?password__startswith=` would read password hashes one character at a time).
class ConsoleUserAdmin(OfferedFiltersOnlyMixin, UserAdmin):
    pass


class ConsoleGroupAdmin(OfferedFiltersOnlyMixin, GroupAdmin):
    pass


# The console login throttles and audits failures (sessions_app/console_security.py).
admin.site.login_form = ConsoleAuthenticationForm
admin.site.unregister(User)
admin.site.register(User, ConsoleUserAdmin)
admin.site.unregister(Group)
admin.site.register(Group, ConsoleGroupAdmin)

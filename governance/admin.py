"""The console's policy profiles: read-only, with their fingerprints.

Profiles are loaded from the repo (`manage.py governance load-profiles`) and
locked by VERITTA_PROFILES_FINGERPRINT; the console only shows them."""

from __future__ import annotations

import json
import threading
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from governance import held_payloads
from governance.models import ApprovalRequest, ApprovalVote, PolicyProfile
from governance.selectors import profiles_active_fingerprint, profiles_lock_values
from veritta_site.admin_mixins import NoWritesMixin, OfferedFiltersOnlyMixin
from veritta_site.errors import VerittaError


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


_viewer = threading.local()


class DecideForm(forms.Form):
    verdict = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")], widget=forms.RadioSelect)
    reason = forms.CharField(max_length=500, strip=True, help_text="Mandatory; recorded with your decision in the audit trail.")


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(OfferedFiltersOnlyMixin, NoWritesMixin, admin.ModelAdmin):
    """The approval queue and review page (docs/APPROVALS.md): the held input
    shows only its visible fields, and only to members of the approver group;
    approving or rejecting needs `governance.decide_approval`."""

    list_display = ("public_id", "action", "status", "waiting_since", "group", "approvals", "expires_at")
    list_filter = ("status", "action")
    ordering = ("created_at",)  # oldest first: the longest waiting on top
    actions = None
    show_facets = admin.ShowFacets.NEVER
    fields = ("public_id", "action", "status", "requester", "rule", "created_at", "expires_at", "visible_input", "decisions", "chain_records")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).prefetch_related("votes")

    @admin.display(description="waiting since", ordering="created_at")
    def waiting_since(self, obj: ApprovalRequest) -> Any:
        return obj.created_at

    @admin.display(description="approvals")
    def approvals(self, obj: ApprovalRequest) -> str:
        return f"{sum(v.verdict == ApprovalVote.APPROVE for v in obj.votes.all())} of {obj.approvals_needed}"

    @admin.display(description="policy rule")
    def rule(self, obj: ApprovalRequest) -> str:
        return (f"{obj.profile_id} actions.{obj.action}.approval: {obj.approvals_needed} approval(s) of group "
                f"{obj.group!r}; profile sha256 {obj.profile_hash[:16]}…")

    @admin.display(description="input (visible fields)")
    def visible_input(self, obj: ApprovalRequest) -> str:
        if obj.sealed_payload is None:
            return "deleted (the request was executed, rejected or expired)"
        if not self._is_approver(obj):
            return f"shown only to members of {obj.group!r}"
        try:
            payload = held_payloads.unseal(obj.sealed_payload, public_id=obj.public_id, input_digest=obj.input_digest)
        except VerittaError as error:
            return f"cannot be opened: {error.code}"
        shown = {k: payload[k] for k in obj.visible_fields if k in payload}
        hidden = len(set(payload) - set(shown))
        return format_html("<pre id=\"visible-input\">{}</pre>{}", json.dumps(shown, indent=2, ensure_ascii=False),
                           f"{hidden} other field(s) hidden" if hidden else "")

    @admin.display(description="decisions")
    def decisions(self, obj: ApprovalRequest) -> str:
        rows = [(v.at.isoformat(timespec="seconds"), v.approver, v.verdict, v.reason) for v in obj.votes.order_by("at")]
        return format_html_join("", "<div class=\"vote\">{} {} {}: {}</div>", rows) or "none yet"

    @admin.display(description="chain records of the trace")
    def chain_records(self, obj: ApprovalRequest) -> str:
        from audit.models import AuditRecord

        # Sequenced records only: on PostgreSQL the newest may still be in the intake for a moment.
        rows = [(r.seq, r.actor_id or "", r.decision or r.status or "", r.reason_code or "")
                for r in AuditRecord.objects.filter(trace_id=obj.trace_id).order_by("seq")]
        table = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        return format_html("<p>trace {}</p><table id=\"trace-records\">{}</table>", obj.trace_id, table)

    def _is_approver(self, obj: ApprovalRequest) -> bool:
        user = getattr(_viewer, "user", None)
        return user is not None and user.groups.filter(name=obj.group).exists()

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        _viewer.user = request.user  # the readonly field callables get the object only
        try:
            response = super().changeform_view(request, *args, **kwargs)
            if isinstance(response, TemplateResponse):
                response.render()  # while the viewer is known
            return response
        finally:
            _viewer.user = None

    def get_urls(self) -> list[URLPattern]:
        return [
            path("<path:object_id>/decide/", self.admin_site.admin_view(self.decide_view), name="governance_approvalrequest_decide"),
            *super().get_urls(),
        ]

    def decide_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        from audit.services import RequestContext
        from governance.approval_flows import VERDICTS, approval_decide

        if not request.user.has_perm("governance.decide_approval"):
            raise PermissionDenied
        obj = get_object_or_404(ApprovalRequest, pk=unquote(object_id))
        form = DecideForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            ctx = RequestContext.for_request(request, endpoint="POST /console/approvals/decide", profile_id="console",
                                             profile_hash="0" * 64)
            ctx.actor = {"kind": "console", "id": request.user.get_username()[:64]}
            try:
                approval_decide(obj.public_id, approver=request.user.get_username(),
                                verdict=VERDICTS[form.cleaned_data["verdict"]], reason=form.cleaned_data["reason"], ctx=ctx)
                obj.refresh_from_db()
                self.message_user(request, f"Recorded; the request is {obj.status}.", messages.SUCCESS)
            except VerittaError as error:
                self.message_user(request, f"Refused: {error.code} ({error.message})", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:governance_approvalrequest_change", args=[quote(obj.pk)]))
        context = {**self.admin_site.each_context(request), "title": f"Decide on {obj.public_id}", "opts": self.opts,
                   "obj": obj, "form": form}
        return TemplateResponse(request, "admin/governance/approvalrequest/decide.html", context)

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any) -> HttpResponse:
        context["has_decide_permission"] = request.user.has_perm("governance.decide_approval")
        return super().render_change_form(request, context, *args, **kwargs)

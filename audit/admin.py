"""The human console's audit pages (SPEC §3, §6; STYLE rule 6).

Read-only for everyone, superusers included: no add, change or delete, no
actions. Built to stay fast on a table of millions of records: exact search
only (trace id, seq, record hash: each an index lookup, never a LIKE scan),
no full-table count (AuditPaginator), no date_hierarchy, filters that map to
the (event_type, decision|status, ts_utc) and (reason_code, seq) indexes.

Extra pages, under /console/audit/auditrecord/: trace/<trace_id>/, chain/
(checkpoint, last verify, run a verify) and dashboard/ (charts as inline SVG).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.functional import cached_property
from django.utils.html import format_html
from django_tasks_db.models import DBTaskResult

from audit.models import AuditRecord, Checkpoint, VerificationRun
from audit.records import ACTION, DECISION
from audit.selectors import (
    audit_dashboard,
    audit_head_seq,
    audit_intake_status,
    audit_trace_view,
    checkpoint_latest,
    verification_runs_overview,
)
from audit.tasks import verification_run_start
from audit.witnesses import witness_status
from veritta_site.admin_mixins import NoWritesMixin, OfferedFiltersOnlyMixin
from veritta_site.errors import CATALOGUE

# The task queue's own admin (django_tasks_db) would let staff edit or delete
# queued work; the console shows verification runs instead (chain status).
if admin.site.is_registered(DBTaskResult):
    admin.site.unregister(DBTaskResult)

admin.site.site_header = "Verittà console"
admin.site.site_title = "Verittà console"
admin.site.index_title = "Audit trail, sessions and policy"
admin.site.index_template = "admin/veritta_index.html"
# The audit list needs the width; the index page links every part of the console.
admin.site.enable_nav_sidebar = False
# One mark for "no value" in every column, ours and Django's (whose default is "-").
EMPTY = admin.site.empty_value_display = "—"


class ReadOnlyAdmin(OfferedFiltersOnlyMixin, NoWritesMixin, admin.ModelAdmin):
    """No add, change or delete for anyone (the database refuses them too)."""

    actions = None  # no delete_selected, no checkbox column


class AuditPaginator(Paginator):
    """Never counts the table: a count is bounded by CAP rows, read from the
    index the filter uses (`SELECT COUNT(*) FROM (… LIMIT CAP+1)`). Past the
    newest CAP matching records, narrow the list with the filters instead."""

    CAP = 10_000
    object_list: QuerySet[AuditRecord]  # the admin pages a queryset

    @cached_property
    def count(self) -> int:
        return min(self.object_list.values("pk")[: self.CAP + 1].count(), self.CAP)


# --- filters -----------------------------------------------------------------------


class EventTypeFilter(admin.SimpleListFilter):
    title = "type"
    parameter_name = "type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(DECISION, "decision"), (ACTION, "action")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditRecord]) -> QuerySet[AuditRecord]:
        return queryset.filter(event_type=self.value()) if self.value() else queryset


class DecisionFilter(admin.SimpleListFilter):
    title = "decision"
    parameter_name = "decision"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("ALLOW", "ALLOW"), ("DENY", "DENY")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditRecord]) -> QuerySet[AuditRecord]:
        # Only decision records have a decision: naming the type lets the
        # query use the (event_type, decision, ts_utc) index.
        return queryset.filter(event_type=DECISION, decision=self.value()) if self.value() else queryset


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(s, s) for s in ("PENDING", "SUCCESS", "FAILED", "BLOCKED")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditRecord]) -> QuerySet[AuditRecord]:
        # Uses the (event_type, status, ts_utc) index, as for decisions.
        return queryset.filter(event_type=ACTION, status=self.value()) if self.value() else queryset


class ReasonCodeFilter(admin.SimpleListFilter):
    title = "reason code"
    parameter_name = "reason"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # From the catalogue, not a DISTINCT over the table.
        return [(code, code) for code in sorted(CATALOGUE)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditRecord]) -> QuerySet[AuditRecord]:
        # The (reason_code, seq) index serves it; reason_code is the first code.
        return queryset.filter(reason_code=self.value()) if self.value() else queryset


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = parse_datetime(value)
    if parsed is None:
        raise IncorrectLookupParameters(f"not an ISO 8601 time: {value!r}")  # the list shows "?e=1"
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class TimeRangeFilter(admin.ListFilter):
    """`since` (inclusive) and `until` (exclusive), ISO 8601, UTC unless a zone is
    given; preset windows as links, and a small form for any range."""

    title = "time (UTC)"
    template = "admin/audit/time_range_filter.html"
    parameters = ("since", "until")
    presets = (("last hour", timedelta(hours=1)), ("last 24 hours", timedelta(days=1)), ("last 7 days", timedelta(days=7)))

    def __init__(self, request: HttpRequest, params: dict[str, Any], model: Any, model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)
        for name in self.parameters:
            if name in params:
                value = params.pop(name)
                self.used_parameters[name] = value[-1] if isinstance(value, list) else value
        # The other parameters of the list, kept as hidden fields by the form.
        self.hidden = [(k, v) for k, v in request.GET.items() if k not in (*self.parameters, "p")]

    def has_output(self) -> bool:
        return True

    def _used(self, name: str) -> str | None:
        value = self.used_parameters.get(name)  # set from the query string by __init__: a str
        return value if isinstance(value, str) else None

    def expected_parameters(self) -> list[str | None]:
        return list(self.parameters)

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditRecord]) -> QuerySet[AuditRecord]:
        since, until = _when(self._used("since")), _when(self._used("until"))
        if since:
            queryset = queryset.filter(ts_utc__gte=since)
        if until:
            queryset = queryset.filter(ts_utc__lt=until)
        return queryset

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:
        now = timezone.now().replace(microsecond=0)
        choices = [
            {
                "selected": not self.used_parameters,
                "query_string": changelist.get_query_string(remove=list(self.parameters)),
                "display": "any time",
            }
        ]
        for label, span in self.presets:
            since = (now - span).strftime("%Y-%m-%dT%H:%M:%S")
            choices.append(
                {
                    "selected": False,
                    "query_string": changelist.get_query_string({"since": since}, remove=["until"]),
                    "display": label,
                }
            )
        yield from choices


# --- the audit browser ------------------------------------------------------------------

_SEQ = re.compile(r"^\d{1,18}$")
_HASH = re.compile(r"^[0-9a-f]{64}$")


def _trace_link(trace_id: str) -> str:
    url = reverse("admin:audit_auditrecord_trace", args=[trace_id])
    return format_html('<a href="{}" title="every record of this request">{}</a>', url, trace_id)


@admin.register(AuditRecord)
class AuditRecordAdmin(ReadOnlyAdmin):
    list_display = ("seq", "time", "event_type", "outcome", "reason_codes", "action", "actor", "trace")
    list_filter = (TimeRangeFilter, EventTypeFilter, DecisionFilter, StatusFilter, ReasonCodeFilter)
    search_fields = ("=trace_id",)  # the search box; get_search_results decides the lookup
    search_help_text = "Exact match: a trace id (UUID), a seq number, or a record hash (64 hex)."
    paginator = AuditPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # facet counts would COUNT the table once per filter choice
    list_per_page = 50  # the admin renders about 3 ms per row on our machine
    ordering = ("-seq",)
    fields = (
        "seq", "time", "event_type", "outcome", "reason_codes", "action", "actor", "trace",
        "prev_hash", "record_hash", "pretty_body",
    )  # fmt: skip
    readonly_fields = fields

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AuditRecord], search_term: str
    ) -> tuple[QuerySet[AuditRecord], bool]:
        """Exact lookups on unique or indexed columns; anything else matches nothing."""
        term = search_term.strip().lower()
        if not term:
            return queryset, False
        if _SEQ.match(term):
            return queryset.filter(seq=int(term)), False
        if _HASH.match(term):
            return queryset.filter(record_hash=term), False
        try:
            return queryset.filter(trace_id=str(uuid.UUID(term))), False
        except ValueError:
            return queryset.none(), False

    @admin.display(description="time (UTC)")
    def time(self, obj: AuditRecord) -> str:
        return obj.ts_utc.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")

    @admin.display(description="decision / status")
    def outcome(self, obj: AuditRecord) -> str:
        return obj.decision or obj.status or EMPTY

    @admin.display(description="reason codes")
    def reason_codes(self, obj: AuditRecord) -> str:
        codes = json.loads(obj.body).get("reason_codes") or []
        return ", ".join(codes) or EMPTY

    @admin.display(description="actor")
    def actor(self, obj: AuditRecord) -> str:
        return f"{obj.actor_kind}:{obj.actor_id}" if obj.actor_kind else EMPTY

    @admin.display(description="trace id")
    def trace(self, obj: AuditRecord) -> str:
        return _trace_link(obj.trace_id)

    @admin.display(description="record (canonical JSON)")
    def pretty_body(self, obj: AuditRecord) -> str:
        return format_html("<pre>{}</pre>", json.dumps(json.loads(obj.body), indent=2, sort_keys=True, ensure_ascii=False))

    # --- extra pages ---

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("trace/<str:trace_id>/", wrap(self.trace_view), name="audit_auditrecord_trace"),
            path("chain/", wrap(self.chain_view), name="audit_auditrecord_chain"),
            path("dashboard/", wrap(self.dashboard_view), name="audit_auditrecord_dashboard"),
            *super().get_urls(),
        ]

    def _page(self, request: HttpRequest, template: str, title: str, **context: Any) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": title, **context}
        return TemplateResponse(request, template, context)

    def trace_view(self, request: HttpRequest, trace_id: str) -> HttpResponse:
        trace = audit_trace_view(trace_id=trace_id)
        return self._page(request, "admin/audit/trace.html", f"Trace {trace_id}", trace=trace)

    def chain_view(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST":
            if not self.has_view_permission(request):
                raise PermissionDenied
            # In the background: a whole-chain verify can outlive the request's timeout.
            run = verification_run_start(actor=f"console:{request.user.get_username()}")
            self.message_user(request, f"Verification run {run.pk} queued; this page follows it.", messages.INFO)
            return HttpResponseRedirect(request.path)
        head = audit_head_seq()
        checkpoint = checkpoint_latest()
        runs = verification_runs_overview()
        latest = runs.latest
        return self._page(
            request,
            "admin/audit/chain.html",
            "Chain status",
            head=head,
            checkpoint=checkpoint,
            unsealed=head - (checkpoint.tree_size if checkpoint else 0),
            intake=audit_intake_status(),
            max_merge_delay_s=settings.VERITTA_AUDIT_MAX_MERGE_DELAY_S,
            run=latest,
            witnesses=witness_status(checkpoint),
            took=(latest.finished_at - latest.started_at).total_seconds() if latest and latest.finished_at else None,
            active_runs=runs.active,
            recent_runs=runs.recent,
        )

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        now = timezone.now()
        since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
        figures = audit_dashboard(since=since)
        hours = [since + timedelta(hours=i) for i in range(24)]
        per_hour = [(h, figures["per_hour"].get(h, {"ALLOW": 0, "DENY": 0})) for h in hours]
        return self._page(
            request,
            "admin/audit/dashboard.html",
            "Dashboard: the last 24 hours",
            since=since,
            hourly=hourly_chart(per_hour),
            deny_reasons=bar_chart(figures["deny_reasons"]),
            outcomes=bar_chart(figures["outcomes"]),
        )


# --- charts: geometry for the inline SVG of templates/admin/audit/dashboard.html ---------

CHART_W, CHART_H = 720, 200


def hourly_chart(per_hour: list[tuple[datetime, dict[str, int]]]) -> dict[str, Any]:
    """Stacked ALLOW/DENY bars, one per hour."""
    top = max([c["ALLOW"] + c["DENY"] for _, c in per_hour] + [1])
    slot = CHART_W // max(len(per_hour), 1)
    bars = []
    for i, (hour, counts) in enumerate(per_hour):
        allow_h = round(CHART_H * counts["ALLOW"] / top)
        deny_h = round(CHART_H * counts["DENY"] / top)
        bars.append(
            {
                "x": i * slot + 2,
                "w": slot - 4,
                "allow_y": CHART_H - allow_h,
                "allow_h": allow_h,
                "deny_y": CHART_H - allow_h - deny_h,
                "deny_h": deny_h,
                "label": hour.strftime("%H:00"),
                "show_label": i % 3 == 0,
                "label_x": i * slot + slot // 2,
                **counts,
            }
        )
    return {"bars": bars, "top": top, "w": CHART_W, "h": CHART_H, "total_h": CHART_H + 20}


def bar_chart(rows: list[tuple[str, int]], width: int = 360) -> dict[str, Any]:
    """Horizontal bars, one per (label, count)."""
    top = max([n for _, n in rows] + [1])
    bars = [
        {"label": label, "n": n, "y": i * 24, "w": max(round(width * n / top), 1 if n else 0), "text_y": i * 24 + 15}
        for i, (label, n) in enumerate(rows)
    ]
    return {"bars": bars, "h": max(len(rows) * 24, 24), "w": width, "label_w": 230, "total_w": 230 + width + 80}


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyAdmin):
    list_display = ("tree_size", "created_at", "root_hash")
    fields = ("tree_size", "created_at", "root_hash", "note", "witnesses")
    readonly_fields = fields
    show_full_result_count = False

    @admin.display(description="Witness cosignatures")
    def witnesses(self, checkpoint: Checkpoint) -> str:
        """Each witness of VERITTA_AUDIT_WITNESSES, and when it cosigned this checkpoint."""
        statuses = witness_status(checkpoint)
        if not statuses:
            return "no witnesses configured (VERITTA_AUDIT_WITNESSES)"
        return "; ".join(
            f"{s.name}: cosigned {s.cosigned_at:%Y-%m-%d %H:%M:%S} UTC" if s.cosigned_at else f"{s.name}: not cosigned"
            for s in statuses
        )


@admin.register(VerificationRun)
class VerificationRunAdmin(ReadOnlyAdmin):
    list_display = ("started_at", "finished_at", "ok", "records", "actor")
    list_filter = ("ok",)
    fields = ("started_at", "finished_at", "ok", "records", "actor", "problems", "warnings")
    readonly_fields = fields

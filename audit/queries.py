"""The seeds' audit queries over the admin API (issue 15): traces by time
range, actor and decision, and violations: denials grouped by the kind of
control that refused them. Keyset pagination on seq, newest first."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db.models import Count, Q

from audit.models import AuditRecord
from audit.records import DECISION
from veritta_site.errors import CATALOGUE

# The kind of control behind each place a denial can come from (the catalogue's
# "where" column): one table, so a new reason code lands in its kind by where it is raised.
CONTROL_KINDS: dict[str, str] = {
    "G0 credential": "authentication",
    "G2 API key": "authentication",
    "admin G0": "authentication",
    "admin G2": "authentication",
    "G4 session": "session",
    "G10 rate limit": "rate_limit",
    "P0 size": "payload",
    "P2 payload": "payload",
    "profile": "policy",
    "registry": "registry",
}
KINDS = ("authentication", "session", "rate_limit", "payload", "policy", "registry", "other")


def control_kind(reason_code: str | None) -> str:
    reason = CATALOGUE.get(reason_code or "")
    return CONTROL_KINDS.get(reason.where, "other") if reason else "other"


def codes_of_kind(kind: str) -> list[str]:
    return [code for code in CATALOGUE if control_kind(code) == kind]


def _window(qs: Any, since: datetime | None, until: datetime | None) -> Any:
    if since:
        qs = qs.filter(ts_utc__gte=since)
    if until:
        qs = qs.filter(ts_utc__lt=until)
    return qs


def _page(qs: Any, cursor: int | None, limit: int) -> tuple[list[tuple[int, str]], int | None]:
    if cursor is not None:
        qs = qs.filter(seq__lt=cursor)
    rows = list(qs.order_by("-seq").values_list("seq", "body")[: limit + 1])
    return rows[:limit], (rows[limit - 1][0] if len(rows) > limit else None)


def _actor_filter(actor: str | None) -> Q:
    if not actor:
        return Q()
    kind, sep, actor_id = actor.partition(":")
    return Q(actor_kind=kind, actor_id=actor_id) if sep else Q(actor_id=actor)


def traces_page(
    *, since: datetime | None, until: datetime | None, actor: str | None, decision: str | None, cursor: int | None, limit: int
) -> tuple[list[str], int | None]:
    """The decision record of each request (one a trace) in the window."""
    qs = _window(AuditRecord.objects.filter(event_type=DECISION, decision__isnull=False), since, until)
    qs = qs.filter(_actor_filter(actor))
    if decision:
        qs = qs.filter(decision=decision)
    rows, next_cursor = _page(qs, cursor, limit)
    return [body for _, body in rows], next_cursor


def violations_page(
    *, since: datetime | None, until: datetime | None, kind: str | None, cursor: int | None, limit: int
) -> dict[str, Any]:
    """Denials in the window: counts by kind of control, and a page of them."""
    denials = _window(AuditRecord.objects.filter(event_type=DECISION, decision="DENY"), since, until)
    counts = dict.fromkeys(KINDS, 0)
    for row in denials.values("reason_code").annotate(n=Count("seq")).order_by():
        counts[control_kind(row["reason_code"])] += int(row["n"])
    if kind == "other":
        known = [code for k in KINDS if k != "other" for code in codes_of_kind(k)]
        denials = denials.exclude(reason_code__in=known)
    elif kind:
        denials = denials.filter(reason_code__in=codes_of_kind(kind))
    rows, next_cursor = _page(denials, cursor, limit)
    items = []
    for _, body in rows:
        record = json.loads(body)
        codes = record.get("reason_codes") or [None]
        items.append({"control_kind": control_kind(codes[0]), "record": record})
    return {"counts": counts, "items": items, "next_cursor": next_cursor}

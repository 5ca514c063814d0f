"""The audit browser offers no add, change or delete, to anyone, by any route
(SPEC §6, STYLE rule 6), and finds records by exact trace id, seq or hash only."""

from __future__ import annotations

import re
from typing import Any

import pytest

from audit.models import AuditRecord

LIST = "/console/audit/auditrecord/"


@pytest.fixture
def records(console: Any) -> dict[str, Any]:
    allowed = console.process({"action": "process", "event_type": "test_event", "text": "Hello"}).json()
    denied = console.process({"action": "process", "event_type": "test_event", "text": "x", "is_admin": True}).json()
    return {"allowed": allowed, "denied": denied, "count": AuditRecord.objects.count()}


def test_the_list_has_no_add_button_no_actions_and_no_delete_selected(console: Any, records: dict[str, Any]) -> None:
    html = console.get(LIST).content.decode()
    assert "/console/audit/auditrecord/add/" not in html  # nor in the nav sidebar
    assert "delete_selected" not in html
    assert 'name="action"' not in html and "action-checkbox" not in html


def test_a_record_page_is_read_only_with_no_save_or_delete_buttons(console: Any, records: dict[str, Any]) -> None:
    seq = records["allowed"]["audit"]["seq"]
    html = console.get(f"{LIST}{seq}/change/").content.decode()
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    assert f"/console/audit/auditrecord/{seq}/delete/" not in html
    assert f"/console/audit/auditrecord/trace/{records['allowed']['trace_id']}/" in html


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("route", ["add/", "{seq}/change/", "{seq}/delete/"])
def test_a_superuser_cannot_add_change_or_delete_by_url(console: Any, records: dict[str, Any], method: str, route: str) -> None:
    seq = records["allowed"]["audit"]["seq"]
    url = LIST + route.format(seq=seq)
    before = AuditRecord.objects.get(seq=seq).body
    response = getattr(console, method)(url, {"event_type": "forged", "post": "yes"})
    if route.endswith("change/") and method == "get":
        assert response.status_code == 200  # the read-only view
    else:
        assert response.status_code == 403, (url, response.status_code)
        assert response.json()["reason_codes"] == ["FORBIDDEN"]  # the admin's 403, in the envelope
    assert AuditRecord.objects.count() == records["count"]
    assert AuditRecord.objects.get(seq=seq).body == before


def test_posting_the_delete_selected_action_to_the_list_deletes_nothing(console: Any, records: dict[str, Any]) -> None:
    response = console.post(LIST, {"action": "delete_selected", "_selected_action": ["1", "2"], "post": "yes", "index": "0"})
    assert response.status_code in (200, 302, 400, 403)
    assert AuditRecord.objects.count() == records["count"]


def test_a_staff_user_without_view_permission_sees_nothing(console_user: Any, records: dict[str, Any]) -> None:
    from django.test import Client

    client = Client()
    client.force_login(console_user("bob"))
    assert client.get(LIST).status_code == 403
    assert client.get(f"{LIST}trace/{records['allowed']['trace_id']}/").status_code == 403


@pytest.mark.parametrize("field", ["trace_id", "seq", "record_hash"])
def test_search_finds_a_record_by_an_exact_value(console: Any, records: dict[str, Any], field: str) -> None:
    denied = AuditRecord.objects.get(trace_id=records["denied"]["trace_id"])
    html = console.get(LIST, {"q": str(getattr(denied, field))}).content.decode()
    assert f'href="/console/audit/auditrecord/{denied.seq}/change/' in html
    assert "ADMIN_SIGNAL_FORBIDDEN" in html


def test_search_never_matches_a_fragment(console: Any, records: dict[str, Any]) -> None:
    for fragment in (records["allowed"]["trace_id"][:8], records["allowed"]["audit"]["record_hash"][:12], "process"):
        html = console.get(LIST, {"q": fragment}).content.decode()
        assert not re.search(r"/console/audit/auditrecord/\d+/change/", html), fragment


def test_filters_by_decision_and_reason_code(console: Any, records: dict[str, Any]) -> None:
    html = console.get(LIST, {"decision": "DENY"}).content.decode()
    assert records["denied"]["trace_id"] in html and records["allowed"]["trace_id"] not in html
    html = console.get(LIST, {"reason": "ADMIN_SIGNAL_FORBIDDEN"}).content.decode()
    assert records["denied"]["trace_id"] in html and records["allowed"]["trace_id"] not in html
    html = console.get(LIST, {"status": "SUCCESS"}).content.decode()
    assert records["allowed"]["trace_id"] in html and records["denied"]["trace_id"] not in html


def test_the_time_filter_keeps_only_records_in_the_range(console: Any, records: dict[str, Any]) -> None:
    assert records["allowed"]["trace_id"] in console.get(LIST, {"since": "2020-01-01T00:00"}).content.decode()
    assert records["allowed"]["trace_id"] not in console.get(LIST, {"until": "2020-01-01T00:00"}).content.decode()


def test_the_list_offers_no_facet_counts(console: Any, records: dict[str, Any]) -> None:
    # Facets would run a COUNT over the table for every filter choice.
    assert "Show counts" not in console.get(LIST).content.decode()
    assert "Show counts" not in console.get(LIST, {"_facets": "True"}).content.decode()


def test_the_audit_admin_never_counts_the_table_nor_groups_by_date() -> None:
    from django.contrib import admin

    from audit.admin import AuditPaginator

    model_admin = admin.site._registry[AuditRecord]
    assert model_admin.date_hierarchy is None
    assert model_admin.show_full_result_count is False
    assert model_admin.paginator is AuditPaginator
    assert model_admin.actions is None


def test_every_console_page_allows_only_the_filters_it_offers():
    """docs/SECURITY.md S3: no ModelAdmin falls back to Django's any-local-field lookups."""
    from django.contrib import admin

    from veritta_site.admin_mixins import OfferedFiltersOnlyMixin

    loose = [type(model_admin).__name__ for model_admin in admin.site._registry.values() if not isinstance(model_admin, OfferedFiltersOnlyMixin)]
    assert loose == []

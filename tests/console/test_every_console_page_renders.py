"""Every page of the console answers a logged-in superuser with HTML, not an error."""

from typing import Any

import pytest

PAGES = [
    "/console/",
    "/console/audit/auditrecord/",
    "/console/audit/auditrecord/trace/{trace}/",
    "/console/audit/auditrecord/chain/",
    "/console/audit/auditrecord/dashboard/",
    "/console/audit/auditrecord/1/change/",
    "/console/audit/auditrecord/?q={trace}",
    "/console/audit/auditrecord/?since=2020-01-01T00:00&until=2100-01-01T00:00:00%2B00:00&decision=ALLOW",
    "/console/audit/auditrecord/?status=SUCCESS&type=action_audit&reason=EXECUTION_ATTEMPT",
    "/console/audit/checkpoint/",
    "/console/audit/verificationrun/",
    "/console/sessions_app/session/",
    "/console/sessions_app/session/?state=active&q=u_1",
    "/console/sessions_app/apikey/",
    "/console/governance/policyprofile/",
]


@pytest.mark.parametrize("page", PAGES)
def test_console_page_renders_for_a_superuser(console: Any, page: str) -> None:
    trace = console.process({"action": "process", "event_type": "test_event", "text": "Hello"}).json()["trace_id"]
    response = console.get(page.format(trace=trace))
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/html")


def test_a_bad_time_filter_is_refused_by_the_list_not_a_server_error(console: Any) -> None:
    response = console.get("/console/audit/auditrecord/?since=yesterday")
    assert response.status_code == 302 and "e=1" in response["Location"]


def test_console_pages_need_a_login(api: Any) -> None:
    response = api.get("/console/audit/auditrecord/dashboard/")
    assert response.status_code == 302 and response["Location"].startswith("/console/login/")


def test_audit_verify_from_the_command_line_shows_in_chain_status(console: Any) -> None:
    from django.core.management import call_command

    console.process({"action": "process", "event_type": "test_event", "text": "Hello"})
    call_command("audit", "verify", "--json")
    page = console.get("/console/audit/auditrecord/chain/").content.decode()
    assert "operator:manage.py audit verify" in page and "OK" in page

"""The console answers a person's browser as a console: its address without
the slash leads to it, an error is a console page with the status, the
message and the trace id (not a JSON document, which API clients still get),
a login is recorded with the status it was answered with, and an empty value
looks the same in every column."""

from __future__ import annotations

from typing import Any

from django.test import Client

from conftest import CONSOLE_PASSWORD

BROWSER = {"HTTP_ACCEPT": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_console_without_the_slash_leads_to_the_console(db: None) -> None:
    response = Client().get("/console", **BROWSER)
    assert response.status_code == 302 and response["Location"] == "/console/"


def test_a_refused_form_is_a_console_page_for_a_browser_and_the_envelope_for_a_program(db: None) -> None:
    form = {"username": "alice", "password": "x", "next": "/console/"}
    page = Client(enforce_csrf_checks=True).post("/console/login/", form, **BROWSER)
    assert page.status_code == 403 and page["Content-Type"].startswith("text/html")
    text = page.content.decode()
    assert "403 Forbidden" in text and page["X-Trace-ID"] in text and '"reason_codes"' not in text

    program = Client(enforce_csrf_checks=True).post("/console/login/", form)
    assert program.status_code == 403 and program.json()["reason_codes"] == ["FORBIDDEN"]


def test_an_unknown_console_page_is_a_console_404_for_a_browser(console: Any) -> None:
    page = console.get("/console/no/such/page/", **BROWSER)
    assert page.status_code == 404 and "404 Not found" in page.content.decode()
    assert console.get("/process").json()["reason_codes"] == ["METHOD_NOT_ALLOWED"]  # the API is unchanged


def test_a_good_login_is_recorded_with_the_redirect_it_was_answered_with(console_user: Any, api: Any, audit_records: Any) -> None:
    console_user("alice")
    response = Client().post("/console/login/", {"username": "alice", "password": CONSOLE_PASSWORD, "next": "/console/"})
    assert response.status_code == 302
    (record,) = [r for r in audit_records() if r["endpoint"] == "POST /console/login/"]
    assert record["decision"] == "ALLOW" and record["http_status"] == 302


def test_an_empty_value_is_one_mark_in_every_column(console: Any, open_session: Any) -> None:
    open_session()  # never seen, never revoked: Django's own empty columns
    assert console.post("/process", data="{}", content_type="application/json").status_code == 403  # no actor: ours
    for page in ("/console/sessions_app/session/", "/console/audit/auditrecord/"):
        cells = console.get(page).content.decode()
        assert ">—<" in cells and ">-<" not in cells, page

"""Four-eyes approval in the console, in a real browser against a real
gunicorn server: an agent's payment is held; its requester is refused as
approver; two approvers approve it from the review page (visible fields only,
the rule, the trace's records); it runs once, and its held payload is gone.

With VERITTA_SCREENSHOTS_DIR set the queue and review pages are saved for
docs/APPROVALS.md (scripts/console_screenshots.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conftest import API_KEY, env_for_test_profiles
from tests.console.test_console_in_a_real_browser import Shots, _login, _new_page, browser  # noqa: F401 - fixture
from tests.support.appserver import AppServer

PASSWORD = "approver-console-pw-0123456789"
MAKE_PEOPLE = (
    "from django.contrib.auth.models import Group, Permission, User; g = Group.objects.create(name='approvers'); "
    "perms = [Permission.objects.get(content_type__app_label='governance', codename=c) "
    "for c in ('view_approvalrequest', 'decide_approval')]; "
    f"[(u := User.objects.create_user(n, password='{PASSWORD}', is_staff=True)).groups.add(g) or u.user_permissions.add(*perms) "
    "for n in ('u_agent', 'alice', 'bob')]"
)
PAYMENT = {"action": "pay", "amount": 25000, "payee": "initech-4410", "memo": "hidden-memo-9931"}
QUEUE = "/console/governance/approvalrequest/"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    srv = AppServer(tmp_path_factory.mktemp("approvals"), workers=2, env=env_for_test_profiles()).prepare()
    srv.manage("shell", "--no-imports", "-c", MAKE_PEOPLE)
    srv.start()
    yield srv
    srv.stop()


def decide_in_browser(chromium: Any, server: AppServer, who: str, review_url: str, verdict: str, reason: str, shots: Any = None) -> str:
    problems: list[str] = []
    page = _new_page(chromium, problems)
    _login(page, server, who, PASSWORD)
    page.goto(review_url)
    if shots:
        shots(page, "approvals-02-review")
    page.click("#decide-button")
    page.check(f"input[name=verdict][value={verdict}]")
    page.fill("#id_reason", reason)
    page.click("#decide-form input[type=submit]")
    page.wait_for_load_state()
    message = page.inner_text("ul.messagelist")
    page.context.close()
    return message


def test_an_agents_payment_is_held_approved_by_two_people_and_runs_once(server: AppServer, browser: Any) -> None:  # noqa: F811
    shots = Shots()
    opened = server.post("/sessions", json={"user_id": "u_agent"}, headers={"X-API-Key": API_KEY}).json()
    agent = {"Authorization": f"Bearer {opened['token']}", "X-VERITTA-USER-ID": "u_agent", "X-VERITTA-SESSION-ID": opened["session_id"]}
    held = server.post("/process", json=PAYMENT, headers=agent)
    assert held.status_code == 202, held.text
    approval_id, trace_id = held.json()["approval"]["id"], held.json()["trace_id"]

    problems: list[str] = []
    page = _new_page(browser, problems)
    _login(page, server, "alice", PASSWORD)
    page.goto(server.url + QUEUE + "?status__exact=WAITING")
    assert approval_id in page.inner_text("#result_list")
    shots(page, "approvals-01-queue")
    page.click(f"#result_list a:text('{approval_id}')")
    page.wait_for_load_state()
    review_url = page.url
    visible = page.inner_text("#visible-input")
    assert "initech-4410" in visible and "25000" in visible and "hidden-memo" not in page.content()
    assert "APPROVAL_HELD" in page.inner_text("#trace-records") and "u_agent" not in visible
    page.context.close()

    refused = decide_in_browser(browser, server, "u_agent", review_url, "approve", "my own request")
    assert "APPROVAL_OWN_REQUEST" in refused
    assert "WAITING" in decide_in_browser(browser, server, "alice", review_url, "approve", "invoice matches PO 77", shots)
    assert "APPROVAL_ALREADY_DECIDED" in decide_in_browser(browser, server, "alice", review_url, "approve", "again")
    assert "EXECUTED" in decide_in_browser(browser, server, "bob", review_url, "approve", "payee verified")
    runs = (server.tmp / "pay_runs.log").read_text().split()
    assert runs == [trace_id]

    page = _new_page(browser, problems)
    _login(page, server, "bob", PASSWORD)
    page.goto(review_url)
    assert "deleted" in page.inner_text(".field-visible_input")
    records = page.inner_text("#trace-records")
    for code in ("APPROVAL_HELD", "APPROVAL_GRANTED", "EXECUTION_ATTEMPT", "HELD_PAYLOAD_DELETED", "SUCCESS"):
        assert code in records, (code, records)
    shots(page, "approvals-03-executed")
    answer = server.get(f"/approvals/{approval_id}", headers=agent).json()
    assert answer["approval"]["status"] == "EXECUTED" and answer["answer"]["body"]["result"]["output"]["paid"] is True
    assert "initech-4410" not in (server.tmp / "audit.log").read_text() and "hidden-memo" not in server.log()
    assert not [p for p in problems if not p.startswith("4")], problems

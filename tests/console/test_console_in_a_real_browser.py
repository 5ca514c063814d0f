"""The console end to end, in a real headless Chromium against a real gunicorn
server: log in, find a request by its trace id, open its trace, revoke the
session that made it (confirmation page, reason), see the API refuse that
session's next request and the revocation in the audit browser; and see that
the audit browser offers no add, change or delete.

Debian's `chromium` package, driven by Playwright (never `playwright install`).
With VERITTA_SCREENSHOTS_DIR set (scripts/console_screenshots.py does it),
the pages are saved as PNG files there for docs/CONSOLE.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright  # requirements-dev.txt: a missing browser fails, never skips

from conftest import API_KEY
from tests.support.appserver import AppServer

CHROMIUM = "/usr/bin/chromium"
# What this machine's Chromium needs to run headless in a container.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ROOT_PASSWORD = "root-console-pw-0123456789"
STAFF_PASSWORD = "sam-console-pw-0123456789"
STAFF_PERMISSIONS = (
    "audit.view_auditrecord", "audit.view_verificationrun", "audit.view_checkpoint",
    "sessions_app.view_session", "sessions_app.revoke_session", "governance.view_policyprofile",
)  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    if not Path(CHROMIUM).exists():
        raise RuntimeError("Debian's chromium is missing: apt-get install chromium (scripts/test does it as root)")
    # A checkpoint every 10 records, so that chain status has one to show.
    srv = AppServer(
        tmp_path_factory.mktemp("console"), workers=2, env={"VERITTA_AUDIT_CHECKPOINT_EVERY": "10"}, task_worker=True
    ).prepare()
    srv.create_user("root", ROOT_PASSWORD, superuser=True)
    srv.create_user("sam", STAFF_PASSWORD, permissions=STAFF_PERMISSIONS)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Shots:
    """Saves full-page screenshots when VERITTA_SCREENSHOTS_DIR is set."""

    def __init__(self) -> None:
        directory = os.environ.get("VERITTA_SCREENSHOTS_DIR")
        self.dir = Path(directory) if directory else None
        if self.dir:
            self.dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, page: Any, name: str) -> None:
        if self.dir:
            page.screenshot(path=str(self.dir / f"{name}.png"), full_page=True)


def _new_page(browser: Any, problems: list[str]) -> Any:
    context = browser.new_context(viewport={"width": 1600, "height": 900})
    page = context.new_page()
    # A CSP violation or a script error shows up as a console error: collect them.
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return page


def _login(page: Any, server: AppServer, username: str, password: str) -> None:
    page.goto(server.url + "/console/")
    assert "/console/login/" in page.url
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(server.url + "/console/")


def _process(server: AppServer, headers: dict[str, str], text: str = "Hello World") -> Any:
    body = {"action": "process", "event_type": "test_event", "text": text}
    return server.post("/process", json=body, headers=headers)


def test_an_operator_finds_a_request_revokes_its_session_and_the_api_refuses_it(server: AppServer, browser: Any) -> None:
    shots = Shots()
    key = {"X-API-Key": API_KEY}
    for text in ("one", "two", "three"):
        assert _process(server, key, text).status_code == 200
    assert _process(server, key | {"Content-Type": "application/json"}, "x" * 100_000).status_code in (400, 403, 413)
    opened = server.post("/sessions", json={"user_id": "u_browser"}, headers=key).json()
    bearer = {
        "Authorization": f"Bearer {opened['token']}",
        "X-VERITTA-USER-ID": "u_browser",
        "X-VERITTA-SESSION-ID": opened["session_id"],
    }
    first = _process(server, bearer)
    assert first.status_code == 200
    trace_id = first.json()["trace_id"]

    problems: list[str] = []
    page = _new_page(browser, problems)
    page.goto(server.url + "/console/login/")
    shots(page, "01-login")
    _login(page, server, "sam", STAFF_PASSWORD)
    # The admin's stylesheet was served (by whitenoise, DEBUG off) and applied.
    assert page.evaluate("getComputedStyle(document.querySelector('#header')).display") == "flex"
    shots(page, "02-index")

    # Find the request by its trace id.
    page.click("text=Audit browser")
    page.fill("#searchbar", trace_id)
    page.press("#searchbar", "Enter")
    page.wait_for_load_state()
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 3  # ALLOW, PENDING, SUCCESS
    shots(page, "03-audit-search-by-trace")

    # Open its trace: every record, in order, complete.
    page.locator(f"#result_list a:text('{trace_id}')").first.click()
    page.wait_for_load_state()
    assert page.inner_text("#trace-id") == trace_id
    assert "yes" in page.inner_text("#trace-complete")
    statuses = page.locator("#trace-records tbody tr td:nth-child(5)").all_inner_texts()
    assert [s.split()[0] for s in statuses] == ["ALLOW", "PENDING", "SUCCESS"]
    shots(page, "04-trace")

    # Revoke the session with a reason, through the confirmation page.
    page.goto(server.url + "/console/sessions_app/session/")
    page.fill("#searchbar", "u_browser")
    page.press("#searchbar", "Enter")
    page.wait_for_load_state()
    page.check(f"input.action-select[value='{opened['session_id']}']")
    page.select_option("select[name=action]", "revoke_selected")
    shots(page, "05-sessions")
    page.click("button[name=index]")
    page.wait_for_load_state()
    assert "Are you sure" in page.inner_text("#content")
    page.fill("#id_reason", "suspicious activity seen in the console")
    shots(page, "06-revoke-confirmation")
    page.click("#revoke-form input[type=submit]")
    page.wait_for_load_state()
    assert "1 revoked" in page.inner_text(".messagelist")
    shots(page, "07-sessions-after-revoke")

    # The API refuses the session's next request.
    refused = _process(server, bearer)
    assert refused.status_code == 403 and refused.json()["reason_codes"] == ["SESSION_REVOKED"]

    # The revocation is in the audit browser, with the console user as actor.
    page.goto(server.url + "/console/audit/auditrecord/?status=SUCCESS")
    table = page.inner_text("#result_list")
    revocation = [line for line in table.splitlines() if "revoke_session" in line]
    assert revocation and "console:sam" in revocation[0], table
    shots(page, "08-audit-revocation")

    page.goto(server.url + "/console/audit/auditrecord/dashboard/")
    assert page.locator("#chart-decisions svg rect").count() > 24
    shots(page, "09-dashboard")
    page.goto(server.url + "/console/audit/auditrecord/chain/")
    page.click("#verify-form input[type=submit]")
    page.wait_for_load_state()
    assert "queued" in page.inner_text(".messagelist")
    # The worker verifies in the background; the page refreshes itself until it is done.
    page.locator("#verify-active").wait_for(state="detached", timeout=60_000)
    assert "OK" in page.inner_text("#verify-result")
    assert "console:sam" in page.inner_text("#verify-time")
    assert "tree size" in page.inner_text("#chain-checkpoint")
    if server.database_url.startswith("postgres"):  # the batched write path's intake
        assert "record(s)" in page.inner_text("#chain-intake")
    else:
        assert page.locator("#chain-intake").count() == 0
    shots(page, "10-chain-status")
    page.goto(server.url + "/console/sessions_app/session/")
    page.goto(server.url + "/console/governance/policyprofile/")
    shots(page, "11-policy-profiles")

    assert not problems, problems


def test_the_audit_browser_offers_no_add_change_or_delete_to_a_superuser(server: AppServer, browser: Any) -> None:
    assert _process(server, {"X-API-Key": API_KEY}).status_code == 200
    problems: list[str] = []
    page = _new_page(browser, problems)
    _login(page, server, "root", ROOT_PASSWORD)
    page.goto(server.url + "/console/audit/auditrecord/")
    assert page.locator("select[name=action]").count() == 0  # no actions, so no delete_selected
    assert page.locator("a.addlink[href$='/audit/auditrecord/add/']").count() == 0
    page.locator("#result_list tbody tr th a").first.click()
    page.wait_for_load_state()
    assert page.locator("input[name=_save], a.deletelink").count() == 0
    assert page.locator("text=Open its trace").count() == 1
    shots = Shots()
    shots(page, "12-audit-record")
    assert not problems, problems
    # From here on the refusals are expected (and on their JSON pages the browser
    # asks for /favicon.ico, a 404 too).
    for route in ("add/", "1/delete/"):
        response = page.goto(f"{server.url}/console/audit/auditrecord/{route}")
        assert response is not None and response.status == 403
    # A forged POST, with the page's own CSRF token, is refused too.
    page.goto(server.url + "/console/audit/auditrecord/1/change/")
    token = page.evaluate("document.querySelector('[name=csrfmiddlewaretoken]').value")
    for route in ("add/", "1/change/", "1/delete/"):
        status = page.evaluate(
            """async ([url, token]) => (await fetch(url, {method: 'POST', headers: {'Content-Type':
               'application/x-www-form-urlencoded'}, body: 'csrfmiddlewaretoken=' + token + '&post=yes'})).status""",
            [f"{server.url}/console/audit/auditrecord/{route}", token],
        )
        assert status == 403, route
    page.goto(server.url + "/console/audit/auditrecord/1/change/")
    assert page.locator("input[name=_save]").count() == 0


@pytest.mark.parametrize(
    ("username", "permissions", "shown", "hidden"),
    [
        ("auditor", ("audit.view_auditrecord",), ["Dashboard", "Audit browser", "Chain status"], ["Sessions"]),
        ("revoker", ("sessions_app.view_session",), ["Sessions"], ["Dashboard", "Audit browser", "Chain status"]),
        ("nobody", (), [], ["Dashboard", "Audit browser", "Chain status", "Sessions"]),
    ],
)
def test_the_index_shows_each_person_only_the_pages_they_may_open(
    server: AppServer, browser: Any, username: str, permissions: tuple[str, ...], shown: list[str], hidden: list[str]
) -> None:
    password = f"{username}-console-pw-0123456789"
    server.create_user(username, password, permissions=permissions)
    problems: list[str] = []
    page = _new_page(browser, problems)
    _login(page, server, username, password)
    console = page.locator("#console-module")
    links = console.locator("th a").all_inner_texts() if console.count() else []
    assert links == shown and not set(links) & set(hidden)
    for name in shown:  # every link offered opens
        page.goto(server.url + "/console/")
        page.click(f"#console-module a:text-is('{name}')")
        page.wait_for_load_state()
        assert page.locator("#console-error").count() == 0, name
    assert not problems, problems

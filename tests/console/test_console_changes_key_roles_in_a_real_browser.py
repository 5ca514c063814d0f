"""A role removed in the console, in a real headless Chromium against a real
gunicorn server, refuses the key's very next request on every worker; only a
user with `sessions_app.set_apikey_roles` is offered the change, and the change
is audited with the console user as actor (docs/AUTHORIZATION.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from tests.authorization.test_roles_through_gunicorn import roles_env
from tests.console.test_console_in_a_real_browser import CHROMIUM, CHROMIUM_ARGS, _login
from tests.support.appserver import AppServer

PASSWORD = "rolf-console-pw-0123456789"
VIEWER_PASSWORD = "vera-console-pw-0123456789"
NOOP = {"action": "noop"}


@pytest.fixture
def server(tmp_path: Any) -> Iterator[AppServer]:
    many = {f"VERITTA_RATE_LIMIT_{k}_PER_MIN": "100000" for k in ("KEY", "ADDRESS")}
    srv = AppServer(tmp_path / "console-roles", workers=2, env={**roles_env(), **many}).prepare()
    srv.create_user("rolf", PASSWORD, permissions=("sessions_app.view_apikey", "sessions_app.set_apikey_roles"))
    srv.create_user("vera", VIEWER_PASSWORD, permissions=("sessions_app.view_apikey",))
    srv.start()
    yield srv
    srv.stop()


def answers(server: AppServer, key: str, n: int = 24) -> set[tuple[int, str]]:
    def one(_: int) -> tuple[int, str]:
        response = server.post("/process", json=NOOP, headers={"X-API-Key": key})
        return response.status_code, (response.json().get("reason_codes") or ["OK"])[0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        return set(pool.map(one, range(n)))


def test_a_role_removed_in_the_console_refuses_the_very_next_request(server: AppServer) -> None:
    key = server.manage("sessions", "create-key", "--name", "helpdesk", "--role", "support_agent").stdout.strip()
    prefix = key.split("_")[1]
    assert answers(server, key) == {(200, "OK")}
    assert len(server.worker_pids()) == 2

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            viewer = browser.new_context().new_page()
            _login(viewer, server, "vera", VIEWER_PASSWORD)
            viewer.goto(server.url + "/console/sessions_app/apikey/")
            assert "support_agent" in viewer.locator("#result_list").inner_text()  # roles are shown
            viewer.locator(f"#result_list a:has-text('vk_{prefix}')").first.click()
            assert viewer.locator("#roles-button").count() == 0  # not offered without the permission
            forbidden = viewer.goto(viewer.url + "roles/")
            assert forbidden is not None and forbidden.status == 403

            page = browser.new_context().new_page()
            _login(page, server, "rolf", PASSWORD)
            page.goto(server.url + "/console/sessions_app/apikey/")
            page.locator(f"#result_list a:has-text('vk_{prefix}')").first.click()
            page.click("#roles-button")
            assert page.input_value("#id_roles") == "support_agent"
            page.fill("#id_roles", "")
            page.click("#roles-form input[type=submit]")
            assert "(none)" in page.locator(".messagelist").inner_text()
        finally:
            browser.close()

    assert answers(server, key) == {(403, "AUTHZ_DENIED")}
    records = [json.loads(line) for line in (server.tmp / "audit.log").read_text().splitlines()]
    changes = [r for r in records if r.get("action") == "set_api_key_roles" and r["event_type"] == "action_audit"]
    assert [r["status"] for r in changes] == ["PENDING", "SUCCESS"]
    assert all(r["actor"] == {"kind": "console", "id": "rolf"} for r in changes)
    assert changes[-1]["evidence"]["roles_before"] == ["support_agent"] and changes[-1]["evidence"]["roles"] == []

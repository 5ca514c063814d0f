"""Chain status in a real browser shows, for the newest checkpoint, which of
the witnesses VERITTA_AUDIT_WITNESSES requires have cosigned it (issue 15)."""

from __future__ import annotations

import re
from typing import Any

from audit import signed_note
from conftest import API_KEY
from tests.console.test_console_in_a_real_browser import _login, _new_page, browser  # noqa: F401 - the browser fixture
from tests.support.appserver import AppServer

SEEDS = {"witness.test/w1": b"\x05" * 32, "witness.test/w2": b"\x06" * 32}
PASSWORD = "root-console-pw-0123456789"


def test_chain_status_names_each_witness_and_whether_it_cosigned(start_app_server: Any, browser: Any) -> None:  # noqa: F811
    keys = [signed_note.cosigner_vkey(name, signed_note.public_key_from_seed(seed)) for name, seed in SEEDS.items()]
    server: AppServer = start_app_server(workers=2, env={"VERITTA_AUDIT_WITNESSES": ",".join(keys)}, prepare=True)
    server.create_user("root", PASSWORD, superuser=True)
    server.post("/process", json={"action": "test_action", "event_type": "test_event"}, headers={"X-API-Key": API_KEY})
    server.manage("audit", "sequence")
    server.manage("audit", "checkpoint")
    checkpoint = server.get("/audit/checkpoints/latest", headers={"X-API-Key": API_KEY}).json()
    line = signed_note.cosignature_line(signed_note.note_text(checkpoint["note"]), "witness.test/w1", SEEDS["witness.test/w1"], timestamp=1764800000)
    taken = server.post(f"/audit/checkpoints/{checkpoint['tree_size']}/cosignatures", json={"cosignature": line}, headers={"X-API-Key": API_KEY})
    assert taken.status_code == 201, taken.text
    problems: list[str] = []
    page = _new_page(browser, problems)
    _login(page, server, "root", PASSWORD)
    page.goto(server.url + "/console/audit/auditrecord/chain/")
    statuses = [text.strip() for text in page.locator(".witness-status").all_inner_texts()]
    assert statuses == ["cosigned this checkpoint at 2025-12-03 22:13:20 UTC", "has not cosigned this checkpoint"]
    assert "Witness witness.test/w1:" in page.content() and "Witness witness.test/w2:" in page.content()
    page.goto(server.url + "/console/audit/checkpoint/")
    page.click(f"#result_list a:text-is('{checkpoint['tree_size']}')")
    # The click only starts the navigation: read the body once the change page is there.
    page.wait_for_url(re.compile(r"/console/audit/checkpoint/[^/]+/change/$"))
    page.wait_for_load_state()
    assert "witness.test/w1: cosigned 2025-12-03 22:13:20 UTC; witness.test/w2: not cosigned" in page.inner_text("body")
    assert problems == []

"""Console logins: failures are audited (never the password) and, after five
within the window for one username or one client address, further attempts
are refused without checking the password."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from conftest import CONSOLE_PASSWORD
from tests.support.campaign import LEAKS

LOGIN = "/console/login/"


def _login(client: Client, username: str, password: str, address: str = "10.0.0.1") -> Any:
    LEAKS.add_console_username(username)  # must never be stored as typed: the leak scan looks for it
    return client.post(LOGIN, {"username": username, "password": password, "next": "/console/"}, REMOTE_ADDR=address)


def _console_logins(audit_records: Any) -> list[dict[str, Any]]:
    return [r for r in audit_records() if r["endpoint"] == "POST /console/login/"]


@pytest.fixture
def alice(console_user: Any, api: Any) -> Any:
    return console_user("alice", permissions=("audit.view_auditrecord",))


def test_a_failed_login_is_a_deny_record_with_the_typed_username_and_no_password(alice: Any, audit_records: Any) -> None:
    response = _login(Client(), "alice", "wrong-password-xyz")
    assert response.status_code == 200 and "Please enter the correct username" in response.content.decode()
    (record,) = _console_logins(audit_records)
    assert record["decision"] == "DENY" and record["reason_codes"] == ["CONSOLE_LOGIN_FAILED"]
    assert record["actor"] == {"kind": "console", "id": "alice"}
    assert "wrong-password-xyz" not in json.dumps(audit_records())


def test_a_username_no_user_has_is_recorded_as_a_keyed_digest(alice: Any, audit_records: Any) -> None:
    _login(Client(), "m" * 300, "nope")
    _login(Client(), "hunter2-typed-as-name", "nope")
    records = _console_logins(audit_records)
    assert [r["reason_codes"] for r in records] == [["CONSOLE_LOGIN_FAILED"]] * 2  # too long a name is no login either
    ids = [r["actor"]["id"] for r in records]
    assert all(re.fullmatch(r"unknown_[0-9a-f]{16}", i) for i in ids) and ids[0] != ids[1]
    assert "hunter2" not in json.dumps(audit_records())


def test_a_good_login_is_an_allow_record_and_reaches_the_console(alice: Any, audit_records: Any) -> None:
    client = Client()
    response = _login(client, "alice", CONSOLE_PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/console/"
    (record,) = _console_logins(audit_records)
    assert record["decision"] == "ALLOW" and record["actor"]["id"] == "alice"
    assert client.get("/console/audit/auditrecord/").status_code == 200


def test_five_failures_for_a_username_lock_it_even_with_the_right_password(alice: Any, audit_records: Any) -> None:
    for i in range(5):
        _login(Client(), "alice", f"guess-{i}", address=f"10.0.1.{i}")  # a different address each time
    refused = _login(Client(), "alice", CONSOLE_PASSWORD, address="10.0.2.1")
    assert refused.status_code == 200 and "Too many failed logins" in refused.content.decode()
    assert "_auth_user_id" not in refused.wsgi_request.session
    records = _console_logins(audit_records)
    assert [r["reason_codes"][0] for r in records] == ["CONSOLE_LOGIN_FAILED"] * 5 + ["RATE_LIMIT_EXCEEDED"]
    # Another user is not locked by alice's failures from other addresses.
    assert _login(Client(), "bob", "whatever", address="10.0.3.1").status_code == 200
    assert "Too many" not in _login(Client(), "bob", "whatever", address="10.0.3.1").content.decode()


def test_five_failures_from_one_address_lock_that_address_for_every_username(alice: Any) -> None:
    for i in range(5):
        _login(Client(), f"user{i}", "guess", address="10.9.9.9")
    assert "Too many failed logins" in _login(Client(), "alice", CONSOLE_PASSWORD, address="10.9.9.9").content.decode()
    assert _login(Client(), "alice", CONSOLE_PASSWORD, address="10.9.9.10").status_code == 302


def test_the_lock_lifts_when_the_failures_leave_the_window(alice: Any, settings: Any) -> None:
    from datetime import timedelta

    from sessions_app.models import LoginFailure

    for i in range(5):
        _login(Client(), "alice", f"guess-{i}")
    assert "Too many" in _login(Client(), "alice", CONSOLE_PASSWORD).content.decode()
    LoginFailure.objects.update(at=LoginFailure.objects.first().at - timedelta(seconds=settings.VERITTA_CONSOLE_LOGIN_WINDOW_S + 1))
    assert _login(Client(), "alice", CONSOLE_PASSWORD).status_code == 302

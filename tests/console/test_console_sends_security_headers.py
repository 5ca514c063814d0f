"""The console's pages send a strict CSP, X-Frame-Options and Referrer-Policy,
and contain no inline script that such a CSP would block; its errors stay in
the JSON envelope while its normal pages (200/302) are left untouched."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client


@pytest.mark.parametrize(
    "page", ["/console/login/", "/console/", "/console/audit/auditrecord/", "/console/audit/auditrecord/dashboard/"]
)
def test_console_pages_carry_the_security_headers_and_no_inline_script(console: Any, page: str) -> None:
    client = Client() if page == "/console/login/" else console  # a logged-in user is sent on
    response = client.get(page)
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    # Every <script> has a src, or is inert JSON data.
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag, tag
    assert not re.search(r"\son[a-z]+=\"", html), "inline event handler"


def test_a_console_error_is_the_json_envelope(console: Any) -> None:
    response = console.get("/console/audit/auditrecord/999999/change/")
    # The admin redirects a missing object to the list with a message: not an error.
    assert response.status_code == 302
    response = console.get("/console/no-such-page/")
    assert response.status_code == 404 and response.json()["reason_codes"] == ["NOT_FOUND"]


def test_the_login_redirect_is_untouched(api: Any) -> None:
    response = api.get("/console/")
    assert response.status_code == 302 and response["Location"] == "/console/login/?next=/console/"

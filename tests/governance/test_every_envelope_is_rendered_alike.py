"""Every error envelope is rendered the same way, compact JSON, whichever part
of the stack produced it: a DRF view, Django's handler404, or the middleware
that replaces a framework's page."""

from __future__ import annotations

import json

from django.test import Client


def _compact(body: bytes) -> bool:
    return body == json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode()


def test_drf_handler404_and_middleware_envelopes_are_all_compact(api) -> None:
    answers = {
        "DRF 403": api.process({"action": "process"}, key=None),
        "DRF 405": api.get("/process"),
        "handler404": api.get("/no/such/path"),
        "middleware 403 (CSRF)": Client(enforce_csrf_checks=True).post("/console/login/", {"username": "a"}),
    }
    assert {name: r.status_code for name, r in answers.items()} == {
        "DRF 403": 403, "DRF 405": 405, "handler404": 404, "middleware 403 (CSRF)": 403,
    }  # fmt: skip
    assert [name for name, r in answers.items() if not _compact(r.content)] == []

"""The admin API's own gates: X-ADMIN-KEY present and right (constant time),
configured at request time, its own rate limit; every admin request leaves
one decision record with profile "admin", its endpoint and the admin actor."""

from __future__ import annotations

import pytest

from conftest import ADMIN_KEY

ENDPOINTS = [
    ("get", "/admin/health"),
    ("get", "/admin/sessions/sess_x"),
    ("post", "/admin/sessions/revoke"),
    ("get", "/admin/audit/summary"),
    ("get", "/admin/audit/events"),
    ("get", "/admin/audit/traces/00000000-0000-4000-8000-000000000000"),
    ("get", "/admin/audit/checkpoints/latest"),
]


def call(admin, method: str, path: str, **kw):
    if method == "post":
        return admin.admin_post(path, {"session_id": "sess_x"}, **kw)
    return admin.admin_get(path, **kw)


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize(
    ("key", "code"), [(None, "ADMIN_KEY_MISSING"), ("wrong", "ADMIN_KEY_INVALID"), (ADMIN_KEY[:-1], "ADMIN_KEY_INVALID")]
)
def test_every_admin_endpoint_refuses_a_missing_or_wrong_key_and_audits_it(admin, audit_records, method, path, key, code):
    response = call(admin, method, path, key=key)
    assert response.status_code == 403 and response.json()["reason_codes"] == [code]
    (decision,) = audit_records(response.json()["trace_id"])
    assert decision["decision"] == "DENY" and decision["gate"] == ("G0" if key is None else "G2")
    assert decision["profile_id"] == "admin" and len(decision["profile_hash"]) == 64
    assert decision["endpoint"].startswith(method.upper() + " /admin/")
    assert decision["actor"] == {"kind": "anonymous", "id": None}


def test_admin_decision_records_carry_the_admin_profile_hash_endpoint_and_actor(admin, audit_records):
    from governance.selectors import profile_active

    response = admin.admin_get("/admin/health")
    assert response.status_code == 200
    (decision,) = audit_records(response["X-Trace-ID"])
    assert decision["decision"] == "ALLOW" and decision["endpoint"] == "GET /admin/health"
    assert decision["profile_id"] == "admin" and decision["profile_hash"] == profile_active("admin").sha256
    assert decision["actor"] == {"kind": "admin_key", "id": "admin"}
    assert decision["matched_rules"][:3] == ["P0:size_within_limit", "G0:admin_key_present", "G2:admin_key_valid"]


def test_admin_key_unset_at_request_time_denies_500_and_is_audited(admin, audit_records, settings):
    settings.VERITTA_ADMIN_API_KEY = ""
    response = admin.admin_get("/admin/health", key="")  # an empty header is a missing one
    assert response.json()["reason_codes"] == ["ADMIN_KEY_MISSING"]
    response = admin.admin_get("/admin/health", key="anything")
    assert response.status_code == 500 and response.json()["reason_codes"] == ["SERVER_MISCONFIGURED"]
    (decision,) = audit_records(response.json()["trace_id"])
    assert decision["evidence"] == {"setting": "VERITTA_ADMIN_API_KEY"}


def test_admin_rate_limit_is_its_own(admin, settings, audit_records):
    settings.VERITTA_ADMIN_RATE_LIMIT_PER_MIN = 2
    answers = [admin.admin_get("/admin/health") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2]["RateLimit-Policy"] == '"admin";q=2;w=60' and int(answers[2]["Retry-After"]) >= 1
    assert audit_records(answers[2].json()["trace_id"])[0]["gate"] == "G10"


def test_wrong_admin_keys_count_against_the_address(admin, settings):
    settings.VERITTA_RATE_LIMIT_ADDRESS_PER_MIN = 2
    codes = [admin.admin_get("/admin/health", key=f"guess{i}").json()["reason_codes"][0] for i in range(3)]
    assert codes == ["ADMIN_KEY_INVALID", "ADMIN_KEY_INVALID", "RATE_LIMIT_EXCEEDED"]


def test_admin_answers_are_not_cached(admin):
    assert admin.admin_get("/admin/health")["Cache-Control"] == "no-store"

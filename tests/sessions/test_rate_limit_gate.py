"""Gate G10 in one process: per key, per session and per client address, with
the IETF RateLimit headers; failed credentials count against the address;
an unreachable store refuses instead of waving requests through."""

from __future__ import annotations

import re
import time

import pytest

from conftest import API_KEY, bearer
from tests.support.servers import RedisServer, free_port

SMOKE = {"action": "test_action", "event_type": "test_event"}


def test_key_limit_answers_429_with_retry_after_and_ratelimit_headers(api, settings, audit_records):
    settings.VERITTA_RATE_LIMIT_KEY_PER_MIN = 3
    answers = [api.process(SMOKE) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[2]["RateLimit"].startswith('"key";r=0;t=')
    refused = answers[3]
    assert refused.json()["reason_codes"] == ["RATE_LIMIT_EXCEEDED"]
    assert refused["RateLimit-Policy"] == '"key";q=3;w=60'
    match = re.fullmatch(r'"key";r=0;t=(\d+)', refused["RateLimit"])
    assert match and 1 <= int(match.group(1)) <= 60
    assert refused["Retry-After"] == match.group(1)
    (decision,) = audit_records(refused.json()["trace_id"])
    assert decision["gate"] == "G10" and decision["evidence"]["scope"] == "key" and decision["evidence"]["limit"] == 3


@pytest.mark.parametrize(
    "payload",
    [
        {"action": "Not An Action"},  # P2 would deny
        {"action": "test_action", "is_admin": True},  # the profile would deny
        {"action": "test_action", "action_version": "9.0.0"},  # the registry would deny
    ],
)
def test_limit_is_decided_before_the_gates_after_it(api, settings, audit_records, payload):
    """P2, profile and registry are evaluated ahead of G10's transaction, but
    the answer and the record are G10's, as if they had never run."""
    settings.VERITTA_RATE_LIMIT_KEY_PER_MIN = 1
    assert api.process(SMOKE).status_code == 200
    refused = api.process(payload)
    assert refused.status_code == 429 and refused.json()["reason_codes"] == ["RATE_LIMIT_EXCEEDED"]
    (decision,) = audit_records(refused.json()["trace_id"])
    assert decision["gate"] == "G10" and decision["action"] is None
    assert decision["matched_rules"] == ["P0:size_within_limit", "G0:credential_present", "G2:api_key_valid"]


def test_session_limit_is_counted_per_session(api, settings, open_session):
    settings.VERITTA_RATE_LIMIT_SESSION_PER_MIN = 2
    one, two = open_session("u_1"), open_session("u_2")
    codes = [api.process(SMOKE, key=None, **bearer(one)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert api.process(SMOKE, key=None, **bearer(two)).status_code == 200
    refused = api.process(SMOKE, key=None, **bearer(one))
    assert refused["RateLimit-Policy"] == '"session";q=2;w=60'


def test_failed_credentials_count_against_the_address_and_then_throttle_it(api, settings, audit_records):
    settings.VERITTA_RATE_LIMIT_ADDRESS_PER_MIN = 3
    codes = [api.process(SMOKE, key=f"guess-{i}").json()["reason_codes"][0] for i in range(5)]
    assert codes == ["GATE_DENIED_INVALID_API_KEY"] * 3 + ["RATE_LIMIT_EXCEEDED"] * 2
    throttled = api.process(SMOKE, key="guess-again")
    assert throttled.status_code == 429 and throttled["RateLimit-Policy"] == '"address";q=3;w=60'
    (decision,) = audit_records(throttled.json()["trace_id"])
    assert decision["gate"] == "G10"
    assert decision["evidence"]["credential_denied"] == {"gate": "G2", "code": "GATE_DENIED_INVALID_API_KEY"}
    # The address is now over its limit for everyone sending from it, valid keys included.
    assert api.process(SMOKE).status_code == 429


@pytest.mark.parametrize(
    ("method", "path", "credential", "denied"),
    [
        ("post", "/sessions", {"HTTP_X_API_KEY": "vk_guess"}, ("G2", "GATE_DENIED_INVALID_API_KEY")),
        ("get", "/admin/sessions", {"HTTP_X_ADMIN_KEY": "guess"}, ("G2", "ADMIN_KEY_INVALID")),
        ("get", "/audit/proofs/inclusion/seq/1", {"HTTP_X_API_KEY": "vk_guess"}, ("G2", "GATE_DENIED_INVALID_API_KEY")),
    ],
    ids=["POST /sessions", "admin API", "proof reader"],
)
def test_every_endpoint_counts_a_failed_credential_against_the_address(
    api, settings, audit_records, method, path, credential, denied
):
    """Not only /process: every gate chain of the edge (edge.sessions_flows.
    gated_input) counts a credential denial against the client address, so
    guessing keys is throttled wherever a key is checked."""
    settings.VERITTA_RATE_LIMIT_ADDRESS_PER_MIN = 2
    answers = [getattr(api, method)(path, content_type="application/json", **credential) for _ in range(3)]
    assert [a.json()["reason_codes"] for a in answers] == [[denied[1]], [denied[1]], ["RATE_LIMIT_EXCEEDED"]]
    (decision,) = audit_records(answers[2].json()["trace_id"])
    assert decision["gate"] == "G10"
    assert decision["evidence"]["credential_denied"] == {"gate": denied[0], "code": denied[1]}


def test_missing_and_bad_session_credentials_also_count_against_the_address(api, settings, open_session):
    settings.VERITTA_RATE_LIMIT_ADDRESS_PER_MIN = 3
    session = open_session()  # POST /sessions counts too: one
    assert api.process(SMOKE, key=None).json()["reason_codes"] == ["MISSING_API_KEY"]
    assert api.process(SMOKE, key=None, **bearer(session, token="vs_x")).json()["reason_codes"] == ["SESSION_INVALID"]
    assert api.process(SMOKE, key=None, **bearer(session, token="vs_y")).json()["reason_codes"] == [
        "RATE_LIMIT_EXCEEDED"
    ]


def test_counters_never_hold_an_address_key_or_token(api, open_session):
    from sessions_app.models import RateCounter, RateLimitState

    session = open_session()
    api.process(SMOKE, key=None, **bearer(session))
    api.process(SMOKE, key="a-wrong-key")
    buckets = " ".join(
        [
            *RateCounter.objects.values_list("bucket", flat=True),
            *RateLimitState.objects.values_list("bucket", flat=True),
        ]
    )
    assert "127.0.0.1" not in buckets and API_KEY not in buckets and session["token"] not in buckets
    assert re.search(r"address:ip_[0-9a-f]{16}", buckets)
    assert f"session:{session['session_id']}" in buckets and "key:bootstrap" in buckets


def _alert_counts_span_the_minute_before(store) -> None:
    assert [store.increment(["key:x"], 100) for _ in range(3)] == [[1], [2], [3]]
    # Several buckets in one operation, each counted once, in the order asked.
    assert store.increment(["address:y", "key:x"], 100) == [1, 4]
    # A burst straddling a minute boundary is counted whole: the next minute
    # reads this minute and the one before (the alerts' "within a minute").
    assert store.increment(["key:x", "address:y"], 101) == [5, 2]
    assert store.increment(["key:x"], 102) == [2]  # minute 100 no longer counts
    assert store.increment(["key:x"], 104) == [1]  # nothing in 103: it starts again


def test_database_counter_is_one_atomic_upsert_read_with_the_minute_before(db):
    from sessions_app.models import RateCounter
    from sessions_app.ratelimit import DatabaseStore

    _alert_counts_span_the_minute_before(DatabaseStore())
    assert not RateCounter.objects.filter(minute__lt=103).exists()  # purged as minutes pass


def test_redis_counter_reads_the_minute_before_and_expires(settings):
    import redis

    from sessions_app.ratelimit import RedisStore

    with RedisServer() as redis_server:
        _alert_counts_span_the_minute_before(RedisStore(redis_server.url))
        client = redis.Redis.from_url(redis_server.url)
        ttl = client.pttl("veritta:rl:key:x:104")
        assert 110_000 < ttl <= 120_000  # two windows: the next minute still reads it


def test_redis_store_limits_and_expires_its_buckets(api, settings):
    with RedisServer() as redis_server:
        settings.VERITTA_RATE_LIMIT_URL = redis_server.url
        settings.VERITTA_RATE_LIMIT_KEY_PER_MIN = 2
        assert [api.process(SMOKE).status_code for _ in range(3)] == [200, 200, 429]
        import redis

        client = redis.Redis.from_url(redis_server.url)
        keys = client.keys("veritta:gcra:key:*")
        # The key lives until its TAT: two requests of a 2-per-minute limit, 60 s.
        assert len(keys) == 1 and 50_000 < client.pttl(keys[0]) <= 60_001


def test_unreachable_store_refuses_with_503_never_a_free_pass(api, settings, audit_records):
    settings.VERITTA_RATE_LIMIT_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = api.process(SMOKE)
    assert response.status_code == 503 and response.json()["reason_codes"] == ["RATE_LIMIT_UNAVAILABLE"]
    (decision,) = audit_records(response.json()["trace_id"])
    assert decision["gate"] == "G10" and decision["evidence"]["store"] == "redis"


@pytest.mark.parametrize("scope", ["key", "session", "address"])
def test_each_limit_has_its_own_setting(api, settings, open_session, scope):
    headers = bearer(open_session()) if scope == "session" else {}
    setattr(settings, f"VERITTA_RATE_LIMIT_{scope.upper()}_PER_MIN", 1)
    key = None if scope == "session" else API_KEY
    assert api.process(SMOKE, key=key, **headers).status_code == 200
    refused = api.process(SMOKE, key=key, **headers)
    assert refused.status_code == 429 and refused["RateLimit-Policy"] == f'"{scope}";q=1;w=60'


# --- sliding limits (GCRA) ---------------------------------------------------------------

MINUTE_US = 60_000_000


def test_no_double_burst_across_a_minute_boundary(db):
    """Fixed windows let 2 L through around a boundary; the sliding limit lets
    one more through only after T = 60 s / L (times given to the store)."""
    from sessions_app.ratelimit import DatabaseStore, interval_us

    store, t = DatabaseStore(), interval_us(3)  # 3 per minute: T = 20 s
    start = 1_000 * MINUTE_US - 100_000  # 0.1 s before a minute boundary
    burst = [store.admit([("key:b", t)], start)["key:b"][0] for _ in range(4)]
    assert burst == [True, True, True, False]
    # 0.2 s later, in the next minute: a fixed window would start again at 0.
    assert [store.admit([("key:b", t)], start + 200_000)["key:b"][0] for _ in range(3)] == [False] * 3
    # One more once T has passed, then refused again.
    assert store.admit([("key:b", t)], start + t)["key:b"][0] is True
    assert store.admit([("key:b", t)], start + t)["key:b"][0] is False


def test_a_refused_bucket_keeps_its_state_and_the_others_count(db):
    from sessions_app.ratelimit import DatabaseStore, interval_us

    store = DatabaseStore()
    now = 2_000 * MINUTE_US
    assert store.admit([("key:k", interval_us(1))], now)["key:k"][0]
    answers = store.admit([("key:k", interval_us(1)), ("address:a", interval_us(10))], now)
    assert answers["key:k"] == (False, now + MINUTE_US)  # unchanged: due again in 60 s
    assert answers["address:a"] == (True, now + interval_us(10))


def test_retry_after_says_when_the_next_request_passes(api, settings):
    settings.VERITTA_RATE_LIMIT_KEY_PER_MIN = 2  # T = 30 s
    assert [api.process(SMOKE).status_code for _ in range(2)] == [200, 200]
    refused = api.process(SMOKE)
    assert refused.status_code == 429 and 28 <= int(refused["Retry-After"]) <= 30
    assert refused.json()["details"]["retry_after_s"] == int(refused["Retry-After"])


def test_redis_limit_slides_too(api, settings):
    with RedisServer() as redis_server:
        settings.VERITTA_RATE_LIMIT_URL = redis_server.url
        settings.VERITTA_RATE_LIMIT_KEY_PER_MIN = 60  # T = 1 s
        started, admitted = time.monotonic(), 0
        while api.process(SMOKE).status_code == 200 and admitted < 100:
            admitted += 1
        # A burst of 60, plus one per second the burst itself took.
        assert 60 <= admitted <= 60 + int(time.monotonic() - started)
        refused = api.process(SMOKE)
        assert refused.status_code == 429 and refused["Retry-After"] == "1"
        time.sleep(1.1)
        assert api.process(SMOKE).status_code == 200


def test_bearer_requests_also_count_against_the_key_that_opened_the_session(api, settings, open_session):
    settings.VERITTA_RATE_LIMIT_KEY_PER_MIN = 4
    one, two = open_session("u_1"), open_session("u_2")  # POST /sessions with the key: two
    assert api.process(SMOKE, key=None, **bearer(one)).status_code == 200
    assert api.process(SMOKE, key=None, **bearer(two)).status_code == 200
    # The key's budget is spent: more sessions do not multiply it.
    refused = api.process(SMOKE, key=None, **bearer(one))
    assert refused.status_code == 429 and refused["RateLimit-Policy"] == '"key";q=4;w=60'


def test_a_limit_beyond_one_a_microsecond_still_answers(api, settings):
    settings.VERITTA_RATE_LIMIT_KEY_PER_MIN = 1_000_000_000  # T would round to 0
    answer = api.process(SMOKE)
    assert answer.status_code == 200 and answer["RateLimit-Policy"].startswith('"address"')


_REFUSING_TRIGGER = {
    "postgresql": [
        "CREATE FUNCTION test_refuse_limits() RETURNS trigger AS $$"
        " BEGIN RAISE EXCEPTION 'the store is down'; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER test_refuse_limits BEFORE INSERT OR UPDATE ON sessions_app_ratelimitstate"
        " FOR EACH ROW EXECUTE FUNCTION test_refuse_limits()",
    ],
    "sqlite": [
        "CREATE TRIGGER test_refuse_limits BEFORE INSERT ON sessions_app_ratelimitstate"
        " BEGIN SELECT RAISE(ABORT, 'the store is down'); END",
    ],
}
_LIFTED = {
    "postgresql": [
        "DROP TRIGGER test_refuse_limits ON sessions_app_ratelimitstate",
        "DROP FUNCTION test_refuse_limits()",
    ],
    "sqlite": ["DROP TRIGGER test_refuse_limits"],
}


def test_a_failing_database_store_still_gets_its_deny_written(api, audit_records):
    """The store's statement fails inside the decision transaction (a real
    database error, from a trigger): its savepoint is rolled back, so the
    transaction goes on to commit the G10 DENY, and the answer is 503. Lifted,
    the next request passes and the chain holds both."""
    from django.db import connection

    with connection.cursor() as cursor:
        for statement in _REFUSING_TRIGGER[connection.vendor]:
            cursor.execute(statement)
    refused = api.process(SMOKE)
    assert refused.status_code == 503 and refused.json()["reason_codes"] == ["RATE_LIMIT_UNAVAILABLE"]
    (decision,) = audit_records(refused.json()["trace_id"])
    assert decision["gate"] == "G10" and decision["evidence"]["store"] == "database"
    with connection.cursor() as cursor:
        for statement in _LIFTED[connection.vendor]:
            cursor.execute(statement)
    passed = api.process(SMOKE)
    assert passed.status_code == 200
    assert [r["decision"] for r in audit_records(passed.json()["trace_id"])][:1] == ["ALLOW"]

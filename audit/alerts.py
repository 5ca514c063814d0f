"""Alerts: the one place an operator is told that something needs a human.

Raised for
    slo_breach          `audit slo` found an objective missed (subject: the SLO)
    verify_failed       `audit verify` found a problem in the chain (subject: "audit_chain")
    audit_sink_failure  the chain writer could not append (subject: the exception class)
    auth_incident       VERITTA_ALERT_AUTHN_FAILURES_PER_MIN authentication failures within
                        one minute from one client address digest, or against one key
                        (subject: "client:<digest>" or "<actor kind>:<id>")
    witness_refused     a witness refused to cosign a checkpoint: a fork, a rollback or a
                        consistency proof that does not verify (subject: "witness:<name>")

An alert is always logged (logger `veritta.alerts`, WARNING) and, when
VERITTA_ALERT_WEBHOOK_URL is set, POSTed there as JSON with short timeouts
and bounded retries, signed as Standard Webhooks specifies with
VERITTA_ALERT_WEBHOOK_SECRET (docs/OPERATIONS.md "Receiving alerts"). It is audited like any action: a PENDING `action_audit`
record (action "alert", input_digest = digest of the JSON sent) before
delivery, then SUCCESS or FAILED. It carries kinds, names, counts and
digests only: never a secret, an address or a payload value.

Deduplicated: one alert per (kind, subject) within VERITTA_ALERT_DEDUP_S of the
last one, across every worker process and app server (an atomic claim in
G10's shared table). Requests never wait for delivery: it runs in a
background thread; commands deliver before they exit.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from standardwebhooks import Webhook

from audit.hooks import Hook
from veritta_site.canonical import digest_of
from veritta_site.checks import webhook_secret_problem, webhook_url_problem
from veritta_site.timestamps import utc_timestamp

logger = logging.getLogger("veritta.alerts")

KINDS = (
    "slo_breach",
    "verify_failed",
    "audit_sink_failure",
    "auth_incident",
    "audit_integration_lag",
    "rate_limit_spike",
    "executor_timeouts",
    "witness_refused",
    "approval_waiting",
    "approval_expired",
)
ALERT_ACTOR = {"kind": "system", "id": "alerts"}
RETRY_BACKOFF_S = 0.5


@dataclass(frozen=True)
class Alert:
    kind: str
    subject: str
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)  # counts, codes, names: never values
    alert_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    ts_utc: str = field(default_factory=utc_timestamp)
    service: str = "veritta"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- deduplication ----------------------------------------------------------------

_claimed: dict[tuple[str, str], int] = {}  # (kind, subject) -> when this process's claim ends (µs)
_claimed_lock = threading.Lock()

# The claims live in G10's table of GCRA states (sessions_app.RateLimitState):
# bucket "alert:<kind>:<subject>", tat_us = when the claim ends. One conditional
# upsert claims iff there is no claim or it has ended, atomically for every
# process, and returns a row only when it claimed. A claim whose end has
# passed is the same as none (G10's purge drops it).
_CLAIM = (
    "INSERT INTO sessions_app_ratelimitstate (bucket, tat_us, interval_us, seen_us) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (bucket) DO UPDATE SET tat_us = excluded.tat_us, interval_us = excluded.interval_us,"
    " seen_us = excluded.seen_us WHERE sessions_app_ratelimitstate.tat_us <= excluded.seen_us RETURNING tat_us"
)
_CLAIM_STANDING = "SELECT tat_us FROM sessions_app_ratelimitstate WHERE bucket = %s"


def _first_in_period(kind: str, subject: str) -> bool:
    """True for exactly one caller per (kind, subject) within any
    VERITTA_ALERT_DEDUP_S, in any process: the period runs from the alert
    raised, so no clock boundary lets two through a second apart."""
    period_us = max(1, settings.VERITTA_ALERT_DEDUP_S) * 1_000_000
    now_us = time.time_ns() // 1000
    with _claimed_lock:
        if _claimed.get((kind, subject), 0) > now_us:
            return False
        _claimed[(kind, subject)] = now_us + period_us
    bucket = f"alert:{kind}:{subject}"
    if len(bucket) > 80:
        bucket = "alert:" + digest_of({"kind": kind, "subject": subject})[:64]
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_CLAIM, [bucket, now_us + period_us, period_us, now_us])
            if cursor.fetchone() is not None:
                return True
            cursor.execute(_CLAIM_STANDING, [bucket])
            standing = cursor.fetchone()
    except DatabaseError as exc:
        # The database is down (perhaps the very thing to alert about): this
        # process's own claim stands, so the alert still goes out, once per process.
        logger.warning("alert claim unavailable", extra={"exc_class": type(exc).__name__})
        return True
    if standing is not None:  # another process's claim: this one waits as long as it stands
        with _claimed_lock:
            _claimed[(kind, subject)] = int(standing[0])
    return False


# --- raising and delivering ------------------------------------------------------------


def alert_raise(
    *, kind: str, subject: str, summary: str, detail: dict[str, Any] | None = None, background: bool = True
) -> Alert | None:
    """Raise an alert unless one of this (kind, subject) went out in this period.

    Returns the alert, or None if it was a duplicate. With background=False
    (commands) delivery is done before returning."""
    if kind not in KINDS:
        raise ValueError(f"unknown alert kind: {kind}")
    if not _first_in_period(kind, subject):
        return None
    alert = Alert(kind=kind, subject=subject, summary=summary, detail=dict(detail or {}))
    logger.warning(
        "alert: %s", summary, extra={"alert_id": alert.alert_id, "alert_kind": kind, "alert_subject": subject}
    )
    if background:
        thread = threading.Thread(target=_deliver_and_close, args=(alert,), name="veritta-alert", daemon=True)
        # At once outside a transaction; inside one, only if it commits: an
        # alert about work that was rolled back must not outlive it.
        transaction.on_commit(thread.start)
    else:
        alert_deliver(alert)
    return alert


def _deliver_and_close(alert: Alert) -> None:
    try:
        alert_deliver(alert)
    finally:
        connection.close()  # this thread's own database connection


def alert_deliver(alert: Alert) -> bool:
    """Audit (PENDING), POST to the webhook if one is set, audit the outcome.
    Returns True if the alert reached the webhook (or there is none)."""
    body = json.dumps(alert.as_dict(), sort_keys=True).encode()
    started = time.monotonic()
    records = _AlertRecords(alert)
    records.pending()
    url = settings.VERITTA_ALERT_WEBHOOK_URL
    attempts, delivered = 0, True
    if url:
        delivered = False
        most = max(1, settings.VERITTA_ALERT_WEBHOOK_ATTEMPTS)
        for attempts in range(1, most + 1):
            if _post(url, body, alert.alert_id):
                delivered = True
                break
            if attempts < most:
                time.sleep(RETRY_BACKOFF_S * 2 ** (attempts - 1))
    if not delivered:
        logger.error("alert not delivered to the webhook", extra={"alert_id": alert.alert_id, "attempts": attempts})
    records.end(delivered=delivered, attempts=attempts, duration_us=int((time.monotonic() - started) * 1_000_000))
    return delivered


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx from the webhook is an answer (a failed delivery), never a hop:
    the alert goes only where the operator configured it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def signed_headers(message_id: str, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers: the receiver recomputes the HMAC-SHA256 of
    "id.timestamp.body" with the shared secret, refuses a stale timestamp and
    drops an id it has seen (a retry of one alert keeps its id)."""
    now = datetime.now(tz=UTC)
    signature = Webhook(settings.VERITTA_ALERT_WEBHOOK_SECRET).sign(msg_id=message_id, timestamp=now, data=body)
    return {"webhook-id": message_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}


def _post(url: str, body: bytes, message_id: str) -> bool:
    problem = webhook_url_problem(url) or webhook_secret_problem(settings.VERITTA_ALERT_WEBHOOK_SECRET)
    if problem:  # checked at start too; fail closed if it was skipped
        logger.warning("alert webhook refused", extra={"problem": problem})
        return False
    headers = {"Content-Type": "application/json", **signed_headers(message_id, body)}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with _OPENER.open(request, timeout=settings.VERITTA_ALERT_WEBHOOK_TIMEOUT_S) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError) as exc:
        logger.warning("alert webhook attempt failed", extra={"exc_class": type(exc).__name__})
        return False


class _AlertRecords:
    """The alert's action records, written through the chain writer."""

    def __init__(self, alert: Alert) -> None:
        from audit.profile_hashes import profile_hash_of

        self.alert = alert
        self.evidence = {"kind": alert.kind, "subject": alert.subject}
        self.common = {
            "event_type": "action_audit",
            "trace_id": alert.alert_id,
            "endpoint": "alert",
            "actor": dict(ALERT_ACTOR),
            "input_digest": digest_of(alert.as_dict()),
            "digest_kind": "json",
            "profile_id": settings.VERITTA_POLICY_PROFILE,
            "profile_hash": profile_hash_of(settings.VERITTA_POLICY_PROFILE),
            "action": "alert",
            "executor_id": "veritta_site.alerts",  # a recorded value: kept when the module moved
            "executor_version": "1.0.0",
        }
        self.written = False

    def pending(self) -> None:
        self.written = self._append(status="PENDING", reason_codes=["EXECUTION_ATTEMPT"], evidence=self.evidence)

    def end(self, *, delivered: bool, attempts: int, duration_us: int) -> None:
        if not self.written:
            return  # no PENDING record, so no terminal one: the log line stands alone
        evidence = {**self.evidence, "webhook": bool(settings.VERITTA_ALERT_WEBHOOK_URL), "attempts": attempts}
        self._append(status="SUCCESS" if delivered else "FAILED", evidence=evidence, duration_us=duration_us)

    def _append(self, **fields: Any) -> bool:
        from audit.chain import AuditSinkError, chain_append
        from audit.records import new_record

        try:
            chain_append([new_record(**self.common, **fields)])
            return True
        except (AuditSinkError, DatabaseError) as exc:
            logger.error(
                "alert could not be audited", extra={"alert_id": self.alert.alert_id, "exc_class": type(exc).__name__}
            )
            return False


# --- what raises them ---------------------------------------------------------------


def authn_failure_observed(*, client: str | None, actor: dict[str, Any]) -> None:
    """Count one authentication failure against its client digest and, when the
    request named one, its key or session; a count at the threshold or above
    raises the incident (deduplicated: one alert per subject and period)."""
    threshold = settings.VERITTA_ALERT_AUTHN_FAILURES_PER_MIN
    subjects = [f"client:{client}" if client else "client:unknown"]
    if actor.get("id") and actor.get("kind") not in (None, "anonymous"):
        subjects.append(f"{actor['kind']}:{actor['id']}")
    for subject in subjects:
        if _count_towards(scope="authfail", subject=subject, threshold=threshold):
            alert_raise(
                kind="auth_incident",
                subject=subject,
                summary=f"{threshold} authentication failures within a minute from {subject}",
                detail={"failures": threshold, "window_s": 60},
            )


def _count_towards(*, scope: str, subject: str, threshold: int) -> bool:
    """One more event of `scope` for `subject` in the shared G10 store; True
    once `threshold` of them fell within the last minute (sessions_app.ratelimit:
    this clock minute and the one before, so no boundary splits a burst)."""
    count = _minute_count(scope=scope, ident=subject)
    return count is not None and count >= threshold


# The shared G10 store is sessions_app's, a layer above: SessionsAppConfig.ready()
# registers its counter on this hook (one event, the count within the last minute; None when
# the store does not answer). Without one the call raises: no alert is lost silently.
minute_counter: Hook[Callable[[str, str], int | None]] = Hook(
    "audit.alerts.minute_counter", provided_by="sessions_app"
)


def _minute_count(*, scope: str, ident: str) -> int | None:
    return minute_counter.provided()(scope, ident)


def rate_limited_observed() -> None:
    """A RATE_LIMIT_EXCEEDED denial: a spike of them (a client looping on
    retries, a limit set too low, an attack) raises `rate_limit_spike`."""
    threshold = settings.VERITTA_ALERT_RATE_LIMITED_PER_MIN
    if threshold > 0 and _count_towards(scope="ratelimited", subject="service", threshold=threshold):
        alert_raise(
            kind="rate_limit_spike",
            subject="service",
            summary=f"{threshold} requests refused with RATE_LIMIT_EXCEEDED within a minute",
            detail={"refused": threshold, "window_s": 60},
        )


def executor_timeout_observed(*, action: str) -> None:
    """An EXECUTOR_TIMEOUT: repeated ones (a slow dependency, a hung executor)
    raise `executor_timeouts` for that action."""
    threshold = settings.VERITTA_ALERT_EXECUTOR_TIMEOUTS_PER_MIN
    subject = f"action:{action}"
    if threshold > 0 and _count_towards(scope="exectimeout", subject=subject, threshold=threshold):
        alert_raise(
            kind="executor_timeouts",
            subject=subject,
            summary=f"{threshold} executor timeouts of {action} within a minute",
            detail={"timeouts": threshold, "window_s": 60, "timeout_s": settings.VERITTA_EXECUTOR_TIMEOUT_S},
        )


def sink_failure_observed(*, exc_class: str) -> None:
    alert_raise(
        kind="audit_sink_failure",
        subject=exc_class,
        summary=f"the audit sink refused a write ({exc_class}); requests are refused with AUDIT_SINK_FAILED",
        detail={"exc_class": exc_class},
    )


def integration_lag_observed(*, lag_s: float) -> None:
    limit = settings.VERITTA_AUDIT_MAX_MERGE_DELAY_S
    alert_raise(
        kind="audit_integration_lag",
        subject="intake",
        summary=(
            f"audit records wait {lag_s:.1f} s to enter the chain (maximum merge delay {limit:g} s);"
            f" new requests are refused with AUDIT_SINK_FAILED once the wait passes {limit / 2:g} s"
        ),
        detail={"lag_ms": int(lag_s * 1000), "max_merge_delay_s": limit},
    )

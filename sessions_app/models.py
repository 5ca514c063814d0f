"""Stored API keys, user sessions, rate-limit state and counters.

Secrets are never stored: a key or token is shown once when it is made and
only its sha256 digest is kept, next to a visible prefix/id to look it up by.
"""

from datetime import datetime

from django.db import models


class ApiKey(models.Model):
    """An API key for X-API-Key: `vk_<prefix>_<secret>`; only the digest is kept."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)  # serves: G2 lookup of a presented key by its prefix
    digest = models.CharField(max_length=64)  # sha256 hex of the whole key
    created_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Refused from this instant on; null: until revoked. Two keys of one client
    # overlap during a rotation: the new one is created, the old one given an
    # expiry (docs/DEPLOYMENT.md, "Rotating keys").
    expires_at = models.DateTimeField(null=True, blank=True)
    # Role names (docs/AUTHORIZATION.md): what the profile lets this key do.
    # Read at G2 on every request, never cached, so a change holds on the next one.
    roles = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name = "API key"
        permissions = [
            ("revoke_apikey", "Can revoke API keys (console)"),
            ("set_apikey_roles", "Can change API keys' roles (console)"),
        ]

    def __str__(self) -> str:
        return f"vk_{self.prefix}… ({self.name})"

    def state_at(self, now: datetime) -> str:
        """revoked, expired, expiring (an expiry is set: a rotation is under way) or active."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None:
            return "expired" if self.expires_at <= now else "expiring"
        return "active"


class Session(models.Model):
    """A bearer session bound to one user id; `token_digest` is the sha256 of `vs_…`."""

    session_id = models.CharField(max_length=40, primary_key=True)  # serves: G4 lookup by X-VERITTA-SESSION-ID
    user_id = models.CharField(max_length=64)
    token_digest = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=64)  # actor id of the API key that opened it
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=64, blank=True, default="")
    revoked_reason = models.CharField(max_length=200, blank=True, default="")
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # At most the opener key's roles when opened; the effective roles are
    # these narrowed by the opener's current ones (docs/AUTHORIZATION.md).
    roles = models.JSONField(default=list, blank=True)

    class Meta:
        indexes = [
            # serves: the console's list of a user's sessions
            models.Index(fields=["user_id", "created_at"], name="session_user_created"),
            # serves: revoking and listing the sessions one API key opened
            models.Index(fields=["created_by", "created_at"], name="session_key_created"),
        ]
        permissions = [("revoke_session", "Can revoke sessions (console)")]

    def __str__(self) -> str:
        return f"{self.session_id} ({self.user_id})"


class RateCounter(models.Model):
    """Requests counted in one fixed one-minute window of one bucket.

    Incremented only by an atomic upsert (sessions_app/ratelimit.py), never by
    read-modify-write, so every worker and app server sees one exact count."""

    bucket = models.CharField(max_length=80)  # "key:<id>", "session:<id>", "addr:<client digest>", "admin:admin"
    minute = models.BigIntegerField()  # the window: minutes since the epoch
    count = models.IntegerField(default=0)

    class Meta:
        constraints = [
            # serves: the ON CONFLICT target of the increment
            models.UniqueConstraint(fields=["bucket", "minute"], name="ratecounter_bucket_minute"),
        ]
        indexes = [
            # serves: deleting windows that have passed
            models.Index(fields=["minute"], name="ratecounter_minute"),
        ]

    def __str__(self) -> str:
        return f"{self.bucket} @{self.minute}: {self.count}"


class RateLimitState(models.Model):
    """One rate-limit bucket's GCRA state: its theoretical arrival time.

    Changed only by the conditional upsert in sessions_app/ratelimit.py, whose
    answer decides, so every worker and app server sees one exact limit. A row
    whose TAT has passed is the same as no row and may be deleted."""

    bucket = models.CharField(
        max_length=80, primary_key=True
    )  # "key:<id>", "session:<id>", "address:<digest>", "admin:<bucket>"
    tat_us = models.BigIntegerField()  # unix time, microseconds
    interval_us = models.BigIntegerField()  # T of the limit that last admitted a request
    seen_us = models.BigIntegerField()  # when that request came

    class Meta:
        indexes = [
            # serves: deleting buckets whose TAT has passed
            models.Index(fields=["tat_us"], name="ratelimitstate_tat"),
        ]

    def __str__(self) -> str:
        return f"{self.bucket}: TAT {self.tat_us}"


class LoginFailure(models.Model):
    """A failed console login, counted to throttle guessing (sessions_app/console_security.py).

    Rows older than the throttle window are deleted as new failures arrive."""

    at = models.DateTimeField()
    username = models.CharField(max_length=64)  # the identity: an existing username, or a keyed digest of the typed one
    client = models.CharField(max_length=40)  # keyed digest of the address (audit.services.client_digest)

    class Meta:
        indexes = [
            # serves: failures of one username within the window
            models.Index(fields=["username", "at"], name="loginfail_user_at"),
            # serves: failures from one client address within the window
            models.Index(fields=["client", "at"], name="loginfail_client_at"),
            # serves: deleting failures older than the window
            models.Index(fields=["at"], name="loginfail_at"),
        ]

    def __str__(self) -> str:
        return f"{self.username} @{self.at:%Y-%m-%d %H:%M:%S}"

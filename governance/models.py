from django.db import models


class PolicyProfile(models.Model):
    """A versioned policy profile, loaded from the files shipped in the repo.

    `document` is the parsed file; `sha256` is the hash of its canonical JSON
    and is what every decision record carries as `profile_hash`.
    """

    profile_id = models.CharField(max_length=64)
    version = models.CharField(max_length=32)
    document = models.JSONField()
    sha256 = models.CharField(max_length=64)
    active = models.BooleanField(default=False)
    loaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["profile_id", "version"], name="profile_version_unique"),
            # At most one active version per profile id.
            models.UniqueConstraint(
                fields=["profile_id"], condition=models.Q(active=True), name="one_active_version_per_profile"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} {self.version}"


class IdempotencyKey(models.Model):
    """One `Idempotency-Key` of one caller, claimed by the request that runs it
    (governance/idempotency.py). Digests, ids and codes only: the key itself,
    the payload and the executor's output are never stored."""

    RUNNING, DONE = "RUNNING", "DONE"

    # sha256 of the caller's actor and the key: two callers never share a key.
    scope_digest = models.CharField(max_length=64, unique=True)
    input_digest = models.CharField(max_length=64)
    trace_id = models.CharField(max_length=36)  # the original request's
    state = models.CharField(max_length=8, default=RUNNING)
    http_status = models.PositiveSmallIntegerField(null=True)
    # What a replay answers with: the result's ids and output digest, or the
    # envelope's codes; and the original terminal record's receipt.
    outcome = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)

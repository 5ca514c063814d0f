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


class ApprovalRequest(models.Model):
    """A request held for four-eyes approval (docs/APPROVALS.md). The payload
    it will run with is kept only here, sealed (governance/held_payloads.py),
    apart from the chain, and cleared once the request is executed, rejected
    or expired; the executed action's answer, sealed too, is deleted after its
    retention. Everything else here is ids, digests and codes."""

    WAITING, APPROVED, EXECUTED, REJECTED, EXPIRED = "WAITING", "APPROVED", "EXECUTED", "REJECTED", "EXPIRED"

    public_id = models.CharField(max_length=40, unique=True)
    trace_id = models.CharField(max_length=36, db_index=True)
    action = models.CharField(max_length=64)
    profile_id = models.CharField(max_length=64)
    profile_hash = models.CharField(max_length=64)
    requester = models.JSONField()  # the actor {"kind", "id"}: who asked, never a secret
    input_digest = models.CharField(max_length=80)
    sealed_payload = models.BinaryField(null=True)  # None once executed, rejected or expired
    sealed_answer = models.BinaryField(null=True)  # the executed action's answer, for GET /approvals/{id}
    # When the answer was stored: it is deleted VERITTA_APPROVAL_ANSWER_RETENTION_S later.
    answered_at = models.DateTimeField(null=True, db_index=True)
    group = models.CharField(max_length=150)
    approvals_needed = models.PositiveSmallIntegerField()
    visible_fields = models.JSONField(default=list)
    status = models.CharField(max_length=8, default=WAITING, db_index=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    decided_at = models.DateTimeField(null=True)

    class Meta:
        # Its own permission: seeing the queue is not deciding (docs/APPROVALS.md).
        permissions = [("decide_approval", "Can approve or reject held requests (console)")]

    def __str__(self) -> str:
        return f"{self.public_id} {self.action} {self.status}"


class ApprovalVote(models.Model):
    """One approver's approve or reject of one held request: a person counts once."""

    APPROVE, REJECT = "APPROVE", "REJECT"

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="votes")
    approver = models.CharField(max_length=150)  # the Django username
    verdict = models.CharField(max_length=8)
    reason = models.CharField(max_length=500)
    at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["request", "approver"], name="one_vote_per_approver")]

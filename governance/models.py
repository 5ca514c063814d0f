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

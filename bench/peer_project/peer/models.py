from django.conf import settings
from django.db import models


class PeerAuditRow(models.Model):
    """The audit row a plain DRF service writes: one ORM insert per request,
    no chain, no digest of the output, no durability ordering."""

    created_at = models.DateTimeField(auto_now_add=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    action = models.CharField(max_length=64)
    input_digest = models.CharField(max_length=64)
    status = models.CharField(max_length=16)

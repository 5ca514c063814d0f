"""Client-chosen text that the audit trail must be able to correlate but never
store (docs/SECURITY.md S9): unknown payload field names, usernames typed into
the console's login form. Kept as a keyed digest: equal inputs give equal
digests on every server sharing DJANGO_SECRET_KEY, and without that key a
digest cannot be tested against guesses (a card number typed as a field name
has too little entropy for a plain hash)."""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings


def keyed_digest(prefix: str, text: str) -> str:
    mac = hmac.new(settings.SECRET_KEY.encode(), text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return prefix + mac[:16]

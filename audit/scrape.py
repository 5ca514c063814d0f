"""The read-only scrape credential of GET /metrics (issue 19).

Prometheus should not hold the admin key, which can revoke every session and
read every record. `VERITTA_METRICS_TOKEN_SHA256` holds the sha256 (hex) of a
token that Prometheus sends as `Authorization: Bearer <token>`; the server
keeps and compares only the hash, so its environment never holds the token.
That token opens /metrics and nothing else. Its scrapes are audited like any
request, under actor `metrics`, which the security SLO leaves out of its
denominator (audit/reports.py): scraping does not dilute the rate it measures.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from veritta_site.errors import VerittaError

METRICS_ACTOR = {"kind": "metrics", "id": "scraper"}
TOKEN_SHA256_RE = re.compile(r"[0-9a-f]{64}")
EVIDENCE = {"header": "Authorization"}


def presents_scrape_token(request: HttpRequest) -> bool:
    """A scrape with the metrics credential rather than the admin key."""
    return not request.META.get("HTTP_X_ADMIN_KEY") and bool(request.META.get("HTTP_AUTHORIZATION"))


def scrape_token_present(request: HttpRequest) -> None:
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise VerittaError("METRICS_TOKEN_INVALID", evidence={**EVIDENCE, "cause": "not_bearer"}, details=EVIDENCE)


def scrape_token_valid(request: HttpRequest) -> dict[str, Any]:
    configured = settings.VERITTA_METRICS_TOKEN_SHA256.lower()
    if not configured:  # no scrape credential configured: there is none to match
        raise VerittaError("METRICS_TOKEN_INVALID", evidence={**EVIDENCE, "cause": "not_configured"}, details=EVIDENCE)
    token = request.META["HTTP_AUTHORIZATION"].partition(" ")[2].strip()
    presented = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
    if not hmac.compare_digest(presented, configured):
        raise VerittaError("METRICS_TOKEN_INVALID", evidence=EVIDENCE, details=EVIDENCE)
    return dict(METRICS_ACTOR)


SCRAPE_GATES = [("G0:metrics_token_present", scrape_token_present), ("G2:metrics_token_valid", scrape_token_valid)]

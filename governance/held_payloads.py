"""Sealing of the payloads held for four-eyes approval (docs/APPROVALS.md,
docs/SECURITY.md): AES-256-GCM under VERITTA_APPROVAL_KEY, bound to the held
request's id and input digest, so a sealed payload cannot be moved to another
request or swapped for another input unnoticed."""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

from veritta_site.errors import VerittaError

NONCE_BYTES = 12


def approval_key_problem() -> str | None:
    """Why VERITTA_APPROVAL_KEY cannot seal, or None when it can."""
    raw = settings.VERITTA_APPROVAL_KEY
    if not raw:
        return "VERITTA_APPROVAL_KEY is not set"
    try:
        key = base64.b64decode(raw.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return "VERITTA_APPROVAL_KEY is not base64"
    return None if len(key) == 32 else "VERITTA_APPROVAL_KEY must be base64 of 32 bytes"


def _cipher() -> AESGCM:
    problem = approval_key_problem()
    if problem is not None:  # fail closed: nothing is held, nothing runs
        raise VerittaError("APPROVAL_UNAVAILABLE", evidence={"problem": problem})
    raw = settings.VERITTA_APPROVAL_KEY.replace("-", "+").replace("_", "/")
    return AESGCM(base64.b64decode(raw))


def _bound_to(public_id: str, input_digest: str) -> bytes:
    return f"{public_id}\n{input_digest}".encode()


def seal(value: dict[str, Any], *, public_id: str, input_digest: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    plain = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
    return nonce + _cipher().encrypt(nonce, plain, _bound_to(public_id, input_digest))


def unseal(sealed: bytes | memoryview, *, public_id: str, input_digest: str) -> dict[str, Any]:
    """The sealed value; VerittaError(APPROVAL_UNAVAILABLE) if it was altered,
    moved, or sealed under another key."""
    sealed = bytes(sealed)
    try:
        plain = _cipher().decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _bound_to(public_id, input_digest))
    except InvalidTag:
        raise VerittaError("APPROVAL_UNAVAILABLE", evidence={"problem": "held payload does not open"}) from None
    return json.loads(plain)

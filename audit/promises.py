"""Signed promises of inclusion: the receipt of a record whose `seq` was not
known when its request was answered (PostgreSQL's batched write path,
audit/chain.py), in the manner of Certificate Transparency's signed
certificate timestamps.

A promise is a signed note (the C2SP signed-note format of the checkpoints,
signed by the same key) whose text is

    <origin>
    veritta-promise/v1
    <entry hash, 64 hex>
    <integrate-by time, RFC 3339 UTC with microseconds and Z>

and it says: the record with this entry hash is durable in the log's intake
and will be in the chain, under a signed checkpoint, by that time. Its second
line is not a decimal, so no checkpoint parser mistakes it for a tree head.
`audit prove --entry-hash` (or `--promise FILE`) turns it into an inclusion
proof once the record is sequenced (docs/AUDIT_LOG_SPEC.md, "Receipts").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

from audit import signed_note
from audit.checkpoints import SigningKeyError, key_name, signing_seed

PROMISE_TAG = "veritta-promise/v1"


class PromiseError(ValueError):
    pass


class Promise(NamedTuple):
    origin: str
    entry_hash: str
    integrate_by: datetime


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def promise_text(origin: str, entry_hash: str, integrate_by: datetime) -> str:
    return f"{origin}\n{PROMISE_TAG}\n{entry_hash}\n{_rfc3339(integrate_by)}\n"


def inclusion_promise(entry_hash: str, *, queued_at: datetime) -> dict[str, Any]:
    """The receipt of a record still in the intake: its entry hash, the deadline,
    and the signed promise (None when no signing key is configured, which only
    a development server allows)."""
    from audit.chain import max_merge_delay  # late: the chain imports this module lazily too

    integrate_by = queued_at + max_merge_delay()
    try:
        note = signed_note.sign_note(promise_text(key_name(), entry_hash, integrate_by), key_name(), signing_seed())
    except SigningKeyError:
        note = None
    return {
        "seq": None,
        "record_hash": None,
        "entry_hash": entry_hash,
        "integrate_by": _rfc3339(integrate_by),
        "promise": note,
    }


def check_promise(note: str, vkey: str) -> Promise:
    """Verify a promise note's signature and parse it; raises PromiseError."""
    try:
        text = signed_note.verify_note(note, vkey)
    except (signed_note.NoteVerificationError, signed_note.KeyFormatError) as exc:
        raise PromiseError(f"promise signature: {exc}") from exc
    lines = text[:-1].split("\n")
    if len(lines) != 4 or lines[1] != PROMISE_TAG:
        raise PromiseError("not a Verittà inclusion promise")
    origin, _, entry_hash, by = lines
    if len(entry_hash) != 64 or any(c not in "0123456789abcdef" for c in entry_hash):
        raise PromiseError("promise entry hash is not 64 lowercase hex digits")
    try:
        integrate_by = datetime.strptime(by, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise PromiseError("promise deadline is not an RFC 3339 UTC time") from exc
    return Promise(origin, entry_hash, integrate_by)

"""The audit record format (SPEC §6, docs/AUDIT_LOG_SPEC.md).

Every record, decision or action, has the same keys; the ones that do not
apply are null. A record's hash covers all of them, `prev_hash` included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from veritta_site.canonical import canonical_json, sha256_hex

GENESIS_HASH = "0" * 64

RECORD_FIELDS: tuple[str, ...] = (
    # chain
    "seq",
    "prev_hash",
    "record_hash",
    # what and when
    "event_type",  # decision_audit | action_audit
    "ts_utc",
    "trace_id",
    "parent_trace",  # the W3C traceparent, when the caller sent one
    "endpoint",  # e.g. "POST /process"
    # who
    "actor",  # {"kind", "id"}: never a secret
    "client",  # keyed digest of the client address, never the address
    # input
    "input_digest",
    "digest_kind",  # json | raw | empty | unread | disabled
    # policy
    "profile_id",
    "profile_hash",
    # decision records
    "decision",  # ALLOW | DENY
    "gate",  # the gate that decided a DENY; "ALL" when every gate allowed
    "matched_rules",
    "http_status",
    # action records
    "action",
    "action_version",
    "executor_id",
    "executor_version",
    "status",  # PENDING | SUCCESS | FAILED | BLOCKED
    "output_digest",
    "duration_us",
    # why
    "reason_codes",
    "evidence",
)

DECISION = "decision_audit"
ACTION = "action_audit"
TERMINAL_STATUSES = ("SUCCESS", "FAILED", "BLOCKED")


def new_record(**fields: Any) -> dict[str, Any]:
    """A record draft with every key present; the chain writer fills seq and hashes."""
    unknown = set(fields) - set(RECORD_FIELDS)
    if unknown:
        raise KeyError(f"not audit record fields: {sorted(unknown)}")
    record: dict[str, Any] = dict.fromkeys(RECORD_FIELDS)
    record.update(matched_rules=[], reason_codes=[], evidence={})
    record.update(fields)
    return record


def record_hash(record: dict[str, Any]) -> str:
    """sha256 of the canonical record without its record_hash key."""
    return sha256_hex(canonical_json({k: v for k, v in record.items() if k != "record_hash"}))


def seal(record: dict[str, Any], *, seq: int, prev_hash: str) -> bytes:
    """Give a draft its place in the chain; returns the canonical body stored."""
    record["seq"] = seq
    record["prev_hash"] = prev_hash
    record["record_hash"] = None
    record["record_hash"] = record_hash(record)
    return canonical_json(record)


# --- sealing under the chain lock, with the canonical JSON made beforehand -----------

# The fields only the chain writer knows, under its lock.
CHAIN_FIELDS = frozenset({"prev_hash", "record_hash", "seq", "ts_utc"})


@dataclass(frozen=True)
class Presealed:
    """A draft whose canonical JSON is made once, before the chain lock is taken,
    with the chain fields left open: under the lock, `seal_presealed` only
    splices them in and hashes. The bytes are those of `seal` (canonical JSON
    with sorted keys is the sorted `"key":value` members joined by commas), and
    a test holds the two equal."""

    record: dict[str, Any]
    members: tuple[str, ...]  # canonical runs of members, or a chain field's name, in key order

    @property
    def entry_hash(self) -> str:
        """sha256 of the canonical JSON of the record without its chain fields:
        known before the record has a place in the chain, so it is what an
        inclusion promise names (docs/AUDIT_LOG_SPEC.md, "Entry hash")."""
        return entry_hash_of(self.members)

    @property
    def intake_text(self) -> str:
        """The members one a line, as the intake table keeps them. A member is
        canonical JSON, which escapes every control character, so no member
        holds a newline."""
        return "\n".join(self.members)


def preseal(record: dict[str, Any]) -> Presealed:
    members: list[str] = []
    run: dict[str, Any] = {}
    for key in sorted(record):
        if key in CHAIN_FIELDS:
            if run:
                members.append(canonical_json(run).decode("utf-8")[1:-1])
                run = {}
            members.append(key)  # a run starts with '"', so it is never a bare field name
        else:
            run[key] = record[key]
    if run:
        members.append(canonical_json(run).decode("utf-8")[1:-1])
    return Presealed(record, tuple(members))


def members_of_intake(text: str) -> tuple[str, ...]:
    return tuple(text.split("\n"))


def entry_hash_of(members: tuple[str, ...]) -> str:
    return sha256_hex(("{" + ",".join(m for m in members if m[0] == '"') + "}").encode("utf-8"))


def entry_hash(record: dict[str, Any]) -> str:
    """The entry hash of a whole record (chain fields present or not)."""
    return sha256_hex(canonical_json({k: v for k, v in record.items() if k not in CHAIN_FIELDS}))


def seal_members(members: tuple[str, ...], *, seq: int, prev_hash: str, ts_utc: str) -> tuple[bytes, str]:
    """`seal` on the members of a presealed record: (canonical body, record_hash)."""
    chain = {"prev_hash": json.dumps(prev_hash), "seq": str(int(seq)), "ts_utc": json.dumps(ts_utc)}

    def joined(fields: dict[str, str]) -> bytes:
        parts = [f'"{m}":{fields[m]}' if m in fields else m for m in members if m in fields or m[0] == '"']
        return ("{" + ",".join(parts) + "}").encode("utf-8")

    digest = sha256_hex(joined(chain))  # the hash covers every field but record_hash
    chain["record_hash"] = json.dumps(digest)
    return joined(chain), digest


def seal_presealed(draft: Presealed, *, seq: int, prev_hash: str, ts_utc: str) -> bytes:
    """`seal` for a presealed draft (its record gets seq, prev_hash, ts_utc and
    record_hash too); returns the canonical body stored."""
    body, digest = seal_members(draft.members, seq=seq, prev_hash=prev_hash, ts_utc=ts_utc)
    draft.record.update(seq=seq, prev_hash=prev_hash, ts_utc=ts_utc, record_hash=digest)
    return body


def parse_body(body: str | bytes) -> dict[str, Any]:
    return json.loads(body)

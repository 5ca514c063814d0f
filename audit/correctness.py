"""The decision-correctness SLO (seed 004): a sample of past /process decisions
re-evaluated against the policy profile version each one names.

A record keeps digests, not payloads, so what can be re-decided is what the
record itself states: the profile version (by `profile_hash`), the action,
and, for an allowed request, the executor that ran it. For each sampled
decision:

- ALLOW (a replay's too): the profile version exists, allows the action, and
  names the executor of the request's PENDING record, at a version that
  satisfies the profile's minimum;
- a registry DENY (UNKNOWN_ACTION, EXECUTOR_*, CAPABILITY_MISMATCH, ...): the
  profile version exists and allows the action (the profile passed it; the
  registry refused it);
- other denials are decided from input no record holds, and are not sampled.

A decision that fails these checks was not the one its profile would make: a
gate that allowed what the profile forbids, a record naming a profile version
that was never loaded, an executor other than the profile's.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from audit.hooks import Hook
from audit.models import AuditRecord
from audit.records import ACTION, DECISION
from audit.security_codes import REGISTRY_CODES
from veritta_site.semver import parse_semver

PROCESS_ENDPOINT = "POST /process"

# The profiles are governance's, a layer above: GovernanceConfig.ready()
# registers how their documents are read, by hash (audit/hooks.py).
profile_documents: Hook[Callable[[set[str]], dict[str, dict[str, Any]]]] = Hook(
    "audit.correctness.profile_documents", provided_by="governance"
)


@dataclass
class CorrectnessSample:
    checked: int = 0
    correct: int = 0
    wrong: list[tuple[int, str]] = field(default_factory=list)  # (seq, why), the first few

    def add(self, seq: int, why: str | None) -> None:
        self.checked += 1
        if why is None:
            self.correct += 1
        elif len(self.wrong) < 10:
            self.wrong.append((seq, why))


def decision_correctness(*, window: Any, sample: int) -> CorrectnessSample:
    """Re-evaluate the newest `sample` re-decidable decisions of the window
    (newest by timestamp, then by seq)."""
    # Only decisions that name an action can be re-decided: allowed ones, and
    # registry denials. Newest first, from two index walks merged lazily (the
    # ALLOWs along (event_type, decision, ts_utc), the rare registry denials
    # from the reason-code index): ordering the OR of both by seq made the
    # database sort every decision of the window to keep `sample` of them.
    decisions = window.records().filter(event_type=DECISION, action__isnull=False)
    allowed = decisions.filter(decision="ALLOW")
    refused = decisions.filter(reason_code__in=sorted(REGISTRY_CODES)).exclude(decision="ALLOW")
    walks = [
        part.order_by("-ts_utc", "-seq").values_list("ts_utc", "seq", "body").iterator(chunk_size=500)
        for part in (allowed, refused)
    ]
    rows = ((seq, body) for _, seq, body in heapq.merge(*walks, key=lambda row: row[:2], reverse=True))
    sampled: list[tuple[int, dict[str, Any]]] = []
    for seq, body in rows:
        record = json.loads(body)
        if record.get("endpoint") == PROCESS_ENDPOINT:
            sampled.append((seq, record))
            if len(sampled) >= sample:
                break
    hashes = {record["profile_hash"] for _, record in sampled}
    profiles = profile_documents.provided()(hashes)
    # One query for the records of every sampled trace, by the trace_id index
    # alone (asked for PENDING records, SQLite walked the status index instead).
    traces = [record["trace_id"] for _, record in sampled]
    pending = {
        trace: json.loads(body)
        for trace, event_type, status, body in AuditRecord.objects.filter(trace_id__in=traces)
        .values_list("trace_id", "event_type", "status", "body")
        .iterator()
        if event_type == ACTION and status == "PENDING"
    }
    result = CorrectnessSample()
    for seq, record in sampled:
        result.add(seq, _why_wrong(record, profiles.get(record["profile_hash"]), pending.get(record["trace_id"])))
    return result


def _why_wrong(record: dict[str, Any], profile: dict[str, Any] | None, ran: dict[str, Any] | None) -> str | None:
    if profile is None:
        return "names a profile version that was never loaded"
    rule = (profile.get("actions") or {}).get(record["action"])
    if rule is None:
        return f"the profile does not allow the action {record['action']!r}"
    if record["decision"] != "ALLOW" or "IDEMPOTENT_REPLAY" in (record.get("reason_codes") or []):
        return None  # a registry denial of an allowed action; a replay ran nothing
    if ran is None:
        return None  # still in the intake, or the trace is incomplete: trace completeness says so
    if ran.get("executor_id") != rule.get("executor"):
        return f"ran executor {ran.get('executor_id')!r}, the profile names {rule.get('executor')!r}"
    have, minimum = parse_semver(ran.get("executor_version")), parse_semver(rule.get("min_executor_version", "0.0.0"))
    if have is None or minimum is None or have < minimum:
        return f"ran executor version {ran.get('executor_version')!r}, below the profile's minimum"
    return None

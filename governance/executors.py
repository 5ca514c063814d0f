"""Executors: versioned classes that carry out an allowed action.

The contract (docs/EXECUTORS.md): an executor declares an id, a semantic
version, the capabilities it provides and the actions it handles. It receives
a read-only ActionRequest and returns a JSON-serialisable dict (or an
ExecutionResult that adds audit evidence), which goes back to the caller and
is never stored (only its digest is). It fails by raising: ExecutorFailure
for a failure with its own reason code, anything else for EXECUTOR_FAILED.
Register your own in settings.VERITTA_EXECUTORS (or VERITTA_EXTRA_EXECUTORS)
by dotted path.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

_NO_RULE: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class ActionRequest:
    action: str
    payload: Mapping[str, Any]
    trace_id: str
    # time.monotonic() value after which the result will be discarded; long
    # executors should check it and stop early.
    deadline: float
    # The profile's rule for this action (read-only): what the policy author
    # configured for it, e.g. the connector an http_call_v1 action calls.
    rule: Mapping[str, Any] = field(default_factory=lambda: _NO_RULE)

    def time_left(self) -> float:
        return self.deadline - time.monotonic()


@dataclass(frozen=True)
class ExecutionResult:
    """What an executor returns when the terminal record should carry evidence:
    `output` goes to the client (its digest to the record), `evidence` to the
    SUCCESS record. Evidence is ids, codes, numbers and digests only."""

    output: dict[str, Any]
    evidence: dict[str, Any] = field(default_factory=dict)


class ExecutorFailure(Exception):
    """Raised by an executor to fail with a reason code of its own (a code of
    the catalogue whose place is "execute") and audit-safe evidence; the
    FAILED record and the answer's envelope carry that code."""

    def __init__(self, code: str, evidence: dict[str, Any] | None = None) -> None:
        self.code = code
        self.evidence = dict(evidence or {})
        super().__init__(code)


class Executor:
    executor_id: ClassVar[str]
    version: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset()
    actions: ClassVar[frozenset[str]] = frozenset()

    def execute(self, request: ActionRequest) -> dict[str, Any] | ExecutionResult:
        raise NotImplementedError


class NoopExecutor(Executor):
    """Acknowledges the action and does nothing: for smoke tests and health probes."""

    executor_id = "noop_v1"
    version = "1.0.0"
    capabilities = frozenset()
    actions = frozenset({"test_action", "noop"})

    def execute(self, request: ActionRequest) -> dict[str, Any]:
        return {"acknowledged": True}


class TextProcessExecutor(Executor):
    """A deterministic text transformation.

    `normalize` (default): Unicode NFC, whitespace runs collapsed to one space,
    trimmed. `upper`/`lower`/`reverse` apply after normalizing. Every result
    also carries counts, so `stats` returns only those.
    """

    executor_id = "text_process_v1"
    version = "1.0.0"
    capabilities = frozenset({"text.transform"})
    actions = frozenset({"process"})

    def execute(self, request: ActionRequest) -> dict[str, Any]:
        text = " ".join(unicodedata.normalize("NFC", str(request.payload.get("text", ""))).split())
        operation = request.payload.get("operation", "normalize")
        transformed = {
            "normalize": text,
            "upper": text.upper(),
            "lower": text.lower(),
            "reverse": text[::-1],
            "stats": None,
        }[operation]
        result: dict[str, Any] = {
            "operation": operation,
            "characters": len(text),
            "words": len(text.split()),
        }
        if transformed is not None:
            result["text"] = transformed
        return result

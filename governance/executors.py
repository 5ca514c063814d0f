"""Executors: versioned classes that carry out an allowed action.

An executor declares an id, a semantic version, the capabilities it provides
and the actions it handles. It receives a read-only request and returns a
JSON-serialisable dict, which goes back to the caller and is never stored
(only its digest is). Register your own in settings.VERITTA_EXECUTORS (or
VERITTA_EXTRA_EXECUTORS) by dotted path.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class ActionRequest:
    action: str
    payload: Mapping[str, Any]
    trace_id: str
    # time.monotonic() value after which the result will be discarded; long
    # executors should check it and stop early.
    deadline: float

    def time_left(self) -> float:
        return self.deadline - time.monotonic()


class Executor:
    executor_id: ClassVar[str]
    version: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset()
    actions: ClassVar[frozenset[str]] = frozenset()

    def execute(self, request: ActionRequest) -> dict[str, Any]:
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

"""What a governed request answers: status, JSON body, headers. Built by the
pipeline and by the idempotency replay alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Outcome:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

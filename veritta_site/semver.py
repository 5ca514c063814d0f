"""The one version format of executors, connectors, profiles and actions:
MAJOR.MINOR.PATCH, each a number without leading zeros (at most nine digits).

Governance checks versions with it and audit re-checks the versions its
records name (audit/correctness.py), so it lives below both."""

from __future__ import annotations

import re

SEMVER_RE = re.compile(r"^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})$")


def parse_semver(value: object) -> tuple[int, int, int] | None:
    if not isinstance(value, str):
        return None
    match = SEMVER_RE.match(value)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None

"""Policy profiles: reading the shipped files, their hashes, and the P1.1
fingerprint lock value (VERITTA_PROFILES_FINGERPRINT)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from veritta_site.canonical import digest_of

REQUIRED_KEYS = ("profile_id", "version", "actions")


class ProfileFileError(ValueError):
    pass


@dataclass(frozen=True)
class Profile:
    """A profile as the gates use it: the document plus its hash."""

    profile_id: str
    version: str
    sha256: str
    document: dict[str, Any]

    @property
    def actions(self) -> dict[str, Any]:
        return self.document.get("actions", {})


def profile_hash(document: dict[str, Any]) -> str:
    return digest_of(document)


def read_profile_file(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProfileFileError(f"{path.name}: {exc}") from exc
    missing = [k for k in REQUIRED_KEYS if k not in document]
    if not isinstance(document, dict) or missing:
        raise ProfileFileError(f"{path.name}: missing keys {missing}")
    return document


def shipped_profiles(directory: Path | None = None) -> list[dict[str, Any]]:
    directory = directory or settings.VERITTA_PROFILES_DIR
    return [read_profile_file(p) for p in sorted(Path(directory).glob("*.json"))]


def fingerprint(profiles: list[tuple[str, str, str]]) -> str:
    """The lock value over a set of (profile_id, version, sha256), order-free."""
    return digest_of(sorted([list(p) for p in profiles]))


def shipped_fingerprint(directory: Path | None = None) -> str:
    docs = shipped_profiles(directory)
    return fingerprint([(d["profile_id"], d["version"], profile_hash(d)) for d in docs])

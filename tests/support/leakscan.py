"""The leak scan run after the whole suite (conftest.pytest_sessionfinish):
no API key, admin key, session token, token digest, governed payload value,
payload field name no profile knows, or username typed into the console's
login form (docs/SECURITY.md S9) anywhere the service wrote — databases,
JSONL mirrors, checkpoints, logs — and no secret in any response but the one
that issued it."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

MIN_PAYLOAD_VALUE = 16  # shorter strings ("Hello World") could occur by chance


@dataclass
class LeakScan:
    secrets: set[str] = field(default_factory=set)
    payload_values: set[str] = field(default_factory=set)
    databases: list[str] = field(default_factory=list)
    responses_checked: int = 0

    def add_secret(self, value: str) -> None:
        """A secret and the digests an implementation might store of it."""
        if value:
            self.secrets |= {value, hashlib.sha256(value.encode()).hexdigest()}

    def add_payload(self, payload: object) -> None:
        for value in _strings(payload):
            if len(value) >= MIN_PAYLOAD_VALUE:
                self.payload_values.add(value)
        if isinstance(payload, dict):  # field names no profile knows are client text too
            for name in payload:
                if isinstance(name, str) and len(name) >= MIN_PAYLOAD_VALUE and name not in _profile_vocabulary():
                    self.payload_values.add(name)

    def add_console_username(self, typed: str) -> None:
        """A username typed into the console's login form: stored only as the
        user's own name (short, in these tests) or as a keyed digest."""
        for value in {typed, typed[:64], typed.strip()}:
            if len(value) >= MIN_PAYLOAD_VALUE:
                self.payload_values.add(value)

    def check_response(self, body: bytes, *, issued: Iterable[str] = ()) -> list[str]:
        """Secrets in one response body, except those it issued."""
        self.responses_checked += 1
        allowed = set(issued)
        return [s for s in self.secrets if s not in allowed and s.encode() in body]

    def _pattern(self, with_payloads: bool) -> re.Pattern[bytes] | None:
        needles = sorted(self.secrets | (self.payload_values if with_payloads else set()), key=len, reverse=True)
        return re.compile(b"|".join(re.escape(n.encode()) for n in needles)) if needles else None

    def scan_files(self, roots: Iterable[Path]) -> tuple[int, list[str]]:
        """Every file the servers wrote but their databases: mirrors, checkpoints, logs."""
        pattern = self._pattern(with_payloads=True)
        count, found = 0, []
        for root in roots:
            for path in (p for p in Path(root).rglob("*") if p.is_file()):
                if ".sqlite3" in path.name:
                    continue  # scanned row by row in scan_databases
                count += 1
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                if pattern is not None and (match := pattern.search(data)):
                    found.append(f"{path}: {match.group(0)[:12]!r}…")
        return count, found

    def scan_databases(self) -> tuple[int, list[str]]:
        """Every row of every table, as text, but the digest columns that are
        how keys and tokens are stored (sessions_app: digests, never secrets)."""
        pattern = self._pattern(with_payloads=True)
        found: list[str] = []
        scanned = 0
        for url in self.databases:
            try:
                rows = list(_postgres_rows(url) if url.startswith("postgres") else _sqlite_rows(url))
            except (psycopg.Error, sqlite3.Error):
                continue  # gone with its cluster or temp dir: nothing left to leak from
            scanned += 1
            for table, text in rows:
                if pattern is not None and (match := pattern.search(text.encode("utf-8", "replace"))):
                    found.append(f"{url.rsplit('/', 1)[-1]}.{table}: {match.group(0)[:12]!r}…")
        return scanned, found


# (table, column) where a sha256 digest is the stored form of a secret, by design.
DIGEST_COLUMNS = {"sessions_app_apikey": "digest", "sessions_app_session": "token_digest"}


_VOCABULARY: set[str] = set()


def _profile_vocabulary() -> set[str]:
    """Every name the shipped and test policy profiles use: recorded by design."""
    if not _VOCABULARY:
        root = Path(__file__).resolve().parents[2]
        for path in [*root.glob("governance/profiles/*.json"), *root.glob("tests/profiles/*.json")]:
            _VOCABULARY.update(_names_in(json.loads(path.read_text())))
    return _VOCABULARY


def _names_in(value: object) -> Iterable[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _names_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _names_in(item)
    elif isinstance(value, str):
        yield value


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key != "action":  # allowed action names are recorded by design
                yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _postgres_rows(url: str) -> Iterable[tuple[str, str]]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            query = f'SELECT (to_jsonb(t) - %s)::text FROM "{table}" t'
            for (text,) in conn.execute(query, [DIGEST_COLUMNS.get(table, "")]):
                yield table, text


def _sqlite_rows(url: str) -> Iterable[tuple[str, str]]:
    path = url.removeprefix("sqlite:///")
    if not Path(path).exists():
        return
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            cursor = conn.execute(f'SELECT * FROM "{table}"')
            names = [d[0] for d in cursor.description]
            for row in cursor:
                yield table, " ".join(str(v) for n, v in zip(names, row, strict=True) if n != DIGEST_COLUMNS.get(table))

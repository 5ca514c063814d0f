"""What the benchmarks share: the environment of a server or command, and
the checks every one of them reports (the database's durability, `audit
verify` afterwards)."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.appserver import manage, server_env
from tests.support.servers import PostgresCluster

DURABILITY_SETTINGS = ("fsync", "synchronous_commit", "full_page_writes")


@contextmanager
def durable_database(name: str, *, keep: bool) -> Iterator[tuple[Path, str, PostgresCluster]]:
    """A temp dir and a database `veritta_<name>` on a throwaway durable
    PostgreSQL cluster (fsync on), both gone afterwards unless `keep`."""
    tmp = Path(tempfile.mkdtemp(prefix=f"veritta-{name}-"))
    try:
        with PostgresCluster(durable=True) as cluster:
            yield tmp, cluster.create_database(f"veritta_{name}"), cluster
    finally:
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def bench_env(tmp: Path, database_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the test servers get (tests/support/appserver.server_env:
    test keys, the profile fingerprint, a mirror in `tmp`), plus `extra`."""
    env = server_env(tmp, database_url, extra)
    # server_env imports tests.settings for its keys, which makes a temp dir on
    # import; nothing here uses it (the mirror and checkpoints go to `tmp`).
    made = getattr(sys.modules.get("tests.settings"), "_TMP", None)
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)
    return env


def pg_durability(url: str) -> dict[str, Any]:
    """What the PostgreSQL server says it runs with, read from the server
    (not from how it was started): every bench runs durable."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        values = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in DURABILITY_SETTINGS}  # type: ignore[index]
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    return {**values, "durable": all(v == "on" for v in values.values()), "server_version": version}


def durability_line(found: Mapping[str, Any]) -> str:
    flags = ", ".join(f"{name}={found[name]}" for name in DURABILITY_SETTINGS)
    return f"{'durable' if found['durable'] else 'NOT DURABLE'} ({flags}), PostgreSQL {found['server_version']}"


def audit_verify(env: dict[str, str]) -> dict[str, Any]:
    """`manage.py audit verify --json` on the bench database: a bench must leave
    a chain that verifies."""
    started = time.monotonic()
    if env.get("DATABASE_URL", "").startswith("postgres"):
        # Records still in the intake when the servers stopped go into the
        # chain first, as an operator's `audit sequence` does: the check then
        # covers every record the bench wrote.
        manage(env, "audit", "sequence")
    done = manage(env, "audit", "verify", "--json", check=False)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        report = {"stdout": done.stdout[-2000:], "stderr": done.stderr[-2000:]}
    return {"exit_code": done.returncode, "seconds": round(time.monotonic() - started, 1), "report": report}


def verify_line(checked: Mapping[str, Any]) -> str:
    found = checked["report"]
    if checked["exit_code"] == 0 and found.get("ok"):
        outcome = (
            f"clean: {found.get('records')} records, {found.get('checkpoints_checked')} checkpoints,"
            f" {found.get('in_flight')} in flight"
        )
    else:
        outcome = f"FAILED (exit {checked['exit_code']}): {json.dumps(found)[:500]}"
    return f"{outcome} in {checked['seconds']} s"


def write_result(
    benchmark: str,
    results: Any,
    *,
    config: Mapping[str, Any],
    started: float,
    machine: Mapping[str, Any],
    output: Path | None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a bench's JSON document (bench/results/<benchmark>-<timestamp>.json
    unless `output`) and say where; `started` is time.monotonic() at the start."""
    from datetime import UTC, datetime

    document = {
        "benchmark": benchmark,
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": dict(machine),
        "config": dict(config),
        "results": results,
        **(extra or {}),
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    root = Path(__file__).resolve().parents[1]
    output = output or root / "bench" / "results" / f"{benchmark}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(
        f"\nwrote {output.relative_to(root) if output.is_relative_to(root) else output} in {document['wall_seconds']} s"
    )
    return output

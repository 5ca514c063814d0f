"""pytest plugin (loaded by the root conftest): the security campaign's
figures, printed at the end of every run, and the leak scan run after the
whole suite, which fails the run if it finds anything."""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support.leakscan import LeakScan

LEAKS = LeakScan()
FIGURES: Counter[str] = Counter()
_FINDINGS: list[str] = []
_SCANNED: dict[str, int] = {}

# Test files whose passing cases are campaign figures.
_COUNTED = {
    "tests/security/test_hostile_input.py": "hostile inputs answered 4xx with only a DENY record",
    "tests/security/test_fault_injection.py": "faults survived (chain verified, no committed record lost)",
    "tests/audit/test_tamper_detection.py": "tamperings detected at the exact seq",
}


def pytest_configure(config: pytest.Config) -> None:
    from tests.settings import TEST_ENV

    for name in ("VERITTA_BETA_API_KEY", "VERITTA_ADMIN_API_KEY", "VERITTA_AUDIT_SIGNING_KEY", "DJANGO_SECRET_KEY"):
        LEAKS.add_secret(TEST_ENV[name])


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed:
        label = _COUNTED.get(report.nodeid.split("::")[0])
        if label:
            FIGURES[label] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    roots = [session.config._tmp_path_factory.getbasetemp()]  # type: ignore[attr-defined]
    roots += list(Path(tempfile.gettempdir()).glob("veritta-tests-*"))  # tests/settings.py's mirror dir
    files, file_findings = LEAKS.scan_files(roots)
    databases, db_findings = LEAKS.scan_databases()
    _SCANNED.update(files=files, databases=databases)
    _FINDINGS.extend(file_findings + db_findings)
    if _FINDINGS:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    write = terminalreporter.write_line
    terminalreporter.section("security campaign")
    for label, count in sorted(FIGURES.items()):
        write(f"{count:>6}  {label}")
    write(
        f"leak scan: {_SCANNED.get('files', 0)} files, {_SCANNED.get('databases', 0)} databases, "
        f"{LEAKS.responses_checked} responses; {len(LEAKS.secrets)} secrets and digests, "
        f"{len(LEAKS.payload_values)} payload values tracked; {len(_FINDINGS)} found"
    )
    for finding in _FINDINGS[:50]:
        write(f"LEAK: {finding}", red=True)

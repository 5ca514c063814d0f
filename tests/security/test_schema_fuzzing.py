"""Schema fuzzing: schemathesis against /api/schema/ of a real gunicorn
server, with valid credentials, bounded in time. Zero 5xx answers, every
response (errors included) matching the documented schema, every documented
operation exercised."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ADMIN_KEY, API_KEY
from tests.support.campaign import FIGURES

UNLIMITED = {
    "VERITTA_RATE_LIMIT_KEY_PER_MIN": "1000000",
    "VERITTA_RATE_LIMIT_ADDRESS_PER_MIN": "1000000",
    "VERITTA_ADMIN_RATE_LIMIT_PER_MIN": "1000000",
    "VERITTA_RATE_LIMIT_SESSION_PER_MIN": "1000000",
}


def test_schemathesis_finds_no_server_error_and_no_schema_violation(start_app_server, tmp_path: Path):
    server = start_app_server(workers=2, env=UNLIMITED)
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    result = subprocess.run(
        [st, "--config-file", str(Path(__file__).with_name("schemathesis.toml")), "run", f"{server.url}/api/schema/?format=json",
         "-H", f"X-API-Key: {API_KEY}", "-H", f"X-ADMIN-KEY: {ADMIN_KEY}",
         "--max-examples", "25", "--max-time", "150", "--seed", "20261124",
         "--generation-deterministic", "--no-color", "--request-timeout", "30"],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    (tmp_path / "schemathesis.txt").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-6000:]
    generated = re.search(r"(\d+) generated", result.stdout)
    assert generated and int(generated.group(1)) > 200
    FIGURES["schema fuzzing cases (schemathesis), 0 failures"] += int(generated.group(1))
    selected, tested = re.search(r"Selected: (\d+)/", result.stdout), re.search(r"Tested: (\d+)", result.stdout)
    assert selected and tested and selected.group(1) == tested.group(1)  # every operation was exercised

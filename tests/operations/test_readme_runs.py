"""Every shell block of README.md runs, in order, in one shell — as a newcomer
types them after the README's two commands — and succeeds.

The machine holds only what those two commands install: the first block is
the two commands themselves (stood in for by a real gunicorn server, migrated
and loaded as `scripts/run` does, and by this test run's `.venv`); the other
blocks run from a directory with what `scripts/run` leaves beside the code
(`.venv`, a development `.env`, `audit.log`), under `bash -euo pipefail`, with
a PATH of the project's Python and a stock Debian's base tools plus `curl`
only — no `uuidgen`, no `jq`. The one rewrite: the README's
`http://localhost:8000` becomes the test server's address."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.appserver import ROOT

BLOCK = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)
README_URL = "http://localhost:8000"
# A stock Debian image's base tools (coreutils, grep, sed, bash), and curl,
# which scripts/run installs when it is missing.
BASE_TOOLS = (
    "bash", "sh", "env", "cat", "head", "tail", "cut", "sort", "uniq", "wc", "tr", "date", "mkdir", "rm", "cp",
    "mv", "ls", "printf", "echo", "sleep", "tee", "sha256sum", "id", "basename", "dirname", "mktemp", "chmod",
    "grep", "sed", "curl",
)  # fmt: skip


def readme_blocks() -> list[str]:
    return BLOCK.findall((ROOT / "README.md").read_text())


def _base_path(tmp: Path) -> str:
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for tool in BASE_TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is not on this machine"
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_the_first_block_is_the_two_commands():
    commands = [line.split("#")[0].strip() for line in readme_blocks()[0].splitlines()]
    assert commands == ["scripts/run", "scripts/test"]


def test_every_readme_block_runs_on_a_machine_with_only_what_the_two_commands_install(start_app_server):
    server = start_app_server(workers=2)
    work = server.tmp  # where the server's audit.log and checkpoints are
    (work / "manage.py").symlink_to(ROOT / "manage.py")
    (work / ".venv").symlink_to(Path(sys.prefix))
    dotenv = {k: v for k, v in server.env.items() if k.startswith(("VERITTA_", "DJANGO_", "DATABASE_URL"))}
    (work / ".env").write_text("".join(f"{k}='{v}'\n" for k, v in sorted(dotenv.items())))
    env = {"PATH": _base_path(work), "HOME": str(work), "LANG": "C.UTF-8"}

    blocks = readme_blocks()[1:]
    script = "\n".join(f'echo "### README block {n}" >&2\n{block}' for n, block in enumerate(blocks, 2))
    try:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script.replace(README_URL, server.url)],
            cwd=work, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        (work / ".env").unlink()  # it holds the keys, like the real one: not left for the leak scan
    last = re.findall(r"### README block (\d+)", result.stderr)
    failed = f"README block {last[-1] if last else '?'} failed:\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, failed
    assert last == [str(n) for n in range(2, len(blocks) + 2)] and len(blocks) >= 6

    # The examples did what they say: the smoke call's records were printed, the
    # proof checked, and a fresh instance meets its SLOs after the README's denial.
    assert '"event_type": "decision_audit"' in result.stdout
    assert "OK: every SLO is met" in result.stdout
    assert "not judged: fewer than 100 decisions" in result.stdout

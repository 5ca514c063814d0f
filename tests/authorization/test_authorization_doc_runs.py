"""docs/AUTHORIZATION.md's worked example runs: its `bash` blocks, in one
shell and in order, against a real gunicorn server on the example's profiles."""

from __future__ import annotations

import re
import subprocess

from tests.authorization.test_roles_through_gunicorn import roles_env
from tests.operations.test_runbooks_run import _shell_env
from tests.support.appserver import ROOT

BLOCK = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)


def test_the_worked_example_runs_against_a_real_server(start_app_server):
    server = start_app_server(workers=2, env=roles_env())
    blocks = BLOCK.findall((ROOT / "docs" / "AUTHORIZATION.md").read_text())
    assert len(blocks) >= 2
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(blocks)],
        cwd=ROOT, env=_shell_env(server.env, VERITTA_URL=server.url), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert "'refused_by': {'support_agent': 'action_not_granted'}" in result.stdout
    audit = (server.tmp / "audit.log").read_text()
    assert audit.count('"set_api_key_roles"') >= 6  # two changes: ALLOW, PENDING, SUCCESS each

"""What both benchmarks share: the environment of a server or command."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support.appserver import server_env


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

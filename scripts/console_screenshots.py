#!/usr/bin/env python3
"""Retake the console screenshots of docs/CONSOLE.md from the real pages.

Runs the browser test (tests/console/test_console_in_a_real_browser.py: a real
gunicorn server, Debian's headless Chromium) with VERITTA_SCREENSHOTS_DIR set,
so each step of it saves a full-page PNG under docs/screenshots/.

    .venv/bin/python scripts/console_screenshots.py
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    out = ROOT / "docs" / "screenshots"
    env = {**os.environ, "VERITTA_SCREENSHOTS_DIR": str(out)}
    test = "tests/console/test_console_in_a_real_browser.py"
    result = subprocess.run([sys.executable, "-m", "pytest", test, "-q", "-p", "no:cacheprovider"], cwd=ROOT, env=env)
    if result.returncode == 0:
        print(f"screenshots in {out.relative_to(ROOT)}: {', '.join(sorted(p.name for p in out.glob('*.png')))}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())

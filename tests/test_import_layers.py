"""The import layers of docs/ARCHITECTURE.md hold: the site package imports no
app, and no layer imports one above it, the composition root aside
(`lint-imports` reads the contracts in pyproject.toml; scripts/test runs it too)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [sys.executable, str(lint_imports), "--no-cache"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


COMPOSITION_ROOT = ["veritta_site.wsgi -> audit.chain", "veritta_site.startup -> governance.checks"]


def test_the_layers_contract_lists_no_debt() -> None:
    """Only the composition root may go up: an upward import is fixed, not listed."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c for c in contracts if c["type"] == "layers"]
    assert layers["layers"] == ["edge", "governance", "sessions_app", "audit", "veritta_site"]
    assert layers["ignore_imports"] == COMPOSITION_ROOT


def import_circles() -> list[set[str]]:
    """The strongly connected components (of more than one module) of the
    project's import graph, function-level imports included."""
    import grimp

    graph = grimp.build_graph("veritta_site", "audit", "sessions_app", "governance", "edge", cache_dir=None)
    imports = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[set[str]] = []

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in imports[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(component)

    for module in sorted(imports):
        if module not in index:
            visit(module)
    return circles


def test_no_import_circle() -> None:
    # Late (function-level) imports count: they hide a circle, they do not remove it.
    assert import_circles() == [], "import circles"


def test_the_circle_check_counts_function_level_imports() -> None:
    """governance/services.py imports sessions_app.services inside a function;
    the graph the circle check reads has that import."""
    import grimp

    graph = grimp.build_graph("veritta_site", "audit", "sessions_app", "governance", "edge", cache_dir=None)
    assert graph.direct_import_exists(importer="governance.services", imported="sessions_app.services")
    source = (ROOT / "governance" / "services.py").read_text()
    assert "\n    from sessions_app.services import operator_context\n" in source  # inside a function

"""Dependencies point one way: production code never imports the harness, tests or benchmarks,
and the benchmarks never import the tests (both use `harness/`)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


# No exceptions: the upstream's error codes live with its client (`workers.upstream_protocol`).
ALLOWED: set[str] = set()


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        roots |= {name.split(".")[0] for name in names if name not in ALLOWED}
    return roots


@pytest.mark.parametrize(("package", "forbidden"), [
    ("service", {"harness", "tests", "benchmarks", "simulator"}),
    ("workers", {"harness", "tests", "benchmarks", "simulator"}),
    ("benchmarks", {"tests"}),
    ("harness", {"tests", "benchmarks"}),
])
def test_package_does_not_import(package: str, forbidden: set[str]) -> None:
    offenders = {str(path.relative_to(ROOT)): sorted(imported_roots(path) & forbidden)
                 for path in (ROOT / package).rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}

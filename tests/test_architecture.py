"""Dependency rules of the code base, checked on the source (imports anywhere in a module count)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = ("service", "workers")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, resolved to dotted names (relative imports included)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


def _production_files() -> list[Path]:
    return [p for top in PRODUCTION for p in (ROOT / top).rglob("*.py")]


def test_production_code_never_imports_simulator_tests_or_benchmarks():
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in _imports(path) if m.split(".")[0] in {"simulator", "tests", "benchmarks"})
        for path in _production_files()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_web_app_does_not_load_the_worker_package():
    code = "import sys, service.app, service.wsgi\nprint(sorted(m for m in sys.modules if m.split('.')[0] in ('workers', 'simulator')))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                            env={"PATH": "", "UCMHA_ENV": "test"})
    assert result.stdout.strip() == "[]"


def test_no_import_cycles_among_service_and_worker_modules():
    files = {_module_name(p): p for p in _production_files()}
    graph = {name: {m for m in _imports(path) if m in files and m != name} for name, path in files.items()}
    # Tarjan's strongly connected components; any component of two or more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    # A package __init__ that re-exports its own modules is not a cycle of behaviour.
    real = [c for c in cycles if not all(m == c[0] or m.startswith(c[0] + ".") for m in c)]
    assert real == []


def test_layers_point_one_way():
    """domain imports nothing of ours outside it; commands never import api, dashboard or workers."""
    bad = {}
    for path in _production_files():
        name = _module_name(path)
        imported = {m for m in _imports(path) if m.split(".")[0] in PRODUCTION}
        if name.startswith("service.domain"):
            wrong = {m for m in imported if not m.startswith("service.domain")}
        elif name.startswith("service.commands"):
            wrong = {m for m in imported if m.startswith(("service.api", "service.dashboard", "workers"))}
        elif name.startswith("service"):
            wrong = {m for m in imported if m.startswith("workers")}
        else:
            wrong = set()
        if wrong:
            bad[name] = sorted(wrong)
    assert bad == {}

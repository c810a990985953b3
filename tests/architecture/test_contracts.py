"""The architecture's dependency rules (`.importlinter`), and proof that each one bites.

`lint-imports` checks the real tree; then, for every contract, a scratch copy of the tree gets one
offending module and the contract must be reported broken.
"""
from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("service", "workers", "simulator", "tests", "benchmarks", "harness")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contract_names() -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    prefix = "importlinter:contract:"
    return {section[len(prefix):]: config[section]["name"] for section in config.sections()
            if section.startswith(prefix)}


CONTRACTS = _contract_names()


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # Only the tree under `root` on the path: the scratch copy must not see the real one.
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(root), "COLUMNS": "1000", "NO_COLOR": "1"}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)


def verdicts(output: str) -> dict[str, str]:
    """Each contract's name -> KEPT or BROKEN, from lint-imports' report."""
    found = {}
    flat = " ".join(output.split())
    for key, name in CONTRACTS.items():
        for verdict in ("KEPT", "BROKEN"):
            if f"{' '.join(name.split())} {verdict}" in flat or f"{' '.join(name.split())}{verdict}" in flat:
                found[key] = verdict
    return found


def test_the_code_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert verdicts(result.stdout) == {key: "KEPT" for key in CONTRACTS}


# One offending module per contract: (path in the tree, its source).
VIOLATIONS = {
    "layers": ("service/commands/zz_violation.py", "from service.api import presenters\n"),
    "workers": ("service/models/zz_violation.py", "import workers.tasks\n"),
    "web-without-workers": ("service/zz_violation.py", "from workers import upstream\n"),
    "workers-not-web": ("workers/zz_violation.py", "from service.dashboard import views\n"),
    "production-alone": ("workers/zz_violation.py", "from simulator import app\n"),
    "benchmarks-alone": ("benchmarks/zz_violation.py", "from tests import formed_pair\n"),
    "domain-stdlib": ("service/domain/zz_violation.py", "import sqlalchemy\n"),
    # The cycle the issue found: the outbox's rules reaching back into the transition that uses them.
    "no-cycles": ("service/domain/outbox.py", "\nfrom . import transition  # noqa: E402\n"),
}


def test_every_contract_has_a_violation_to_show_it_bites():
    assert set(VIOLATIONS) == set(CONTRACTS)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / ".importlinter", root / ".importlinter")
    return root


@pytest.mark.parametrize("contract", sorted(VIOLATIONS))
def test_a_violation_breaks_its_contract(scratch, contract):
    path, source = VIOLATIONS[contract]
    target = scratch / path
    original = target.read_text() if target.exists() else None
    target.write_text((original or "") + source)
    try:
        result = lint_imports(scratch)
    finally:
        if original is None:
            target.unlink()
        else:
            target.write_text(original)
    assert result.returncode != 0, result.stdout + result.stderr
    assert verdicts(result.stdout).get(contract) == "BROKEN", result.stdout + result.stderr


def test_the_scratch_tree_keeps_every_contract_without_a_violation(scratch):
    """The copy is a faithful tree: the violations above, not the copying, break the contracts."""
    result = lint_imports(scratch)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_web_app_does_not_load_the_worker_package():
    """At run time too (what static imports cannot show: plugins, lazy imports)."""
    code = ("import sys, service.app, service.wsgi\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('workers', 'simulator')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                            env={"PATH": "", "UCMHA_ENV": "test"})
    assert result.stdout.strip() == "[]"

import ast
import subprocess
import sys
from pathlib import Path

import service.domain as domain

ROOT = Path(__file__).resolve().parents[3]


def test_every_exported_name_exists():
    for name in domain.__all__:
        assert hasattr(domain, name), name


def test_the_names_others_code_against_are_exported():
    expected = {
        "normalize_mac",
        "compact_mac",
        "InvalidMac",
        "DomainError",
        "NotFound",
        "Conflict",
        "RuleViolation",
        "InvalidState",
        "Forbidden",
        "Violation",
        "NotInPair",
        "PlanFacts",
        "plan_counts_for_ha",
        "plan_is_usable",
        "two_plan_rule",
        "cloud_im_gdms_rule",
        "NodeFacts",
        "StorageItem",
        "HaSettings",
        "SiteNetwork",
        "PairRequest",
        "Check",
        "preflight",
        "failed",
        "RoleClaim",
        "NodeLiveness",
        "PairState",
        "ClaimDecision",
        "decide_claim",
        "resolve",
        "StatusReport",
        "StatusDecision",
        "decide_status",
        "next_epoch",
        "on_claim",
        "PairTransition",
        "retry_delay",
        "is_failing",
        "ParsedAlert",
        "parse_alert",
    }
    assert expected <= set(domain.__all__)


def test_the_domain_imports_no_framework():
    code = (
        "import sys, service.domain\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'flask', 'celery', 'sqlalchemy', 'kombu', 'marshmallow', 'requests'})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_the_domain_modules_import_only_the_standard_library():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for path in (ROOT / "service" / "domain").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = [node.module.split(".")[0]]
            else:
                continue
            assert set(roots) <= stdlib, f"{path.name}: imports {roots}"

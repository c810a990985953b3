"""The alerting rules: valid, unit-tested with promtool, and about metrics the service really exports."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import unavailable

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
METRIC = re.compile(r"\b(ucmha_[a-z_]*[a-z])\b")
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        # CI installs Debian's prometheus package (.ci/run); there a missing promtool fails the run.
        unavailable("promtool", FileNotFoundError("promtool not on PATH (apt-get install prometheus)"))
    assert found is not None
    return found


def _promtool_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_promtool(), *args], cwd=RULES, capture_output=True, text=True, timeout=120)


def test_rules_are_valid():
    result = _promtool_run("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_unit_tests_pass():
    result = _promtool_run("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test():
    alerts = set(re.findall(r"^\s+- alert: (\w+)", (RULES / "alerts.yml").read_text(), re.M))
    tested = set(re.findall(r"alertname: (\w+)", (RULES / "alerts.test.yml").read_text()))
    assert alerts and alerts == tested


def test_every_metric_in_the_rules_is_exported(client, tenant):
    """Scrape /metrics of the app (database gauges included) and find each metric the rules use."""
    client.get("/api/v1/ha-pairs", headers=tenant.admin())  # an observed request, so the HTTP series exist
    exposition = client.get("/metrics").get_data(as_text=True)
    # ... and what the worker's exporter serves (its heartbeat; workers/liveness.py).
    from prometheus_client import generate_latest

    from service.observability import metrics
    from workers import liveness  # noqa: F401  (defines the worker's gauges)
    exposition += generate_latest(metrics.scrape_registry()).decode()
    exported = {m.group(1) for m in re.finditer(r"^(?:# TYPE )?(ucmha_[a-z_]+)", exposition, re.M)}
    assert "ucmha_worker_heartbeat_timestamp_seconds" in exported
    rules = "\n".join(line for line in (RULES / "alerts.yml").read_text().splitlines()
                      if not line.lstrip().startswith("#"))
    used = set(METRIC.findall(rules))
    assert {"ucmha_pair_syncs", "ucmha_broker_up", "ucmha_repoint_seconds_bucket"} <= used
    missing = {name for name in used if name not in exported
               and not any(name.endswith(s) and name[: -len(s)] in exported for s in SUFFIXES)}
    assert not missing, f"the rules use metrics the service does not export: {sorted(missing)}"

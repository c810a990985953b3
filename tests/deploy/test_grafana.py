"""The Grafana dashboard (deploy/grafana/ucmha.json): every query is valid PromQL (promtool parses it)
and names only metrics the service exports, so a renamed metric cannot leave an empty panel."""
from __future__ import annotations

import importlib
import json
import pkgutil
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.deploy.test_prometheus_rules import _promtool

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "ucmha.json"
# Grafana's variables, as Grafana would fill them in, so promtool can parse the expression.
VARIABLES = {"$__rate_interval": "1m", "$__range": "6h", "$__interval": "15s", "$job": ".+"}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
            "inf", "nan"}
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("_sum", "_count", "_created"), "gauge": ("",)}


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from panels(item.get("panels") or [])


def expressions(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    dashboard = json.loads(path.read_text())
    return [(panel["title"], target["expr"]) for panel in panels(dashboard["panels"])
            for target in panel.get("targets") or []]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (strings, label matchers, ranges, groupings and
    function calls set aside)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = GROUPING.sub(" ", text)
    names = set()
    for match in IDENTIFIER.finditer(text):
        word = match.group()
        if text[match.end():].lstrip().startswith("(") or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def exported(registry: Any) -> set[str]:
    """Every series name the registry can serve: each family's name with its type's suffixes."""
    names = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def test_metric_names_are_read_from_promql():
    assert metric_names('sum by (le, target) (rate(a_bucket{job=~"x|y",b="c"}[5m])) / on (x) b_total') == \
        {"a_bucket", "b_total"}
    assert metric_names('histogram_quantile(0.99, sum without (pod) (rate(c_sum[$__rate_interval]))) > bool 2') == \
        {"c_sum"}
    assert metric_names("max(up) or vector(0)") == {"up"}


def unknown_metrics(names: set[str], path: Path = DASHBOARD) -> set[tuple[str, str]]:
    """(panel title, metric) for each metric a query names that is not in `names`."""
    return {(title, name) for title, expr in expressions(path) for name in metric_names(expr) if name not in names}


def served(app: Any) -> set[str]:
    """What the API's /metrics serves and what a worker's exporter serves (the worker's modules
    imported, so each metric they define is registered; not the entry point `workers.worker`, which
    defines none and would make a Celery app and connect its signals in this process)."""
    import workers
    from service.observability import metrics

    for module in pkgutil.walk_packages(workers.__path__, "workers."):
        if module.name != "workers.worker":
            importlib.import_module(module.name)
    return exported(app.extensions["ucmha_metrics_registry"]) | exported(metrics.scrape_registry())


def test_every_query_names_a_metric_the_service_exports(app):
    names = served(app)
    assert {"ucmha_webhooks_total", "ucmha_repoint_seconds_bucket", "ucmha_outbox_backlog"} <= names
    unknown = unknown_metrics(names)
    assert not unknown, f"dashboard queries naming metrics the service does not export: {sorted(unknown)}"


def test_an_unknown_metric_is_caught(app, tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    panel = next(p for p in panels(dashboard["panels"]) if p.get("targets"))
    panel["targets"][0]["expr"] = "sum(rate(ucmha_webhook_total[5m]))"  # "webhooks", misspelt
    (tmp_path / "ucmha.json").write_text(json.dumps(dashboard))
    names = served(app)
    assert unknown_metrics(names, tmp_path / "ucmha.json") == {(panel["title"], "ucmha_webhook_total")}


def test_the_dashboard_covers_what_an_operator_watches():
    used = {name for _, expr in expressions() for name in metric_names(expr)}
    for name in ("ucmha_claim_decisions_total", "ucmha_repoint_seconds_bucket", "ucmha_outbox_oldest_seconds",
                 "ucmha_outbox_backlog", "ucmha_upstream_calls_total", "ucmha_webhooks_total",
                 "ucmha_event_deliveries_total", "ucmha_event_deliveries_owed"):
        assert name in used, name
    assert all(metric_names(expr) for _, expr in expressions())


def test_every_query_is_valid_promql(tmp_path):
    rules = []
    for n, (title, expr) in enumerate(expressions()):
        for variable, value in VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{title}: a Grafana variable the test does not fill in: {expr}"
        rules.append({"record": f"dashboard:query_{n}", "expr": expr})
    (tmp_path / "queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([_promtool(), "check", "rules", "queries.yml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_panels_use_the_dashboards_data_source_and_have_ids():
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard["panels"]):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel.get("description"), panel["title"]

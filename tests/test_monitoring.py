"""manifests/monitoring/ loads: promtool accepts the alerts (and their unit tests pass),
and the alerts and the Grafana dashboard query only metrics the code exports."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "manifests" / "monitoring"

# PromQL words that look like metric names
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
_KEYWORDS |= {"unless", "bool", "offset", "inf", "nan"}


def _generator() -> ModuleType:
    path = ROOT / "hack" / "gen_metrics_docs.py"
    spec = importlib.util.spec_from_file_location("gen_metrics_docs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery windows
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[match.end() :].lstrip()
        word = match.group(0)
        if rest.startswith("(") or word.lower() in _KEYWORDS:
            continue  # a function call or an operator
        names.add(word)
    return names


def test_metric_names_are_found_in_expressions() -> None:
    expr = (
        'sum by (namespace) (rate(canarybot_x_total{a="b(c)"}[5m])) / on() '
        "histogram_quantile(0.9, sum by (le) (rate(y_bucket[$__rate_interval]))) > bool 2"
    )
    assert metric_names(expr) == {"canarybot_x_total", "y_bucket"}


def rule_groups() -> list[dict[str, Any]]:
    rule = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(re.sub(r"label_values\((\w+),.*\)", r"\1", variable["definition"]))
    return exprs


def test_dashboard_queries_only_metrics_that_exist() -> None:
    known = _generator().series_names()
    exprs = dashboard_expressions()
    assert len(exprs) >= 10
    used = set().union(*(metric_names(e) for e in exprs))
    assert used - known == set(), f"the dashboard queries metrics nobody exports: {used - known}"
    # and it shows every metric family the code exports
    families = {doc.name for doc in _generator().catalogue()}
    shown = {f for f in families if any(u.startswith(f) for u in used)}
    assert shown == families, f"not on the dashboard: {families - shown}"


def test_alerts_query_only_metrics_that_exist() -> None:
    known = _generator().series_names()
    for group in rule_groups():
        for rule in group["rules"]:
            unknown = metric_names(rule["expr"]) - known
            assert unknown == set(), f"{rule['alert']} uses {unknown}"


def promtool() -> str:
    found = shutil.which("promtool") or (
        "/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None
    )
    if found is None:
        pytest.fail("promtool not found: install Debian's prometheus package (make test does)")
    return found


@pytest.mark.prometheus
def test_promtool_accepts_the_rules_and_their_unit_tests_pass(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups()}))
    shutil.copy(MONITORING / "alerts.test.yaml", tmp_path / "alerts.test.yaml")
    check = subprocess.run(
        [promtool(), "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    count = sum(len(g["rules"]) for g in rule_groups())
    assert f"SUCCESS: {count} rules found" in check.stdout
    tested = subprocess.run(
        [promtool(), "test", "rules", "alerts.test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def grafana_to_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables filled as Grafana would."""
    return expr.replace("$__rate_interval", "1m").replace("$namespace", ".*")


@pytest.mark.prometheus
def test_every_dashboard_query_is_accepted_by_prometheus(prometheus: Any) -> None:
    for expr in dashboard_expressions():
        response = requests.get(
            f"{prometheus.url}/api/v1/query", params={"query": grafana_to_promql(expr)}, timeout=10
        )
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (expr, body)

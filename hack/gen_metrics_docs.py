"""Generate docs/metrics.md from the metrics the code registers, so the list never drifts.

Usage: python hack/gen_metrics_docs.py [--check]

Every ``canarybot_*`` metric of the engine (rollout/metrics.py) and the Slack front
(bot/metrics.py) is registered in a fresh registry and described from the registry: the
name Prometheus stores, its type, help text and labels. Query template variables come
from ``rollout.analysis.TEMPLATE_VARIABLES``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from bot.metrics import BotMetrics  # noqa: E402
from rollout.analysis import TEMPLATE_VARIABLES  # noqa: E402
from rollout.kube import RequestCounter  # noqa: E402
from rollout.metrics import EngineMetrics  # noqa: E402

OUTPUT = ROOT / "docs" / "metrics.md"

# The series Prometheus stores for each metric type (prometheus_client's exposition).
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}


@dataclass(frozen=True)
class MetricDoc:
    """One metric as a dashboard author needs it."""

    name: str
    type: str
    help: str
    labels: tuple[str, ...]

    @property
    def series(self) -> tuple[str, ...]:
        """The series names Prometheus stores for it."""
        return tuple(self.name + suffix for suffix in SUFFIXES[self.type])


def _describe(collector: Any) -> list[MetricDoc]:
    if hasattr(collector, "_labelnames"):  # Counter, Gauge, Histogram
        labels = tuple(name for name in collector._labelnames if name != "le")
        return [MetricDoc(collector._name, collector._type, collector._documentation, labels)]
    docs = []
    for family in collector.collect():  # a custom collector yields metric families
        labels = tuple(getattr(family, "_labelnames", ()))
        docs.append(MetricDoc(family.name, family.type, family.documentation, labels))
    return docs


def catalogue() -> list[MetricDoc]:
    """Every canarybot_* metric the engine and the front register, by name."""
    registry = CollectorRegistry()
    EngineMetrics(registry, RequestCounter())
    BotMetrics(registry)
    collectors = {id(c): c for c in registry._collector_to_names}  # one entry per collector
    found = [doc for c in collectors.values() for doc in _describe(c)]
    return sorted((d for d in found if d.name.startswith("canarybot_")), key=lambda d: d.name)


def series_names() -> set[str]:
    """Every series name a PromQL expression may use."""
    return {name for doc in catalogue() for name in doc.series}


INTRO = """# Metrics

Generated from the code by `python hack/gen_metrics_docs.py`; do not edit by hand.

Every mode of the bot (Socket Mode, HTTP, console) serves these on `/metrics`, next to
`/healthz` and `/readyz`. Counters are stored with a `_total` suffix, histograms as
`_bucket`, `_sum` and `_count`. Example alerts are in
[manifests/monitoring/alerts.yaml](../manifests/monitoring/alerts.yaml) (a
PrometheusRule) and a Grafana dashboard in
[manifests/monitoring/dashboard.json](../manifests/monitoring/dashboard.json); tests check
that promtool accepts the rules and that both use only the series below.

Only the leader replica runs the engine, so engine metrics (`canarybot_rollouts`,
`canarybot_canary_weight`, `canarybot_analysis_results_total`, ...) come from one pod at
a time; `canarybot_leader` says which. Per-release series are dropped when the release is
deleted.
"""

TEMPLATES = """## Query template variables

Custom metrics (`query:` or `templateRef:` in `analysis.metrics`) are PromQL with
`{{ variable }}` placeholders, written as in Flagger. An unknown variable fails the check
with a message naming it and listing the known ones.

| variable | value |
|---|---|
"""

BUILTINS = """## Built-in analysis metrics

| name | query (canary side) | unit |
|---|---|---|
| `request-success-rate` | non-5xx rate / all requests rate x 100 over the main Ingress's `nginx_ingress_controller_requests` with `canary` set | percent |
| `request-duration` | `histogram_quantile(0.99, ...)` over `nginx_ingress_controller_request_duration_seconds_bucket` | milliseconds, a real p99 (Flagger's nginx query is a mean) |
"""


def render() -> str:
    """docs/metrics.md as Markdown."""
    out = [INTRO, "## canary-bot's own metrics", "", "| metric | type | labels | help |", "|---|---|---|---|"]
    for doc in catalogue():
        labels = ", ".join(f"`{label}`" for label in doc.labels) or "none"
        shown = ", ".join(f"`{s}`" for s in doc.series)
        out.append(f"| {shown} | {doc.type} | {labels} | {doc.help} |")
    out += ["", BUILTINS, TEMPLATES.rstrip("\n")]
    for name, meaning in TEMPLATE_VARIABLES.items():
        out.append(f"| `{{{{ {name} }}}}` | {meaning} |")
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    """Write (or with --check, compare) docs/metrics.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is out of date; run python hack/gen_metrics_docs.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The generated configuration reference matches the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from rollout.analysis import QueryContext, query_variables, render_query
from rollout.models import Metric

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_reference_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, "hack/gen_config_docs.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_metrics_reference_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, "hack/gen_metrics_docs.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def _relative_links(text: str) -> list[str]:
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    return [link for link in links if "://" not in link and not link.startswith("mailto:")]


def test_readme_leads_to_every_doc_and_every_relative_link_resolves() -> None:
    readme = (ROOT / "README.md").read_text()
    linked = {Path(link).name for link in _relative_links(readme)}
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert doc.name in linked, f"README.md does not link docs/{doc.name}"
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for link in _relative_links(page.read_text()):
            assert (page.parent / link).exists(), f"{page.name}: broken link {link}"


def test_the_migration_guides_mean_duration_template_is_usable() -> None:
    text = (ROOT / "docs" / "migrating-from-flagger.md").read_text()
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "metricTemplates" in b]
    body = yaml.safe_load(block)
    [metric] = [Metric.model_validate(m) for m in body["metrics"]]
    assert metric.template_ref is not None
    template = body["metricTemplates"][metric.template_ref.name]
    ctx = QueryContext("test", "podinfo", "podinfo", "podinfo", 80, "podinfo-x7k2p")
    query = render_query(template, query_variables(ctx, metric))
    assert 'namespace="test",ingress="podinfo"' in query and "[1m]" in query

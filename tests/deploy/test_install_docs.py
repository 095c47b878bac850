"""What the README, manifests/README.md and docs/security.md say about installing and
ports matches the manifests and the command line (no cluster needed)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bot.cli import DEFAULT_METRICS_PORT, _parser
from rollout.controller import EngineSettings
from rollout.retention import DEFAULT_KEEP

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "manifests" / "README.md", ROOT / "docs" / "security.md"]


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_install_applies_the_crds_before_the_bot() -> None:
    for path in (ROOT / "README.md", ROOT / "manifests" / "README.md"):
        text = _text(path)
        crds = text.find("kubectl apply -k manifests/crds")
        bot = text.find("kubectl apply -k manifests/\n")
        assert crds != -1, f"{path.name} does not install manifests/crds"
        assert bot != -1, f"{path.name} does not install manifests/"
        assert crds < bot, f"{path.name} installs the bot before the CRD"


def test_no_document_names_the_old_crd_path() -> None:
    for path in [*DOCS, *sorted((ROOT / "manifests").rglob("*.yaml"))]:
        assert not re.search(r"manifests/crd\.yaml|\.\./crd\.yaml", _text(path)), path


def test_crds_are_not_part_of_the_bots_kustomization() -> None:
    top = yaml.safe_load(_text(ROOT / "manifests" / "kustomization.yaml"))
    assert not any("crd" in r for r in top["resources"])
    crds = yaml.safe_load(_text(ROOT / "manifests" / "crds" / "kustomization.yaml"))
    assert crds["resources"] == ["crd.yaml", "canaries.yaml"]


def test_ports_table_matches_the_command_line() -> None:
    text = _text(ROOT / "docs" / "security.md")
    assert "## Ports" in text
    run = _parser().parse_args(["run"])
    assert f"`--port` ({run.port})" in text
    assert f"`--metrics-port`, `$CANARY_BOT_METRICS_PORT` ({DEFAULT_METRICS_PORT})" in text
    assert f'prometheus.io/port: "{DEFAULT_METRICS_PORT}"' in text


def test_lease_and_retention_defaults_are_the_documented_ones() -> None:
    lease = f"{EngineSettings.lease_namespace}/{EngineSettings.lease_name}"
    assert lease == "canary-bot/canary-bot-leader"
    manifests_readme = _text(ROOT / "manifests" / "README.md")
    assert "`canary-bot-leader` in the\nnamespace `canary-bot`" in manifests_readme
    assert f"newest {DEFAULT_KEEP} finished" in manifests_readme
    assert _parser().parse_args(["run"]).keep_finished == DEFAULT_KEEP
    assert f"`{lease}`" in _text(ROOT / "README.md")

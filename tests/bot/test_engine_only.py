"""``canary-bot run --engine-only``: the engine of one cluster of a multi-cluster front
needs only the bot token; a front with ``clusters:`` runs no engine."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.bot.test_startup import APP, BOT, CANARY_BOT, SECRET, run


def test_the_engine_only_mode_needs_only_the_bot_token() -> None:
    result = run({"SLACK_BOT_TOKEN": BOT}, "--engine-only")
    # past the Slack check: it stops at the missing kubeconfig, as any start would
    assert "incomplete Slack configuration" not in result.stderr, result.stderr
    assert result.stderr.startswith("canary-bot: could not start: "), result.stderr
    assert result.returncode == 1
    assert BOT not in result.stdout + result.stderr


def test_the_engine_only_mode_without_the_bot_token_names_it() -> None:
    for env in (
        {},
        {"SLACK_BOT_TOKEN": " "},
        {"SLACK_APP_TOKEN": APP, "SLACK_SIGNING_SECRET": SECRET},
    ):
        result = run(env, "--engine-only")
        assert result.returncode == 2, result.stderr
        assert "incomplete Slack configuration: SLACK_BOT_TOKEN is" in result.stderr
        assert "posts its cards with the bot token" in result.stderr
        assert APP not in result.stderr and SECRET not in result.stderr


def test_the_engine_only_flag_excludes_the_other_engine_flags() -> None:
    result = run({"SLACK_BOT_TOKEN": BOT}, "--engine-only", "--no-engine")
    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr


def test_a_front_of_several_clusters_refuses_to_run_an_engine(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("clusters:\n  - {name: a, context: a}\n  - {name: b, context: b}\n")
    result = run(
        {"SLACK_BOT_TOKEN": BOT, "SLACK_SIGNING_SECRET": SECRET},
        "--engine",
        "--config",
        str(config),
    )
    assert result.returncode == 2
    assert "a front with clusters: runs no engine" in result.stderr
    assert "--engine-only" in result.stderr


def test_check_config_counts_the_clusters(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("clusters:\n  - {name: a, context: a}\n  - {name: b, kubeconfig: /k}\n")
    result = subprocess.run(
        [str(CANARY_BOT), "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "2 cluster(s)" in result.stdout


def test_help_says_what_the_engine_only_mode_needs() -> None:
    result = subprocess.run(
        [str(CANARY_BOT), "run", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    flat = " ".join(result.stdout.split())
    assert "--engine-only" in flat
    assert "needs only SLACK_BOT_TOKEN" in flat
    assert "opens no Socket Mode connection or Slack port" in flat

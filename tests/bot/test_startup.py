"""``canary-bot run`` as a Pod starts it (stdin is not a terminal): a partial Slack
configuration is an error that names the missing variable, never a silent console."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CANARY_BOT = Path(sys.executable).parent / "canary-bot"
# look like Slack's credentials; never printed back
BOT = "xoxb-1234-5678-notarealtoken"
APP = "xapp-1-A0123-4567-notarealtoken"
SECRET = "0123456789abcdef0123456789abcdee"


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``canary-bot run`` with stdin from /dev/null (as in a Pod) and only ``env`` set."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "CANARY_BOT_"))}
    # nowhere to connect: the process must stop before it tries
    base["KUBECONFIG"] = "/nonexistent/kubeconfig"
    return subprocess.run(
        [str(CANARY_BOT), "run", "--port", "0", "--metrics-port", "0", *args],
        env={**base, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SLACK_BOT_TOKEN": BOT}, "neither SLACK_APP_TOKEN (Socket Mode) nor SLACK_SIGNING_SECRET"),
        ({"SLACK_APP_TOKEN": APP}, "SLACK_APP_TOKEN is set but SLACK_BOT_TOKEN is missing"),
        (
            {"SLACK_SIGNING_SECRET": SECRET},
            "SLACK_SIGNING_SECRET is set but SLACK_BOT_TOKEN is missing",
        ),
        ({"SLACK_BOT_TOKEN": BOT, "SLACK_APP_TOKEN": ""}, "SLACK_APP_TOKEN is set but empty"),
        ({"SLACK_BOT_TOKEN": " ", "SLACK_APP_TOKEN": APP}, "SLACK_BOT_TOKEN is set but empty"),
    ],
    ids=["bot-only", "app-only", "secret-only", "empty-app-token", "blank-bot-token"],
)
def test_a_partial_slack_configuration_stops_the_pod_naming_the_variable(
    env: dict[str, str], named: str
) -> None:
    result = run(env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("canary-bot: incomplete Slack configuration: "), result.stderr
    assert named in result.stderr
    output = result.stdout + result.stderr
    for value in (BOT, APP, SECRET):
        assert value not in output, "a credential was printed"


def test_an_invalid_metrics_port_is_refused() -> None:
    result = run({}, "--metrics-port", "99999")
    assert result.returncode == 2
    assert "--metrics-port '99999' is not a port number" in result.stderr
    result = subprocess.run(
        [str(CANARY_BOT), "run"],
        env={**os.environ, "CANARY_BOT_METRICS_PORT": "metrics"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "CANARY_BOT_METRICS_PORT 'metrics' is not a port number" in result.stderr


def test_the_engine_flags_exclude_each_other() -> None:
    result = run({}, "--engine", "--no-engine")
    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr


def test_at_a_terminal_a_partial_configuration_warns_and_keeps_the_console() -> None:
    # stdin is a terminal (a pseudo-terminal here): a person sees the warning and gets
    # the console; the start then fails on the missing kubeconfig, as it would anyway
    controller, terminal = os.openpty()
    try:
        base = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
        result = subprocess.run(
            [str(CANARY_BOT), "run", "--port", "0", "--metrics-port", "0"],
            env={**base, "SLACK_BOT_TOKEN": BOT, "KUBECONFIG": "/nonexistent/kubeconfig"},
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(terminal)
        os.close(controller)
    assert "SLACK_BOT_TOKEN is set but neither SLACK_APP_TOKEN" in result.stderr
    assert "; running in console mode" in result.stderr
    assert "incomplete Slack configuration" not in result.stderr
    assert BOT not in result.stdout + result.stderr

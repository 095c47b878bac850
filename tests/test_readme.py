"""The README says what the code does: commands, make targets, build times, comparison."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.commands.help import USAGE
from rollout import analysis, router
from rollout.models import Analysis
from rollout.routers import gateway

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_commands_table_is_generated_from_the_help_text() -> None:
    result = subprocess.run(
        [sys.executable, "hack/gen_readme_commands.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    for text in USAGE.values():
        assert text.splitlines()[0] in README


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    targets = set()
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z][\w-]*)\s*:(?!=)", line)
        if match:
            targets.add(match.group(1))
    return targets


def test_make_help_lists_every_target() -> None:
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is not installed")
    shown = subprocess.run(
        [make, "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    listed = {m.group(1) for m in re.finditer(r"^make ([\w-]+)", shown, re.MULTILINE)}
    targets = makefile_targets()
    assert {"run", "test", "help", "clean"} <= targets
    assert targets - listed == set(), "targets missing from make help"
    assert listed - targets == set(), "make help lists targets that do not exist"


def test_readme_build_time_is_what_the_build_script_prints() -> None:
    script = (ROOT / "hack" / "build-control-plane.sh").read_text()
    match = re.search(r'log "this takes ([^;"]+);', script)
    assert match, "the build script no longer prints its duration estimate"
    said = " ".join(README.split())  # the README wraps lines
    assert f"this takes {match.group(1)}" in said
    assert 'log "done in' in script and "done in <seconds>s" in said


def test_comparison_rows_on_what_canary_bot_lacks_are_true_of_the_code() -> None:
    # ingress-nginx and Gateway API are the traffic routers, Prometheus the only metric provider
    routers = [n for n, v in vars(router).items() if isinstance(v, type) and n.endswith("Router")]
    assert sorted(routers) == ["NginxRouter", "Router"]  # the protocol and ingress-nginx's
    assert isinstance(vars(gateway).get("GatewayRouter"), type)  # and Gateway API's
    providers = [
        n for n, v in vars(analysis).items() if isinstance(v, type) and n.endswith("Provider")
    ]
    assert sorted(providers) == ["MetricProvider", "PrometheusProvider"]
    # a pasted mirror field is refused, naming the field
    with pytest.raises(ValidationError, match=r"analysis\.mirror is a Flagger field"):
        Analysis.model_validate({"mirror": True, "mirrorWeight": 10})
    for row in ("**Prometheus only**", "**no**"):
        assert row in README

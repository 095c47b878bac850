"""The import-linter contracts in pyproject.toml hold, and they cover modules added later.

The contracts name whole packages (``rollout``, ``bot``) and carve out the one module allowed
each client library, so a module added tomorrow is checked without editing the contracts.
The probes below prove it: each writes a new module (or one extra import) that breaks one
rule into a copy of the source tree and expects import-linter to report that rule broken,
and only that rule.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "rollout", "sandbox")
CONTRACTS = 5

# import-linter adds the working directory to sys.path first, so run from the copy it lints.
LINT = (
    "import sys\n"
    "from importlinter.cli import lint_imports\n"
    "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))\n"
)


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LINT],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _copy_tree(target: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def test_the_contracts_hold_for_the_source_tree() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {CONTRACTS} kept, 0 broken." in result.stdout


# (file in the copied tree, line appended to it, the contract that must then break)
PROBES = [
    (
        "rollout/layering_probe.py",
        "import kubernetes.client\n",
        "Only rollout.kube talks to the Kubernetes client",
    ),
    (
        "rollout/routers/layering_probe.py",
        "from kubernetes import client\n",
        "Only rollout.kube talks to the Kubernetes client",
    ),
    (
        "bot/layering_probe.py",
        "import kubernetes\n",
        "Only rollout.kube talks to the Kubernetes client",
    ),
    (
        "rollout/layering_probe.py",
        "from prometheus_api_client import PrometheusConnect\n",
        "Only rollout.analysis talks to Prometheus",
    ),
    (
        "bot/layering_probe.py",
        "import prometheus_api_client\n",
        "Only rollout.analysis talks to Prometheus",
    ),
    (
        "rollout/layering_probe.py",
        "import slack_sdk\n",
        "The engine never imports the Slack front",
    ),
    (
        "bot/layering_probe.py",
        "import sandbox.slack_fake\n",
        "The product never imports the local sandbox's fakes",
    ),
    (
        "rollout/decide.py",
        "import aiohttp\n",
        "Decisions are pure: decide imports no I/O modules",
    ),
]


@pytest.mark.parametrize(
    ("path", "line", "contract"), PROBES, ids=[f"{p}:{line.strip()}" for p, line, _ in PROBES]
)
def test_a_module_that_breaks_a_rule_is_caught(
    tmp_path: Path, path: str, line: str, contract: str
) -> None:
    tree = _copy_tree(tmp_path)
    with (tree / path).open("a") as module:
        module.write(line)
    result = _lint(tree)
    assert result.returncode != 0, result.stdout + result.stderr
    assert f"{contract} BROKEN" in result.stdout, result.stdout
    assert f"Contracts: {CONTRACTS - 1} kept, 1 broken." in result.stdout, result.stdout

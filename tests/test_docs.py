"""The generated configuration reference matches the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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

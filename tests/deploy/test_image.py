"""The container image, built from the Dockerfile and run, without a Docker engine.

hack/build-image.sh makes a base from Debian's packages (debootstrap + python3, since no
registry serves base images here) and builds the Dockerfile on it with buildah
(daemonless, chroot isolation, vfs storage), passing the base through the Dockerfile's
BASE_IMAGE argument. The tests run the image with podman as the Deployment runs it: a
read-only root file system, uid 10001, no capabilities, no privilege escalation.

The first run pays for debootstrap and pip (a few minutes); later runs reuse the cached
base and, while the sources are unchanged, every build step.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox.ports import free_port
from sandbox.slack_fake import SlackFake
from tests.deploy.kubectl import MANIFESTS, ROOT, wait_for
from tests.fixtures.slack import SlackRequests, send_to_app

pytestmark = pytest.mark.image

BUILD_SCRIPT = ROOT / "hack" / "build-image.sh"
EXAMPLE_CONFIG = MANIFESTS / "canary-bot.example.yaml"
UID = 10001


@dataclass(frozen=True)
class Image:
    """The built image and the container storage/engine settings it lives in."""

    name: str
    env: dict[str, str]

    def podman(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run podman on the image's storage; with ``check`` a failure fails the test."""
        result = subprocess.run(
            ["podman", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"podman {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def run_args(self, *extra: str) -> list[str]:
        """``podman run`` as the Deployment's securityContext runs the container."""
        return [
            "run",
            "--read-only",  # with a tmpfs /tmp, like the Deployment's emptyDir
            f"--user={UID}:{UID}",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            "--network=host",  # the bot listens on, and reaches, loopback ports
            *_ulimits(),
            *extra,
            self.name,
        ]


def _ulimits() -> list[str]:
    # As root, podman raises the container's open-files and process limits to the
    # maximum; where the host withholds CAP_SYS_RESOURCE that is refused, so ask for no
    # more than this process has (ample for one Python process).
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = min(nofile, 65536) if nofile != resource.RLIM_INFINITY else 65536
    return [f"--ulimit=nofile={nofile}:{nofile}", "--ulimit=nproc=4096:4096"]


@pytest.fixture(scope="module")
def image() -> Image:
    """The image hack/build-image.sh built (cached when the sources are unchanged).

    The script installs buildah, podman, runc and debootstrap from Debian when they are
    missing, so any failure here is a failure of the build, never a reason to skip.
    """
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=None, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"{BUILD_SCRIPT} failed with exit code {result.returncode}")
    out = dict(
        line.split("=", 1) for line in result.stdout.splitlines() if "=" in line
    )
    env = {
        **os.environ,
        "CONTAINERS_STORAGE_CONF": out["storage_conf"],
        "CONTAINERS_CONF": out["containers_conf"],
    }
    return Image(out["image"], env)


def test_image_runs_the_console_script_as_uid_10001(image: Image) -> None:
    config = image.podman("image", "inspect", "--format", "{{.Config.User}}", image.name)
    assert config.stdout.strip() == f"{UID}:{UID}"
    # without --user the image's own USER applies
    whoami = image.podman(
        "run", "--rm", "--read-only", *_ulimits(), "--entrypoint", "python3", image.name,
        "-c", "import os, shutil; print(os.getuid(), os.getgid(), shutil.which('canary-bot'))",
    )  # fmt: skip
    uid, gid, script = whoami.stdout.split()
    assert (int(uid), int(gid)) == (UID, UID)
    assert script.endswith("/bin/canary-bot")
    result = image.podman(*image.run_args("--rm"), "--help")
    assert "usage: canary-bot" in result.stdout and "check-config" in result.stdout


def test_image_checks_the_example_config_and_refuses_a_broken_one(
    image: Image, tmp_path: Path
) -> None:
    mount = f"--volume={EXAMPLE_CONFIG}:/etc/canary-bot/config.yaml:ro"
    result = image.podman(*image.run_args("--rm", mount), "check-config", "/etc/canary-bot/config.yaml")
    assert result.returncode == 0, result.stderr
    broken = tmp_path / "config.yaml"
    broken.write_text(EXAMPLE_CONFIG.read_text().replace("maxWeight: 50", "maxWeight: 500", 1))
    broken.chmod(0o644)
    tmp_path.chmod(0o755)
    result = image.podman(
        *image.run_args("--rm", f"--volume={broken}:/etc/canary-bot/config.yaml:ro"),
        "check-config", "/etc/canary-bot/config.yaml",
        check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "maxWeight" in result.stderr, result.stderr


# The end-of-rollout chart rendered inside the image; Python warnings are errors.
CHART_SCRIPT = r"""
import warnings
from datetime import UTC, datetime, timedelta
warnings.simplefilter("error")
from bot.chart import render_rollout_chart
from rollout.models import CanaryRelease, Phase
from rollout.timeline import Sample, Timeline, WeightStep
release = CanaryRelease.model_validate({
    "apiVersion": "canarybot.io/v1alpha1", "kind": "CanaryRelease",
    "metadata": {"name": "podinfo", "namespace": "test"},
    "spec": {"targetRef": {"name": "podinfo"}, "ingressRef": {"name": "podinfo"},
             "images": {"podinfod": "stefanprodan/podinfo:6.0.3"}},
    "status": {"phase": "Succeeded", "canaryWeight": 0},
})
start = datetime(2026, 1, 1, tzinfo=UTC)
at = [start + timedelta(seconds=10 * i) for i in range(12)]
timeline = Timeline(
    start=start, end=at[-1], step_seconds=10,
    canary_success=tuple(Sample(t, 100.0) for t in at),
    stable_success=tuple(Sample(t, 99.9) for t in at),
    weights=tuple(WeightStep(t, 5 * i) for i, t in enumerate(at[:11])) + (WeightStep(at[-1], 0),),
    phase=Phase.SUCCEEDED, decided_at=at[-1], success_min=99,
)
png = render_rollout_chart(release, timeline)
assert png.startswith(b"\x89PNG\r\n\x1a\n"), png[:8]
print("png", len(png))
"""


def test_image_renders_the_rollout_chart_on_a_read_only_root(image: Image) -> None:
    result = image.podman(
        *image.run_args("--rm", "--entrypoint=python3"), "-c", CHART_SCRIPT, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # matplotlib logs (not warns) when it falls back from an unwritable MPLCONFIGDIR
    assert result.stderr == "", result.stderr
    assert result.stdout.startswith("png "), result.stdout
    assert int(result.stdout.split()[1]) > 10_000  # a 1000 x 1200 px picture


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:  # not listening yet
        return 0, str(exc)


@dataclass(frozen=True)
class Running:
    """A container of the image serving HTTP mode on two host ports."""

    slack_port: int
    metrics_port: int
    name: str


@pytest.fixture
def http_mode_container(
    image: Image, slack_fake: SlackFake, signing_secret: str, tmp_path: Path
) -> Iterator[Running]:
    """``canary-bot run`` in HTTP mode in the image, with the Slack port and the metrics
    port (probes, /metrics) both on loopback of the host network.

    No cluster: the engine is off (--no-engine) and the kubeconfig names a loopback port
    nothing listens on; Slack is the local fake.
    """
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters: [{name: none, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: none, user: {token: none}}]\n"
        "contexts: [{name: none, context: {cluster: none, user: none}}]\n"
        "current-context: none\n"
    )
    kubeconfig.chmod(0o644)
    tmp_path.chmod(0o755)
    port, metrics_port = free_port(), free_port()
    while metrics_port == port:
        metrics_port = free_port()
    name = f"canary-bot-test-{uuid.uuid4().hex[:8]}"
    image.podman(
        *image.run_args(
            "--detach", f"--name={name}",
            f"--volume={EXAMPLE_CONFIG}:/etc/canary-bot/config.yaml:ro",
            f"--volume={kubeconfig}:/etc/canary-bot/kubeconfig:ro",
            "--env=CANARY_BOT_CONFIG=/etc/canary-bot/config.yaml",
            "--env=KUBECONFIG=/etc/canary-bot/kubeconfig",
            f"--env=SLACK_API_URL={slack_fake.api_url}",
            f"--env=SLACK_BOT_TOKEN={slack_fake.bot_token}",
            f"--env=SLACK_SIGNING_SECRET={signing_secret}",
        ),
        "run", "--no-engine", "--host", "127.0.0.1", "--port", str(port),
        "--metrics-port", str(metrics_port),
    )  # fmt: skip
    try:
        yield Running(port, metrics_port, name)
    finally:
        image.podman("rm", "--force", "--time=5", name, check=False)


async def test_image_answers_probes_and_signed_slack_requests_in_http_mode(
    image: Image,
    http_mode_container: Running,
    slack_requests: SlackRequests,
    signing_secret: str,
) -> None:
    port, metrics_port = http_mode_container.slack_port, http_mode_container.metrics_port
    name = http_mode_container.name

    def logs() -> str:
        result = image.podman("logs", name, check=False)
        return result.stdout + result.stderr

    # the probes and /metrics are on the metrics port, as the Deployment's probes use them
    wait_for(
        lambda: _get(metrics_port, "/readyz") == (200, "ready\n"), 60, f"/readyz\n{logs()}"
    )
    assert _get(metrics_port, "/healthz") == (200, "ok\n")
    status, metrics = _get(metrics_port, "/metrics")
    assert status == 200 and "# TYPE" in metrics
    # the Slack port (the one the Service exposes) answers /healthz and nothing else
    assert _get(port, "/healthz") == (200, "ok\n")
    for path in ("/readyz", "/metrics"):
        assert _get(port, path)[0] == 404, path
    url = f"http://127.0.0.1:{port}/slack/events"
    # an HTTP-mode app: a signed /canary help is answered in the ack...
    answer = await send_to_app(url, slack_requests.slash_command(text="help"))
    assert answer.status == 200, answer.body
    # the text is Slack mrkdwn, with <, > and & escaped as Slack requires; shown unescaped
    shown = json.loads(answer.body)["text"]
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&")):
        shown = shown.replace(entity, char)
    assert "/canary start <deployment> image=<ref>" in shown, answer.body
    # ...and a forged one refused
    forged = await send_to_app(url, slack_requests.slash_command(text="help", wrong_secret=True))
    assert forged.status == 401
    # SIGTERM (what the kubelet sends) stops it cleanly
    image.podman("stop", "--time=20", name)
    exit_code = image.podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
    output = logs()
    assert exit_code == "0", output
    assert "Traceback" not in output
    assert signing_secret not in output

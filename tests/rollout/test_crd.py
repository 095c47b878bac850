"""The CanaryRelease CRD: generated from the models, and enforced by a real API server."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, field_validator

from rollout.models import CanaryRelease, parse_duration
from sandbox.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_crd", ROOT / "hack" / "gen_crd.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_crd = load_generator()


# -- generation (no cluster) ----------------------------------------------------------


def test_committed_crd_is_what_the_models_generate() -> None:
    committed = (ROOT / "manifests" / "crds" / "crd.yaml").read_text()
    assert committed == gen_crd.render(), "manifests/crds/crd.yaml is stale: run python hack/gen_crd.py"


def test_check_mode_reports_a_stale_file() -> None:
    ok = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen_crd.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr


def test_schema_is_structural_and_names_fields_as_users_write_them() -> None:
    schema = yaml.safe_load(gen_crd.render())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    text = yaml.safe_dump(schema)
    assert "$ref" not in text and "anyOf" not in text and "title" not in text
    spec = schema["properties"]["spec"]
    analysis = spec["properties"]["analysis"]["properties"]
    assert spec["required"] == ["targetRef", "images"]
    assert analysis["maxWeight"]["minimum"] == 1 and analysis["maxWeight"]["maximum"] == 100
    assert analysis["stepWeight"]["maximum"] == 100
    assert analysis["threshold"]["minimum"] == 1
    metric = analysis["metrics"]["items"]["properties"]
    assert set(metric) >= {"name", "interval", "thresholdRange", "templateRef", "query"}
    assert metric["interval"]["pattern"] == gen_crd.DURATION_PATTERN
    status = schema["properties"]["status"]
    assert "Paused" in status["properties"]["phase"]["enum"]
    assert "x-kubernetes-preserve-unknown-fields" not in status


_DURATION_PARTS = st.lists(
    st.sampled_from(
        ["1h", "2m", "30s", "500ms", "0s", "h", "m", "1", "1.5m", "ms", " ", "1d", "-1s"]
    ),
    min_size=0,
    max_size=4,
)


@given(_DURATION_PARTS)
def test_duration_pattern_accepts_exactly_what_the_models_accept(parts: list[str]) -> None:
    text = "".join(parts)
    try:
        parse_duration(text)
        model_ok = text == text.strip()  # the models strip spaces, the API server does not
    except ValueError:
        model_ok = False
    crd_ok = len(text) >= 2 and re.fullmatch(gen_crd.DURATION_PATTERN, text) is not None
    assert crd_ok == model_ok, text


def test_a_validator_without_a_crd_form_stops_generation() -> None:
    class Probe(BaseModel):
        size: int

        @field_validator("size")
        @classmethod
        def _even(cls, value: int) -> int:
            return value

    with pytest.raises(gen_crd.SchemaError, match=r"Probe\._even"):
        gen_crd.validator_rules(Probe)


# -- the real API server ----------------------------------------------------------------

TUTORIAL = """
apiVersion: canarybot.io/v1alpha1
kind: CanaryRelease
metadata:
  name: podinfo
spec:
  targetRef:
    name: podinfo
  ingressRef:
    name: podinfo
  images:
    podinfod: stefanprodan/podinfo:6.0.3
  progressDeadlineSeconds: 60
  service:
    port: 80
    targetPort: 9898
  analysis:
    interval: 10s
    threshold: 10
    maxWeight: 50
    stepWeight: 5
    stepWeightPromotion: 25
    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 99
        interval: 1m
    webhooks:
      - name: acceptance-test
        type: pre-rollout
        url: http://flagger-loadtester.test/
        timeout: 30s
        metadata:
          type: bash
          cmd: "curl -sd 'test' http://podinfo-canary/token | grep token"
      - name: load-test
        url: http://flagger-loadtester.test/
        timeout: 5s
        metadata:
          cmd: "hey -z 1m -q 10 -c 2 http://app.example.com/"
"""


class Kubectl:
    """The built kubectl against the test control plane."""

    def __init__(self, control_plane: ControlPlane) -> None:
        self.binary = str(control_plane.bin_dir / "kubectl")
        self.kubeconfig = str(control_plane.kubeconfig)

    def __call__(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.binary, f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done


@pytest.fixture(scope="module")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    """kubectl with the CRD applied the way a user applies it, and Established."""
    run = Kubectl(control_plane)
    run("apply", "-f", str(ROOT / "manifests" / "crds" / "crd.yaml"))
    run("wait", "--for=condition=Established", "--timeout=30s", "crd/canaryreleases.canarybot.io")
    return run


def manifest(**changes: Any) -> str:
    """The tutorial CanaryRelease with ``analysis`` fields changed."""
    obj = yaml.safe_load(TUTORIAL)
    obj["spec"]["analysis"].update(changes)
    return yaml.safe_dump(obj)


@pytest.mark.cluster
def test_tutorial_release_is_accepted_and_reads_back_into_the_models(
    kubectl: Kubectl, namespace: str
) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=TUTORIAL)

    stored = yaml.safe_load(kubectl("get", "-n", namespace, "crel", "podinfo", "-o", "yaml").stdout)
    release = CanaryRelease.from_object(stored)
    assert release.spec.analysis.max_weight == 50
    assert release.spec.analysis.webhooks[0].metadata["type"] == "bash"
    assert release.spec.analysis.step_weight_promotion == 25


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"maxWeight": 150},
            "spec.analysis.maxWeight: Invalid value: 150: spec.analysis.maxWeight "
            "in body should be less than or equal to 100",
        ),
        ({"stepWeight": 0}, "spec.analysis.stepWeight: Invalid value: 0"),
        ({"threshold": 0}, "spec.analysis.threshold: Invalid value: 0"),
        ({"interval": "1 minute"}, 'spec.analysis.interval: Invalid value: "1 minute"'),
        ({"metrics": [{"name": "a"}, {"name": "a"}]}, "spec.analysis.metrics[1]: Duplicate value"),
        (
            {"metrics": [{"name": "a", "thresholdRange": {"min": 5, "max": 1}}]},
            "thresholdRange.min must not be above thresholdRange.max",
        ),
        (
            {"match": [{"headers": {"x-canary": {"exact": "insider"}}}]},
            "analysis.match (A/B testing) needs analysis.iterations",
        ),
        (
            {"webhooks": [{"name": "w", "type": "pre-flight", "url": "http://x/"}]},
            'spec.analysis.webhooks[0].type: Unsupported value: "pre-flight"',
        ),
        # Flagger fields canary-bot does not act on: refused, naming the field and why
        (
            {"alerts": [{"name": "on-call", "severity": "error"}]},
            "spec.analysis.alerts: Invalid value: \"object\": analysis.alerts is a Flagger "
            "field canary-bot does not support: alert providers are not supported",
        ),
        ({"mirror": True}, "analysis.mirror is a Flagger field canary-bot does not support"),
        ({"mirrorWeight": 10}, "spec.analysis.mirrorWeight: Invalid value"),
        ({"sessionAffinity": {"cookieName": "x"}}, "analysis.sessionAffinity is a Flagger"),
        ({"canaryReadyThreshold": 50}, "analysis.canaryReadyThreshold is a Flagger field"),
        ({"primaryReadyThreshold": 50}, "analysis.primaryReadyThreshold is a Flagger field"),
        # a misspelled field is not pruned silently: kubectl's strict field validation
        ({"stepWieght": 5}, 'unknown field "spec.analysis.stepWieght"'),
        (
            {"webhooks": [{"name": "w", "url": "http://x/", "muteAlerts": True}]},
            'unknown field "spec.analysis.webhooks[0].muteAlerts"',
        ),
    ],
)
def test_invalid_spec_is_refused_with_a_clear_message(
    kubectl: Kubectl, namespace: str, changes: dict[str, Any], expected: str
) -> None:
    done = kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest(**changes), check=False)

    assert done.returncode != 0
    assert expected in done.stderr, done.stderr


@pytest.mark.cluster
def test_status_is_validated_and_pruned(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=TUTORIAL)

    bad = kubectl(
        "patch",
        "-n",
        namespace,
        "crel",
        "podinfo",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Exploding"}}',
        check=False,
    )
    kubectl(
        "patch",
        "-n",
        namespace,
        "crel",
        "podinfo",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Progressing", "canaryWeight": 15, "failedChecks": 2,'
        ' "message": "advance canary weight 15", "bogus": true}}',
    )
    stored = yaml.safe_load(kubectl("get", "-n", namespace, "crel", "podinfo", "-o", "yaml").stdout)

    assert bad.returncode != 0
    assert 'status.phase: Unsupported value: "Exploding"' in bad.stderr, bad.stderr
    assert stored["status"]["phase"] == "Progressing"
    assert "bogus" not in stored["status"]
    assert CanaryRelease.from_object(stored).status.canary_weight == 15


@pytest.mark.cluster
def test_kubectl_get_shows_the_printer_columns(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=TUTORIAL)
    kubectl(
        "patch",
        "-n",
        namespace,
        "crel",
        "podinfo",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Progressing", "canaryWeight": 15, "failedChecks": 2,'
        ' "message": "advance canary weight 15"}}',
    )

    table = kubectl("get", "-n", namespace, "canaryreleases").stdout.splitlines()
    wide = kubectl("get", "-n", namespace, "crel", "-o", "wide").stdout.splitlines()

    assert table[0].split() == ["NAME", "TARGET", "PHASE", "WEIGHT", "FAILEDCHECKS", "AGE"]
    assert table[1].split()[:5] == ["podinfo", "podinfo", "Progressing", "15", "2"]
    assert wide[0].split()[-1] == "MESSAGE"
    assert wide[1].endswith("advance canary weight 15")


# -- every value bounded (no cluster) -----------------------------------------------------


def _unbounded(node: Any, path: str, numbers: bool) -> list[str]:
    """Paths of strings, lists, maps (and, with ``numbers``, numbers) without a bound."""
    found: list[str] = []
    kind = node.get("type")
    if node.get("x-kubernetes-int-or-string"):
        if not node.get("x-kubernetes-validations"):
            found.append(path)
    elif kind == "string" and not {"maxLength", "enum"} & set(node):
        if node.get("format") != "date-time":
            found.append(path)
    elif kind == "array":
        if "maxItems" not in node:
            found.append(path)
        found += _unbounded(node["items"], f"{path}[]", numbers)
    elif kind == "object" and isinstance(node.get("additionalProperties"), dict):
        if "maxProperties" not in node:
            found.append(path)
        found += _unbounded(node["additionalProperties"], f"{path}.*", numbers)
    elif (
        kind in ("integer", "number")
        and numbers
        and ("minimum" not in node or "maximum" not in node)
    ):
        found.append(path)
    for name, child in (node.get("properties") or {}).items():
        found += _unbounded(child, f"{path}.{name}", numbers)
    return found


def test_every_value_a_release_author_writes_is_bounded() -> None:
    schema = yaml.safe_load(gen_crd.render())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

    assert _unbounded(schema["properties"]["spec"], "spec", numbers=True) == []
    # status numbers are measurements (any finite float); its text and lists are bounded
    assert _unbounded(schema["properties"]["status"], "status", numbers=False) == []


def test_durations_carry_their_range_into_a_cel_rule() -> None:
    schema = yaml.safe_load(gen_crd.render())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    analysis = schema["properties"]["spec"]["properties"]["analysis"]["properties"]
    hook = analysis["webhooks"]["items"]["properties"]["timeout"]

    assert analysis["interval"]["maxLength"] == 20
    assert "duration(self) >= duration('1s') && duration(self) <= duration('24h')" in (
        analysis["interval"]["x-kubernetes-validations"][0]["rule"]
    )
    assert hook["x-kubernetes-validations"][0]["message"] == "must be a duration from 100ms to 10m"


def test_fields_that_decide_what_runs_are_immutable() -> None:
    schema = yaml.safe_load(gen_crd.render())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = schema["properties"]["spec"]["x-kubernetes-validations"]
    paths = {r["fieldPath"] for r in rules if "oldSelf" in r["rule"]}

    assert paths == {f".{name}" for name in models_immutable()}
    assert {"targetRef", "ingressRef", "images", "service", "analysis"} <= set(models_immutable())
    assert "controlRequests" not in models_immutable()


def models_immutable() -> tuple[str, ...]:
    from rollout.models import IMMUTABLE_SPEC_FIELDS

    return IMMUTABLE_SPEC_FIELDS


def test_status_is_cut_to_its_bounds_instead_of_refused() -> None:
    from datetime import UTC, datetime

    from rollout.limits import STATUS_MESSAGE_LENGTH, fit_status
    from rollout.models import CanaryReleaseStatus, RolloutEvent

    now = datetime.now(UTC)
    events = [RolloutEvent(seq=i, type="StepAdvanced", message="m", at=now) for i in range(150)]
    status = CanaryReleaseStatus(message="x" * 10_000, events=events)

    fitted = fit_status(status)

    assert len(fitted.message) == STATUS_MESSAGE_LENGTH and fitted.message.endswith("…")
    assert [e.seq for e in fitted.events] == list(range(50, 150))
    assert fit_status(CanaryReleaseStatus()) == CanaryReleaseStatus()


def _with_refs(**refs: Any) -> str:
    obj = yaml.safe_load(TUTORIAL)
    obj["spec"].pop("ingressRef")
    obj["spec"].update(refs)
    return yaml.safe_dump(obj)


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("refs", "expected"),
    [
        ({}, "needs exactly one of ingressRef (ingress-nginx) and routeRef"),
        (
            {"ingressRef": {"name": "podinfo"}, "routeRef": {"name": "podinfo"}},
            "needs exactly one of ingressRef (ingress-nginx) and routeRef",
        ),
        (
            {"routeRef": {"kind": "Ingress", "name": "podinfo"}},
            'spec.routeRef.kind: Unsupported value: "Ingress"',
        ),
        (
            {"routeRef": {"apiVersion": "networking.k8s.io/v1", "name": "podinfo"}},
            'spec.routeRef.apiVersion: Unsupported value: "networking.k8s.io/v1"',
        ),
        ({"routeRef": {"name": "podinfo"}, "provider": "linkerd"}, "spec.provider: Unsupported"),
    ],
)
def test_a_release_names_exactly_one_route(
    kubectl: Kubectl, namespace: str, refs: dict[str, Any], expected: str
) -> None:
    done = kubectl("apply", "-n", namespace, "-f", "-", stdin=_with_refs(**refs), check=False)

    assert done.returncode != 0
    assert expected in done.stderr, done.stderr


@pytest.mark.cluster
def test_a_route_release_is_accepted_and_its_route_cannot_change(
    kubectl: Kubectl, namespace: str
) -> None:
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "name": "web"}
    kubectl(
        "apply", "-n", namespace, "-f", "-", stdin=_with_refs(routeRef=route, provider="contour")
    )
    stored = yaml.safe_load(kubectl("get", "-n", namespace, "crel", "podinfo", "-o", "yaml").stdout)
    release = CanaryRelease.from_object(stored)
    assert release.spec.route_ref is not None and release.spec.route_ref.name == "web"
    assert release.spec.metrics_provider == "contour"

    moved = _with_refs(routeRef={**route, "name": "other"}, provider="contour")
    done = kubectl("apply", "-n", namespace, "-f", "-", stdin=moved, check=False)
    assert done.returncode != 0
    assert "routeRef cannot change after the release is created" in done.stderr, done.stderr

"""The Canary CRD and Flagger-shaped refs: what a Flagger user pastes is accepted or refused
by the real API server (applied with the real kubectl), with the field named."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from rollout.canaries import REFUSED_SERVICE_FIELDS, REFUSED_SPEC_FIELDS, Canary, CanarySpec
from rollout.models import CanaryReleaseSpec
from sandbox.controlplane import ControlPlane
from tests.fixtures.tutorial import CANARYBOT_CANARY
from tests.rollout.test_crd import ROOT, Kubectl, gen_crd

# The seed tutorial's Canary with only apiVersion changed; applied into each test's own
# namespace, so without the tutorial's `namespace: test`.
SEED_CANARY = CANARYBOT_CANARY.replace("  namespace: test\n", "", 1)

FLAGGER_SHAPED_RELEASE = """
apiVersion: canarybot.io/v1alpha1
kind: CanaryRelease
metadata:
  name: podinfo-refs
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  ingressRef:
    apiVersion: networking.k8s.io/v1
    kind: Ingress
    name: podinfo
  images:
    podinfod: stefanprodan/podinfo:6.0.3
"""


def seed(**spec: Any) -> dict[str, Any]:
    """The seed Canary with top-level spec fields replaced."""
    body: dict[str, Any] = yaml.safe_load(SEED_CANARY)
    body["spec"].update(spec)
    return body


@pytest.fixture(scope="module")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    """kubectl with manifests/crds applied the way the install docs say (-k), Established."""
    run = Kubectl(control_plane)
    run("apply", "-k", str(ROOT / "manifests" / "crds"))
    for crd in ("canaryreleases.canarybot.io", "canaries.canarybot.io"):
        run("wait", "--for=condition=Established", "--timeout=30s", f"crd/{crd}")
    return run


# -- models (no cluster) ------------------------------------------------------------------


def test_seed_canary_reads_into_the_models() -> None:
    canary = Canary.from_object({**seed(), "metadata": {"name": "podinfo", "namespace": "test"}})

    assert canary.spec.target_ref.name == "podinfo"
    assert canary.spec.target_ref.kind == "Deployment"
    assert canary.spec.analysis is not None and canary.spec.analysis.max_weight == 50
    assert canary.status.state == "Idle"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("autoscalerRef", {"name": "podinfo"}, "spec.autoscalerRef is not supported"),
        ("revertOnDeletion", True, "spec.revertOnDeletion is not supported"),
        ("service", {"port": 80, "primary": {"labels": {"a": "b"}}}, "spec.service.primary"),
        ("provider", "istio", "provider"),
    ],
)
def test_models_refuse_flagger_fields_canary_bot_cannot_honour(
    field: str, value: Any, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        CanarySpec.model_validate(seed(**{field: value})["spec"])


@pytest.mark.parametrize(
    ("ref", "body"),
    [
        ("targetRef", {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "podinfo"}),
        ("targetRef", {"apiVersion": "apps/v1beta1", "kind": "Deployment", "name": "podinfo"}),
        ("ingressRef", {"apiVersion": "extensions/v1beta1", "kind": "Ingress", "name": "x"}),
    ],
)
def test_refs_accept_only_the_kinds_canary_bot_drives(ref: str, body: dict[str, str]) -> None:
    spec = yaml.safe_load(FLAGGER_SHAPED_RELEASE)["spec"]
    spec[ref] = body
    with pytest.raises(ValidationError, match=ref):
        CanaryReleaseSpec.model_validate(spec)


def test_every_value_a_canary_author_writes_is_bounded() -> None:
    from tests.rollout.test_crd import _unbounded

    crd = yaml.safe_load(gen_crd.render_canary())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _unbounded(schema["properties"]["spec"], "spec", numbers=True) == []
    assert _unbounded(schema["properties"]["status"], "status", numbers=False) == []


def test_committed_canary_crd_is_what_the_models_generate() -> None:
    committed = (ROOT / "manifests" / "crds" / "canaries.yaml").read_text()
    assert committed == gen_crd.render_canary(), "stale: run python hack/gen_crd.py"


# -- the API server -----------------------------------------------------------------------


@pytest.mark.cluster
def test_seed_canary_applies_with_kubectl(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=SEED_CANARY)

    table = kubectl("get", "canaries", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "TARGET", "STATE", "IMAGES", "OUTCOME", "AGE"]
    assert table[1].split()[:2] == ["podinfo", "podinfo"]
    short = kubectl("get", "cbc", "podinfo", "-n", namespace, "-o", "yaml").stdout
    stored = yaml.safe_load(short)
    assert stored["spec"]["targetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "podinfo",
    }
    Canary.from_object(stored)  # what the API server keeps reads back into the models


@pytest.mark.cluster
def test_flagger_shaped_refs_are_accepted_in_a_release(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=FLAGGER_SHAPED_RELEASE)

    stored = yaml.safe_load(
        kubectl("get", "crel", "podinfo-refs", "-n", namespace, "-o", "yaml").stdout
    )
    assert stored["spec"]["ingressRef"]["kind"] == "Ingress"
    assert CanaryReleaseSpec.model_validate(stored["spec"]).target_ref.api_version == "apps/v1"


REFUSALS = [
    ({"autoscalerRef": {"apiVersion": "autoscaling/v2", "name": "podinfo"}}, "autoscalerRef"),
    ({"revertOnDeletion": True}, "revertOnDeletion"),
    ({"service": {"port": 80, "canary": {"labels": {"a": "b"}}}}, "service.canary"),
    ({"provider": "istio"}, 'spec.provider: Unsupported value: "istio"'),
    (
        {"targetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "podinfo"}},
        'spec.targetRef.kind: Unsupported value: "StatefulSet"',
    ),
]


@pytest.mark.cluster
@pytest.mark.parametrize(("change", "named"), REFUSALS)
def test_api_server_refuses_what_canary_bot_cannot_honour(
    kubectl: Kubectl, namespace: str, change: dict[str, Any], named: str
) -> None:
    done = kubectl(
        "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(seed(**change)), check=False
    )

    assert done.returncode != 0
    assert named in done.stderr
    for name, why in {**REFUSED_SPEC_FIELDS, **REFUSED_SERVICE_FIELDS}.items():
        if f"spec.{name}" in named or f"service.{name}" in named:
            assert why.split(";")[0] in done.stderr.replace("\n", " ")


@pytest.mark.cluster
def test_a_refused_field_is_refused_even_when_the_client_ignores_unknown_fields(
    kubectl: Kubectl, namespace: str
) -> None:
    body = yaml.safe_dump(seed(autoscalerRef={"name": "podinfo"}))
    done = kubectl(
        "create", "--validate=false", "-n", namespace, "-f", "-", stdin=body, check=False
    )

    assert done.returncode != 0
    assert "spec.autoscalerRef is not supported" in done.stderr

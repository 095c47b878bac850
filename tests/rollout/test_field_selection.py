"""Lists that select by field on the real API server: the CRDs declare spec.targetRef.name
and spec.ingressRef.name selectable, so a start's checks fetch one Deployment's releases,
not the namespace's; kinds without such fields are filtered in the process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client as k8s

from rollout.kube import DEPLOYMENTS, RELEASES, Kube
from rollout.models import CanaryReleaseSpec
from rollout.store import ReleaseStore
from sandbox.controlplane import ControlPlane
from sandbox.sample_app import deploy_podinfo

pytestmark = pytest.mark.cluster


@pytest.fixture
def gateway(control_plane: ControlPlane, crd: None) -> Iterator[Kube]:
    """A client of the test's own, so its request counter holds only this test's requests."""
    kube = Kube.connect(kubeconfig=str(control_plane.kubeconfig))
    yield kube
    kube.close()


def spec(target: str, ingress: str) -> CanaryReleaseSpec:
    return CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": target},
            "ingressRef": {"name": ingress},
            "images": {"app": "app:2"},
        }
    )


def names(items: list[dict[str, object]]) -> list[str]:
    return sorted(str(i["metadata"]["name"]) for i in items)  # type: ignore[index]


async def test_the_api_server_selects_releases_by_target_and_by_ingress(
    gateway: Kube, namespace: str
) -> None:
    store = ReleaseStore(gateway)
    await store.create(namespace, "a-1", spec("a", "web"))
    await store.create(namespace, "a-2", spec("a", "web"))
    await store.create(namespace, "b-1", spec("b", "shop"))
    before = gateway.requests.counts.get(("GET", "canaryreleases"), 0)

    of_a = await gateway.list_objects(RELEASES, namespace, fields={"spec.targetRef.name": "a"})
    behind_shop = await gateway.list_objects(
        RELEASES, namespace, fields={"spec.ingressRef.name": "shop"}
    )

    assert names(of_a) == ["a-1", "a-2"]
    assert names(behind_shop) == ["b-1"]
    # one request each: the server selected (a refused selector would cost a second list)
    assert gateway.requests.counts[("GET", "canaryreleases")] - before == 2


async def test_a_value_that_is_not_a_name_is_matched_here_never_spliced_into_the_selector(
    gateway: Kube, namespace: str
) -> None:
    store = ReleaseStore(gateway)
    await store.create(namespace, "a-1", spec("a", "web"))
    hostile = {"spec.targetRef.name": "x,metadata.name=a-1"}
    assert await gateway.list_objects(RELEASES, namespace, fields=hostile) == []


async def test_a_kind_without_selectable_fields_is_filtered_in_the_process(
    gateway: Kube, kube_api_client: k8s.ApiClient, namespace: str
) -> None:
    deploy_podinfo(kube_api_client, namespace)
    wanted = {"spec.template.spec.containers": "nothing"}  # never equal: a list
    strategy = {"spec.strategy.type": "RollingUpdate"}
    before = gateway.requests.counts.get(("GET", "deployments"), 0)

    found = await gateway.list_objects(DEPLOYMENTS, namespace, fields=strategy)
    none = await gateway.list_objects(DEPLOYMENTS, namespace, fields=wanted)

    assert names(found) == ["podinfo"]
    assert none == []
    # the first list's selector was refused (400) and the list sent again without it; the
    # refusal is remembered, so the second list is one request
    assert gateway.requests.counts[("GET", "deployments")] - before == 3

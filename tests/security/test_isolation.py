"""Finding 3: one object the engine cannot read must not stall it for every namespace.

The object is stored the way the issue found it: ``analysis.interval: "<400 nines>s"``,
written while the CRD had no length bound (the test relaxes the CRD's spec schema for one
create, exactly as an object created before an upgrade, then restores it). Before the
fix, listing it raised OverflowError in the scheduler: every later release went
unscheduled and ``/canary list`` failed for everyone. Now that release is marked Failed
with the reason (status and an Event), a healthy release in another namespace runs to
its end, and ``/canary list`` shows the broken one as invalid.

A second object stored the same way has ``stepWeights`` that do not increase: it is
isolated the same way, with the models' words for what is wrong.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from bot.authz import Authorizer
from bot.config import parse_config
from bot.operations import Operations
from bot.process import CONSOLE_AUTHORIZATION
from bot.render.slack_reply import slack_text
from rollout.kube import Kube
from rollout.models import Phase
from rollout.store import ReleaseStore
from sandbox.sample_app import deploy_podinfo
from tests.fixtures.engine import CRD_PATH, ControllerFactory, async_wait_for, wait_for
from tests.security.conftest import NEW, release, with_value

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

GROUP, VERSION, PLURAL = "canarybot.io", "v1alpha1", "canaryreleases"
CRD_NAME = f"{PLURAL}.{GROUP}"
NINES = "9" * 400 + "s"


class NoGroups:
    async def members(self, group: str) -> frozenset[str]:
        return frozenset()


def _set_spec_schema(api: k8s.ApiClient, spec_schema: dict[str, Any]) -> None:
    ext = k8s.ApiextensionsV1Api(api)
    crd = ext.read_custom_resource_definition(CRD_NAME)
    body = api.sanitize_for_serialization(crd)
    version = body["spec"]["versions"][0]
    version["schema"]["openAPIV3Schema"]["properties"]["spec"] = spec_schema
    # only fields the schema declares can be selectable: drop them while the spec is
    # relaxed, and put the shipped ones back with the strict schema
    shipped = yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"][0]
    if "properties" in spec_schema:
        version["selectableFields"] = shipped.get("selectableFields", [])
    else:
        version.pop("selectableFields", None)
    ext.replace_custom_resource_definition(CRD_NAME, body)


def _create(api: k8s.ApiClient, namespace: str, obj: dict[str, Any]) -> bool:
    try:
        k8s.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, obj
        )
    except ApiException as exc:
        if exc.status == 422:
            return False
        raise
    return True


@pytest.fixture
def stored_before_the_bounds(kube_api_client: k8s.ApiClient, namespace: str) -> Iterator[str]:
    """The issue's object in ``namespace``, created while the CRD did not bound durations."""
    strict = yaml.safe_load(CRD_PATH.read_text())
    strict_spec = strict["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    hostile = with_value("spec.analysis.interval", NINES, name="stalled")
    _set_spec_schema(
        kube_api_client, {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    )
    try:
        wait_for(
            lambda: _create(kube_api_client, namespace, hostile), 30, "the relaxed CRD to apply"
        )
        # refused by today's CRD too; the models say why in words
        assert _create(
            kube_api_client, namespace, release("backwards", analysis={"stepWeights": [50, 10]})
        )
    finally:
        _set_spec_schema(kube_api_client, copy.deepcopy(strict_spec))
    probe = with_value("spec.analysis.interval", NINES, name="probe")
    wait_for(lambda: not _create(kube_api_client, namespace, probe), 30, "the strict CRD again")
    yield "stalled"


def _healthy() -> dict[str, Any]:
    """A release without metrics: its weights advance every second until promotion."""
    return release(analysis={"interval": "1s", "threshold": 2, "maxWeight": 30, "stepWeight": 10})


def _event_messages(api: k8s.ApiClient, namespace: str, name: str) -> list[str]:
    items = k8s.CoreV1Api(api).list_namespaced_event(namespace).items
    return [e.message for e in items if e.involved_object.name == name]


async def test_an_unreadable_release_is_marked_invalid_and_the_others_keep_running(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    namespace: str,
    second_namespace: str,
    stored_before_the_bounds: str,
    controller_factory: ControllerFactory,
) -> None:
    stalled = stored_before_the_bounds
    deploy_podinfo(kube_api_client, second_namespace)
    assert _create(kube_api_client, second_namespace, _healthy())
    store = ReleaseStore(kube)

    # all namespaces: the broken ones sort (and are listed) before the healthy one
    await controller_factory(namespace=None)

    async def raw_status(ns: str, name: str) -> dict[str, Any]:
        raw = await store.get_raw(ns, name)
        assert raw is not None
        return dict(raw.get("status") or {})

    async def refused(name: str) -> dict[str, Any] | None:
        status = await raw_status(namespace, name)
        return status if status.get("phase") == Phase.FAILED.value else None

    nines = await async_wait_for(lambda: refused(stalled), 60, f"{stalled} to be marked Failed")
    backwards = await async_wait_for(lambda: refused("backwards"), 60, "backwards to be Failed")
    assert nines["reason"] == "InvalidSpec"
    assert nines["message"].startswith(
        "invalid spec: spec.analysis.interval: '99999999999999999999'... is not a duration: "
        "longer than 20 characters"
    ), nines["message"]
    assert backwards["message"] == (
        "invalid spec: spec.analysis.stepWeights: stepWeights must increase strictly, got [50, 10]"
    )
    assert any(
        m.startswith("Refused: invalid spec: spec.analysis.interval")
        for m in _event_messages(kube_api_client, namespace, stalled)
    )

    healthy = await async_wait_for(
        lambda: store.get(second_namespace, "podinfo"),
        5,
        "the healthy release to be readable",
    )

    async def succeeded() -> Any:
        current = await store.get(second_namespace, "podinfo")
        assert current is not None and current.status.phase != Phase.FAILED, current
        return current if current.status.phase == Phase.SUCCEEDED else None

    done = await async_wait_for(succeeded, 120, "the healthy release to be promoted")
    assert done.status.message == "promotion completed"
    image = k8s.AppsV1Api(kube_api_client).read_namespaced_deployment("podinfo", second_namespace)
    assert image.spec.template.spec.containers[0].image == NEW
    assert healthy.metadata.namespace == second_namespace

    operations = Operations(
        config=parse_config(f"defaults: {{namespace: {namespace}}}\n"),
        store=store,
        kube=kube,
        authorizer=Authorizer(CONSOLE_AUTHORIZATION, NoGroups()),
    )
    listed = slack_text(await operations.list_active(namespace))
    assert listed.startswith(f"No active releases in {namespace}.\n*Invalid releases*"), listed
    assert (
        f":x: `{stalled}` ({namespace}) invalid: spec.analysis.interval: "
        "'99999999999999999999'... is not a duration" in listed
    )
    assert f":x: `backwards` ({namespace}) invalid: spec.analysis.stepWeights" in listed
    everywhere = slack_text(await operations.list_active(None))
    assert f"`{stalled}` ({namespace}) invalid" in everywhere

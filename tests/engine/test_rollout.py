"""The tutorial's stories end to end: real API server, real Prometheus, simulated traffic.

Intervals are shortened (2 s instead of 10 s, a 10 s rate window instead of 1 m) so the
suite runs in minutes; everything else is the tutorial's analysis block.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry

from rollout.controller import Controller
from rollout.kube import Kube
from rollout.models import CanaryRelease, CanaryReleaseSpec, ControlRequest, Phase
from rollout.store import ReleaseStore
from tests.fixtures.engine import ControllerFactory, async_wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

OLD = "stefanprodan/podinfo:6.0.0"
NEW = "stefanprodan/podinfo:6.0.3"


def tutorial_spec(loadtester_url: str, **overrides: Any) -> CanaryReleaseSpec:
    """The tutorial's Canary, as a CanaryRelease spec, with test-sized intervals."""
    analysis: dict[str, Any] = {
        "interval": "2s",
        "threshold": 10,
        "maxWeight": 50,
        "stepWeight": 5,
        "metrics": [
            {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "10s"}
        ],
        "webhooks": [
            {
                "name": "acceptance-test",
                "type": "pre-rollout",
                "url": loadtester_url + "/",
                "timeout": "30s",
                "metadata": {
                    "type": "bash",
                    "cmd": "curl -sd 'test' http://podinfo-canary/token | grep token",
                },
            },
            {
                "name": "load-test",
                "url": loadtester_url + "/",
                "timeout": "5s",
                "metadata": {"cmd": "hey -z 1m -q 10 -c 2 http://app.example.com/"},
            },
        ],
    }
    analysis.update(overrides.pop("analysis", {}))
    body: dict[str, Any] = {
        "targetRef": {"name": "podinfo"},
        "ingressRef": {"name": "podinfo"},
        "images": {"podinfod": NEW},
        "service": {"port": 80, "targetPort": 9898},
        "progressDeadlineSeconds": 60,
        "analysis": analysis,
    }
    body.update(overrides)
    return CanaryReleaseSpec.model_validate(body)


async def phase_of(store: ReleaseStore, namespace: str, name: str = "podinfo") -> CanaryRelease:
    release = await store.get(namespace, name)
    assert release is not None, f"CanaryRelease {namespace}/{name} disappeared"
    return release


async def wait_phase(
    store: ReleaseStore, namespace: str, phases: set[Phase], timeout: float, name: str = "podinfo"
) -> CanaryRelease:
    async def reached() -> CanaryRelease | None:
        release = await phase_of(store, namespace, name)
        return release if release.status.phase in phases else None

    result: CanaryRelease = await async_wait_for(
        reached, timeout, f"{name} to reach {sorted(p.value for p in phases)}"
    )
    return result


def events(api: k8s.ApiClient, namespace: str) -> list[str]:
    """Event messages on CanaryReleases, oldest first (what `kubectl describe` shows)."""
    items = k8s.CoreV1Api(api).list_namespaced_event(namespace).items
    ours = [e for e in items if e.involved_object.kind == "CanaryRelease"]
    # creation order: etcd revisions grow monotonically (timestamps only have seconds)
    ours.sort(key=lambda e: int(e.metadata.resource_version))
    return [e.message for e in ours]


async def story_ending(api: k8s.ApiClient, namespace: str, last: str) -> list[str]:
    """The events once ``last`` has been recorded (Events are written after the status)."""

    async def ended() -> list[str] | None:
        story = events(api, namespace)
        return story if story and story[-1] == last else None

    try:
        result: list[str] = await async_wait_for(ended, 10, f"the last event to be {last!r}")
    except pytest.fail.Exception:
        pytest.fail(
            f"expected the story to end with {last!r}:\n" + "\n".join(events(api, namespace))
        )
    return result


async def canary_deleted(api: k8s.ApiClient, namespace: str) -> None:
    """Wait for the canary objects to go: the engine stores the outcome, then deletes them."""

    async def gone() -> bool:
        return not canary_objects(api, namespace)

    await async_wait_for(gone, 30, f"the canary objects to be deleted in {namespace}")


def canary_objects(api: k8s.ApiClient, namespace: str) -> list[str]:
    """Which canary objects exist."""
    found = []
    probes = {
        "deployment/podinfo-canary": lambda: k8s.AppsV1Api(api).read_namespaced_deployment(
            "podinfo-canary", namespace
        ),
        "service/podinfo-canary": lambda: k8s.CoreV1Api(api).read_namespaced_service(
            "podinfo-canary", namespace
        ),
        "ingress/podinfo-canary": lambda: k8s.NetworkingV1Api(api).read_namespaced_ingress(
            "podinfo-canary", namespace
        ),
    }
    for name, probe in probes.items():
        try:
            probe()
            found.append(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
    return found


def target_image(api: k8s.ApiClient, namespace: str) -> str:
    deployment = k8s.AppsV1Api(api).read_namespaced_deployment("podinfo", namespace)
    return str(deployment.spec.template.spec.containers[0].image)


async def test_tutorial_release_promotes_step_by_step(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    traffic: Any,
    loadtester: Any,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    sim = traffic(namespace, "podinfo", "podinfo", rps=40)
    store = ReleaseStore(kube)
    spec = tutorial_spec(loadtester.url)
    events_hook = {"name": "events", "type": "event", "url": loadtester.url + "/events"}
    hooks = [w.model_dump(by_alias=True) for w in spec.analysis.webhooks] + [events_hook]
    spec = tutorial_spec(loadtester.url, analysis={"webhooks": hooks})
    await store.create(namespace, "podinfo", spec)
    registry = CollectorRegistry()
    await controller_factory(namespace, registry=registry)

    release = await wait_phase(store, namespace, {Phase.SUCCEEDED, Phase.FAILED}, 180)
    assert release.status.phase == Phase.SUCCEEDED, "\n".join(events(kube_api_client, namespace))
    story = await story_ending(
        kube_api_client, namespace, f"Promotion completed! podinfo.{namespace} now runs {NEW}"
    )
    advances = [int(m.rsplit(" ", 1)[1]) for m in story if m.startswith("Advance podinfo.")]
    assert advances == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50], story
    assert "Pre-rollout check acceptance-test passed" in story
    assert "Routing all traffic to primary" in story
    assert target_image(kube_api_client, namespace) == NEW
    await canary_deleted(kube_api_client, namespace)
    # the data plane follows the Ingress within ticks (waited for off the engine's loop)
    await asyncio.to_thread(sim.wait_for_weight, 0, timeout=10)
    # the load tester was asked to run the acceptance test and the load test
    assert loadtester.calls("acceptance-test") and loadtester.calls("load-test")
    rate = next(m for m in release.status.metrics if m.name == "request-success-rate")
    assert rate.value is not None and rate.value >= 99

    # /metrics tells the same story
    def sample(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    await async_wait_for(
        lambda: _async(sample("canarybot_rollouts", phase="Succeeded") == 1),
        10,
        "canarybot_rollouts{phase=Succeeded} to be 1",
    )
    assert sample("canarybot_rollouts", phase="Progressing") == 0
    assert sample("canarybot_rollout_duration_seconds_count", outcome="succeeded") == 1
    assert (
        sample(
            "canarybot_analysis_results_total",
            namespace=namespace,
            metric="request-success-rate",
            result="ok",
        )
        >= 10
    )
    assert sample("canarybot_kube_api_requests_total", verb="PATCH", resource="ingresses") >= 10
    assert sample("canarybot_canary_weight", namespace=namespace, release="podinfo") == 0
    # event webhooks hear every event with Flagger's metadata fields
    heard = [c.metadata.get("eventMessage", "") for c in loadtester.calls("events")]
    assert f"Advance podinfo.{namespace} canary weight 5" in heard
    assert all(
        c.metadata.get("eventType") in ("Normal", "Warning") for c in loadtester.calls("events")
    )


async def test_http_500s_roll_back_after_threshold(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    traffic: Any,
    loadtester: Any,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    sim = traffic(namespace, "podinfo", "podinfo", rps=40)
    sim.set_side("canary", error_rate=0.5)
    store = ReleaseStore(kube)
    await store.create(
        namespace, "podinfo", tutorial_spec(loadtester.url, analysis={"threshold": 3})
    )
    await controller_factory(namespace)

    release = await wait_phase(store, namespace, {Phase.SUCCEEDED, Phase.FAILED}, 120)
    assert release.status.phase == Phase.FAILED, events(kube_api_client, namespace)
    assert release.status.failed_checks == 3
    story = await story_ending(
        kube_api_client,
        namespace,
        f"Rolling back podinfo.{namespace} failed checks threshold reached 3",
    )
    halts = [m for m in story if m.startswith("Halt advancement request-success-rate")]
    assert halts, story
    measured = [m for m in release.status.metrics if m.name == "request-success-rate"][0]
    assert measured.value is not None and 30 < measured.value < 70
    assert target_image(kube_api_client, namespace) == OLD
    await canary_deleted(kube_api_client, namespace)
    # the data plane follows the Ingress within ticks (waited for off the engine's loop)
    await asyncio.to_thread(sim.wait_for_weight, 0, timeout=10)
    assert release.status.canary_weight == 0


async def test_no_traffic_halts_with_no_values_and_rolls_back(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    traffic: Any,
    loadtester: Any,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    traffic(namespace, "podinfo", "podinfo", rps=0)
    store = ReleaseStore(kube)
    await store.create(
        namespace,
        "podinfo",
        tutorial_spec(loadtester.url, analysis={"threshold": 2, "webhooks": []}),
    )
    await controller_factory(namespace)

    release = await wait_phase(store, namespace, {Phase.SUCCEEDED, Phase.FAILED}, 90)
    story = events(kube_api_client, namespace)
    assert release.status.phase == Phase.FAILED
    assert any(
        m.startswith("Halt advancement no values found for nginx metric request-success-rate")
        and "not receiving traffic" in m
        for m in story
    ), story
    await canary_deleted(kube_api_client, namespace)


async def test_pre_rollout_failure_rolls_back_without_sending_traffic(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    traffic: Any,
    loadtester: Any,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    traffic(namespace, "podinfo", "podinfo", rps=20)
    loadtester.fail("acceptance-test", status=500)
    store = ReleaseStore(kube)
    await store.create(
        namespace, "podinfo", tutorial_spec(loadtester.url, analysis={"threshold": 2})
    )
    await controller_factory(namespace)

    release = await wait_phase(store, namespace, {Phase.SUCCEEDED, Phase.FAILED}, 90)
    story = events(kube_api_client, namespace)
    assert release.status.phase == Phase.FAILED
    assert any("acceptance-test" in m and m.startswith("Halt advancement") for m in story), story
    assert not any(m.startswith("Advance podinfo.") for m in story)
    assert target_image(kube_api_client, namespace) == OLD
    await canary_deleted(kube_api_client, namespace)


async def test_progress_deadline_rolls_back_a_canary_that_cannot_start(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    loadtester: Any,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    # the namespace may run only the two stable pods: canary pods are refused
    k8s.CoreV1Api(kube_api_client).create_namespaced_resource_quota(
        namespace, {"metadata": {"name": "two-pods"}, "spec": {"hard": {"pods": "2"}}}
    )
    store = ReleaseStore(kube)
    await store.create(
        namespace, "podinfo", tutorial_spec(loadtester.url, progressDeadlineSeconds=10)
    )
    await controller_factory(namespace)

    release = await wait_phase(store, namespace, {Phase.SUCCEEDED, Phase.FAILED}, 60)
    assert release.status.phase == Phase.FAILED
    assert release.status.reason.startswith("progress deadline exceeded"), release.status.reason
    # the canary is sized for maxWeight 50 of a 2-pod target: one pod, refused by the quota
    assert "0 of 1 updated replicas available" in release.status.reason
    await canary_deleted(kube_api_client, namespace)
    assert target_image(kube_api_client, namespace) == OLD


async def test_abort_request_routes_traffic_back_within_a_second(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    traffic: Any,
    loadtester: Any,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    sim = traffic(namespace, "podinfo", "podinfo", rps=40)
    store = ReleaseStore(kube)
    spec = tutorial_spec(loadtester.url, analysis={"interval": "30s", "stepWeight": 20})
    await store.create(namespace, "podinfo", spec)
    await controller_factory(namespace)
    net = k8s.NetworkingV1Api(kube_api_client)

    def weight() -> int | None:
        try:
            ingress = net.read_namespaced_ingress("podinfo-canary", namespace)
        except ApiException:
            return None
        return int(ingress.metadata.annotations["nginx.ingress.kubernetes.io/canary-weight"])

    await async_wait_for(lambda: _async(weight() == 20), 60, "the canary to get weight 20")
    requested = time.monotonic()
    await store.request_control(
        namespace,
        "podinfo",
        ControlRequest(
            id="abort-1", action="abort", user="U1", user_name="alice", reason="bad build"
        ),
    )
    await async_wait_for(
        lambda: _async(not weight()), 10, "the canary weight to drop to 0", interval=0.02
    )
    latency = time.monotonic() - requested
    release = await wait_phase(store, namespace, {Phase.FAILED}, 30)
    assert release.status.reason == "aborted by alice: bad build"
    assert [(a.id, a.result, a.user) for a in release.status.audit] == [
        ("abort-1", "applied", "U1")
    ]
    # the interval is 30 s: only the watch can explain a prompt reaction
    assert latency < 10, f"abort took {latency:.2f}s"
    await canary_deleted(kube_api_client, namespace)
    await asyncio.to_thread(sim.wait_for_weight, 0, timeout=5)


async def _async(value: Any) -> Any:
    return value


async def test_manual_approval_waits_for_an_approve_request(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    traffic: Any,
    loadtester: Any,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    traffic(namespace, "podinfo", "podinfo", rps=40)
    store = ReleaseStore(kube)
    spec = tutorial_spec(
        loadtester.url, approval="manual", analysis={"maxWeight": 10, "stepWeight": 10}
    )
    await store.create(namespace, "podinfo", spec)
    await controller_factory(namespace)

    waiting = await wait_phase(store, namespace, {Phase.WAITING_PROMOTION, Phase.FAILED}, 60)
    assert waiting.status.phase == Phase.WAITING_PROMOTION
    assert target_image(kube_api_client, namespace) == OLD
    await store.request_control(
        namespace,
        "podinfo",
        ControlRequest(id="ok-1", action="approve", user="U2", user_name="bob"),
    )
    done = await wait_phase(store, namespace, {Phase.SUCCEEDED, Phase.FAILED}, 60)
    assert done.status.phase == Phase.SUCCEEDED
    assert target_image(kube_api_client, namespace) == NEW
    assert f"Promotion of podinfo.{namespace} approved by bob" in events(kube_api_client, namespace)


@pytest.mark.parametrize(
    ("case", "spec_changes", "expected"),
    [
        ("unknown-deployment", {"targetRef": {"name": "nosuch"}}, "Deployment nosuch not found"),
        ("missing-ingress", {"ingressRef": {"name": "nosuch"}}, "Ingress nosuch not found"),
        ("unknown-container", {"images": {"web": NEW}}, "no container named web"),
    ],
)
async def test_invalid_requests_are_refused_and_change_nothing(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    loadtester: Any,
    controller_factory: ControllerFactory,
    case: str,
    spec_changes: dict[str, Any],
    expected: str,
) -> None:
    namespace = podinfo
    store = ReleaseStore(kube)
    await store.create(namespace, "podinfo", tutorial_spec(loadtester.url, **spec_changes))
    await controller_factory(namespace)
    release = await wait_phase(store, namespace, {Phase.FAILED, Phase.SUCCEEDED}, 30)
    assert release.status.phase == Phase.FAILED
    assert expected in release.status.message, release.status.message

    async def refusal_told() -> bool:  # Events are written after the status
        return any(
            m.startswith("Refused podinfo.") or expected in m
            for m in events(kube_api_client, namespace)
        )

    await async_wait_for(refusal_told, 10, "an Event telling the refusal")
    await canary_deleted(kube_api_client, namespace)
    assert target_image(kube_api_client, namespace) == OLD


async def test_invalid_spec_written_with_kubectl_is_reported_in_status(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    custom = k8s.CustomObjectsApi(kube_api_client)
    body = {
        "apiVersion": "canarybot.io/v1alpha1",
        "kind": "CanaryRelease",
        "metadata": {"name": "podinfo"},
        "spec": {
            "targetRef": {"name": "podinfo"},
            "ingressRef": {"name": "podinfo"},
            "images": {"podinfod": "Not A Valid Image!"},
        },
    }
    try:
        custom.create_namespaced_custom_object(
            "canarybot.io", "v1alpha1", namespace, "canaryreleases", body
        )
    except ApiException as exc:
        # the CRD's schema may already refuse it: then the API server says why
        assert exc.status == 422 and "images" in exc.body
        return
    await controller_factory(namespace)
    store = ReleaseStore(kube)

    async def failed() -> dict[str, Any] | None:
        raw = await store.get_raw(namespace, "podinfo")
        status = (raw or {}).get("status") or {}
        return status if status.get("phase") == "Failed" else None

    status = await async_wait_for(failed, 30, "the invalid release to be marked Failed")
    assert "not a valid image reference" in status["message"]
    await canary_deleted(kube_api_client, namespace)


async def test_max_weight_over_100_is_refused_by_the_api_server(
    kube_api_client: k8s.ApiClient, crd: None, namespace: str
) -> None:
    custom = k8s.CustomObjectsApi(kube_api_client)
    body = {
        "apiVersion": "canarybot.io/v1alpha1",
        "kind": "CanaryRelease",
        "metadata": {"name": "podinfo"},
        "spec": {
            "targetRef": {"name": "podinfo"},
            "ingressRef": {"name": "podinfo"},
            "images": {"podinfod": NEW},
            "analysis": {"maxWeight": 150},
        },
    }
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(
            "canarybot.io", "v1alpha1", namespace, "canaryreleases", body
        )
    assert refused.value.status == 422
    assert "maxWeight" in refused.value.body


async def test_second_rollout_on_the_same_target_is_refused(
    kube: Kube,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    traffic: Any,
    loadtester: Any,
    controller_factory: ControllerFactory,
) -> None:
    namespace = podinfo
    traffic(namespace, "podinfo", "podinfo", rps=20)
    store = ReleaseStore(kube)
    spec = tutorial_spec(loadtester.url, analysis={"interval": "30s"})
    await store.create(namespace, "podinfo", spec)
    controller: Controller = await controller_factory(namespace)
    await wait_phase(store, namespace, {Phase.PROGRESSING}, 60)
    second = spec.model_copy(update={"images": {"podinfod": "stefanprodan/podinfo:6.0.4"}})
    await store.create(namespace, "podinfo-again", second)
    refused = await wait_phase(store, namespace, {Phase.FAILED}, 30, name="podinfo-again")
    assert "already has a rollout in progress (podinfo" in refused.status.message
    first = await phase_of(store, namespace)
    assert first.status.phase == Phase.PROGRESSING
    assert controller.is_leader

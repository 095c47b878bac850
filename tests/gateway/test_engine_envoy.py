"""The tutorial's stories end to end on Gateway API: the engine shifts weights on the
user's HTTPRoute, Contour programs a real Envoy, real requests reach the kwok pods'
backends, Prometheus scrapes Envoy and the built-in ``contour`` metrics judge the canary,
the Slack fake gets the thread. After each story the user's route is as they wrote it.
"""

from __future__ import annotations

import asyncio
import http.client
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client as k8s
from prometheus_client import CollectorRegistry

from bot.config import Channels
from bot.metrics import BotMetrics
from bot.notifier import SlackNotifier
from bot.slack_client import make_client
from rollout.kube import Kube
from rollout.models import CanaryRelease, CanaryReleaseSpec, ControlRequest, Phase
from rollout.store import ReleaseStore
from sandbox.controlplane import ControlPlane
from sandbox.engine_process import EngineProcess
from sandbox.gateway.dataplane import DataPlane
from sandbox.prometheus import PrometheusServer
from sandbox.slack_fake import SlackFake
from sandbox.traffic import SideSettings
from tests.fixtures.engine import ControllerFactory, async_wait_for
from tests.fixtures.gateway import BackendsFactory
from tests.gateway.helpers import (
    CANARY_IMAGE,
    STABLE_IMAGE,
    create_app,
    create_route,
    get_route,
    service,
    user_route,
    user_visible,
)

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

HOST = "web.example.com"
CHANNEL = "C0DEPLOYS"
_FAST = SideSettings(latency_ms=0.0, jitter_ms=0.0)


class Load:
    """Requests through Envoy on one keep-alive connection until stopped (paced, so the
    test's two cores stay shared); counts the versions that answered, per header set."""

    def __init__(self, url: str, headers: dict[str, dict[str, str]], pause: float = 0.01) -> None:
        parts = urlsplit(url)
        self._address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._headers = headers
        self._pause = pause
        self._stop = threading.Event()
        self.seen: dict[str, Counter[str]] = {name: Counter() for name in headers}
        self._thread = threading.Thread(target=self._run, name="envoy-load", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        conn = http.client.HTTPConnection(*self._address, timeout=5)
        while not self._stop.wait(self._pause):
            for name, headers in self._headers.items():
                try:
                    conn.request("GET", "/", headers={"Host": HOST, **headers})
                    response = conn.getresponse()
                    body = response.read()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection(*self._address, timeout=5)
                    self.seen[name]["error"] += 1
                    continue
                version = "6.0.1" if b'"6.0.1"' in body else "6.0.0"
                self.seen[name][version if response.status == 200 else str(response.status)] += 1
        conn.close()


def spec(approval: str = "auto", **analysis: Any) -> CanaryReleaseSpec:
    """The tutorial's analysis, test-sized, on the user's HTTPRoute with Contour metrics."""
    body: dict[str, Any] = {
        "interval": "2s",
        "threshold": 10,
        "maxWeight": 30,
        "stepWeight": 10,
        "metrics": [
            {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "10s"}
        ],
    }
    body.update(analysis)
    return CanaryReleaseSpec.model_validate(
        {
            "targetRef": {"name": "web"},
            "routeRef": {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "name": "web",
            },
            "provider": "contour",
            "images": {"podinfo": CANARY_IMAGE},
            "service": {"port": 80, "targetPort": 9898},
            "canaryReplicas": 1,
            "approval": approval,
            "progressDeadlineSeconds": 90,
            "analysis": body,
        }
    )


@pytest.fixture
def slack(slack_fake: SlackFake) -> SlackNotifier:
    """The Slack notifier, talking to the fake."""
    client = make_client(slack_fake.bot_token, slack_fake.api_url, rate_limit_retries=2)
    return SlackNotifier(
        client,
        Channels(default=CHANNEL),
        metrics=BotMetrics(CollectorRegistry()),
        posts_per_second=100,
    )


@pytest.fixture
async def app(
    kube_api_client: k8s.ApiClient,
    namespace: str,
    gateway: DataPlane,
    backends: BackendsFactory,
    envoy_metrics: PrometheusServer,
) -> AsyncIterator[dict[str, Any]]:
    """The stable app behind the user's route, in force in Envoy; yields what the user
    sees of the route before any release."""
    create_app(kube_api_client, namespace, canary=False)
    k8s.CoreV1Api(kube_api_client).create_namespaced_service(namespace, service("api", "api"))
    sim = backends(namespace, {"web": "stable", "web-canary": "canary"}, stable=_FAST, canary=_FAST)
    sim.wait_serving({"stable": 2})
    original = user_visible(
        create_route(kube_api_client, user_route(namespace, gateway.parent_ref))
    )
    yield {"original": original, "sim": sim}


@pytest.fixture
def store(kube: Kube) -> Iterator[ReleaseStore]:
    """The CanaryRelease store (the API server's CRD is installed by ``kube``)."""
    yield ReleaseStore(kube)


def canary_weight(api: k8s.ApiClient, namespace: str) -> int | None:
    """The canary backendRef's weight in the user's route (None: no canary backend)."""
    for rule in get_route(api, namespace, "web")["spec"]["rules"]:
        for ref in rule.get("backendRefs") or []:
            if ref["name"] == "web-canary" and not str(rule.get("name", "")).startswith("web-"):
                return int(ref.get("weight", 1))
    return None


async def until(what: str, check: Any, timeout: float = 120.0, interval: float = 0.2) -> Any:
    async def probe() -> Any:
        return await asyncio.to_thread(check)

    return await async_wait_for(probe, timeout, what, interval)


async def ended(store: ReleaseStore, namespace: str, timeout: float = 180.0) -> CanaryRelease:
    async def final() -> CanaryRelease | None:
        release = await store.get(namespace, "web")
        return release if release is not None and release.status.phase.is_final else None

    result: CanaryRelease = await async_wait_for(final, timeout, "the release to end")
    return result


async def route_given_back(api: k8s.ApiClient, namespace: str, original: dict[str, Any]) -> None:
    """The route is the user's again (finalize runs right after the outcome is stored)."""
    await until(
        "the user's route to be as they wrote it",
        lambda: user_visible(get_route(api, namespace, "web")) == original,
        30,
    )


def slack_texts(fake: SlackFake) -> list[str]:
    return [str(m.get("text", "")) for m in fake.messages(CHANNEL, include_replies=True)]


def target_image(api: k8s.ApiClient, namespace: str) -> str:
    deployment = k8s.AppsV1Api(api).read_namespaced_deployment("web", namespace)
    return str(deployment.spec.template.spec.containers[0].image)


async def test_the_tutorial_promotion_through_envoy(
    kube_api_client: k8s.ApiClient,
    namespace: str,
    gateway: DataPlane,
    app: dict[str, Any],
    store: ReleaseStore,
    slack: SlackNotifier,
    slack_fake: SlackFake,
    controller_factory: ControllerFactory,
) -> None:
    weights: set[int] = set()
    with Load(gateway.url, {"all": {}}):
        await store.create(namespace, "web", spec())
        await controller_factory(namespace, notifier=slack)

        async def done() -> CanaryRelease | None:
            weight = await asyncio.to_thread(canary_weight, kube_api_client, namespace)
            if weight is not None:
                weights.add(weight)
            release = await store.get(namespace, "web")
            return release if release is not None and release.status.phase.is_final else None

        release = await async_wait_for(done, 180, "the release to end")
    assert release.status.phase == Phase.SUCCEEDED, release.status.message
    await route_given_back(kube_api_client, namespace, app["original"])
    assert target_image(kube_api_client, namespace) == CANARY_IMAGE
    assert {10, 20, 30} <= weights, weights
    rate = next(m for m in release.status.metrics if m.name == "request-success-rate")
    assert rate.value is not None and rate.value >= 99, rate
    assert app["sim"].counts()["canary"] > 0  # real requests reached the canary's pod
    ready = [c for c in release.status.conditions if c.type == "RouteReady"]
    assert all(c.status == "True" for c in ready), ready
    await until(
        "Slack to hear of the promotion",
        lambda: any("Promotion completed" in t for t in slack_texts(slack_fake)),
        30,
    )


async def test_canary_500s_seen_by_envoy_roll_back(
    kube_api_client: k8s.ApiClient,
    namespace: str,
    gateway: DataPlane,
    app: dict[str, Any],
    store: ReleaseStore,
    slack: SlackNotifier,
    controller_factory: ControllerFactory,
) -> None:
    app["sim"].set_side("canary", error_rate=0.5)
    with Load(gateway.url, {"all": {}}):
        # Checks before Prometheus has two scrapes of the canary's cluster find no values
        # (and count): a threshold of 6 leaves room for measured ones.
        await store.create(namespace, "web", spec(threshold=6))
        await controller_factory(namespace, notifier=slack)
        release = await ended(store, namespace)

    assert release.status.phase == Phase.FAILED, release.status.message
    assert release.status.failed_checks == 6
    measured = next(m for m in release.status.metrics if m.name == "request-success-rate")
    # Measured on what Envoy counted for the canary's cluster (half its answers are 500s;
    # over a 10 s window on a few requests a second the rate is rough), not "no values".
    assert measured.value is not None and measured.value < 90, measured
    await route_given_back(kube_api_client, namespace, app["original"])
    assert target_image(kube_api_client, namespace) == STABLE_IMAGE


async def test_abort_sends_the_route_back_to_stable_at_once(
    kube_api_client: k8s.ApiClient,
    namespace: str,
    gateway: DataPlane,
    app: dict[str, Any],
    store: ReleaseStore,
    slack: SlackNotifier,
    controller_factory: ControllerFactory,
) -> None:
    with Load(gateway.url, {"all": {}}):
        await store.create(namespace, "web", spec(interval="30s", stepWeight=20))
        await controller_factory(namespace, notifier=slack)
        await until(
            "the canary to get weight 20", lambda: canary_weight(kube_api_client, namespace) == 20
        )
        abort = ControlRequest(id="abort-1", action="abort", user="U1", user_name="alice")
        await store.request_control(namespace, "web", abort)
        # The interval is 30 s: only the abort explains the weight leaving the route now.
        await until(
            "the canary weight to leave the route",
            lambda: not canary_weight(kube_api_client, namespace),
            20,
            0.02,
        )
        release = await ended(store, namespace, 30)

    assert release.status.phase == Phase.FAILED
    assert release.status.reason.startswith("aborted by alice")
    await route_given_back(kube_api_client, namespace, app["original"])
    assert target_image(kube_api_client, namespace) == STABLE_IMAGE


async def test_an_engine_killed_between_route_edits_resumes_and_abort_restores_the_route(
    kube_api_client: k8s.ApiClient,
    control_plane: ControlPlane,
    namespace: str,
    gateway: DataPlane,
    app: dict[str, Any],
    store: ReleaseStore,
    envoy_metrics: PrometheusServer,
    tmp_path: Path,
) -> None:
    """The engine as its own process, SIGKILLed while the route carries the canary at
    weight 10 (after one route edit, before the next); a new process resumes from the
    release's status, and the abort still gives the user back the route they wrote."""
    args = [
        "--kubeconfig", str(control_plane.kubeconfig),
        "--prometheus-url", envoy_metrics.url,
        "--namespace", namespace,
        "--identity", "engine",
        "--lease-namespace", namespace,
        "--no-leader-election",
    ]  # fmt: skip
    engine = EngineProcess("engine", args, tmp_path)
    try:
        with Load(gateway.url, {"all": {}}):
            await store.create(namespace, "web", spec(interval="2s", stepWeight=10, maxWeight=50))
            await asyncio.to_thread(engine.start)
            await until(
                "the canary to get weight 10",
                lambda: canary_weight(kube_api_client, namespace) == 10,
                interval=0.02,
            )
            await asyncio.to_thread(engine.kill)
            killed_at = canary_weight(kube_api_client, namespace)
            release = await store.get(namespace, "web")
            assert release is not None and release.status.phase == Phase.PROGRESSING
            assert killed_at is not None and killed_at > 0, killed_at

            await asyncio.to_thread(engine.start)
            # the new process carries on with the steps the old one left
            await until(
                "the restarted engine to advance the canary",
                lambda: (canary_weight(kube_api_client, namespace) or 0) > killed_at,
            )
            abort = ControlRequest(id="abort-1", action="abort", user="U1", user_name="alice")
            await store.request_control(namespace, "web", abort)
            release = await ended(store, namespace, 60)
    finally:
        await asyncio.to_thread(engine.stop)

    assert release.status.phase == Phase.FAILED, engine.log()[-3000:]
    assert release.status.reason.startswith("aborted by alice")
    await route_given_back(kube_api_client, namespace, app["original"])
    assert target_image(kube_api_client, namespace) == STABLE_IMAGE


async def test_a_header_match_run_sends_only_insiders_to_the_canary(
    kube_api_client: k8s.ApiClient,
    namespace: str,
    gateway: DataPlane,
    app: dict[str, Any],
    store: ReleaseStore,
    slack: SlackNotifier,
    controller_factory: ControllerFactory,
) -> None:
    # Manual approval: the load stops before the promotion gives stable the new version.
    ab = spec("manual", iterations=4, match=[{"headers": {"x-canary": {"exact": "insider"}}}])

    def rule_names() -> list[Any]:
        return [
            r.get("name") for r in get_route(kube_api_client, namespace, "web")["spec"]["rules"]
        ]

    headers = {"insider": {"x-canary": "insider"}, "other": {"x-canary": "outsider"}}
    with Load(gateway.url, headers) as load:
        await store.create(namespace, "web", ab)
        await controller_factory(namespace, notifier=slack)
        await until("the canary-only rule", lambda: rule_names()[0] == "web-canary-match-0")

        async def waiting() -> bool:
            release = await store.get(namespace, "web")
            return release is not None and release.status.phase in (
                Phase.WAITING_PROMOTION,
                Phase.FAILED,
            )

        await async_wait_for(waiting, 120, "the A/B run to wait for approval")
    approve = ControlRequest(id="approve-1", action="approve", user="U1", user_name="alice")
    await store.request_control(namespace, "web", approve)
    release = await ended(store, namespace)

    assert release.status.phase == Phase.SUCCEEDED, release.status.message
    assert release.status.iterations == 4
    await route_given_back(kube_api_client, namespace, app["original"])
    # Outsiders never reached the canary; insiders did (once Envoy had the rule).
    assert load.seen["other"]["6.0.1"] == 0, load.seen
    assert load.seen["insider"]["6.0.1"] > 0, load.seen


@pytest.mark.parametrize(
    ("route_ns", "rules", "says"),
    [
        (
            None,
            [{"backendRefs": [{"name": "api", "port": 80}]}],
            "has no rule with a backendRef to Service",
        ),
        ("elsewhere", None, "add a ReferenceGrant in"),
        ("", None, "HTTPRoute missing not found in namespace"),
    ],
)
async def test_a_route_canary_bot_cannot_use_is_refused_at_start(
    kube_api_client: k8s.ApiClient,
    namespace: str,
    gateway_crds: DataPlane,
    store: ReleaseStore,
    controller_factory: ControllerFactory,
    route_ns: str | None,
    rules: list[dict[str, Any]] | None,
    says: str,
) -> None:
    create_app(kube_api_client, namespace, canary=False)
    route = user_route(namespace, gateway_crds.parent_ref)
    if rules is not None:
        route["spec"]["rules"] = rules
    name = "web"
    if route_ns == "elsewhere":  # the route in another namespace, no ReferenceGrant
        other = f"{namespace}-routes"[:63]
        k8s.CoreV1Api(kube_api_client).create_namespace(
            k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=other))
        )
        route["metadata"]["namespace"] = other
        for rule in route["spec"]["rules"]:
            for ref in rule["backendRefs"]:
                ref["namespace"] = namespace
    if route_ns == "":
        name = "missing"
    else:
        create_route(kube_api_client, route)
    before = (
        user_visible(get_route(kube_api_client, route["metadata"]["namespace"], "web"))
        if name == "web"
        else None
    )
    body = spec().model_dump(by_alias=True, exclude_none=True)
    body["routeRef"] = {
        "name": name,
        **({"namespace": route["metadata"]["namespace"]} if route_ns == "elsewhere" else {}),
    }
    await store.create(namespace, "web", CanaryReleaseSpec.model_validate(body))
    await controller_factory(namespace)
    try:
        release = await ended(store, namespace, 60)
    finally:
        if route_ns == "elsewhere":
            k8s.CoreV1Api(kube_api_client).delete_namespace(route["metadata"]["namespace"])

    assert release.status.phase == Phase.FAILED
    assert release.status.reason == "InvalidSpec"
    assert says in release.status.message, release.status.message
    if before is not None:  # refused before anything changed
        assert (
            user_visible(get_route(kube_api_client, route["metadata"]["namespace"], "web"))
            == before
        )

"""Finding 3, as a property: whatever a CanaryRelease author writes, one object stays one object.

Hypothesis writes CanaryReleases with hostile values (durations of hundreds of digits,
zero and negative numbers, 2**70, floats where integers belong, long and odd strings,
long lists) into the real API server, while an engine watches every namespace. For
each object, either

- the API server refuses it, and its message names the field (``spec.…``), or
- the engine marks it Failed with a reason a person can act on (``invalid spec: spec.…``
  for what the models refuse, or the start check's problem: here no target exists);

and a healthy release in another namespace, started before the first example, is
promoted in the end: no object stalled the engine.

Every rule of the models has a schema form today, so the second branch is reached by
objects the API server accepts as valid (refused by the start check); objects the models
cannot read only exist when stored before a bound, which test_isolation reproduces.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from rollout.controller import Controller, EngineSettings
from rollout.kube import Kube
from rollout.notify import LoggingNotifier
from rollout.store import InvalidRelease, parse_release
from sandbox.controlplane import ControlPlane
from sandbox.prometheus import PrometheusServer
from sandbox.sample_app import deploy_podinfo
from tests.fixtures.engine import wait_for
from tests.security.conftest import VALID, release

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

GROUP, VERSION, PLURAL = "canarybot.io", "v1alpha1", "canaryreleases"

DURATION_PATHS = [
    "spec.analysis.interval",
    "spec.analysis.metrics.0.interval",
    "spec.analysis.webhooks.0.timeout",
]
NUMBER_PATHS = [
    "spec.analysis.threshold",
    "spec.analysis.maxWeight",
    "spec.analysis.stepWeight",
    "spec.analysis.iterations",
    "spec.analysis.stepWeightPromotion",
    "spec.progressDeadlineSeconds",
    "spec.service.port",
    "spec.service.targetPort",
    "spec.analysis.metrics.0.thresholdRange.min",
    "spec.analysis.metrics.0.compareToStable",
    "spec.analysis.webhooks.0.retries",
]
STRING_PATHS = [
    "spec.targetRef.name",
    "spec.analysis.metrics.0.name",
    "spec.analysis.metrics.0.query",
    "spec.analysis.webhooks.0.name",
    "spec.analysis.webhooks.0.url",
    "spec.requestedBy.user",
    "spec.cluster",
    "spec.images.podinfod",
]

durations = st.one_of(
    st.from_regex(r"\A[0-9]{1,30}(h|m|s|ms)\Z"),
    st.sampled_from(["0s", "0ms", "9" * 400 + "s", "1h1h", "-1s", "1.5h", "24h1ms", "86400s"]),
    st.text(max_size=30),
)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**31, 2**63 - 1, 1e300, -1e300, 0.5]),
    st.floats(allow_nan=False, allow_infinity=False),
)
strings = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda c, n: c * n,
        st.sampled_from(["x", "é", "\u202e", " "]),
        st.sampled_from([0, 64, 300, 3000, 9000]),
    ),
)
step_lists = st.lists(st.integers(min_value=-5, max_value=200), max_size=120)

mutation = st.one_of(
    st.tuples(st.sampled_from(DURATION_PATHS), durations),
    st.tuples(st.sampled_from(NUMBER_PATHS), numbers),
    st.tuples(st.sampled_from(STRING_PATHS), strings),
    st.tuples(st.just("spec.analysis.stepWeights"), step_lists),
)


def _set(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = body
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    node[last] = value


class EngineThread:
    """A controller over every namespace, on its own event loop in a thread."""

    def __init__(self, kubeconfig: str, prometheus_url: str) -> None:
        self._kubeconfig = kubeconfig
        self._prometheus_url = prometheus_url
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        kube = Kube.connect(kubeconfig=self._kubeconfig)
        settings = EngineSettings(
            prometheus_url=self._prometheus_url,
            namespace=None,
            leader_election=False,
            max_tick_seconds=1.0,
        )
        controller = Controller(kube, LoggingNotifier(), settings, "property")
        await controller.start()
        self._ready.set()
        await self._stop.wait()
        await controller.stop()
        kube.close()

    def __enter__(self) -> EngineThread:
        self._thread.start()
        assert self._ready.wait(30), "the engine did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture
def engine_everywhere(
    control_plane: ControlPlane, crd: None, prometheus: PrometheusServer
) -> Iterator[EngineThread]:
    with EngineThread(str(control_plane.kubeconfig), prometheus.url) as engine:
        yield engine


def _status(api: k8s.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return dict(obj.get("status") or {})


def test_hostile_releases_are_refused_or_isolated(
    kube_api_client: k8s.ApiClient,
    namespace: str,
    second_namespace: str,
    engine_everywhere: EngineThread,
) -> None:
    api = k8s.CustomObjectsApi(kube_api_client)
    deploy_podinfo(kube_api_client, second_namespace)
    healthy = release(analysis={"interval": "1s", "threshold": 2, "maxWeight": 50, "stepWeight": 5})
    api.create_namespaced_custom_object(GROUP, VERSION, second_namespace, PLURAL, healthy)
    outcomes: dict[str, int] = {"refused": 0, "invalid": 0, "start check": 0}

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(mutation, min_size=1, max_size=3))
    def one_object(changes: list[tuple[str, Any]]) -> None:
        body = copy.deepcopy(VALID)
        body["metadata"]["name"] = f"hostile-{uuid.uuid4().hex[:8]}"
        for path, value in changes:
            _set(body, path, value)
        name = body["metadata"]["name"]
        try:
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        except ApiException as exc:
            assert exc.status in (400, 422), exc
            message = json.loads(exc.body).get("message", "")
            assert re.search(r"spec\.[A-Za-z]", message), message
            outcomes["refused"] += 1
            return
        try:
            status = wait_for(
                lambda: (s := _status(api, namespace, name)).get("phase") == "Failed" and s,
                30,
                f"the engine to mark {name} Failed ({json.dumps(changes)[:300]})",
            )
            stored = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            try:
                parse_release(stored)
            except InvalidRelease:
                assert status["reason"] == "InvalidSpec"
                assert status["message"].startswith("invalid spec: spec."), status["message"]
                outcomes["invalid"] += 1
            else:
                assert status["message"].startswith("Deployment podinfo not found"), status
                outcomes["start check"] += 1
        finally:
            api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    one_object()

    promoted = wait_for(
        lambda: _status(api, second_namespace, "podinfo").get("phase") == "Succeeded",
        120,
        "the healthy release in the other namespace to be promoted",
    )
    assert promoted
    assert outcomes["refused"] > 0, outcomes
    print(f"hostile outcomes: {outcomes}")

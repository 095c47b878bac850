"""Status writes on the real API server: the release a write returns is the object the
server stored, and a read of the version the store wrote itself gives that release back
without validating it again, while any other version is read and validated as stored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from rollout.kube import Kube
from rollout.models import (
    CanaryReleaseSpec,
    CanaryReleaseStatus,
    ControlRequest,
    Phase,
    RolloutEvent,
    WeightPoint,
)
from rollout.store import ReleaseStore, parse_release
from sandbox.controlplane import ControlPlane

pytestmark = pytest.mark.cluster


@pytest.fixture
def gateway(control_plane: ControlPlane, crd: None) -> Iterator[Kube]:
    kube = Kube.connect(kubeconfig=str(control_plane.kubeconfig))
    yield kube
    kube.close()


def spec() -> CanaryReleaseSpec:
    return CanaryReleaseSpec.model_validate(
        {"targetRef": {"name": "web"}, "ingressRef": {"name": "web"}, "images": {"app": "app:2"}}
    )


def progressing(seq: int) -> CanaryReleaseStatus:
    at = datetime(2026, 12, 2, 6, 0, seq, 123000, tzinfo=UTC)
    return CanaryReleaseStatus(
        phase=Phase.PROGRESSING,
        canary_weight=10 * seq,
        message="x" * 5000,  # beyond the status bound: the store clips it
        started_at=at,
        last_analysis_at=at,
        history=[
            WeightPoint(at=at, weight=10 * i, values={"request-success-rate": 99.5, "gone": None})
            for i in range(seq)
        ],
        events=[RolloutEvent(seq=seq, type="StepAdvanced", message=f"weight {10 * seq}", at=at)],
        event_seq=seq,
    )


async def test_a_written_release_is_the_stored_object(gateway: Kube, namespace: str) -> None:
    store = ReleaseStore(gateway)
    release = await store.create(namespace, "web", spec())
    for seq in (1, 2, 3):
        written = await store.write_status(release, progressing(seq))
        raw = await gateway.request(
            "GET", f"/apis/canarybot.io/v1alpha1/namespaces/{namespace}/canaryreleases/web"
        )
        assert written == parse_release(raw)  # as the server stored it, clipped message too
        assert len(written.status.message) < 5000
        assert await store.get(namespace, "web") is written  # not validated again
        assert await ReleaseStore(gateway).get(namespace, "web") == written
        release = written


async def test_a_version_written_by_someone_else_is_read_as_stored(
    gateway: Kube, namespace: str
) -> None:
    store = ReleaseStore(gateway)
    written = await store.write_status(await store.create(namespace, "web", spec()), progressing(1))
    other = ReleaseStore(gateway)
    request = ControlRequest(id="r1", action="abort", user="U1")
    changed = await other.request_control(namespace, "web", request)
    read = await store.get(namespace, "web")
    assert read is not None and read is not written
    assert read == changed
    assert [r.id for r in read.spec.control_requests] == ["r1"]
    assert read.metadata.resource_version != written.metadata.resource_version

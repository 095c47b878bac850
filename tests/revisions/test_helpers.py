"""The pure parts of rollout/revisions.py: template hash, who changed it, the release spec."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from rollout.canaries import Canary, CanaryStatus, ready_condition
from rollout.hold import owns_paused
from rollout.models import Analysis
from rollout.revisions import (
    changed_by,
    release_spec,
    stable_images_of,
    template_hash,
)
from rollout.text import rolled_back

TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"app": "podinfo"}},
    "spec": {"containers": [{"name": "podinfod", "image": "stefanprodan/podinfo:6.0.0"}]},
}


def test_template_hash_changes_with_the_template_only() -> None:
    same = copy.deepcopy(TEMPLATE)
    same["metadata"]["labels"]["pod-template-hash"] = "abc"
    changed = copy.deepcopy(TEMPLATE)
    changed["spec"]["containers"][0]["image"] = "stefanprodan/podinfo:6.0.3"
    restarted = copy.deepcopy(TEMPLATE)
    restarted["metadata"]["annotations"] = {"kubectl.kubernetes.io/restartedAt": "now"}

    assert template_hash(same) == template_hash(TEMPLATE)
    assert template_hash(changed) != template_hash(TEMPLATE)
    assert template_hash(restarted) != template_hash(TEMPLATE)  # rollout restart: a revision


def entry(manager: str, time: str, fields: dict[str, Any], operation: str = "Update") -> Any:
    return {"manager": manager, "time": time, "operation": operation, "fieldsV1": fields}


def test_changed_by_is_the_newest_writer_of_the_template() -> None:
    deployment = {
        "metadata": {
            "managedFields": [
                entry("kustomize-controller", "2026-01-01T00:00:00Z", {"f:spec": {"f:template": {}}}, "Apply"),
                entry("kubectl-set", "2026-01-02T00:00:00Z", {"f:spec": {"f:template": {}}}),
                entry("kubectl-scale", "2026-01-03T00:00:00Z", {"f:spec": {"f:replicas": {}}}),
                entry("canary-bot", "2026-01-04T00:00:00Z", {"f:spec": {"f:paused": {}}}, "Apply"),
            ]
        },
        "spec": {"paused": True},
    }

    assert changed_by(deployment) == "kubectl-set"
    assert owns_paused(deployment)
    assert not owns_paused({**deployment, "spec": {"paused": False}})


def test_release_spec_carries_the_canary_and_the_new_images() -> None:
    canary = Canary.from_object(
        {
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "targetRef": {"name": "podinfo"},
                "ingressRef": {"name": "podinfo"},
                "channel": "#deploys",
                "approval": "manual",
            },
        }
    )
    spec = release_spec(canary, TEMPLATE, "argocd-controller", Analysis(), "prod-eu-1")

    assert spec.cluster == "prod-eu-1"
    assert spec.images == {"podinfod": "stefanprodan/podinfo:6.0.0"}
    assert spec.changed_by == "argocd-controller"
    assert spec.canary_ref is not None and spec.canary_ref.name == "podinfo"
    assert spec.requested_by.channel == "#deploys" and spec.approval == "manual"


def test_stable_images_annotation_is_read_defensively() -> None:
    assert stable_images_of({"canarybot.io/stable-images": '{"a": "b:1"}'}) == {"a": "b:1"}
    assert stable_images_of({"canarybot.io/stable-images": "not json"}) == {}
    assert stable_images_of({"canarybot.io/stable-images": "[1]"}) == {}
    assert stable_images_of({}) == {}


def test_the_rolled_back_sentence_has_one_wording() -> None:
    at = datetime(2026, 12, 2, 3, 4, 5, 678000, tzinfo=UTC)
    asks, runs = {"podinfod": "stefanprodan/podinfo:6.0.4"}, {"podinfod": "stefanprodan/podinfo:6.0.3"}

    assert rolled_back(asks, runs, at, "request-success-rate 42% < 99%") == (
        "spec asks for podinfod=stefanprodan/podinfo:6.0.4, pods run "
        "podinfod=stefanprodan/podinfo:6.0.3 (rolled back at 2026-12-02T03:04:05Z: "
        "request-success-rate 42% < 99%); push a fixed revision or revert"
    )
    assert rolled_back(asks, {}, None, "") == (
        "spec asks for podinfod=stefanprodan/podinfo:6.0.4, pods run the previous revision "
        "(rolled back); push a fixed revision or revert"
    )


def test_ready_condition_follows_the_state_and_keeps_its_transition_time() -> None:
    earlier, now = datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)

    def ready(**status: Any) -> Any:
        return ready_condition(CanaryStatus.model_validate(status), now)

    assert (ready().status, ready().reason) == ("True", "Idle")
    assert ready(state="Progressing").reason == "Running"
    assert ready(state="Adopting").reason == "Running"
    assert ready(state="Blocked", message="Deployment podinfo not found").message == (
        "Deployment podinfo not found"
    )
    assert ready(state="Invalid").reason == "Blocked"
    assert ready(lastRevision={"outcome": "Failed"}).reason == "LeftPaused"
    assert ready(lastRevision={"outcome": "Superseded"}).reason == "Idle"
    kept = {"type": "Ready", "status": "True", "reason": "Idle", "lastTransitionTime": earlier}
    assert ready(conditions=[kept]).last_transition_time == earlier
    assert ready(state="Progressing", conditions=[kept]).last_transition_time == now

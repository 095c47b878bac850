"""The Helm chart in charts/canary-bot: lint, a matrix of ``helm template`` values, the
schema's refusals, and ``helm install`` on the real control plane followed by a rollout
under the ServiceAccount the chart made.

helm is built from its Go module (hack/build-helm.sh, pinned in hack/versions.env). The
template tests compare the chart's objects with what ``kubectl kustomize manifests/``
renders, so the two ways to install cannot drift apart.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from bot.config import BotConfig
from rollout.kube import Kube
from rollout.models import Phase
from rollout.store import ReleaseStore
from sandbox.controlplane import ControlPlane, find_binaries
from tests.deploy.helm import CHART, RELEASE, Helm, build_helm
from tests.deploy.kubectl import (
    MANIFESTS,
    NAMESPACE,
    NAMESPACED,
    ROOT,
    Kubectl,
    Manifest,
    can,
    engine,
    find,
    lease_holder,
    one,
    service_account_kubeconfig,
    uninstall,
    wait_for,
)
from tests.deploy.permissions import (
    CLUSTER_WIDE,
    FORBIDDEN,
    IN_BOT_NAMESPACE,
    IN_RELEASE_NAMESPACE,
    Access,
    granted,
)
from tests.engine.test_rollout import (
    NEW,
    canary_objects,
    events,
    target_image,
    tutorial_spec,
    wait_phase,
)

# Every test needs the control plane's binaries (kubectl renders the kustomize side);
# the install tests also its running API server.
pytestmark = pytest.mark.cluster

CRD_NAME = "canaryreleases.canarybot.io"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())


@pytest.fixture(scope="module")
def helm_binary() -> Path:
    """helm, built (or taken from the cache) by hack/build-helm.sh."""
    return build_helm()


@pytest.fixture
def helm(helm_binary: Path, tmp_path: Path) -> Helm:
    """helm without a cluster (lint and template)."""
    return Helm(helm_binary, tmp_path)


@pytest.fixture(scope="module")
def kustomize_objects(tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    """``kubectl kustomize manifests/`` with the control plane's kubectl (no cluster)."""
    kubectl = Kubectl(find_binaries() / "kubectl", tmp_path_factory.mktemp("k") / "none")
    return kubectl.render(MANIFESTS)


def _deployment(objects: list[Manifest]) -> Manifest:
    return one(objects, "Deployment")


def _container(objects: list[Manifest]) -> Manifest:
    containers = _deployment(objects)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _config(objects: list[Manifest]) -> str:
    return str(one(objects, "ConfigMap")["data"]["config.yaml"])


# --- generated parts ----------------------------------------------------------------------


def test_generated_crd_rules_and_values_table_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen_chart.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_generator_refuses_a_namespaced_role_that_grants_other_rules(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "hack"))
    try:
        import gen_chart
    finally:
        sys.path.remove(str(ROOT / "hack"))
    copy = tmp_path / "manifests"
    subprocess.run(["cp", "-r", str(MANIFESTS), str(copy)], check=True)
    role = copy / "overlays" / "namespaced" / "role.yaml"
    docs = list(yaml.safe_load_all(role.read_text()))
    docs[0]["rules"][0]["verbs"].append("delete")
    role.write_text(yaml.safe_dump_all(docs))
    with pytest.raises(gen_chart.SourceError, match="must grant the same rules"):
        gen_chart.render_rules(copy)
    # the sources are found by kind and name, wherever they live under manifests/
    shutil.copy(MANIFESTS / "overlays" / "namespaced" / "role.yaml", role)
    (copy / "base" / "clusterrole.yaml").rename(copy / "clusterrole-moved.yaml")
    assert "ClusterRole canary-bot (manifests/clusterrole-moved.yaml)" in gen_chart.render_rules(copy)


def test_schema_knows_every_top_level_key_of_the_config_file() -> None:
    keys = {field.alias or name for name, field in BotConfig.model_fields.items()}
    assert set(SCHEMA["properties"]["config"]["properties"]) == keys


def test_lint_passes_for_the_defaults_and_namespaced_mode(helm: Helm) -> None:
    for extra in ([], ["--set", "namespaced.enabled=true", "--set", "namespaced.namespace=apps"]):
        result = helm.run("lint", "--strict", str(CHART), *extra)
        assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, result.stdout


# --- the same objects and rights as manifests/ -------------------------------------------


def test_defaults_install_what_kustomize_installs(
    helm: Helm, kustomize_objects: list[Manifest]
) -> None:
    chart = helm.template()
    # the chart leaves the namespace to the operator (it must exist for the Secret); the
    # CRD is compared below (kustomize may install it from another kustomization)
    leave_out = {"Namespace", "CustomResourceDefinition"}
    expected = {(o["kind"], o["metadata"]["name"]) for o in kustomize_objects}
    configmap = one(kustomize_objects, "ConfigMap")["metadata"]["name"]
    expected = {
        (k, "canary-bot-config" if n == configmap else n) for k, n in expected if k not in leave_out
    }
    assert {(o["kind"], o["metadata"]["name"]) for o in chart} == expected
    # the CRD (crds/) is the one hack/gen_crd.py renders from rollout/models.py
    with_crds = helm.template(None, "--include-crds")
    crds = {c["metadata"]["name"]: c for c in find(with_crds, "CustomResourceDefinition")}
    sys.path.insert(0, str(ROOT / "hack"))
    try:
        import gen_crd
    finally:
        sys.path.remove(str(ROOT / "hack"))
    assert crds == {
        "canaryreleases.canarybot.io": yaml.safe_load(gen_crd.render()),
        "canaries.canarybot.io": yaml.safe_load(gen_crd.render_canary()),
    }
    for kind, name in (
        ("ClusterRole", "canary-bot"),
        ("Role", "canary-bot-leader-election"),
        ("Role", "canary-bot-webhook-secrets"),
    ):
        assert one(chart, kind, name)["rules"] == one(kustomize_objects, kind, name)["rules"]
    for kind, name in (
        ("RoleBinding", "canary-bot-leader-election"),
        ("RoleBinding", "canary-bot-webhook-secrets"),
    ):
        ours, theirs = one(chart, kind, name), one(kustomize_objects, kind, name)
        assert (ours["roleRef"], ours["subjects"]) == (theirs["roleRef"], theirs["subjects"])
    binding = one(chart, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "canary-bot", "namespace": NAMESPACE}
    ]
    # every namespaced object lands in the release namespace
    assert {o["metadata"].get("namespace") for o in chart if o["kind"] not in (
        "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition")} == {NAMESPACE}  # fmt: skip


def test_defaults_run_the_pods_as_the_kustomize_deployment_does(
    helm: Helm, kustomize_objects: list[Manifest]
) -> None:
    chart = helm.template()
    ours, theirs = _deployment(chart)["spec"], _deployment(kustomize_objects)["spec"]
    assert ours["replicas"] == theirs["replicas"] == 2
    assert ours["strategy"] == theirs["strategy"]
    pod, their_pod = ours["template"]["spec"], theirs["template"]["spec"]
    for key in (
        "serviceAccountName",
        "automountServiceAccountToken",
        "terminationGracePeriodSeconds",
        "securityContext",
    ):
        assert pod[key] == their_pod[key], key
    container, their_container = _container(chart), _container(kustomize_objects)
    for key in (
        "args", "ports", "env", "livenessProbe", "readinessProbe", "resources",
        "securityContext", "volumeMounts", "imagePullPolicy",
    ):  # fmt: skip
        assert container[key] == their_container[key], key
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tmp"] == {v["name"]: v for v in their_pod["volumes"]}["tmp"]
    assert volumes["config"]["configMap"]["name"] == "canary-bot-config"
    assert container["image"] == "registry.example.com/canary-bot:0.1.0"
    # the default anti-affinity selects the chart's own pods
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    selector = term[0]["podAffinityTerm"]["labelSelector"]["matchLabels"]
    pod_labels = ours["template"]["metadata"]["labels"]
    assert selector == ours["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    service = one(chart, "Service")
    assert service["spec"]["selector"] == selector
    assert one(chart, "PodDisruptionBudget")["spec"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": selector},
    }
    assert find(chart, "ServiceMonitor") == []


def _check_config(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return subprocess.run(
        [str(Path(sys.executable).parent / "canary-bot"), "check-config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_config_value_becomes_the_config_file_the_bot_accepts(
    helm: Helm, tmp_path: Path
) -> None:
    default = helm.template()
    checked = _check_config(_config(default), tmp_path)
    assert checked.returncode == 0, checked.stderr
    # the example config as a value: the ConfigMap holds exactly it
    example = yaml.safe_load((MANIFESTS / "canary-bot.example.yaml").read_text())
    # Helm merges maps with the defaults; null drops the default ones the example lacks
    objects = helm.template({"config": {**example, "defaults": {**example["defaults"]}}})
    rendered = yaml.safe_load(_config(objects))
    assert rendered["authorization"] == example["authorization"]
    assert rendered["profiles"]["latency"] == example["profiles"]["latency"]
    assert rendered["metricTemplates"] == example["metricTemplates"]
    checked = _check_config(_config(objects), tmp_path)
    assert checked.returncode == 0, checked.stderr
    # a config change changes the pod template, so the pods roll
    annotation = "checksum/config"
    before = _deployment(default)["spec"]["template"]["metadata"]["annotations"][annotation]
    after = _deployment(objects)["spec"]["template"]["metadata"]["annotations"][annotation]
    assert before != after


def test_namespaced_mode_grants_the_same_rules_in_one_namespace_only(
    helm: Helm, kustomize_objects: list[Manifest]
) -> None:
    objects = helm.template({"namespaced": {"enabled": True, "namespace": "apps"}})
    assert find(objects, "ClusterRole") == [] and find(objects, "ClusterRoleBinding") == []
    role = one(objects, "Role", "canary-bot")
    assert role["metadata"]["namespace"] == "apps"
    assert role["rules"] == one(kustomize_objects, "ClusterRole")["rules"]
    binding = one(objects, "RoleBinding", "canary-bot")
    assert binding["metadata"]["namespace"] == "apps"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "canary-bot",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "canary-bot", "namespace": NAMESPACE}
    ]
    # the leader Lease stays in the bot's namespace
    assert one(objects, "Role", "canary-bot-leader-election")["metadata"]["namespace"] == NAMESPACE
    overlay = Kubectl(find_binaries() / "kubectl", helm.home / "none").render(NAMESPACED)
    assert _container(objects)["args"] == _container(overlay)["args"]
    assert _container(objects)["args"] == [
        "run", "--port", "3000", "--metrics-port", "9090", "--namespace", "apps"
    ]  # fmt: skip


def test_another_release_namespace_holds_the_lease_and_the_webhook_secret(helm: Helm) -> None:
    objects = helm.template(namespace="ops")
    args = _container(objects)["args"]
    assert args[args.index("--lease-namespace") + 1] == "ops"
    assert one(objects, "Role", "canary-bot-leader-election")["metadata"]["namespace"] == "ops"
    assert one(objects, "Role", "canary-bot-webhook-secrets")["metadata"]["namespace"] == "ops"
    # webhooks.secretNamespace moves the one Secret the bot may read, and its right
    moved = helm.template({"config": {"webhooks": {"secretNamespace": "hooks"}}}, namespace="ops")
    role = one(moved, "Role", "canary-bot-webhook-secrets")
    assert role["metadata"]["namespace"] == "hooks"
    assert one(moved, "RoleBinding", "canary-bot-webhook-secrets")["subjects"] == [
        {"kind": "ServiceAccount", "name": "canary-bot", "namespace": "ops"}
    ]
    assert yaml.safe_load(_config(moved))["webhooks"] == {"secretNamespace": "hooks"}


def test_null_config_values_render_a_config_file_the_bot_accepts(
    helm: Helm, tmp_path: Path
) -> None:
    # null drops a default in Helm; the templates and NOTES must not trip over the gap
    for values in ("config=null", "config.webhooks=null", "config.authorization=null"):
        args = ["install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client"]
        output = helm.run(*args, f"--set={values}").stdout
        manifest = output.split("MANIFEST:", 1)[1].split("NOTES:", 1)[0]
        objects = [doc for doc in yaml.safe_load_all(manifest) if doc]
        checked = _check_config(_config(objects), tmp_path)
        assert checked.returncode == 0, (values, checked.stderr)
        assert one(objects, "Role", "canary-bot-webhook-secrets")["metadata"]["namespace"] == (
            NAMESPACE
        )
        assert "has no rules" in output.split("NOTES:", 1)[1], values


def test_admission_policy_is_opt_in_and_exempts_the_releases_service_account(
    helm: Helm, tmp_path: Path
) -> None:
    kinds = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
    for kind in kinds:
        assert find(helm.template(), kind) == []
    kubectl = Kubectl(find_binaries() / "kubectl", tmp_path / "none")
    theirs = kubectl.render(MANIFESTS / "admission")
    ours = helm.template({"admissionPolicy": {"enabled": True}})
    for kind in kinds:
        assert one(ours, kind, "canary-bot-target-access")["spec"] == one(theirs, kind)["spec"]
    other = helm.template({"admissionPolicy": {"enabled": True}}, namespace="ops")
    policy = one(other, "ValidatingAdmissionPolicy", "canary-bot-target-access")
    assert policy["spec"]["matchConditions"] == [
        {
            "name": "not-canary-bot",
            "expression": "request.userInfo.username != 'system:serviceaccount:ops:canary-bot'",
        }
    ]


def test_promotion_hold_is_opt_in_and_the_kustomize_policy(helm: Helm, tmp_path: Path) -> None:
    kinds = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
    name = "canary-bot-promotion-hold"
    for kind in kinds:
        assert find(helm.template({"admissionPolicy": {"enabled": True}}), kind, name) == []
    kubectl = Kubectl(find_binaries() / "kubectl", tmp_path / "none")
    theirs = kubectl.render(MANIFESTS / "admission" / "promotion-hold")
    ours = helm.template({"promotionHold": {"enabled": True}}, namespace="ops")
    for kind in kinds:
        assert find(ours, kind, "canary-bot-target-access") == []
        mine, shipped = one(ours, kind, name)["spec"], one(theirs, kind)["spec"]
        if kind == "ValidatingAdmissionPolicy":
            assert mine["matchConditions"][0]["expression"] == (
                "request.userInfo.username != 'system:serviceaccount:ops:canary-bot'"
            )
            mine, shipped = mine["validations"], shipped["validations"]
        assert mine == shipped


def test_notes_say_what_to_do_next_and_warn_about_a_default_namespace_out_of_reach(
    helm: Helm,
) -> None:
    def notes(*values: str) -> str:
        args = ["install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client"]
        output = helm.run(*args, *[f"--set={v}" for v in values]).stdout
        return output.split("NOTES:", 1)[1]

    default = notes()
    assert "paste manifests/slack-app.yaml" in default and "`/canary help`" in default
    assert "It may act in every namespace (ClusterRole canary-bot)" in default
    assert "helm uninstall` leaves it" in default
    assert "exposes the Slack port (3000) only" in default
    assert "are on the pods' port 9090 (named metrics)" in default
    assert "Secret canary-bot-webhooks in namespace canary-bot" in default
    monitored = notes("serviceMonitor.enabled=true")
    assert "the ServiceMonitor scrapes it through the Service canary-bot-metrics" in monitored
    scoped = notes("namespaced.enabled=true", "namespaced.namespace=apps")
    assert "It may act in namespace apps only" in scoped
    assert "config.defaults.namespace (default), where the bot may not" in scoped
    fixed = notes(
        "namespaced.enabled=true", "namespaced.namespace=apps", "config.defaults.namespace=apps"
    )
    assert "config.defaults.namespace" not in fixed
    ruled = notes("config.authorization.rules[0].namespaces={apps}",
                  "config.authorization.rules[0].verbs={start}",
                  "config.authorization.rules[0].users={U0RELEASE}")  # fmt: skip
    assert "config.authorization has no rules" not in ruled and "has no rules" in default


def test_service_monitor_scrapes_the_metrics_port_when_enabled(helm: Helm) -> None:
    objects = helm.template(
        {"serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "kps"}}}
    )
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s"}
    ]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    # it selects the metrics Service alone; the Slack Service still exposes Slack only
    selector = monitor["spec"]["selector"]["matchLabels"].items()
    services = [s for s in find(objects, "Service") if selector <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in services] == ["canary-bot-metrics"]
    assert services[0]["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert services[0]["spec"]["selector"] == _deployment(objects)["spec"]["selector"]["matchLabels"]
    ports = {p["name"]: p["containerPort"] for p in _container(objects)["ports"]}
    assert ports == {"http": 3000, "metrics": 9090}
    slack = one(objects, "Service", "canary-bot")
    assert [p["name"] for p in slack["spec"]["ports"]] == ["http"]


def test_prometheus_rule_is_opt_in_and_holds_the_example_alerts_unchanged(helm: Helm) -> None:
    assert find(helm.template(), "PrometheusRule") == []
    objects = helm.template({"prometheusRule": {"enabled": True, "labels": {"release": "kps"}}})
    rule = one(objects, "PrometheusRule", "canary-bot")
    example = yaml.safe_load((MANIFESTS / "monitoring" / "alerts.yaml").read_text())
    assert rule["apiVersion"] == example["apiVersion"]
    # the alerts' own {{ $labels.* }} templates reach Prometheus as written
    assert rule["spec"] == example["spec"]
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "kps"


def test_pod_disruption_budget_can_be_tuned_or_left_out(helm: Helm) -> None:
    assert find(helm.template({"podDisruptionBudget": {"enabled": False}}), "PodDisruptionBudget") == []
    spec = one(
        helm.template({"podDisruptionBudget": {"maxUnavailable": 1}}), "PodDisruptionBudget"
    )["spec"]
    assert spec["maxUnavailable"] == 1 and "minAvailable" not in spec
    spec = one(
        helm.template({"podDisruptionBudget": {"minAvailable": "50%"}}), "PodDisruptionBudget"
    )["spec"]
    assert spec["minAvailable"] == "50%"


def test_shards_add_one_engine_deployment_and_one_lease_each(helm: Helm) -> None:
    assert len(find(helm.template(), "Deployment")) == 1  # no shards by default
    objects = helm.template({"shards": ["blue", "green"], "shardReplicas": 3})
    engines = {
        d["metadata"]["name"]: d
        for d in find(objects, "Deployment")
        if d["metadata"]["name"].endswith(("-engine-blue", "-engine-green"))
    }
    assert len(engines) == 2
    front = next(d for d in find(objects, "Deployment") if d["metadata"]["name"] not in engines)
    front_selector = front["spec"]["selector"]["matchLabels"]
    for name, shard_engine in engines.items():
        shard = name.rsplit("-", 1)[1]
        pod = shard_engine["spec"]["template"]
        container = pod["spec"]["containers"][0]
        assert container["command"] == ["python", "-m", "rollout"]
        assert container["args"][:2] == ["--shard", shard]
        assert shard_engine["spec"]["replicas"] == 3
        # the front's Deployment, Service and PDB must not select the engine's pods
        labels = pod["metadata"]["labels"]
        assert not all(labels.get(k) == v for k, v in front_selector.items()), labels
    rules = next(
        r for r in find(objects, "Role") if r["metadata"]["name"].endswith("-leader-election")
    )["rules"]
    names = {n for rule in rules for n in rule.get("resourceNames", [])}
    assert {"canary-bot-leader-blue", "canary-bot-leader-green"} <= names


def test_image_replicas_secret_prometheus_and_scheduling_values_reach_the_pods(
    helm: Helm,
) -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ops"]}]}
                ]
            }
        }
    }
    tolerations = [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}]
    resources = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
    objects = helm.template(
        {
            "image": {"repository": "ghcr.io/acme/canary-bot", "tag": "1.2.3", "pullPolicy": "Always"},
            "imagePullSecrets": [{"name": "regcred"}],
            "replicas": 3,
            "slack": {"secretName": "slack-tokens"},
            "prometheus": {"url": "http://prom.obs:9090"},
            "resources": resources,
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": tolerations,
            "affinity": affinity,
            "podAnnotations": {"team": "platform"},
        }
    )  # fmt: skip
    deployment = _deployment(objects)
    pod = deployment["spec"]["template"]["spec"]
    container = _container(objects)
    assert deployment["spec"]["replicas"] == 3
    assert container["image"] == "ghcr.io/acme/canary-bot:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    # resources replace the defaults as a whole map merge: limits.cpu stays the default
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"] == tolerations
    assert pod["affinity"] == affinity  # replaces the default anti-affinity
    env = {e["name"]: e for e in container["env"]}
    assert env["PROMETHEUS_URL"]["value"] == "http://prom.obs:9090"
    for key in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "slack-tokens"
    assert deployment["spec"]["template"]["metadata"]["annotations"]["team"] == "platform"
    assert one(objects, "Deployment")["metadata"]["labels"]["app.kubernetes.io/version"] == "1.2.3"


# --- the schema refuses bad values, naming them ------------------------------------------

BAD_VALUES = [
    pytest.param({"replica": 2}, ["replica"], id="misspelt key"),
    pytest.param({"replicas": 0}, ["replicas", "1"], id="no replicas"),
    pytest.param({"replicas": "two"}, ["replicas", "integer"], id="replicas not a number"),
    pytest.param({"image": {"pullPolicy": "Sometimes"}}, ["/image/pullPolicy", "IfNotPresent"], id="pull policy"),
    pytest.param({"image": {"repository": ""}}, ["repository"], id="empty repository"),
    pytest.param({"prometheus": {"url": "prometheus:9090"}}, ["url"], id="url without scheme"),
    pytest.param({"slack": {"secretName": "Slack_Tokens"}}, ["secretName"], id="secret name"),
    pytest.param({"config": {"channel": {"default": "C0X"}}}, ["channel"], id="config typo"),
    pytest.param({"resources": {"requests": {"cpu": "lots"}}}, ["cpu"], id="cpu quantity"),
    pytest.param({"serviceMonitor": {"enabled": "yes"}}, ["enabled", "boolean"], id="flag"),
    pytest.param({"tolerations": [{"operator": "Maybe"}]}, ["operator"], id="toleration"),
    pytest.param({"shards": ["Blue team"]}, ["shards", "pattern"], id="shard name"),
]  # fmt: skip


def test_namespaced_mode_without_a_namespace_says_which_value_to_set(helm: Helm) -> None:
    values = {"namespaced": {"enabled": True}}
    result = helm.run(*helm.template_args(values, NAMESPACE), check=False)
    assert result.returncode != 0
    assert "namespaced.namespace is required when namespaced.enabled is true" in result.stderr


@pytest.mark.parametrize(("values", "words"), BAD_VALUES)
def test_schema_refuses_bad_values_with_a_message_naming_them(
    helm: Helm, values: dict[str, Any], words: list[str]
) -> None:
    result = helm.run(*helm.template_args(values, NAMESPACE), check=False)
    assert result.returncode != 0, f"helm template accepted {values}:\n{result.stdout}"
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


# --- helm install on the real control plane ----------------------------------------------


@dataclass
class Installed:
    """A release of the chart on the session's control plane."""

    helm: Helm
    install: subprocess.CompletedProcess[str]
    crd_existed: bool


def _crd_exists(api: k8s.ApiClient) -> bool:
    try:
        k8s.ApiextensionsV1Api(api).read_custom_resource_definition(CRD_NAME)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _bot_namespace(api: k8s.ApiClient) -> None:
    """The namespace as the README has the operator create it (restricted Pod Security)."""
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    k8s.CoreV1Api(api).create_namespace(
        k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=NAMESPACE, labels=labels))
    )


@pytest.fixture(scope="module")
def installed(
    helm_binary: Path,
    kubectl: Kubectl,
    control_plane: ControlPlane,
    kube_api_client: k8s.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Installed]:
    """``helm install`` into a fresh canary-bot namespace; uninstalled at the end."""
    # the kustomize installs of other test modules use the same names
    uninstall(kubectl, kube_api_client, NAMESPACED)
    uninstall(kubectl, kube_api_client, MANIFESTS)
    helm = Helm(helm_binary, tmp_path_factory.mktemp("helm"), Path(control_plane.kubeconfig))
    crd_existed = _crd_exists(kube_api_client)
    _bot_namespace(kube_api_client)
    result = helm.run("install", RELEASE, str(CHART), "--namespace", NAMESPACE)
    try:
        yield Installed(helm, result, crd_existed)
    finally:
        helm.run("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", check=False)
        k8s.CoreV1Api(kube_api_client).delete_namespace(NAMESPACE)
        wait_for(lambda: not _namespace_exists(kube_api_client), 180, f"{NAMESPACE} to go")


def _namespace_exists(api: k8s.ApiClient) -> bool:
    try:
        k8s.CoreV1Api(api).read_namespace(NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True



def test_install_prints_what_to_do_next_and_runs_both_replicas(
    installed: Installed, kube_api_client: k8s.ApiClient
) -> None:
    notes = installed.install.stdout
    assert "STATUS: deployed" in notes
    assert "manifests/slack-app.yaml" in notes and "/canary help" in notes
    assert "secret generic canary-bot-slack" in notes
    assert "only status, list, history, plan and help" in notes  # no rules by default
    apps = k8s.AppsV1Api(kube_api_client)

    def available() -> int:
        status = apps.read_namespaced_deployment("canary-bot", NAMESPACE).status
        return int(status.available_replicas or 0)

    account = k8s.CoreV1Api(kube_api_client).read_namespaced_service_account(
        "canary-bot", NAMESPACE
    )
    assert account.metadata.labels["app.kubernetes.io/managed-by"] == "Helm"
    # admitted under the namespace's "restricted" Pod Security level
    wait_for(lambda: available() == 2, 90, "2 available canary-bot replicas")
    crd = k8s.ApiextensionsV1Api(kube_api_client).read_custom_resource_definition(CRD_NAME)
    assert any(c.type == "Established" and c.status == "True" for c in crd.status.conditions)
    listed = installed.helm.run("list", "--namespace", NAMESPACE, "--output", "json").stdout
    assert [(r["name"], r["status"]) for r in json.loads(listed)] == [(RELEASE, "deployed")]


def _denied(api: k8s.ApiClient, accesses: list[Access], namespace: str | None) -> list[str]:
    return [
        f"{a} ({namespace or 'all namespaces'})"
        for a in accesses
        if not can(api, a.verb, a.resource, group=a.group, namespace=namespace,
                   subresource=a.subresource, name=a.name)
    ]  # fmt: skip


def test_installed_service_account_has_exactly_the_bots_rights(
    installed: Installed, kube_api_client: k8s.ApiClient, namespace: str
) -> None:
    denied = _denied(kube_api_client, IN_RELEASE_NAMESPACE, namespace)
    denied += _denied(kube_api_client, CLUSTER_WIDE, None)
    denied += _denied(kube_api_client, IN_BOT_NAMESPACE, NAMESPACE)
    assert denied == []
    allowed = [
        f"{a} ({where or 'cluster'})"
        for where in (namespace, NAMESPACE, None)
        for a in FORBIDDEN
        if can(kube_api_client, a.verb, a.resource, group=a.group, namespace=where,
               subresource=a.subresource, name=a.name)
    ]  # fmt: skip
    assert allowed == []


async def test_engine_as_the_charts_service_account_completes_the_tutorial_rollout(
    installed: Installed,
    kubectl: Kubectl,
    control_plane: ControlPlane,
    kube_api_client: k8s.ApiClient,
    podinfo: str,
    traffic: Any,
    loadtester: Any,
    prometheus: Any,
    tmp_path: Path,
) -> None:
    namespace = podinfo
    kubeconfig = service_account_kubeconfig(kubectl, control_plane, tmp_path / "sa.kubeconfig")
    sim = traffic(namespace, "podinfo", "podinfo", rps=40)
    bot_kube = Kube.connect(kubeconfig=str(kubeconfig))
    try:
        store = ReleaseStore(bot_kube)
        await store.create(namespace, "podinfo", tutorial_spec(loadtester.url))
        with engine(
            kubeconfig, namespace, prometheus.url, tmp_path / "engine.log", "canary-bot-helm-0"
        ) as process:
            wait_for(
                lambda: lease_holder(kube_api_client) == process.identity,
                30,
                f"the engine to take the Lease\n{process.log()}",
            )
            release = await wait_phase(store, namespace, {Phase.SUCCEEDED, Phase.FAILED}, 180)
            # the canary goes right after the outcome is stored: wait for it before the stop
            wait_for(
                lambda: not canary_objects(kube_api_client, namespace),
                30,
                f"the canary to be deleted\n{process.log()}",
            )
            exit_code = process.stop()
        log = process.log()
    finally:
        bot_kube.close()
    story = events(kube_api_client, namespace)
    assert release.status.phase == Phase.SUCCEEDED, "\n".join(story) + "\n" + log
    assert story[-1] == f"Promotion completed! podinfo.{namespace} now runs {NEW}"
    assert target_image(kube_api_client, namespace) == NEW
    assert canary_objects(kube_api_client, namespace) == []
    assert sim.current_weight == 0
    assert "(403)" not in log and "Forbidden" not in log, log
    assert exit_code == 0, log


def test_upgrade_to_namespaced_mode_moves_the_rights_into_one_namespace(
    installed: Installed,
    kube_api_client: k8s.ApiClient,
    namespace: str,
    kustomize_objects: list[Manifest],
) -> None:
    helm = installed.helm
    args = ["--namespace", NAMESPACE, "--reuse-values"]
    helm.run("upgrade", RELEASE, str(CHART), *args,
             "--set", "namespaced.enabled=true", "--set", f"namespaced.namespace={namespace}")  # fmt: skip
    try:
        assert _denied(kube_api_client, IN_RELEASE_NAMESPACE, namespace) == []
        # nowhere else, and no cluster-wide list/watch
        elsewhere = _denied(kube_api_client, IN_RELEASE_NAMESPACE, "kube-system")
        assert len(elsewhere) == len(IN_RELEASE_NAMESPACE)
        assert len(_denied(kube_api_client, CLUSTER_WIDE, None)) == len(CLUSTER_WIDE)
        role = k8s.RbacAuthorizationV1Api(kube_api_client).read_namespaced_role(
            "canary-bot", namespace
        )
        rules = [
            {"apiGroups": r.api_groups, "resources": r.resources, "verbs": r.verbs,
             "resourceNames": r.resource_names}
            for r in role.rules
        ]  # fmt: skip
        assert granted(rules) == granted(one(kustomize_objects, "ClusterRole")["rules"])
    finally:
        helm.run("upgrade", RELEASE, str(CHART), *args, "--set", "namespaced.enabled=false")
    assert _denied(kube_api_client, CLUSTER_WIDE, None) == []


def test_uninstall_keeps_the_crd_and_the_releases(
    helm_binary: Path,
    kubectl: Kubectl,
    control_plane: ControlPlane,
    kube_api_client: k8s.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    # its own release in its own namespace, so the module's install is left alone
    helm = Helm(helm_binary, tmp_path, Path(control_plane.kubeconfig))
    name = "canary-bot-uninstall"
    helm.run("install", name, str(CHART), "--namespace", namespace,
             "--set", "podDisruptionBudget.enabled=false", "--set", "replicas=1",
             "--set", "fullnameOverride=cb-uninstall")  # fmt: skip
    body = {
        "apiVersion": "canarybot.io/v1alpha1",
        "kind": "CanaryRelease",
        "metadata": {"name": "podinfo"},
        "spec": {"targetRef": {"name": "podinfo"}, "ingressRef": {"name": "podinfo"},
                 "images": {"podinfod": NEW}},
    }  # fmt: skip
    custom = k8s.CustomObjectsApi(kube_api_client)
    created = custom.create_namespaced_custom_object(
        "canarybot.io", "v1alpha1", namespace, "canaryreleases", body
    )
    result = helm.run("uninstall", name, "--namespace", namespace, "--wait")
    assert "uninstalled" in result.stdout
    assert _crd_exists(kube_api_client)
    kept = custom.get_namespaced_custom_object(
        "canarybot.io", "v1alpha1", namespace, "canaryreleases", "podinfo"
    )
    assert kept["metadata"]["uid"] == created["metadata"]["uid"]
    rbac = k8s.RbacAuthorizationV1Api(kube_api_client)
    with pytest.raises(ApiException) as gone:
        rbac.read_cluster_role("cb-uninstall")
    assert gone.value.status == 404

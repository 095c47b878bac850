"""What `kubectl kustomize` renders from manifests/: the objects an operator installs.

These read the rendered objects only; tests/deploy/test_install.py applies them to the
control plane and asks the API server what the bot may do.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.cli import _parser
from bot.config import parse_config
from tests.deploy.kubectl import (
    CRDS,
    MANIFESTS,
    NAMESPACE,
    NAMESPACED,
    ROOT,
    SERVICE_ACCOUNT,
    Kubectl,
    Manifest,
    find,
    one,
)
from tests.deploy.permissions import IN_BOT_NAMESPACE, IN_RELEASE_NAMESPACE, granted

pytestmark = pytest.mark.cluster

CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}


@pytest.fixture(scope="module")
def base(kubectl: Kubectl) -> list[Manifest]:
    """``kubectl kustomize manifests/``."""
    return kubectl.render(MANIFESTS)


@pytest.fixture(scope="module")
def namespaced(kubectl: Kubectl) -> list[Manifest]:
    """``kubectl kustomize manifests/overlays/namespaced/``."""
    return kubectl.render(NAMESPACED)


def _containers(deployment: Manifest) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return containers


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def test_base_installs_the_bot_and_not_the_crd(base: list[Manifest]) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in base)
    configmap = one(base, "ConfigMap")["metadata"]["name"]
    # no CRD: `kubectl delete -k manifests/` must leave it, and every CanaryRelease
    assert kinds == sorted(
        [
            ("Namespace", NAMESPACE),
            ("ServiceAccount", SERVICE_ACCOUNT),
            ("ClusterRole", "canary-bot"),
            ("ClusterRoleBinding", "canary-bot"),
            ("Role", "canary-bot-leader-election"),
            ("RoleBinding", "canary-bot-leader-election"),
            ("Role", "canary-bot-webhook-secrets"),
            ("RoleBinding", "canary-bot-webhook-secrets"),
            ("ConfigMap", configmap),
            ("Deployment", "canary-bot"),
            ("Service", "canary-bot"),
            ("PodDisruptionBudget", "canary-bot"),
        ]
    )
    for obj in base:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]


def test_crds_kustomization_installs_exactly_the_generated_crds(kubectl: Kubectl) -> None:
    by_name = {c["metadata"]["name"]: c for c in kubectl.render(CRDS)}
    assert sorted(by_name) == ["canaries.canarybot.io", "canaryreleases.canarybot.io"]
    crd, canary_crd = by_name["canaryreleases.canarybot.io"], by_name["canaries.canarybot.io"]
    assert (crd["kind"], crd["metadata"]["name"]) == (
        "CustomResourceDefinition",
        "canaryreleases.canarybot.io",
    )
    assert canary_crd["metadata"]["name"] == "canaries.canarybot.io"
    # the generated files, not copies that could drift from them
    generated = yaml.safe_load((CRDS / "crd.yaml").read_text())
    assert crd["spec"] == generated["spec"]
    assert canary_crd["spec"] == yaml.safe_load((CRDS / "canaries.yaml").read_text())["spec"]
    assert not (MANIFESTS / "crd.yaml").exists(), "the CRD lives in manifests/crds/ only"


def test_cluster_role_grants_exactly_what_the_code_uses(base: list[Manifest]) -> None:
    rules = one(base, "ClusterRole", "canary-bot")["rules"]
    expected = {a.key for a in IN_RELEASE_NAMESPACE}
    assert granted(rules) - expected == set(), "granted but never used by the code"
    assert expected - granted(rules) == set(), "used by the code but not granted"
    binding = one(base, "ClusterRoleBinding", "canary-bot")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "canary-bot",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
    ]


def test_leader_election_is_limited_to_the_bots_lease(base: list[Manifest]) -> None:
    role = one(base, "Role", "canary-bot-leader-election")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert granted(role["rules"]) == {a.key for a in IN_BOT_NAMESPACE}
    binding = one(base, "RoleBinding", "canary-bot-leader-election")
    assert binding["roleRef"]["kind"] == "Role"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
    ]


def test_webhook_secrets_role_reads_one_secret_in_the_bots_namespace(
    base: list[Manifest],
) -> None:
    role = one(base, "Role", "canary-bot-webhook-secrets")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert granted(role["rules"]) == {("", "secrets", "get", "canary-bot-webhooks")}
    binding = one(base, "RoleBinding", "canary-bot-webhook-secrets")
    assert binding["roleRef"]["kind"] == "Role"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
    ]


def test_namespaced_overlay_swaps_cluster_rights_for_a_role_in_apps(
    base: list[Manifest], namespaced: list[Manifest]
) -> None:
    assert find(namespaced, "ClusterRole") == []
    assert find(namespaced, "ClusterRoleBinding") == []
    role = one(namespaced, "Role", "canary-bot")
    assert role["metadata"]["namespace"] == "apps"
    # the same rights as the base, only narrower in scope
    assert granted(role["rules"]) == granted(one(base, "ClusterRole", "canary-bot")["rules"])
    binding = one(namespaced, "RoleBinding", "canary-bot")
    assert binding["metadata"]["namespace"] == "apps"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "canary-bot",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
    ]
    # leader election is unchanged, and the overlay does not create or own `apps`
    assert one(namespaced, "Role", "canary-bot-leader-election") == one(
        base, "Role", "canary-bot-leader-election"
    )
    assert [n["metadata"]["name"] for n in find(namespaced, "Namespace")] == [NAMESPACE]


@pytest.fixture(params=["base", "namespaced"])
def rendered(
    request: pytest.FixtureRequest, base: list[Manifest], namespaced: list[Manifest]
) -> Iterator[list[Manifest]]:
    """Each installable variant."""
    yield base if request.param == "base" else namespaced


def test_deployment_runs_two_hardened_replicas(rendered: list[Manifest]) -> None:
    deployment = one(rendered, "Deployment", "canary-bot")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == SERVICE_ACCOUNT
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = _containers(deployment)
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert set(container["resources"]["limits"]) >= {"memory"}
    # a pinned image, not a moving tag
    image = container["image"]
    assert re.fullmatch(r"[\w.\-/:]+:\d+\.\d+\.\d+", image), image
    assert container["args"][0] == "run"


def test_probes_and_ports_match_the_bots_http_server(rendered: list[Manifest]) -> None:
    deployment = one(rendered, "Deployment", "canary-bot")
    (container,) = _containers(deployment)
    assert container["ports"] == [
        {"name": "http", "containerPort": 3000, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
    ]
    # the process listens where the ports say (the CLI parses the Deployment's args)
    args = _parser().parse_args(container["args"])
    assert (args.port, args.metrics_port) == (3000, 9090)
    # probes and scraping on the metrics port...
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "9090"
    # ...which the Service in front of Slack does not expose
    service = one(rendered, "Service", "canary-bot")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 3000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert [s["metadata"]["name"] for s in find(rendered, "Service")] == ["canary-bot"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    pdb = one(rendered, "PodDisruptionBudget", "canary-bot")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_environment_and_config_come_from_the_cluster(rendered: list[Manifest]) -> None:
    deployment = one(rendered, "Deployment", "canary-bot")
    (container,) = _containers(deployment)
    env = _env(container)
    # the leader Lease is the same fixed one everywhere, not the pod's namespace
    assert "POD_NAMESPACE" not in env
    assert "--lease-namespace" not in container["args"]
    assert env["PROMETHEUS_URL"]["value"].startswith("http")
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == ("canary-bot-slack", name)
        assert "value" not in env[name]
    # the config file is the ConfigMap the kustomization generates, and it is valid
    path = Path(env["CANARY_BOT_CONFIG"]["value"])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent))
    assert mount["readOnly"] is True
    volume = next(
        v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
    )
    configmap = one(rendered, "ConfigMap", volume["configMap"]["name"])
    config = parse_config(configmap["data"][path.name], "ConfigMap " + path.name)
    assert config.profiles, "the example config should carry at least one analysis profile"


def test_namespaced_config_only_names_its_namespace(namespaced: list[Manifest]) -> None:
    (configmap,) = find(namespaced, "ConfigMap")
    config = parse_config(configmap["data"]["config.yaml"])
    assert config.defaults.namespace == "apps"
    assert {ns for rule in config.authorization.rules for ns in rule.namespaces} == {"apps"}


def test_namespaced_bot_runs_scoped_to_its_namespace(
    base: list[Manifest], namespaced: list[Manifest]
) -> None:
    (container,) = _containers(one(namespaced, "Deployment", "canary-bot"))
    args = _parser().parse_args(container["args"])
    assert (args.command, args.namespace) == ("run", "apps")
    assert (args.port, args.metrics_port) == (3000, 9090)
    (base_container,) = _containers(one(base, "Deployment", "canary-bot"))
    assert _parser().parse_args(base_container["args"]).namespace is None


def test_file_references_in_manifest_comments_exist() -> None:
    # comments point readers at other files ("see ../../base/clusterrole.yaml"): each
    # must exist, relative to the file that names it
    reference = re.compile(r"(?<![\w/])((?:\.\./)+[\w./-]+\.ya?ml|[\w-]+/[\w./-]+\.ya?ml)")
    missing = []
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        for line in path.read_text().splitlines():
            if not line.lstrip().startswith("#"):
                continue
            for ref in reference.findall(line):
                candidates = [path.parent / ref, ROOT / ref, MANIFESTS / ref]
                if not any(c.exists() for c in candidates):
                    missing.append(f"{path.relative_to(ROOT)}: {ref}")
    assert missing == []


def test_no_secret_is_installed_and_the_example_holds_placeholders(
    base: list[Manifest], namespaced: list[Manifest]
) -> None:
    assert find(base, "Secret") == [] and find(namespaced, "Secret") == []
    example = yaml.safe_load((MANIFESTS / "secret.example.yaml").read_text())
    assert example["metadata"] == {"name": "canary-bot-slack", "namespace": NAMESPACE}
    values = example["stringData"]
    assert {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"} <= set(values)
    for key, value in values.items():
        assert value.startswith("REPLACE_WITH_"), f"{key} must stay a placeholder"


def test_no_real_slack_credentials_anywhere_in_manifests() -> None:
    # Slack tokens start xoxb-/xoxp-/xapp- followed by digits; signing secrets are 32 hex.
    token = re.compile(r"xox[abpr]-\d|xapp-\d|\b[0-9a-f]{32}\b")
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        assert not token.search(path.read_text()), f"{path} looks like it holds a credential"

"""The sandbox console's ``set image``: parsed like kubectl's, refused with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client as k8s

from sandbox.sample_app import deploy_podinfo
from sandbox.set_image import SetImageProblem, apply, parse


def test_the_tutorials_line_parses() -> None:
    words = ["image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.3", "-n", "test"]
    change = parse(words, "default")
    assert change.deployment == "podinfo"
    assert change.namespace == "test"
    assert change.images == {"podinfod": "stefanprodan/podinfo:6.0.3"}
    line = change.kubectl_line(Path("/opt/bin/kubectl"), Path("/tmp/kube config"))
    assert line == (
        "KUBECONFIG='/tmp/kube config' /opt/bin/kubectl set image deployment/podinfo "
        "podinfod=stefanprodan/podinfo:6.0.3 -n test"
    )


def test_namespace_defaults_and_long_flag() -> None:
    assert parse(["image", "deploy/web", "app=nginx:1.27"], "test").namespace == "test"
    change = parse(["image", "deployment/web", "--namespace=prod", "a=x:1", "b=y:2"], "test")
    assert change.namespace == "prod"
    assert change.images == {"a": "x:1", "b": "y:2"}


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ([], "usage: set image"),
        (["env", "deployment/podinfo"], "usage: set image"),
        (["image", "podinfo", "podinfod=x:1"], "deployment/<name>"),
        (["image", "statefulset/podinfo", "podinfod=x:1"], "deployment/<name>"),
        (["image", "deployment/Bad_Name", "podinfod=x:1"], "not a Deployment name"),
        (["image", "deployment/podinfo"], "no <container>=<image>"),
        (["image", "deployment/podinfo", "podinfod"], "is not <container>=<image>"),
        (["image", "deployment/podinfo", "podinfod=Not An Image"], "not a valid image"),
        (["image", "deployment/podinfo", "podinfod=x:1", "-n"], "-n needs a namespace"),
        (["image", "deployment/podinfo", "podinfod=x:1", "-n", "NO"], "not a namespace name"),
    ],
)
def test_bad_lines_say_what_is_wrong(words: list[str], message: str) -> None:
    with pytest.raises(SetImageProblem, match=message):
        parse(words, "test")


@pytest.mark.cluster
def test_apply_patches_the_template_as_kubectl_set_image_does(
    kube_api_client: k8s.ApiClient, namespace: str
) -> None:
    deploy_podinfo(kube_api_client, namespace)
    words = f"image deployment/podinfo podinfod=stefanprodan/podinfo:6.0.3 -n {namespace}"
    apply(kube_api_client, parse(words.split(), "default"))
    deployment = k8s.AppsV1Api(kube_api_client).read_namespaced_deployment("podinfo", namespace)
    (container,) = deployment.spec.template.spec.containers
    assert container.image == "stefanprodan/podinfo:6.0.3"
    managers = {m.manager for m in deployment.metadata.managed_fields}
    assert "kubectl-set" in managers

    with pytest.raises(SetImageProblem, match="has no container web"):
        apply(kube_api_client, parse(f"image deployment/podinfo web=x:1 -n {namespace}".split(), ""))
    with pytest.raises(SetImageProblem, match="not found"):
        apply(kube_api_client, parse(f"image deployment/nope a=x:1 -n {namespace}".split(), ""))

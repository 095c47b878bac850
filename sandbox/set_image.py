"""The tutorial's ``kubectl set image`` as a sandbox console command.

``set image deployment/podinfo podinfod=stefanprodan/podinfo:6.0.3 [-n test]`` (or the
whole line pasted with ``kubectl`` in front) makes the same change kubectl makes, a
patch of the Deployment's pod template under kubectl's field manager ``kubectl-set``,
and prints the real kubectl line to type against the sandbox's kubeconfig next time.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from rollout.models import is_dns_subdomain, is_valid_image

# The field manager kubectl set image writes with, so the release card says what a
# person typing the command would see.
KUBECTL_SET_MANAGER = "kubectl-set"
USAGE = (
    "usage: set image deployment/<name> <container>=<image> [...] [-n <namespace>]\n"
    "  e.g. set image deployment/podinfo podinfod=stefanprodan/podinfo:6.0.3 -n test"
)


class SetImageProblem(ValueError):
    """The command line is not a ``set image`` the sandbox can apply; says why."""


@dataclass(frozen=True)
class SetImage:
    """A parsed ``set image``: which Deployment, which containers get which images."""

    deployment: str
    namespace: str
    images: dict[str, str]

    def kubectl_line(self, kubectl: Path, kubeconfig: Path) -> str:
        """The real kubectl command that makes the same change."""
        pairs = " ".join(f"{c}={i}" for c, i in self.images.items())
        return (
            f"KUBECONFIG={shlex.quote(str(kubeconfig))} {shlex.quote(str(kubectl))} set image "
            f"deployment/{self.deployment} {pairs} -n {self.namespace}"
        )


def parse(words: list[str], default_namespace: str) -> SetImage:
    """Parse the words after ``set`` (or after ``kubectl set``)."""
    if not words or words[0] != "image":
        raise SetImageProblem(USAGE)
    rest = words[1:]
    namespace = default_namespace
    positional: list[str] = []
    index = 0
    while index < len(rest):
        word = rest[index]
        if word in ("-n", "--namespace"):
            if index + 1 >= len(rest):
                raise SetImageProblem(f"{word} needs a namespace\n{USAGE}")
            namespace = rest[index + 1]
            index += 2
            continue
        if word.startswith("--namespace="):
            namespace = word.partition("=")[2]
        else:
            positional.append(word)
        index += 1
    if not is_dns_subdomain(namespace) or len(namespace) > 63:
        raise SetImageProblem(f"{namespace[:64]!r} is not a namespace name")
    if not positional:
        raise SetImageProblem(USAGE)
    return SetImage(_deployment(positional[0]), namespace, _images(positional[1:]))


def _deployment(ref: str) -> str:
    kind, slash, name = ref.partition("/")
    if not slash or kind not in ("deployment", "deployments", "deploy", "deployment.apps"):
        raise SetImageProblem(f"{ref[:80]!r}: name the Deployment as deployment/<name>\n{USAGE}")
    if not is_dns_subdomain(name):
        raise SetImageProblem(f"{name[:80]!r} is not a Deployment name")
    return name


def _images(pairs: list[str]) -> dict[str, str]:
    if not pairs:
        raise SetImageProblem(f"no <container>=<image> given\n{USAGE}")
    images: dict[str, str] = {}
    for pair in pairs:
        container, eq, image = pair.partition("=")
        if not eq or not container or not image:
            raise SetImageProblem(f"{pair[:80]!r} is not <container>=<image>\n{USAGE}")
        if not is_valid_image(image):
            raise SetImageProblem(
                f"{image[:80]!r} is not a valid image reference (e.g. stefanprodan/podinfo:6.0.3)"
            )
        images[container] = image
    return images


def apply(api: k8s.ApiClient, change: SetImage) -> None:
    """Patch the Deployment's containers as ``kubectl set image`` does.

    Raises ``SetImageProblem`` when the Deployment or a container does not exist.
    """
    apps = k8s.AppsV1Api(api)
    try:
        deployment = apps.read_namespaced_deployment(change.deployment, change.namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise SetImageProblem(
                f"deployment {change.deployment} not found in namespace {change.namespace}"
            ) from None
        raise
    present = {c.name for c in deployment.spec.template.spec.containers}
    missing = sorted(set(change.images) - present)
    if missing:
        raise SetImageProblem(
            f"deployment {change.deployment} has no container {', '.join(missing)} "
            f"(it has {', '.join(sorted(present))})"
        )
    body = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": c, "image": i} for c, i in change.images.items()]
                }
            }
        }
    }
    # A strategic merge patch keyed by container name, as kubectl sends it.
    apps.patch_namespaced_deployment(
        change.deployment, change.namespace, body, field_manager=KUBECTL_SET_MANAGER
    )

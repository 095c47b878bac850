"""Before campaigning: the leader Lease's namespace must exist.

Every engine in a cluster, in a Pod or at a terminal, campaigns for the same Lease
(``canary-bot/canary-bot-leader`` by default), so a second engine can only stand by. An
engine pointed at a cluster where that namespace is missing (canary-bot not installed
there, or a typo) would otherwise retry forever or, worse, be tempted to use another
namespace and lead next to the installed engine; it stops with a message instead.
"""

from __future__ import annotations

import logging

from rollout.kube import LEASES, Conflict, Kube, KubeError, NotFound

log = logging.getLogger("canary_bot.leader")


class LeaseNamespaceMissing(Exception):
    """The leader Lease's namespace does not exist; the message says what to do."""


async def check_lease_namespace(kube: Kube, namespace: str, name: str) -> None:
    """Raise ``LeaseNamespaceMissing`` when ``namespace`` does not exist.

    A server-side dry run of creating the Lease needs only the right an engine has
    anyway (create on Leases in that namespace), changes nothing, and tells a missing
    namespace (404) from an existing Lease (409).
    """
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace},
    }
    try:
        await kube.request("POST", LEASES.path(namespace), body, query=[("dryRun", "All")])
    except Conflict:
        return  # the Lease exists: an engine campaigns there already
    except NotFound:
        raise LeaseNamespaceMissing(
            f"the leader Lease namespace {namespace!r} does not exist in this cluster, so "
            f"this engine cannot share the Lease {namespace}/{name} with an installed one. "
            "Install canary-bot first (kubectl apply -k manifests/), or pass "
            "--lease-namespace only for a deliberately separate installation"
        ) from None
    except KubeError as exc:
        # not allowed to create Leases there, or the API server is unreachable for now:
        # the election itself retries and reports that; only a missing namespace stops
        log.warning("could not check the leader Lease namespace %s: %s", namespace, exc)

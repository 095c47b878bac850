"""One front, many clusters: which cluster a command or click means, and its Operations.

A front with ``clusters:`` in its config holds one ``Operations`` (with its own ``Kube``
and ``ReleaseStore``) per cluster. Credentials are loaded when the front starts and, for a
cluster whose credentials could not be loaded then, again on each use, so a cluster that
is broken or unreachable answers its own commands with a clear refusal while the others
keep working. A click carries its cluster in the button's value: it is used only when it
names a configured cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.config_clusters import ClusterEntry
from bot.operations import Operations, describe_failure
from bot.reply import Code, Reply, failure, reply, warning
from rollout.kube import KubeError
from rollout.models import CanaryRelease, NotificationState, RolloutEvent
from rollout.notify import Notifier

log = logging.getLogger("canary_bot.clusters")


@dataclass(frozen=True)
class Routed:
    """The cluster a request goes to; ``named``: replies name it (several clusters)."""

    name: str
    operations: Operations
    named: bool

    def audit(self, action: str, user: str) -> None:
        """Log which cluster a person's request went to (a front of several clusters)."""
        if self.named:
            log.info(
                "request routed to cluster %s",
                self.name,
                extra={"cluster": self.name, "action": action, "user": user},
            )


def describe_failure_in(routed: Routed, exc: BaseException) -> Reply:
    """``describe_failure``, naming the cluster that failed when the front serves several.

    The error kind only (``Unavailable``, ``Forbidden``, ``Timeout``): no addresses, no
    credentials, no trace.
    """
    if routed.named and isinstance(exc, KubeError):
        return failure(
            f"Cluster {routed.name} did not answer as expected "
            f"({exc.reason or 'unreachable'}); nothing was changed there. The other "
            "clusters are not affected; try again in a minute."
        )
    return describe_failure(exc)


class Clusters:
    """The clusters a front serves, and how a request picks one.

    ``single``: a front of one cluster (no ``clusters:``), whose ``cluster:`` display name
    is the only one ``--cluster`` may give. ``several``: ``clusters:``, each entry built by
    ``build`` (which may raise: bad or missing credentials).
    """

    def __init__(
        self,
        entries: Sequence[ClusterEntry],
        build: Callable[[ClusterEntry], Operations],
        *,
        single: Operations | None = None,
        single_name: str = "",
    ) -> None:
        self._entries = {entry.name: entry for entry in entries}
        self._channels = {ch: entry.name for entry in entries for ch in entry.channels}
        self._default = next((entry.name for entry in entries if entry.default), None)
        self._build = build
        self._built: dict[str, Operations] = {}
        self._single = single
        self._single_name = single_name

    @classmethod
    def one(cls, operations: Operations, name: str = "") -> Clusters:
        """A front of one cluster; ``name`` is its ``cluster:`` display name ('' if none)."""
        return cls((), _no_build, single=operations, single_name=name)

    @classmethod
    def several(
        cls, entries: Sequence[ClusterEntry], build: Callable[[ClusterEntry], Operations]
    ) -> Clusters:
        """A front of ``entries``; each cluster's credentials are loaded now (``load``)."""
        clusters = cls(entries, build)
        for entry in entries:
            clusters._load(entry.name)
        return clusters

    @property
    def names(self) -> list[str]:
        """The configured cluster names, in config order."""
        if self._single is not None:
            return [self._single_name] if self._single_name else []
        return list(self._entries)

    @property
    def loaded(self) -> list[Operations]:
        """The Operations built so far (to close their connections at stop)."""
        return [self._single] if self._single is not None else list(self._built.values())

    def fallback(self) -> Operations | None:
        """The one cluster, else the default, else the first that loaded (the console's)."""
        if self._single is not None:
            return self._single
        for name in ([self._default] if self._default else []) + self.names:
            built = self._load(name)
            if built is not None:
                return built
        return None

    def route(self, requested: str | None, channel: str, *, click: bool = False) -> Routed | Reply:
        """The cluster for ``--cluster`` (or a click's), else the channel's, else the default.

        A reply instead when the name is not configured, when several clusters leave the
        choice open, or when the chosen cluster's credentials cannot be loaded.
        """
        if self._single is not None:
            return self._route_single(None if click else requested)
        if requested is not None and requested not in self._entries:
            return reply(
                "refused",
                f"No cluster named {requested[:63]}; clusters: {', '.join(self.names)}.",
            )
        name = requested or self._channels.get(channel) or self._default
        if name is None:
            return self._which(click)
        built = self._load(name)
        if built is None:
            return warning(
                f"Cluster {name} cannot be used: its credentials could not be loaded "
                f"(clusters: {name} in the canary-bot config); nothing was changed. "
                "The other clusters are not affected."
            )
        return Routed(name, built, named=True)

    def _route_single(self, requested: str | None) -> Routed | Reply:
        assert self._single is not None
        name = self._single_name
        # a click (whatever its card says) and an unnamed front's commands go to the one
        # cluster there is: the release they name is looked up and authorized there
        if requested is None or requested == name or not name:
            return Routed(name, self._single, named=False)
        return reply(
            "refused",
            f"No cluster named {requested[:63]}: this canary-bot serves cluster {name} only; "
            "leave out ",
            Code("--cluster"),
            ".",
        )

    def _which(self, click: bool) -> Reply:
        listed = ", ".join(self.names)
        if click:
            return reply(
                "refused",
                f"This card does not say which cluster it is from; clusters: {listed}. "
                "Use the command with ",
                Code("--cluster <name>"),
                " instead.",
            )
        return reply(
            "refused",
            f"Which cluster? canary-bot serves {listed}; add ",
            Code("--cluster <name>"),
            " (or ",
            Code("-c"),
            ") to the command.",
        )

    def _load(self, name: str) -> Operations | None:
        """The cluster's Operations, built now if they were not; None when that fails."""
        built = self._built.get(name)
        if built is not None:
            return built
        try:
            built = self._build(self._entries[name])
        except Exception as exc:  # a broken kubeconfig must not stop the other clusters
            # the type only: a loader's message may quote the file it read
            log.warning("cluster %s: credentials not loaded (%s)", name, type(exc).__name__)
            return None
        self._built[name] = built
        return built


def _no_build(entry: ClusterEntry) -> Operations:
    raise LookupError(f"cluster {entry.name} is not served here")


class ClusterNamedNotifier:
    """An engine's notifier that names the engine's cluster on every card and message.

    The release's ``spec.cluster`` is whatever its author wrote (kubectl can write
    anything); the engine knows where it runs, so its name wins: a card's buttons then
    send clicks to this cluster, whatever the object says.
    """

    def __init__(self, inner: Notifier, cluster: str) -> None:
        """Wrap ``inner``; ``cluster`` is this engine's ``cluster:`` name."""
        self.inner = inner
        self.cluster = cluster

    async def publish(
        self, release: CanaryRelease, events: Sequence[RolloutEvent]
    ) -> NotificationState:
        """``inner.publish`` with the release's ``spec.cluster`` set to this cluster."""
        if release.spec.cluster != self.cluster:
            spec = release.spec.model_copy(update={"cluster": self.cluster})
            release = release.model_copy(update={"spec": spec})
        return await self.inner.publish(release, events)

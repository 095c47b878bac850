"""The engine's watch cache: one list+watch per kind and namespace scope, read instead of GETs.

Each ``Informer`` lists its kind once, then watches from the list's resourceVersion with
bookmarks, so an idle watch resumes where it was instead of relisting. A 410 Gone (the
version is older than the API server keeps) or any other watch failure means a relist,
which also reports objects deleted meanwhile. Every ``resync_seconds`` the cached objects
are handed to the handlers again without any request (a missed trigger cannot stall a
release for longer than that).

Reads are served only once the first list has arrived and while the watch is healthy;
before that, or when RBAC forbids the list (an engine that may only read by name), the
engine's ``Kube`` reads from the API server as it always did. A write's result goes
into the cache (when newer than the cached copy), and a write that conflicted makes the
next read of that object go to the server once, so a stale copy costs at most one retry.

The threads block in the official client's HTTP calls (``Kube.watch_sync``); handlers
are called in them and must hand work to the event loop themselves.
"""

from __future__ import annotations

import logging
import marshal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rollout.kube import (
    CANARIES,
    DEPLOYMENTS,
    GRPCROUTES,
    HTTPROUTES,
    INGRESSES,
    RELEASES,
    SERVICES,
    JsonObject,
    Kube,
    KubeError,
    Resource,
    matching,
)

log = logging.getLogger("canary_bot.cache")

# A handler gets ("LISTED" | "ADDED" | "MODIFIED" | "DELETED" | "RESYNC", object).
# LISTED: the object is in a (re)list; RESYNC: the periodic re-offer of the cached state.
Handler = Callable[[str, JsonObject], None]

WATCH_SECONDS = 300
RESYNC_SECONDS = 300.0
RETRY_SECONDS = 1.0


def _version(obj: JsonObject) -> int:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion", "0"))
    except (TypeError, ValueError):
        return 0


def _key(obj: JsonObject) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def _clone(value: Any) -> Any:
    """A copy of a JSON tree (dicts, lists, scalars). ``marshal`` copies one in C, 3-5x
    faster than walking it in Python (and far faster than deepcopy); every read and
    write-through of a release with a long history pays for one. A tree holding anything
    else (marshal refuses subclasses such as enums) is walked instead."""
    try:
        return marshal.loads(marshal.dumps(value))
    except ValueError:
        return _walk(value)


def _walk(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _walk(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v) for v in value]
    return value


def _slim(obj: JsonObject) -> JsonObject:
    """Drop what the engine never reads (managedFields is most of a Deployment's size)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


@dataclass
class InformerStats:
    """What an informer did (for tests, metrics and benchmarks)."""

    lists: int = 0
    expired: int = 0  # 410 Gone answers that led to a relist
    failures: int = 0
    events: int = 0
    resyncs: int = 0
    deleted_on_relist: int = 0
    forbidden: bool = False
    not_served: bool = False  # 404 on the list: the kind is not installed
    last_error: str = ""


@dataclass
class Informer:
    """One list+watch of one kind in one namespace scope (None: every namespace)."""

    kube: Kube
    resource: Resource
    namespace: str | None
    label_selector: str = ""
    kind: str = ""
    watch_seconds: int = WATCH_SECONDS
    resync_seconds: float = RESYNC_SECONDS
    # How soon a list refused by RBAC (403) or of a kind not installed (404) is tried
    # again. Workload kinds fall back to reads by name, so rarely; the engine's own
    # CanaryReleases have no fallback, so an RBAC fix must be picked up as soon as any
    # other failure would be.
    forbidden_retry_seconds: float = 60.0
    handlers: list[Handler] = field(default_factory=list)
    stats: InformerStats = field(default_factory=InformerStats)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str], JsonObject] = {}
        self._stale: set[tuple[str, str]] = set()
        self._synced = threading.Event()
        self._settled = threading.Event()  # listed, or told it may not or cannot list
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- reads (any thread) ---------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """Whether reads are served (listed, watching, and the list was allowed)."""
        return self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        """Block until the first list arrived (for tests and tools)."""
        return self._synced.wait(timeout)

    def wait_settled(self, timeout: float) -> bool:
        """Block until the first list arrived or was refused (403, or 404: not installed)."""
        return self._settled.wait(timeout)

    def lookup(self, namespace: str, name: str) -> tuple[bool, JsonObject | None]:
        """(served, a private copy of the object or None when it does not exist)."""
        with self._lock:
            if not self._synced.is_set():
                return False, None
            if (namespace, name) in self._stale:
                self._stale.discard((namespace, name))  # one read from the server
                return False, None
            obj = self._objects.get((namespace, name))
        # copied outside the lock: stored objects are replaced, never changed in place
        return True, _clone(obj) if obj is not None else None

    def select(
        self, namespace: str | None, fields: Mapping[str, str] | None = None
    ) -> list[JsonObject] | None:
        """Copies of the cached objects (of one namespace, or all; with ``fields``, only
        those whose dotted paths hold these values), None when not served. Only the chosen
        objects are copied: a lookup of one Deployment's releases costs those releases."""
        with self._lock:
            if not self._synced.is_set():
                return None
            chosen = [
                obj
                for (ns, _), obj in self._objects.items()
                if namespace is None or ns == namespace
            ]
        return [_clone(obj) for obj in matching(chosen, fields)]

    def covers(self, namespace: str | None) -> bool:
        """Whether this informer's scope holds every object of ``namespace``."""
        return self.namespace is None or self.namespace == namespace

    # -- updates --------------------------------------------------------------------------

    def written(self, obj: JsonObject, owned: bool = False) -> None:
        """An object as a write returned it: kept unless the cache already has a newer one
        (a copy, unless the caller hands it over: ``owned``)."""
        key = _key(obj)
        kept = _slim(obj if owned else _clone(obj))
        with self._lock:
            self._stale.discard(key)
            current = self._objects.get(key)
            if current is None or _version(obj) >= _version(current):
                self._objects[key] = kept

    def invalidate(self, namespace: str, name: str) -> None:
        """The next read of this object goes to the server."""
        with self._lock:
            self._stale.add((namespace, name))

    def _apply(self, kind: str, obj: JsonObject) -> None:
        key = _key(obj)
        with self._lock:
            if kind == "DELETED":
                self._objects.pop(key, None)
                self._stale.discard(key)
                return
            current = self._objects.get(key)
            # a write's result may already be here, newer than this event
            if current is None or _version(obj) >= _version(current):
                self._objects[key] = _slim(obj)
                self._stale.discard(key)

    def _replace(self, items: list[JsonObject]) -> list[JsonObject]:
        """Take a fresh list; returns the objects that vanished since the last one."""
        fresh = {_key(obj): _slim(obj) for obj in items}
        with self._lock:
            gone = [obj for key, obj in self._objects.items() if key not in fresh]
            self._objects = fresh
            self._stale.clear()
        return gone

    def _emit(self, kind: str, objects: Iterable[JsonObject]) -> None:
        for obj in objects:
            for handler in self.handlers:
                try:
                    handler(kind, obj)
                except Exception:  # one handler's bug must not end the watch
                    log.exception("%s handler failed", self.resource.plural)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, since: str = "") -> None:
        """Start (or restart) the list+watch thread; ``since`` skips the first list and
        watches from that version (a relist follows if the server no longer has it)."""
        self.stop()
        self._stop = threading.Event()
        self._synced.clear()
        self._settled.clear()
        self._thread = threading.Thread(
            target=self._run,
            args=(since, self._stop),
            name=f"{self.resource.plural}-informer",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving reads and end the thread (it may finish a blocked request first)."""
        self._stop.set()
        self._synced.clear()

    def _list(self, stop: threading.Event) -> str:
        """List and take the result; the list's resourceVersion, "" when it failed."""
        query = [("labelSelector", self.label_selector)] if self.label_selector else None
        try:
            result = self.kube.request_sync("GET", self.resource.path(self.namespace), query=query)
        except KubeError as exc:
            self.stats.failures += 1
            self.stats.last_error = str(exc)
            if exc.status == 403 and not self.stats.forbidden:
                log.warning(
                    "cannot list %s (%s): reading them by name instead",
                    self.resource.plural,
                    exc.message,
                )
            elif exc.status == 404 and not self.stats.not_served:
                # an optional kind whose CRDs are not installed (Gateway API routes)
                log.info(
                    "the API server does not serve %s.%s: reading them by name until it does",
                    self.resource.plural,
                    self.resource.group,
                )
            elif exc.status not in (403, 404):
                log.warning("listing %s failed: %s (retrying)", self.resource.plural, exc)
            self.stats.forbidden = exc.status == 403
            self.stats.not_served = exc.status == 404
            if exc.status in (403, 404):
                self._settled.set()
            return ""
        if stop.is_set():
            return ""
        self.stats.lists += 1
        api_version = str(result.get("apiVersion", ""))
        kind = self.kind or str(result.get("kind", "")).removesuffix("List")
        items: list[JsonObject] = result.get("items", [])
        for item in items:  # list items carry no apiVersion/kind; a GET's object does
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        gone = self._replace(items)
        self.stats.deleted_on_relist += len(gone)
        self.stats.forbidden = self.stats.not_served = False
        self._synced.set()
        self._settled.set()
        self._emit("DELETED", gone)
        self._emit("LISTED", items)
        return str(result.get("metadata", {}).get("resourceVersion", ""))

    def _run(self, since: str, stop: threading.Event) -> None:
        version = since
        resynced = time.monotonic()
        while not stop.is_set():
            if not version:
                version = self._list(stop)
                if not version:
                    refused = self.stats.forbidden or self.stats.not_served
                    stop.wait(self.forbidden_retry_seconds if refused else RETRY_SECONDS)
                    continue
                resynced = time.monotonic()
            try:
                version = self._watch(version, stop)
            except KubeError as exc:
                if stop.is_set():
                    return
                self._synced.clear()  # until the relist: reads go to the server
                if exc.status == 410:
                    self.stats.expired += 1
                else:
                    self.stats.failures += 1
                    self.stats.last_error = str(exc)
                    log.warning("watch of %s interrupted: %s", self.resource.plural, exc)
                    stop.wait(RETRY_SECONDS)
                version = ""
            except Exception:
                if stop.is_set():
                    return
                self._synced.clear()
                self.stats.failures += 1
                log.exception("watch of %s failed; relisting", self.resource.plural)
                stop.wait(RETRY_SECONDS)
                version = ""
            if version and time.monotonic() - resynced >= self.resync_seconds:
                resynced = time.monotonic()
                self.stats.resyncs += 1
                self._emit("RESYNC", self.select(self.namespace) or [])

    def _watch(self, version: str, stop: threading.Event) -> str:
        """Follow the watch until the server ends it; the version to resume from."""
        seconds = int(max(1, min(self.watch_seconds, self.resync_seconds)))
        for event in self.kube.watch_sync(
            self.resource, self.namespace, version, seconds, label_selector=self.label_selector
        ):
            if stop.is_set():
                return version
            obj = event.get("object", {})
            version = str(obj.get("metadata", {}).get("resourceVersion", version))
            kind = str(event.get("type", ""))
            if kind == "BOOKMARK":
                continue
            self.stats.events += 1
            self._apply(kind, obj)
            self._emit(kind, [obj])
        return version


class WatchCache:
    """The informers of one engine, answering ``Kube``'s reads (``rollout.kube.ReadCache``)."""

    def __init__(self, informers: Iterable[Informer] = ()) -> None:
        self.informers: dict[str, Informer] = {}
        for informer in informers:
            self.add(informer)

    def add(self, informer: Informer) -> Informer:
        """Own one more informer (one per resource)."""
        self.informers[informer.resource.path(None)] = informer
        return informer

    def informer(self, resource: Resource) -> Informer | None:
        """The informer of ``resource``, if this cache has one."""
        return self.informers.get(resource.path(None))

    def start(self) -> None:
        """Start every informer."""
        for informer in self.informers.values():
            informer.start()

    def stop(self) -> None:
        """Stop every informer."""
        for informer in self.informers.values():
            informer.stop()

    def wait_synced(self, timeout: float) -> bool:
        """Block until every informer has listed, or learnt that it may not (RBAC) or
        cannot (its kind is not installed) and reads by name (for tests and tools)."""
        deadline = time.monotonic() + timeout
        return all(
            i.wait_settled(max(0.0, deadline - time.monotonic())) for i in self.informers.values()
        )

    # -- rollout.kube.ReadCache -----------------------------------------------------------

    def lookup(
        self, resource: Resource, namespace: str, name: str
    ) -> tuple[bool, JsonObject | None]:
        """See ``ReadCache.lookup``."""
        informer = self.informer(resource)
        if informer is None or not informer.covers(namespace):
            return False, None
        return informer.lookup(namespace, name)

    def select(
        self,
        resource: Resource,
        namespace: str | None,
        label_selector: str,
        fields: Mapping[str, str] | None = None,
    ) -> list[JsonObject] | None:
        """See ``ReadCache.select`` (selectors other than the informer's go to the server)."""
        informer = self.informer(resource)
        if informer is None or label_selector or not informer.covers(namespace):
            return None
        return informer.select(namespace, fields)

    def written(self, resource: Resource, obj: JsonObject, *, owned: bool = False) -> None:
        """See ``ReadCache.written``."""
        informer = self.informer(resource)
        if informer is not None and informer.covers(_key(obj)[0]) and informer.synced:
            informer.written(obj, owned)

    def invalidate(self, resource: Resource, namespace: str, name: str) -> None:
        """See ``ReadCache.invalidate``."""
        informer = self.informer(resource)
        if informer is not None:
            informer.invalidate(namespace, name)


class EngineCache(WatchCache):
    """The engine's informers: CanaryReleases (its trigger, too) and what it reads per step."""

    def __init__(self, releases: Informer, others: Iterable[Informer] = ()) -> None:
        super().__init__([releases, *others])
        self.releases = releases


def engine_cache(
    kube: Kube, namespace: str | None, release_selector: str = "", *, workloads: bool = True
) -> EngineCache:
    """CanaryReleases (matching ``release_selector``) and, with ``workloads``, the
    Deployments, Services, Ingresses, HTTPRoutes and GRPCRoutes of the engine's namespace
    scope (the routes only where the Gateway API CRDs are installed)."""
    releases = Informer(
        kube,
        RELEASES,
        namespace,
        release_selector,
        kind="CanaryRelease",
        watch_seconds=30,
        forbidden_retry_seconds=RETRY_SECONDS,
    )
    others = [
        Informer(kube, DEPLOYMENTS, namespace, kind="Deployment", watch_seconds=120),
        Informer(kube, SERVICES, namespace, kind="Service", watch_seconds=120),
        Informer(kube, INGRESSES, namespace, kind="Ingress", watch_seconds=120),
        Informer(kube, HTTPROUTES, namespace, kind="HTTPRoute", watch_seconds=120),
        Informer(kube, GRPCROUTES, namespace, kind="GRPCRoute", watch_seconds=120),
    ]
    return EngineCache(releases, others if workloads else ())


class FrontCache(WatchCache):
    """The command front's reads: its own informers, and for the kinds it has none of,
    the engine's of the same process (``share``). Those serve only while that engine
    leads; otherwise, as for any cache that cannot answer, reads go to the server."""

    def __init__(self, informers: Iterable[Informer] = ()) -> None:
        super().__init__(informers)
        self._shared: WatchCache | None = None

    def share(self, other: WatchCache) -> None:
        """Answer the kinds this cache has no informer of from ``other`` (whose informers
        stay ``other``'s to start and stop)."""
        self._shared = other

    def _owner(self, resource: Resource) -> WatchCache | None:
        """The other cache that answers for ``resource``, None when it is this one's."""
        return self._shared if self.informer(resource) is None else None

    def lookup(
        self, resource: Resource, namespace: str, name: str
    ) -> tuple[bool, JsonObject | None]:
        """See ``ReadCache.lookup``."""
        owner = self._owner(resource)
        if owner is not None:
            return owner.lookup(resource, namespace, name)
        return super().lookup(resource, namespace, name)

    def select(
        self,
        resource: Resource,
        namespace: str | None,
        label_selector: str,
        fields: Mapping[str, str] | None = None,
    ) -> list[JsonObject] | None:
        """See ``ReadCache.select``."""
        owner = self._owner(resource)
        if owner is not None:
            return owner.select(resource, namespace, label_selector, fields)
        return super().select(resource, namespace, label_selector, fields)

    def written(self, resource: Resource, obj: JsonObject, *, owned: bool = False) -> None:
        """See ``ReadCache.written``."""
        owner = self._owner(resource)
        if owner is not None:
            owner.written(resource, obj, owned=owned)
        else:
            super().written(resource, obj, owned=owned)

    def invalidate(self, resource: Resource, namespace: str, name: str) -> None:
        """See ``ReadCache.invalidate``."""
        owner = self._owner(resource)
        if owner is not None:
            owner.invalidate(resource, namespace, name)
        else:
            super().invalidate(resource, namespace, name)


def front_cache(kube: Kube, namespace: str | None) -> FrontCache:
    """The command front's reads: every CanaryRelease of its scope, whatever its shard,
    and the Canaries.

    ``status``, ``list``, ``history``, a start's checks and the clicks read releases from
    here instead of a LIST or GET decoded per command. It is the front's own informer,
    not the engine's: an engine's holds only its shard's releases (and only while it
    leads), where the front answers for all of them. The front's writes go through the
    same ``Kube.cached`` view, so a read after a write sees at least what was written.
    Deployments, Ingresses and routes come from the engine's informers where the engine
    runs in the same process (``FrontCache.share``).
    """
    return FrontCache(
        [
            Informer(kube, RELEASES, namespace, kind="CanaryRelease", watch_seconds=30),
            # a start asks whether a Canary protects its Deployment
            Informer(kube, CANARIES, namespace, kind="Canary", watch_seconds=120),
        ]
    )

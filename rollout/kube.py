"""The one module that talks to the Kubernetes API (through the official client).

Objects travel as plain JSON dicts: the engine reads a few fields and sends small patches,
so deserialising into the client's generated models would only cost time and memory.
Blocking client calls run in worker threads so the event loop stays responsive.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import functools
import json
import socket
import struct
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal

import kubernetes.client
import kubernetes.config
from kubernetes.client.exceptions import ApiException
from urllib3.connection import HTTPConnection

from rollout.egress import error_text
from rollout.kubetypes import (
    APPLY_PATCH,
    CANARIES,
    DEFAULT_TIMEOUT,
    DEPLOYMENTS,
    EVENTS,
    GATEWAY_GROUP,
    GRPCROUTES,
    HTTPROUTES,
    INGRESSES,
    JSON_PATCH,
    LEASES,
    MERGE_PATCH,
    MUTATING,
    REFERENCEGRANTS,
    RELEASES,
    SECRETS,
    SERVICES,
    STRATEGIC_PATCH,
    Conflict,
    JsonObject,
    KubeError,
    NotFound,
    NotLeading,
    ReadCache,
    RequestCounter,
    Resource,
    WriteGuard,
    resource_of,
)

# Re-exported: callers name resources and catch errors through rollout.kube.
__all__ = [
    "APPLY_PATCH",
    "CANARIES",
    "DEFAULT_TIMEOUT",
    "DEPLOYMENTS",
    "EVENTS",
    "GATEWAY_GROUP",
    "GRPCROUTES",
    "HTTPROUTES",
    "INGRESSES",
    "JSON_PATCH",
    "LEASES",
    "MERGE_PATCH",
    "MUTATING",
    "REFERENCEGRANTS",
    "RELEASES",
    "SECRETS",
    "SERVICES",
    "STRATEGIC_PATCH",
    "Conflict",
    "JsonObject",
    "Kube",
    "KubeError",
    "NotFound",
    "NotLeading",
    "ReadCache",
    "RequestCounter",
    "Resource",
    "WriteGuard",
    "resource_of",
]


class Kube:
    """A small JSON-in, JSON-out gateway to the API server."""

    def __init__(self, api_client: kubernetes.client.ApiClient, workers: int = 32) -> None:
        self._api = api_client
        self.requests = RequestCounter()
        # Blocking client calls get their own pool: asyncio's default one has only
        # cores + 4 threads, which hundreds of rollouts (and Slack handlers) would queue on.
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")
        api_client.configuration.connection_pool_maxsize = max(
            workers, int(api_client.configuration.connection_pool_maxsize or 0)
        )
        pool_kw = api_client.rest_client.pool_manager.connection_pool_kw
        pool_kw["maxsize"] = workers
        # Every request is sent once. urllib3 would otherwise resend a PUT or DELETE that
        # timed out, from its own thread and after our guard said yes, possibly after this
        # process lost the Lease; callers retry on their next tick, after asking again.
        pool_kw["retries"] = False
        # A request given up on is gone for good: closing its connection resets it and
        # drops bytes the network has not delivered yet, so a write sent just before a
        # partition cannot reach the server when it heals, long after this process
        # stopped acting.
        pool_kw["socket_options"] = [
            *HTTPConnection.default_socket_options,
            (socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)),
        ]
        self._guard: WriteGuard | None = None
        self._cache: ReadCache | None = None
        # kinds whose lists refused a field selector (shared by every view of this pool)
        self._unselectable: set[str] = set()

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> Kube:
        """Connect in-cluster when running in a Pod, else through a kubeconfig file."""
        if kubeconfig is None and context is None:
            try:
                kubernetes.config.load_incluster_config()
                return cls(kubernetes.client.ApiClient())
            except kubernetes.config.ConfigException:
                pass
        client = kubernetes.config.new_client_from_config(config_file=kubeconfig, context=context)
        return cls(client)

    def fenced(self, guard: WriteGuard) -> Kube:
        """A view sharing this connection pool whose every mutating request first asks
        ``guard`` (see ``WriteGuard``). The leader's engine writes only through it."""
        view = copy.copy(self)
        view._guard = guard
        return view

    def cached(self, cache: ReadCache) -> Kube:
        """A view (same pool, same guard) whose ``get`` and ``list_objects`` are answered
        by ``cache`` where it can, and whose writes update it with what the server returned.
        Writes still go to the API server, with the resourceVersion that was read."""
        view = copy.copy(self)
        view._cache = cache
        return view

    def _remember(self, resource: Resource, result: JsonObject, owned: bool = False) -> JsonObject:
        if self._cache is not None and isinstance(result.get("metadata"), dict):
            self._cache.written(resource, result, owned=owned)
        return result

    def _stale(self, resource: Resource, namespace: str, name: str) -> None:
        if self._cache is not None:
            self._cache.invalidate(resource, namespace, name)

    def _budget(self, method: str, timeout: float) -> float:
        """The timeout for one request; raises ``NotLeading`` if a write must not go."""
        if self._guard is not None and method in MUTATING:
            timeout = min(timeout, self._guard())
        return max(timeout, 0.05)  # a zero timeout would mean none to the client

    @property
    def server(self) -> str:
        """The API server URL (no credentials)."""
        return str(self._api.configuration.host)

    def close(self) -> None:
        """Release the connection pool and the worker threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._api.close()

    # -- raw REST -------------------------------------------------------------------------

    def request_sync(
        self,
        method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"],
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> JsonObject:
        """One API request; raises ``NotFound``, ``Conflict``, ``NotLeading`` or ``KubeError``.

        ``timeout`` bounds the whole request (connect and response); a fenced write is
        also bounded by what its guard allows, asked here, immediately before sending.
        """
        plural = resource_of(path)
        timeout = self._budget(method, timeout)
        self.requests.add(method, plural)
        response = self._call_api(
            method,
            path,
            query=query or [],
            headers={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            # a (connect, read) pair: the client ignores a float (no timeout at all)
            timeout=(timeout, timeout),
            errors_of=plural,
        )
        data = response.data
        return json.loads(data) if data else {}

    def _call_api(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        timeout: tuple[float, float],
        body: Any = None,
        errors_of: str | None = None,
    ) -> Any:
        """The client's raw call, its errors mapped to ``KubeError`` and its subclasses.

        ``errors_of`` names the resource a failure is counted against (None: not counted).
        """
        # The client's REST layer, with the headers and credentials ``call_api`` adds but
        # not its walk of every body (for its models; ours are plain JSON already).
        api = self._api
        headers = {**headers, **api.default_headers}
        if api.cookie:
            headers["Cookie"] = api.cookie
        query = list(query)
        try:
            api.update_params_for_auth(headers, query, ["BearerToken"])
            return api.rest_client.request(
                method,
                api.configuration.host + path,
                query_params=query,
                headers=headers,
                body=body,
                _preload_content=False,
                _request_timeout=timeout,
            )
        except ApiException as exc:
            if errors_of is not None:
                self.requests.error(errors_of, exc.status or 0)
            raise _translate(exc) from None
        except Exception as exc:  # urllib3/network errors: the server is unreachable
            if errors_of is not None:
                self.requests.error(errors_of, 0)
            raise KubeError(
                0, "Unavailable", f"API server unreachable: {error_text(exc)}"
            ) from None

    async def request(
        self,
        method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"],
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
        request_timeout: float = DEFAULT_TIMEOUT,
    ) -> JsonObject:
        """``request_sync`` in a worker thread, abandoned after ``request_timeout`` s.

        The client's own timeout ends the thread's request at the same bound, so an
        abandoned call does not linger (the thread pool may queue it first: the guard is
        asked both here and again in the thread, right before the request goes out).
        """
        timeout = self._budget(method, request_timeout)
        call = functools.partial(
            self.request_sync,
            method,
            path,
            body,
            content_type=content_type,
            query=query,
            timeout=timeout,
        )
        future = asyncio.get_running_loop().run_in_executor(self._executor, call)
        try:
            # not asyncio.wait_for: on 3.11 it returns (or raises) the request's outcome
            # when a cancel lands just as the request finishes, so a loop cancelled once
            # (the revision loop, a run) would go on and its stop would wait forever
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise KubeError(
                0, "Timeout", f"{method} {resource_of(path)}: no answer within {timeout:.1f}s"
            ) from None

    # -- typed helpers --------------------------------------------------------------------

    async def get(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        request_timeout: float = DEFAULT_TIMEOUT,
    ) -> JsonObject | None:
        """The object, or None when it does not exist (from the cache when it serves it:
        a private copy the caller may change)."""
        if self._cache is not None:
            served, obj = self._cache.lookup(resource, namespace, name)
            if served:
                return obj
        try:
            found = await self.request(
                "GET", resource.path(namespace, name), request_timeout=request_timeout
            )
        except NotFound:
            return None
        return self._remember(resource, found)

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str | None:
        """The decoded value of one key of a Secret; None when the Secret or key is missing.

        Raises ``KubeError`` (403 when RBAC does not allow the ``get``). The value is
        returned to the caller only: nothing here logs or keeps it.
        """
        secret = await self.get(SECRETS, namespace, name)
        if secret is None:
            return None
        raw = (secret.get("data") or {}).get(key)
        if raw is None:
            plain = (secret.get("stringData") or {}).get(key)
            return str(plain) if plain is not None else None
        try:
            return base64.b64decode(raw, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise KubeError(
                422, "Invalid", f"key {key} of Secret {namespace}/{name} is not UTF-8 text"
            ) from None

    async def list_objects(
        self,
        resource: Resource,
        namespace: str | None = None,
        label_selector: str = "",
        fields: Mapping[str, str] | None = None,
    ) -> list[JsonObject]:
        """All objects of a kind (in one namespace, or cluster-wide); with ``fields``, only
        those whose dotted paths hold these values. The API server selects where the kind
        declares the fields selectable (the CRDs do, Kubernetes 1.32+), so only those
        objects cross the wire; elsewhere they are filtered here."""
        if self._cache is not None:
            cached = self._cache.select(resource, namespace, label_selector, fields)
            if cached is not None:
                return cached
        query = [("labelSelector", label_selector)] if label_selector else []
        selector = field_selector(fields)
        if selector and resource.path(None) not in self._unselectable:
            try:
                result = await self.request(
                    "GET", resource.path(namespace), query=[*query, ("fieldSelector", selector)]
                )
                return list(result.get("items", []))
            except KubeError as exc:
                if exc.status != 400:
                    raise
                # an older API server, or CRDs installed before the fields were selectable
                self._unselectable.add(resource.path(None))
        result = await self.request("GET", resource.path(namespace), query=query or None)
        return matching(list(result.get("items", [])), fields)

    async def create(
        self,
        resource: Resource,
        namespace: str,
        body: JsonObject,
        request_timeout: float = DEFAULT_TIMEOUT,
    ) -> JsonObject:
        """Create an object; raises ``Conflict`` if it exists."""
        created = await self.request(
            "POST", resource.path(namespace), body, request_timeout=request_timeout
        )
        return self._remember(resource, created)

    async def replace(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        body: JsonObject,
        sub: str = "",
        request_timeout: float = DEFAULT_TIMEOUT,
        *,
        answer: bool = True,
    ) -> JsonObject:
        """PUT with the body's resourceVersion: fails with ``Conflict`` if it changed.

        Without ``answer`` the caller gets only ``metadata`` (identity, new version),
        and the cache keeps the server's answer without copying it."""
        try:
            replaced = await self.request(
                "PUT", resource.path(namespace, name, sub), body, request_timeout=request_timeout
            )
        except (Conflict, NotFound):
            self._stale(resource, namespace, name)  # read it from the server next time
            raise
        if not answer:
            meta = replaced.get("metadata")
            meta = meta if isinstance(meta, dict) else {}
            ident = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion") if k in meta}
            self._remember(resource, replaced, owned=True)
            return {"metadata": ident}
        return self._remember(resource, replaced)

    async def merge_patch(
        self, resource: Resource, namespace: str, name: str, patch: JsonObject, sub: str = ""
    ) -> JsonObject:
        """JSON merge patch (RFC 7386)."""
        return await self._patch(resource, namespace, name, patch, MERGE_PATCH, sub)

    async def strategic_patch(
        self, resource: Resource, namespace: str, name: str, patch: JsonObject
    ) -> JsonObject:
        """Strategic merge patch: lists such as containers merge by name (built-in kinds)."""
        return await self._patch(resource, namespace, name, patch, STRATEGIC_PATCH)

    async def apply(
        self, resource: Resource, namespace: str, name: str, body: JsonObject, manager: str
    ) -> JsonObject:
        """Server-side apply of ``body`` as field manager ``manager``, taking conflicting
        fields (``force``); ``body`` holds only the fields this manager owns."""
        return await self.request(
            "PATCH",
            resource.path(namespace, name),
            body,  # the client sends it as JSON, which is YAML
            content_type=APPLY_PATCH,
            query=[("fieldManager", manager), ("force", "true")],
        )

    async def json_patch(
        self, resource: Resource, namespace: str, name: str, ops: list[JsonObject], sub: str = ""
    ) -> JsonObject:
        """JSON patch (RFC 6902); a ``test`` op makes it conditional."""
        return await self._patch(resource, namespace, name, ops, JSON_PATCH, sub)

    async def _patch(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        patch: Any,
        content_type: str,
        sub: str = "",
    ) -> JsonObject:
        try:
            patched = await self.request(
                "PATCH", resource.path(namespace, name, sub), patch, content_type=content_type
            )
        except KubeError as exc:
            if exc.status in (404, 409, 422):  # what we read is not what is there
                self._stale(resource, namespace, name)
            raise
        return self._remember(resource, patched)

    async def delete(self, resource: Resource, namespace: str, name: str) -> bool:
        """Delete in the background; False when it was already gone."""
        try:
            await self.request(
                "DELETE",
                resource.path(namespace, name),
                {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
            )
        except NotFound:
            self._stale(resource, namespace, name)
            return False
        # gone, or going (finalizers): the watch brings it back if it stays
        self._stale(resource, namespace, name)
        return True

    async def record_event(
        self,
        involved: JsonObject,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        component: str = "canary-bot",
    ) -> None:
        """A Kubernetes Event on ``involved`` so ``kubectl describe`` tells the story."""
        meta = involved["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", ""),
                "kind": involved.get("kind", ""),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": component,
        }
        await self.create(EVENTS, meta["namespace"], body)

    def watch_sync(
        self,
        resource: Resource,
        namespace: str | None,
        resource_version: str,
        timeout_seconds: int = 300,
        label_selector: str = "",
    ) -> Iterator[JsonObject]:
        """Stream watch events (``{"type", "object"}``) from ``resource_version``.

        Blocking; run it in a thread. Ends when the server closes the stream; raises
        ``KubeError`` with status 410 when the version is too old (relist then).
        """
        path = resource.path(namespace)
        self.requests.add("WATCH", resource.plural)
        response = self._call_api(
            "GET",
            path,
            query=[
                ("watch", "true"),
                ("resourceVersion", resource_version),
                ("allowWatchBookmarks", "true"),
                ("timeoutSeconds", str(timeout_seconds)),
                *([("labelSelector", label_selector)] if label_selector else []),
            ],
            headers={"Accept": "application/json"},
            timeout=(10, timeout_seconds + 10),
        )
        buffer = b""
        try:
            for chunk in response.stream(amt=None, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event: JsonObject = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object", {})
                        raise KubeError(
                            int(status.get("code", 500)),
                            str(status.get("reason", "Error")),
                            str(status.get("message", "watch error")),
                        )
                    yield event
        finally:
            response.release_conn()


def _field(obj: JsonObject, path: str) -> object:
    value: object = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def matching(items: list[JsonObject], fields: Mapping[str, str] | None) -> list[JsonObject]:
    """The objects whose dotted ``fields`` paths hold exactly these values."""
    if not fields:
        return items
    return [o for o in items if all(_field(o, p) == v for p, v in fields.items())]


# What a field selector may carry unquoted: Kubernetes names and dotted paths.
_SELECTABLE_TEXT = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")


def field_selector(fields: Mapping[str, str] | None) -> str:
    """``path=value,...`` for the API server; "" when a value is not a plain name (such a
    value is matched here instead, never spliced into the selector)."""
    if not fields or not all(set(v) <= _SELECTABLE_TEXT and v for v in fields.values()):
        return ""
    return ",".join(f"{path}={value}" for path, value in fields.items())


def _translate(exc: ApiException) -> KubeError:
    status = int(exc.status or 0)
    reason = str(exc.reason or "")
    message = reason
    try:
        body = json.loads(exc.body) if exc.body else {}
        message = str(body.get("message", reason))
        reason = str(body.get("reason", reason))
    except (ValueError, TypeError):
        pass
    if status == 404:
        return NotFound(status, reason, message)
    if status == 409:
        return Conflict(status, reason, message)
    return KubeError(status, reason, message)

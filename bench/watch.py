"""Watches that timestamp every change as it arrives, so latencies are measured where a
user would see them (an Ingress's canary weight, a CanaryRelease's status).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s


@dataclass(frozen=True)
class Change:
    """One watched change: when it arrived (monotonic), what, and the extracted value."""

    at: float
    type: str
    namespace: str
    name: str
    value: Any


class Watcher:
    """Watches one kind of object in every namespace and timestamps each change on arrival.

    ``extract(obj)`` turns an object (a dict: the watch is read without the client's
    model classes) into the value of interest, e.g. a canary weight or a phase. Changes
    are kept in arrival order; ``wait_for`` blocks until one matches.
    """

    def __init__(
        self,
        api: k8s.ApiClient,
        path: str,
        extract: Callable[[dict[str, Any]], Any],
        *,
        label_selector: str = "",
    ) -> None:
        self.api = api
        self.path = path
        self.extract = extract
        self.label_selector = label_selector
        self.changes: list[Change] = []
        self.latest: dict[tuple[str, str], Any] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch{path}", daemon=True)
        self._ready = threading.Event()

    def start(self) -> Watcher:
        """Start watching; returns once the initial list is in."""
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError(f"the watch on {self.path} did not start")
        return self

    def stop(self) -> None:
        """Stop watching (the current stream ends within its 5 s timeout)."""
        self._stop.set()

    def _list(self) -> str:
        query = [("labelSelector", self.label_selector)] if self.label_selector else []
        data = json.loads(self._call(query).data)
        with self._cond:
            for obj in data.get("items", []):
                meta = obj["metadata"]
                self.latest[(meta["namespace"], meta["name"])] = self.extract(obj)
            self._cond.notify_all()
        return str(data["metadata"]["resourceVersion"])

    def _call(self, query: list[tuple[str, str]], timeout: float = 30) -> Any:
        response = self.api.call_api(
            self.path,
            "GET",
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
            _request_timeout=timeout,
        )
        return response

    def _run(self) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    version = self._list()
                    self._ready.set()
                query = [
                    ("watch", "true"),
                    ("resourceVersion", version),
                    ("allowWatchBookmarks", "true"),
                    ("timeoutSeconds", "5"),
                ]
                if self.label_selector:
                    query.append(("labelSelector", self.label_selector))
                response = self._call(query, timeout=15)
                buffer = b""
                for chunk in response.stream(amt=None, decode_content=True):
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if line.strip():
                            version = self._handle(json.loads(line), version)
                response.release_conn()
            except Exception:  # the API server restarted or the version expired: relist
                version = ""
                self._stop.wait(0.5)

    def _handle(self, event: dict[str, Any], version: str) -> str:
        arrived = time.monotonic()
        kind = event.get("type", "")
        obj = event.get("object", {})
        if kind == "ERROR":
            raise RuntimeError(str(obj))
        meta = obj.get("metadata", {})
        if kind == "BOOKMARK":
            return str(meta.get("resourceVersion", version))
        value = None if kind == "DELETED" else self.extract(obj)
        key = (meta.get("namespace", ""), meta.get("name", ""))
        with self._cond:
            self.latest[key] = value
            self.changes.append(Change(arrived, kind, key[0], key[1], value))
            self._cond.notify_all()
        return str(meta.get("resourceVersion", version))

    def wait_for(
        self,
        namespace: str,
        name: str,
        predicate: Callable[[Any], bool],
        *,
        after: float = 0.0,
        timeout: float = 60.0,
    ) -> Change:
        """The first change of ``namespace/name`` arriving after ``after`` that matches."""
        deadline = time.monotonic() + timeout
        with self._cond:
            start = 0
            while True:
                for index in range(start, len(self.changes)):
                    change = self.changes[index]
                    if (
                        change.at >= after
                        and change.namespace == namespace
                        and change.name == name
                        and predicate(change.value)
                    ):
                        return change
                start = len(self.changes)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"no matching change of {namespace}/{name} within {timeout:.0f}s "
                        f"(latest: {self.latest.get((namespace, name))!r})"
                    )
                self._cond.wait(min(remaining, 1.0))

    def value(self, namespace: str, name: str) -> Any:
        """The latest value seen (None when deleted or never seen)."""
        with self._cond:
            return self.latest.get((namespace, name))

    def snapshot(self) -> dict[tuple[str, str], Any]:
        """Every latest value."""
        with self._cond:
            return dict(self.latest)


def ingress_weight(obj: dict[str, Any]) -> int | None:
    """The canary weight of an Ingress (None when it is not a canary Ingress)."""
    annotations = obj.get("metadata", {}).get("annotations") or {}
    if annotations.get("nginx.ingress.kubernetes.io/canary") != "true":
        return None
    try:
        return int(annotations.get("nginx.ingress.kubernetes.io/canary-weight", "0"))
    except ValueError:
        return 0


def status_of(obj: dict[str, Any]) -> dict[str, Any]:
    """A custom object's status (empty when it has none yet)."""
    status: dict[str, Any] = obj.get("status") or {}
    return status


INGRESSES_PATH = "/apis/networking.k8s.io/v1/ingresses"
RELEASES_PATH = "/apis/canarybot.io/v1alpha1/canaryreleases"

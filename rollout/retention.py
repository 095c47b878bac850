"""Finished CanaryReleases: when they still need the engine, and how many are kept.

A finished release (Succeeded or Failed) is history. It needs an ``advance`` only while a
control request that arrived after the end waits to be audited as ignored; a relist or
a new leadership term leaves the others alone, so thousands of finished releases cost
the API server nothing at a resync.

Retention: per target Deployment (namespace and ``spec.targetRef.name``) the newest
``keep`` finished releases stay (``/canary history`` and ``kubectl get canaryreleases``
show them); the leader deletes older ones, newest first by ``status.finishedAt``, once
their end has been reported (no event left in the outbox). Active releases are never
counted or touched. The delete carries the uid and resourceVersion it decided on, so a
release that changed meanwhile is reconsidered rather than deleted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rollout.kube import RELEASES, Conflict, JsonObject, Kube, KubeError, NotFound
from rollout.models import FINAL_PHASES

log = logging.getLogger("canary_bot.retention")

DEFAULT_KEEP = 10
_EPOCH = datetime.min.replace(tzinfo=UTC)


def is_finished(obj: JsonObject) -> bool:
    """Whether the release reached Succeeded or Failed."""
    return (obj.get("status") or {}).get("phase", "") in FINAL_PHASES


def needs_advance(obj: JsonObject) -> bool:
    """A finished release with a control request not yet audited (it gets "ignored")."""
    audited = {entry.get("id") for entry in (obj.get("status") or {}).get("audit", []) or []}
    requests = (obj.get("spec") or {}).get("controlRequests", []) or []
    return any(isinstance(r, dict) and r.get("id") not in audited for r in requests)


def reported(obj: JsonObject) -> bool:
    """Whether every event in the release's outbox was delivered."""
    status = obj.get("status") or {}
    delivered = int((status.get("notification") or {}).get("deliveredSeq", 0) or 0)
    return int(status.get("eventSeq", 0) or 0) <= delivered


def _finished_at(obj: JsonObject) -> datetime:
    status = obj.get("status") or {}
    meta = obj.get("metadata") or {}
    for value in (status.get("finishedAt"), meta.get("creationTimestamp")):
        if isinstance(value, str) and value:
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
    return _EPOCH


@dataclass(frozen=True)
class _Finished:
    name: str
    finished_at: datetime
    reported: bool
    uid: str
    resource_version: str


class Retention:
    """Keeps the newest ``keep`` finished releases per target; deletes the rest.

    ``observe`` is fed every release the leader lists or watches; ``forget`` every one
    that is deleted. Deletions run in the background on the running event loop and only
    while ``leading()`` says so.
    """

    def __init__(self, kube: Kube, keep: int, leading: Callable[[], bool]) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1 finished release per target, not {keep}")
        self.kube = kube
        self.keep = keep
        self.leading = leading
        # (namespace, target) -> release name -> what was last seen of it
        self._groups: dict[tuple[str, str], dict[str, _Finished]] = {}
        # (namespace, name) -> its group key, so dropping one release is O(1)
        self._group_of: dict[tuple[str, str], tuple[str, str]] = {}
        self._deleting: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.deleted = 0

    def observe(self, obj: JsonObject) -> None:
        """Record a release as listed or watched; delete what falls out of the window."""
        meta = obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        target = str(((obj.get("spec") or {}).get("targetRef") or {}).get("name", ""))
        if not namespace or not name:
            return
        self._drop(namespace, name)
        if not is_finished(obj) or meta.get("deletionTimestamp"):
            return
        group = self._groups.setdefault((namespace, target), {})
        self._group_of[(namespace, name)] = (namespace, target)
        group[name] = _Finished(
            name,
            _finished_at(obj),
            reported(obj),
            str(meta.get("uid", "")),
            str(meta.get("resourceVersion", "")),
        )
        for surplus in self.surplus(namespace, target):
            self._delete(namespace, surplus)

    def surplus(self, namespace: str, target: str) -> list[_Finished]:
        """Finished releases of one target beyond the newest ``keep`` that may go now."""
        group = self._groups.get((namespace, target), {})
        newest_first = sorted(group.values(), key=lambda f: (f.finished_at, f.name), reverse=True)
        return [f for f in newest_first[self.keep :] if f.reported]

    def forget(self, namespace: str, name: str) -> None:
        """The release was deleted (by us or anyone)."""
        self._drop(namespace, name)

    def clear(self) -> None:
        """Leadership ended: the next term rebuilds the picture from its first list."""
        self._groups.clear()
        self._group_of.clear()

    async def wait(self) -> None:
        """Wait for deletions in flight (on stop)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _drop(self, namespace: str, name: str) -> None:
        key = self._group_of.pop((namespace, name), None)
        group = self._groups.get(key) if key is not None else None
        if key is not None and group is not None:
            group.pop(name, None)
            if not group:
                del self._groups[key]

    def _delete(self, namespace: str, finished: _Finished) -> None:
        key = (namespace, finished.name)
        if key in self._deleting or not self.leading():
            return
        self._deleting.add(key)
        task = asyncio.get_running_loop().create_task(self._run_delete(namespace, finished))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_delete(self, namespace: str, finished: _Finished) -> None:
        options: JsonObject = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": "Background",
            "preconditions": {"uid": finished.uid, "resourceVersion": finished.resource_version},
        }
        try:
            if not self.leading():
                return
            await self.kube.request("DELETE", RELEASES.path(namespace, finished.name), options)
            self.deleted += 1
            log.info(
                "deleted finished release %s/%s (more than %d finished for its target)",
                namespace,
                finished.name,
                self.keep,
            )
        except (NotFound, Conflict):
            pass  # gone already, or changed since: its next event decides again
        except KubeError as exc:
            log.warning(
                "could not delete finished release %s/%s: %s", namespace, finished.name, exc
            )
        finally:
            self._deleting.discard((namespace, finished.name))

"""Reading and writing CanaryRelease objects: the one door for both the engine and bot/.

Every write that depends on what was read carries the object's resourceVersion, so two
writers never silently overwrite each other (optimistic concurrency).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from rollout.kube import RELEASES, Conflict, JsonObject, Kube, KubeError, NotFound
from rollout.limits import MAX_CONTROL_REQUESTS, fit_status
from rollout.models import (
    CanaryRelease,
    CanaryReleaseSpec,
    CanaryReleaseStatus,
    ControlRequest,
    NotificationState,
    new_object,
)
from rollout.text import clip, validation_problems

log = logging.getLogger("canary_bot.store")

# How much of a reason an invalid object gets in messages: enough to fix it, never a wall.
MAX_REASON_CHARS = 1000
# status writes that clear postRolloutDue before a conflict is left to the next advance
CLEAR_ATTEMPTS = 3
# releases whose last write this store remembers (see ReleaseStore.parse); one per
# active release is enough, so it stays within RSS the cache holds for them anyway
REMEMBERED_WRITES = 2048


class ReleaseExists(Exception):
    """A CanaryRelease of that name already exists."""


class ReleaseNotFound(Exception):
    """No CanaryRelease of that name."""


class InvalidRelease(Exception):
    """The stored object cannot be read (e.g. created by hand with a bad spec)."""

    def __init__(self, raw: JsonObject, reason: str) -> None:
        super().__init__(reason)
        self.raw = raw

    @property
    def namespace(self) -> str:
        """The object's namespace as stored ("" when even that is missing)."""
        return str(_meta(self.raw).get("namespace", ""))

    @property
    def name(self) -> str:
        """The object's name as stored ("" when even that is missing)."""
        return str(_meta(self.raw).get("name", ""))


@dataclass(frozen=True)
class Listing:
    """Every release of a list: the ones that validate, and the ones that do not."""

    releases: list[CanaryRelease]
    invalid: list[InvalidRelease]


def _meta(raw: Any) -> dict[str, Any]:
    meta = raw.get("metadata") if isinstance(raw, dict) else None
    return meta if isinstance(meta, dict) else {}


def describe_validation_error(error: ValidationError) -> str:
    """One readable line per problem: ``spec.analysis.maxWeight: must be ...``."""
    return clip("; ".join(validation_problems(error)), MAX_REASON_CHARS)


def parse_release(raw: JsonObject) -> CanaryRelease:
    """Validate a raw object; raises ``InvalidRelease`` with a readable message.

    Any failure to read one object is an ``InvalidRelease``: a value the models did not
    foresee must stop that release, never the loop that reads every release.
    """
    try:
        return CanaryRelease.from_object(raw)
    except ValidationError as exc:
        raise InvalidRelease(raw, describe_validation_error(exc)) from None
    except Exception as exc:  # isolation: one object, whatever went wrong
        log.warning(
            "cannot read CanaryRelease %s/%s: %s",
            _meta(raw).get("namespace"),
            _meta(raw).get("name"),
            type(exc).__name__,
        )
        raise InvalidRelease(
            raw, clip(f"cannot be read: {type(exc).__name__}: {exc}", MAX_REASON_CHARS)
        ) from None


def _as_stored(
    release: CanaryRelease, status: CanaryReleaseStatus, raw: JsonObject
) -> CanaryRelease:
    """``release`` with the status just written, at the version the server gave it.

    A status write changes only the status and the resourceVersion, and it was accepted
    for exactly the version ``release`` was read at; so the stored object is what the
    engine sent, and validating the server's copy again (two of the four validations of
    a step, with the delivery record) is not needed.
    """
    version = _meta(raw).get("resourceVersion")
    if not isinstance(version, str) or not version:  # never from a real API server
        raise KubeError(0, "Invalid", "the status write was answered without a resourceVersion")
    meta = release.metadata.model_copy(update={"resource_version": version})
    return release.model_copy(update={"metadata": meta, "status": status})


class ParsedReleases:
    """Validated releases by uid and resourceVersion, so a read of an unchanged object
    (the command front reads the same releases from its watch over and over) skips
    validation. Sound because the API server changes the resourceVersion with every
    write, and a ``CanaryRelease`` is immutable. Bounded: the oldest entries go first."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._parsed: OrderedDict[tuple[str, str], CanaryRelease] = OrderedDict()

    def parse(self, raw: JsonObject) -> CanaryRelease:
        """``parse_release(raw)``, from memory when this version was parsed before."""
        meta = _meta(raw)
        key = (str(meta.get("uid") or ""), str(meta.get("resourceVersion") or ""))
        if not all(key):
            return parse_release(raw)
        found = self._parsed.get(key)
        if found is not None:
            self._parsed.move_to_end(key)
            return found
        release = parse_release(raw)  # an InvalidRelease is not kept: it is rare
        self._parsed[key] = release
        if len(self._parsed) > self._size:
            self._parsed.popitem(last=False)
        return release


class ReleaseStore:
    """CanaryRelease CRUD over the Kubernetes API.

    ``parsed`` keeps validated releases by version for readers that read the same
    objects often (the command front); without it every read validates.
    """

    def __init__(self, kube: Kube, parsed: ParsedReleases | None = None) -> None:
        self.kube = kube
        self._parse = parsed.parse if parsed is not None else parse_release
        self._written: OrderedDict[tuple[str, str], CanaryRelease] = OrderedDict()

    def parse(self, raw: JsonObject) -> CanaryRelease:
        """``parse_release`` (through ``parsed`` when given), except for the version this
        store wrote last: that object is the release it built, already valid. The next
        step reads what the step before wrote, so most reads skip the validation."""
        meta = _meta(raw)
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        known = self._written.get(key)
        if known is not None and known.metadata.resource_version == meta.get("resourceVersion"):
            return known
        return self._parse(raw)

    def _remember(self, release: CanaryRelease) -> CanaryRelease:
        key = (release.metadata.namespace, release.metadata.name)
        self._written[key] = release
        self._written.move_to_end(key)
        if len(self._written) > REMEMBERED_WRITES:
            self._written.popitem(last=False)
        return release

    async def create(
        self,
        namespace: str,
        name: str,
        spec: CanaryReleaseSpec,
        labels: dict[str, str] | None = None,
    ) -> CanaryRelease:
        """Create a release; raises ``ReleaseExists`` when the name is taken."""
        try:
            raw = await self.kube.create(
                RELEASES, namespace, new_object(name, namespace, spec, labels)
            )
        except Conflict:
            raise ReleaseExists(
                f"a CanaryRelease named {name} already exists in {namespace}"
            ) from None
        return parse_release(raw)

    async def get_raw(self, namespace: str, name: str) -> JsonObject | None:
        """The stored object as the API server returns it."""
        return await self.kube.get(RELEASES, namespace, name)

    async def get(self, namespace: str, name: str) -> CanaryRelease | None:
        """The release, or None."""
        raw = await self.get_raw(namespace, name)
        return self.parse(raw) if raw is not None else None

    async def list_objects(
        self, namespace: str | None = None, target: str | None = None
    ) -> list[CanaryRelease]:
        """All valid releases (in a namespace or everywhere; of one Deployment, when
        ``target`` is given), oldest first."""
        return (await self.list_all(namespace, target)).releases

    async def list_all(self, namespace: str | None = None, target: str | None = None) -> Listing:
        """Valid releases oldest first, and the objects that cannot be read, by name.

        ``target`` selects the releases whose ``spec.targetRef.name`` is that Deployment
        before any is validated: the API server or the watch cache does the choosing, so
        a lookup of one Deployment costs its releases, not the namespace's.
        """
        fields = {"spec.targetRef.name": target} if target is not None else None
        releases, invalid = [], []
        for raw in await self.kube.list_objects(RELEASES, namespace, fields=fields):
            try:
                releases.append(self.parse(raw))
            except InvalidRelease as exc:
                invalid.append(exc)
        releases.sort(key=lambda r: (r.metadata.creation_timestamp or 0, r.key))
        invalid.sort(key=lambda e: (e.namespace, e.name))
        return Listing(releases, invalid)

    async def delete(self, namespace: str, name: str) -> bool:
        """Delete a release (its canary objects go with it through ownerReferences)."""
        return await self.kube.delete(RELEASES, namespace, name)

    async def request_control(
        self, namespace: str, name: str, request: ControlRequest, attempts: int = 5
    ) -> CanaryRelease:
        """Append a control request, once per request id (Slack retries are harmless)."""
        for attempt in range(attempts):
            raw = await self.get_raw(namespace, name)
            if raw is None:
                raise ReleaseNotFound(f"no CanaryRelease named {name} in {namespace}")
            spec: dict[str, Any] = raw.setdefault("spec", {})
            requests: list[JsonObject] = list(spec.get("controlRequests") or [])
            if any(r.get("id") == request.id for r in requests):
                return parse_release(raw)
            requests.append(request.model_dump(mode="json", by_alias=True, exclude_none=True))
            # bounded (the CRD refuses more): the oldest requests, long applied, go first
            spec["controlRequests"] = requests[-MAX_CONTROL_REQUESTS:]
            try:
                return parse_release(await self.kube.replace(RELEASES, namespace, name, raw))
            except Conflict:
                await asyncio.sleep(0.05 * (attempt + 1))
            except NotFound:
                raise ReleaseNotFound(f"no CanaryRelease named {name} in {namespace}") from None
        raise Conflict(409, "Conflict", f"{name}.{namespace} kept changing; try again")

    async def write_status(
        self, release: CanaryRelease, status: CanaryReleaseStatus
    ) -> CanaryRelease:
        """Replace the status if the object is unchanged since it was read; the release
        as stored."""
        meta = release.metadata
        fitted = fit_status(status)
        raw = await self._replace_status(
            "canarybot.io/v1alpha1",
            "CanaryRelease",
            meta.namespace,
            meta.name,
            meta.resource_version,
            fitted,
            answer=False,
        )
        return self._remember(_as_stored(release, fitted, raw))

    async def clear_post_rollout_due(self, release: CanaryRelease) -> CanaryRelease:
        """Record that the post-rollout hooks were called (a status PUT, as every status
        write: RBAC grants update, never patch). A change of the object meanwhile (a click
        on a finished release) is not a reason to call the hooks again: re-read, write again."""
        for _ in range(CLEAR_ATTEMPTS - 1):
            status = release.status.model_copy(update={"post_rollout_due": False})
            try:
                return await self.write_status(release, status)
            except Conflict:
                fresh = await self.get(release.metadata.namespace, release.metadata.name)
                if fresh is None or not fresh.status.post_rollout_due:
                    return fresh or release
                release = fresh
        status = release.status.model_copy(update={"post_rollout_due": False})
        return await self.write_status(release, status)

    async def write_raw_status(self, raw: JsonObject, status: CanaryReleaseStatus) -> JsonObject:
        """Status of an object whose spec does not validate (to report why)."""
        meta = raw["metadata"]
        return await self._replace_status(
            raw["apiVersion"],
            raw["kind"],
            meta["namespace"],
            meta["name"],
            meta["resourceVersion"],
            fit_status(status),
        )

    async def _replace_status(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        resource_version: str | None,
        status: CanaryReleaseStatus,
        *,
        answer: bool = True,
    ) -> JsonObject:
        """PUT ``status`` (already fitted to its bounds) on the object's status; without
        ``answer`` only the stored object's metadata comes back (``Kube.replace``)."""
        # The resourceVersion makes the write conditional: a changed object is a Conflict.
        body = {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": resource_version,
            },
            "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
        return await self.kube.replace(
            RELEASES, namespace, name, body, sub="status", answer=answer
        )

    async def write_notification(
        self, release: CanaryRelease, state: NotificationState
    ) -> CanaryRelease:
        """Record where the thread lives and what was delivered (same concurrency rule)."""
        status = release.status.model_copy(update={"notification": state})
        return await self.write_status(release, status)

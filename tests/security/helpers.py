"""Shared parts of the security tests: a recording hook server, notifier and Slack front."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from kubernetes import client as k8s

from bot.authz import Authorizer
from bot.config import BotConfig
from bot.operations import Operations
from rollout.kube import Kube
from rollout.models import CanaryRelease, NotificationState, RolloutEvent
from rollout.store import ReleaseStore
from tests.fixtures.engine import async_wait_for

USER = "U0ALICE"


@dataclass
class HookServer:
    """A local HTTP server that records every request and answers as told."""

    url: str = ""
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    # path -> (status, body, headers)
    answers: dict[str, tuple[int, str, dict[str, str]]] = field(default_factory=dict)


@asynccontextmanager
async def hook_server() -> AsyncIterator[HookServer]:
    """A ``HookServer`` on 127.0.0.1, any method and path."""
    rec = HookServer()

    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        body = json.loads(raw) if raw else {}
        rec.requests.append((request.method, request.path_qs, body))
        status, text, headers = rec.answers.get(request.path, (200, "", {}))
        return web.Response(status=status, text=text, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield rec
    finally:
        await runner.cleanup()


class RecordingNotifier:
    """What Slack would be sent: every event the engine hands over, in order."""

    def __init__(self) -> None:
        self.events: list[RolloutEvent] = []

    async def publish(
        self, release: CanaryRelease, events: Sequence[RolloutEvent]
    ) -> NotificationState:
        """Keep the events; confirm them delivered."""
        self.events.extend(events)
        state = release.status.notification
        last = events[-1].seq if events else state.delivered_seq
        return state.model_copy(update={"delivered_seq": max(last, state.delivered_seq)})

    @property
    def text(self) -> str:
        """Every message and detail, as one string to search."""
        return json.dumps([e.model_dump(mode="json") for e in self.events])


class NoGroups:
    """A Slack user group directory with no groups (rules here name users)."""

    async def members(self, group: str) -> frozenset[str]:
        """Nobody."""
        return frozenset()


def operations(kube: Kube, config: BotConfig) -> Operations:
    """The Slack front's commands over the real API server."""
    return Operations(
        config=config,
        store=ReleaseStore(kube),
        kube=kube,
        authorizer=Authorizer(config.authorization, NoGroups()),
    )


def allow_everything(namespace: str) -> dict[str, Any]:
    """An ``authorization`` block letting ``USER`` do everything in ``namespace``."""
    return {"rules": [{"namespaces": [namespace], "verbs": ["*"], "users": [USER]}]}


def release_events(api: k8s.ApiClient, namespace: str) -> list[str]:
    """Messages of the Events on CanaryReleases in ``namespace``, oldest first."""
    items = k8s.CoreV1Api(api).list_namespaced_event(namespace).items
    ours = [e for e in items if e.involved_object.kind == "CanaryRelease"]
    ours.sort(key=lambda e: int(e.metadata.resource_version))
    return [str(e.message) for e in ours]


async def recorded(api: k8s.ApiClient, namespace: str, message: str) -> list[str]:
    """The Event messages once ``message`` is among them (Events follow the status write)."""

    async def story() -> list[str] | None:
        messages = release_events(api, namespace)
        return messages if message in messages else None

    try:
        result: list[str] = await async_wait_for(story, 20, f"an Event {message!r}")
    except pytest.fail.Exception:
        pytest.fail(f"no Event {message!r}; Events:\n" + "\n".join(release_events(api, namespace)))
    return result


async def delivered(notifier: RecordingNotifier, message: str) -> None:
    """Wait until the notifier was handed ``message`` (delivery follows the status write)."""

    async def seen() -> bool:
        return any(e.message == message for e in notifier.events)

    await async_wait_for(seen, 20, f"the notifier to be given {message!r}")

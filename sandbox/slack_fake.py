"""A local fake of Slack for end-to-end tests of the Slack front.

:class:`SlackFake` is an aiohttp server on 127.0.0.1 that runs in a background thread
with its own event loop, so both synchronous code and code on any other event loop can
talk to it. It answers the Web API methods canary-bot uses the way Slack does:

* request bodies form-encoded or JSON (or query parameters), the token in an
  ``Authorization: Bearer`` header (or a form/query ``token`` field; Slack ignores a
  token inside a JSON body);
* HTTP 200 with ``{"ok": false, "error": ...}`` for API errors: ``not_authed``,
  ``invalid_auth``, ``not_allowed_token_type``, ``channel_not_found``, ``not_in_channel``,
  ``is_archived``, ``message_not_found``, ``cant_update_message``, ``no_text``,
  ``msg_too_long``, ``invalid_blocks`` (with Slack's ``errors`` list and json-pointers),
  ``invalid_arguments``, ``expired_trigger_id``, ``exchanged_trigger_id``, ...;
* message ``ts`` values that are unique and increasing (``"1764140000.000100"``);
* HTTP 429 with ``Retry-After`` and HTTP 5xx when told to (:meth:`SlackFake.rate_limit`,
  :meth:`SlackFake.server_errors`), or at Slack's own rates
  (:meth:`SlackFake.enforce_rate_limits`);
* ``response_url`` endpoints (:meth:`SlackFake.new_response_url`) with Slack's limits;
* the file upload flow that ``files_upload_v2`` uses;
* Socket Mode (see :mod:`sandbox.slack_socket_mode`).

Every call is recorded (method, parameters, time, HTTP status, response; never the
token) and there are views for assertions: :meth:`SlackFake.messages`,
:meth:`SlackFake.thread`, :meth:`SlackFake.updates_of`, :meth:`SlackFake.ephemerals`.

Where Slack's behaviour is not documented the fake picks the stricter reading, so a
test that passes here does not rely on leniency:

* a ``thread_ts`` that names no message in the channel is ``thread_not_found``;
* a ``response_url`` answers 404 ``used_url`` after 5 posts and ``expired_url`` after
  30 minutes;
* ``views.open``/``views.push`` accept a trigger id once, within ``trigger_ttl`` seconds
  of its issue time (trigger ids from :func:`sandbox.slack_requests.make_trigger_id`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from concurrent.futures import Future as ConcurrentFuture
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from aiohttp import web

from sandbox import slack_requests
from sandbox.slack_socket_mode import (
    SocketConnection,
    SocketEnvelope,
    SocketModeAck,
    SocketModeEndpoint,
)

__all__ = [
    "DEFAULT_APP_TOKEN",
    "DEFAULT_BOT_TOKEN",
    "DEFAULT_CHANNELS",
    "DEFAULT_USERGROUPS",
    "DEFAULT_USERS",
    "RecordedCall",
    "ResponseUrlPost",
    "SlackChannel",
    "SlackFake",
    "SlackUser",
    "SlackUserGroup",
    "UploadedFile",
    "validate_blocks",
]

JSON = dict[str, Any]
_T = TypeVar("_T")

DEFAULT_BOT_TOKEN = "xoxb-0000000000-fake-canary-bot-token"
DEFAULT_APP_TOKEN = "xapp-1-A0CANARYBOT-0000-fake-app-level-token"
BOT_USER_ID = slack_requests.DEFAULT_BOT_USER_ID
BOT_ID = slack_requests.DEFAULT_BOT_ID
BOT_NAME = "canary-bot"

# Slack's documented limits.
MESSAGE_BLOCK_LIMIT = 50
VIEW_BLOCK_LIMIT = 100
MESSAGE_TEXT_LIMIT = 40_000
RESPONSE_URL_MAX_POSTS = 5
RESPONSE_URL_TTL = 30 * 60.0
TRIGGER_TTL = 3.0


# ---------------------------------------------------------------------------
# the workspace


@dataclass(frozen=True)
class SlackUser:
    """A member of the fake workspace."""

    id: str
    name: str
    real_name: str = ""
    email: str = ""
    is_admin: bool = False
    is_bot: bool = False
    deleted: bool = False
    tz: str = "Europe/Amsterdam"


@dataclass(frozen=True)
class SlackChannel:
    """A conversation. ``members=None`` means every user of the workspace is a member."""

    id: str
    name: str
    is_private: bool = False
    is_archived: bool = False
    bot_is_member: bool = True
    members: frozenset[str] | None = None
    topic: str = ""
    purpose: str = ""


@dataclass(frozen=True)
class SlackUserGroup:
    """A user group (``@handle``); disabled groups only show with ``include_disabled``."""

    id: str
    handle: str
    name: str
    users: tuple[str, ...] = ()
    description: str = ""
    enabled: bool = True


DEFAULT_USERS: tuple[SlackUser, ...] = (
    SlackUser(
        slack_requests.DEFAULT_USER_ID,
        slack_requests.DEFAULT_USER_NAME,
        "Alice Admin",
        "alice@example.com",
        is_admin=True,
    ),
    SlackUser("U0BOB", "bob", "Bob Builder", "bob@example.com"),
    SlackUser("U0CAROL", "carol", "Carol Coder", "carol@example.com"),
    SlackUser("U0MALLORY", "mallory", "Mallory Outsider", "mallory@example.com"),
)
DEFAULT_CHANNELS: tuple[SlackChannel, ...] = (
    SlackChannel(slack_requests.DEFAULT_CHANNEL_ID, slack_requests.DEFAULT_CHANNEL_NAME),
    SlackChannel("C0ALERTS", "alerts"),
    SlackChannel("C0PRIVATE", "sre-private", is_private=True),
    SlackChannel("C0NOBOT", "random", bot_is_member=False),
    SlackChannel("C0ARCHIVED", "old-deploys", is_archived=True),
)
DEFAULT_USERGROUPS: tuple[SlackUserGroup, ...] = (
    SlackUserGroup("S0SRE", "sre", "SRE", (slack_requests.DEFAULT_USER_ID,)),
    SlackUserGroup("S0DEVS", "devs", "Developers", ("U0BOB", "U0CAROL")),
    SlackUserGroup("S0OLD", "old-oncall", "Former on-call", ("U0BOB",), enabled=False),
)


# ---------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class RecordedCall:
    """One Web API call as the fake saw it. ``params`` never hold the token."""

    method: str
    params: JSON
    at: float
    status: int
    response: JSON
    token_type: Literal["bot", "app", "invalid"] | None

    @property
    def ok(self) -> bool:
        """Whether Slack would have answered ``ok: true``."""
        return self.status == 200 and bool(self.response.get("ok"))

    @property
    def error(self) -> str | None:
        """Slack's error code, if the call failed."""
        error = self.response.get("error")
        return error if isinstance(error, str) else None


@dataclass(frozen=True)
class ResponseUrlPost:
    """One POST to a ``response_url`` and how the fake answered it."""

    url: str
    body: JSON
    at: float
    status: int
    error: str | None

    @property
    def ok(self) -> bool:
        """Whether the post was accepted."""
        return self.status == 200


@dataclass(frozen=True)
class UploadedFile:
    """A file uploaded through the ``files_upload_v2`` flow."""

    id: str
    filename: str
    title: str
    content: bytes
    channel: str | None
    thread_ts: str | None
    initial_comment: str | None


class _ApiError(Exception):
    """An API error answered as HTTP 200 ``{"ok": false, "error": ...}``."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


def _check_blocks(blocks: Any) -> None:
    errors = validate_blocks(blocks)
    if errors:
        raise _ApiError(
            "invalid_blocks",
            errors=errors,
            response_metadata={"messages": [f"[ERROR] {e}" for e in errors]},
        )


def _invalid_arguments(*messages: str) -> _ApiError:
    return _ApiError(
        "invalid_arguments",
        response_metadata={"messages": [f"[ERROR] {m}" for m in messages]},
    )


@dataclass
class _Message:
    channel: str
    ts: str
    data: JSON
    versions: list[JSON] = field(default_factory=list)
    deleted: bool = False

    @property
    def thread_ts(self) -> str | None:
        value = self.data.get("thread_ts")
        return value if isinstance(value, str) else None


@dataclass
class _ResponseUrl:
    url: str
    channel: str
    user: str
    message_ts: str | None
    issued_at: float
    posts: int = 0
    # The last ephemeral posted through this URL: `replace_original` replaces it when
    # the URL belongs to an ephemeral interaction (a slash command).
    last_ephemeral: int | None = None


@dataclass
class _PendingFile:
    id: str
    filename: str
    content: bytes | None = None


@dataclass
class _Fault:
    kind: Literal["ratelimit", "server_error"]
    method: str | None
    remaining: int | None
    until: float | None
    retry_after: int = 1
    status: int = 500


@dataclass
class _Bucket:
    """A token bucket: ``capacity`` calls at once, refilled at ``rate`` calls a second."""

    capacity: float
    rate: float
    tokens: float
    updated: float

    def take(self, now: float) -> float | None:
        """Take one call; return None if allowed, else the seconds until one is."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return (1 - self.tokens) / self.rate


@dataclass(frozen=True)
class _RateLimits:
    post_rate: float
    post_burst: int
    updates_per_minute: int


# ---------------------------------------------------------------------------
# Block Kit validation


_TEXT_TYPES = ("plain_text", "mrkdwn")
_INTERACTIVE_ELEMENTS = frozenset(
    {
        "button",
        "checkboxes",
        "datepicker",
        "datetimepicker",
        "timepicker",
        "overflow",
        "radio_buttons",
        "static_select",
        "external_select",
        "users_select",
        "conversations_select",
        "channels_select",
        "multi_static_select",
        "multi_external_select",
        "multi_users_select",
        "multi_conversations_select",
        "multi_channels_select",
        "plain_text_input",
        "email_text_input",
        "url_text_input",
        "number_input",
        "rich_text_input",
        "file_input",
        "workflow_button",
    }
)
_BLOCK_TYPES = frozenset(
    {
        "section",
        "actions",
        "context",
        "divider",
        "header",
        "image",
        "input",
        "rich_text",
        "markdown",
        "file",
        "video",
        "table",
        "context_actions",
    }
)


class _BlockErrors:
    """Collects Slack-style error strings: ``<what> [json-pointer:<where>]``."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def add(self, message: str, pointer: str) -> None:
        self.errors.append(f"{message} [json-pointer:{pointer}]")

    def text(self, obj: Any, pointer: str, *, max_len: int, plain_only: bool = False) -> None:
        """Check a required text object; Slack reports the schema mismatch, then the cause."""
        if obj is None:
            parent, _, name = pointer.rpartition("/")
            self.add(f"missing required field: {name}", parent or "/")
            return
        causes: list[tuple[str, str]] = []
        allowed = ("plain_text",) if plain_only else _TEXT_TYPES
        if not isinstance(obj, dict):
            causes.append(("must be an object", pointer))
        else:
            if obj.get("type") not in allowed:
                causes.append((f"must be one of: {', '.join(allowed)}", f"{pointer}/type"))
            value = obj.get("text")
            if not isinstance(value, str):
                causes.append(("must be a string", f"{pointer}/text"))
            elif len(value) == 0:
                causes.append(("must be more than 0 characters", f"{pointer}/text"))
            elif len(value) > max_len:
                causes.append((f"must be less than {max_len + 1} characters", f"{pointer}/text"))
        if causes:
            self.add("failed to match all allowed schemas", pointer)
            for message, where in causes:
                self.add(message, where)

    def max_len(self, value: Any, pointer: str, limit: int) -> None:
        if isinstance(value, str) and len(value) > limit:
            self.add(f"must be less than {limit + 1} characters", pointer)

    def items(self, value: Any, pointer: str, *, limit: int, minimum: int = 1) -> list[Any]:
        if not isinstance(value, list):
            self.add("must be an array", pointer)
            return []
        if len(value) > limit:
            self.add(f"no more than {limit} items allowed", pointer)
        elif len(value) < minimum:
            self.add(f"must provide at least {minimum} items", pointer)
        return value

    def confirm(self, obj: Any, pointer: str) -> None:
        if obj is None:
            return
        if not isinstance(obj, dict):
            self.add("must be an object", pointer)
            return
        self.text(obj.get("title"), f"{pointer}/title", max_len=100, plain_only=True)
        self.text(obj.get("text"), f"{pointer}/text", max_len=300)
        self.text(obj.get("confirm"), f"{pointer}/confirm", max_len=30, plain_only=True)
        self.text(obj.get("deny"), f"{pointer}/deny", max_len=30, plain_only=True)

    def element(self, el: Any, pointer: str, action_ids: set[str]) -> None:
        if not isinstance(el, dict):
            self.add("must be an object", pointer)
            return
        kind = el.get("type")
        if kind == "image":
            self.max_len(el.get("alt_text"), f"{pointer}/alt_text", 2000)
            return
        if kind not in _INTERACTIVE_ELEMENTS:
            self.add(f"unsupported type: {kind}", f"{pointer}/type")
            return
        action_id = el.get("action_id")
        if isinstance(action_id, str):
            self.max_len(action_id, f"{pointer}/action_id", 255)
            if action_id in action_ids:
                self.add(f"duplicate action_id: {action_id}", f"{pointer}/action_id")
            action_ids.add(action_id)
        if kind == "button":
            self.text(el.get("text"), f"{pointer}/text", max_len=75, plain_only=True)
            self.max_len(el.get("value"), f"{pointer}/value", 2000)
            self.max_len(el.get("url"), f"{pointer}/url", 3000)
            style = el.get("style")
            if style is not None and style not in ("primary", "danger"):
                self.add("must be one of: primary, danger", f"{pointer}/style")
        if kind in ("static_select", "multi_static_select", "overflow", "radio_buttons"):
            limit = 5 if kind == "overflow" else (10 if kind == "radio_buttons" else 100)
            options = el.get("options")
            if options is not None or el.get("option_groups") is None:
                self.items(options, f"{pointer}/options", limit=limit)
        self.confirm(el.get("confirm"), f"{pointer}/confirm")


def validate_blocks(blocks: Any, *, limit: int = MESSAGE_BLOCK_LIMIT) -> list[str]:
    """Check ``blocks`` against Block Kit's limits; return Slack-style errors (empty if valid).

    Covers what a status card can trip over: 50 blocks per message (100 in a view),
    section text 3000 characters, 10 fields of 2000, 25 elements per actions block,
    10 per context block, header 150, button text 75 and value 2000, confirm dialogs,
    block_id 255 and unique, action_id 255 and unique.
    """
    errs = _BlockErrors()
    items = errs.items(blocks, "/blocks", limit=limit, minimum=0)
    if errs.errors:
        return errs.errors
    block_ids: set[str] = set()
    action_ids: set[str] = set()
    for index, block in enumerate(items):
        ptr = f"/blocks/{index}"
        if not isinstance(block, dict):
            errs.add("must be an object", ptr)
            continue
        kind = block.get("type")
        if kind not in _BLOCK_TYPES:
            errs.add("failed to match all allowed schemas", ptr)
            errs.add(f"unsupported type: {kind}", f"{ptr}/type")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or not block_id:
                errs.add("must be a non-empty string", f"{ptr}/block_id")
            else:
                errs.max_len(block_id, f"{ptr}/block_id", 255)
                if block_id in block_ids:
                    errs.add(f"duplicate block_id: {block_id}", f"{ptr}/block_id")
                block_ids.add(block_id)
        if kind == "section":
            text, fields = block.get("text"), block.get("fields")
            if text is None and fields is None:
                errs.add("must provide either text or fields", ptr)
            if text is not None:
                errs.text(text, f"{ptr}/text", max_len=3000)
            if fields is not None:
                for i, f in enumerate(errs.items(fields, f"{ptr}/fields", limit=10)):
                    errs.text(f, f"{ptr}/fields/{i}", max_len=2000)
            if block.get("accessory") is not None:
                errs.element(block["accessory"], f"{ptr}/accessory", action_ids)
        elif kind == "header":
            errs.text(block.get("text"), f"{ptr}/text", max_len=150, plain_only=True)
        elif kind == "actions":
            for i, el in enumerate(errs.items(block.get("elements"), f"{ptr}/elements", limit=25)):
                errs.element(el, f"{ptr}/elements/{i}", action_ids)
        elif kind == "context":
            for i, el in enumerate(errs.items(block.get("elements"), f"{ptr}/elements", limit=10)):
                if isinstance(el, dict) and el.get("type") in _TEXT_TYPES:
                    errs.text(el, f"{ptr}/elements/{i}", max_len=3000)
                else:
                    errs.element(el, f"{ptr}/elements/{i}", action_ids)
        elif kind == "image":
            if not block.get("image_url") and not block.get("slack_file"):
                errs.add("missing required field: image_url", ptr)
            alt = block.get("alt_text")
            if not isinstance(alt, str) or not alt:
                errs.add("missing required field: alt_text", ptr)
            errs.max_len(alt, f"{ptr}/alt_text", 2000)
            if block.get("title") is not None:
                errs.text(block["title"], f"{ptr}/title", max_len=2000, plain_only=True)
        elif kind == "input":
            errs.text(block.get("label"), f"{ptr}/label", max_len=2000, plain_only=True)
            if block.get("element") is None:
                errs.add("missing required field: element", ptr)
            else:
                errs.element(block["element"], f"{ptr}/element", action_ids)
        elif kind == "markdown":
            text = block.get("text")
            if not isinstance(text, str) or not text:
                errs.add("missing required field: text", ptr)
            errs.max_len(text, f"{ptr}/text", 12_000)
    return errs.errors


def _validate_view(view: Any) -> list[str]:
    """Check a modal view; return ``invalid_arguments`` messages (empty if valid)."""
    if not isinstance(view, dict):
        return ["failed to match all allowed schemas [json-pointer:/view]"]
    errs = _BlockErrors()
    kind = view.get("type")
    if kind not in ("modal", "home"):
        errs.add("must be one of: modal, home", "/view/type")
    if kind == "modal":
        errs.text(view.get("title"), "/view/title", max_len=24, plain_only=True)
        for key in ("submit", "close"):
            if view.get(key) is not None:
                errs.text(view[key], f"/view/{key}", max_len=24, plain_only=True)
        blocks = view.get("blocks") or []
        has_input = isinstance(blocks, list) and any(
            isinstance(b, dict) and b.get("type") == "input" for b in blocks
        )
        if has_input and view.get("submit") is None:
            errs.add("must provide submit argument when using input blocks", "/view")
    errs.max_len(view.get("private_metadata"), "/view/private_metadata", 3000)
    errs.max_len(view.get("callback_id"), "/view/callback_id", 255)
    errs.max_len(view.get("external_id"), "/view/external_id", 255)
    block_errors = validate_blocks(view.get("blocks", []), limit=VIEW_BLOCK_LIMIT)
    messages = errs.errors + [
        e.replace("[json-pointer:/blocks", "[json-pointer:/view/blocks") for e in block_errors
    ]
    if messages:
        messages.insert(0, "failed to match all allowed schemas [json-pointer:/view]")
    return messages


# ---------------------------------------------------------------------------
# parameter helpers

# Parameters that Slack takes as JSON, which form-encoded callers send as strings.
_JSON_PARAMS = ("blocks", "attachments", "view", "files", "metadata")


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return False


def _str_param(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _redacted(params: Mapping[str, Any]) -> JSON:
    # Tokens and secrets never reach the records: tests print them on failure.
    return {
        k: ("[redacted]" if k in ("token", "client_secret", "app_token") else copy.deepcopy(v))
        for k, v in params.items()
    }


class SlackFake:
    """A local Slack: Web API, response URLs, file uploads and Socket Mode on one port.

    Use it as a context manager or call :meth:`start` and :meth:`stop`. Point clients at
    :attr:`api_url` (``AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)``).
    All views return copies, so tests can keep and compare them.
    """

    def __init__(
        self,
        *,
        users: Iterable[SlackUser] = DEFAULT_USERS,
        channels: Iterable[SlackChannel] = DEFAULT_CHANNELS,
        usergroups: Iterable[SlackUserGroup] = DEFAULT_USERGROUPS,
        bot_token: str = DEFAULT_BOT_TOKEN,
        app_token: str = DEFAULT_APP_TOKEN,
        team_id: str = slack_requests.DEFAULT_TEAM_ID,
        team_domain: str = slack_requests.DEFAULT_TEAM_DOMAIN,
        app_id: str = slack_requests.DEFAULT_API_APP_ID,
        trigger_ttl: float | None = TRIGGER_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Configure the workspace; nothing listens until :meth:`start`.

        Args:
            users, channels, usergroups: the workspace (defaults: alice (admin), bob,
                carol, mallory; #deploys, #alerts, private #sre-private, #random without
                the bot, archived #old-deploys; @sre, @devs, disabled @old-oncall).
            bot_token, app_token: the tokens the fake accepts (``xoxb-``/``xapp-``).
            team_id, team_domain, app_id: the workspace and app identity.
            trigger_ttl: seconds a trigger id stays usable (None: never expires).
            clock: wall clock for ts values, windows and expiry (inject to test time).
        """
        if not app_token.startswith("xapp-"):
            raise ValueError("an app-level token starts with 'xapp-'")
        self.bot_token = bot_token
        self.app_token = app_token
        self.team_id = team_id
        self.team_domain = team_domain
        self.app_id = app_id
        self.bot_user_id = BOT_USER_ID
        self.bot_id = BOT_ID
        self._trigger_ttl = trigger_ttl
        self._clock = clock
        self._users = {u.id: u for u in users}
        self._channels = {c.id: c for c in channels}
        self._usergroups = {g.id: g for g in usergroups}
        self._lock = threading.RLock()
        self._socket_mode = SocketModeEndpoint(app_id=app_id, clock=clock)
        self._reset_state()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    def _reset_state(self) -> None:
        self._calls: list[RecordedCall] = []
        self._messages: dict[str, list[_Message]] = {}
        self._ephemerals: list[JSON] = []
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._response_url_posts: list[ResponseUrlPost] = []
        self._views: dict[str, JSON] = {}
        self._used_triggers: set[str] = set()
        self._pending_files: dict[str, _PendingFile] = {}
        self._files: dict[str, UploadedFile] = {}
        self._faults: list[_Fault] = []
        self._rate_limits: _RateLimits | None = None
        self._buckets: dict[tuple[str, ...], _Bucket] = {}
        self._last_ts_us = 0
        self._id_counter = 0

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        """Bind a free port on 127.0.0.1 and serve in a background thread."""
        if self._thread is not None:
            raise RuntimeError("SlackFake is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self._port = sock.getsockname()[1]
        # asyncio primitives belong to one loop: a restarted fake gets a fresh endpoint.
        self._socket_mode = SocketModeEndpoint(app_id=self.app_id, clock=self._clock)
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()
        self._loop = loop

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve(sock))
            except BaseException as exc:  # reported to start() below
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=serve, name="slack-fake", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            sock.close()
            self._thread = None
            self._loop = None
            raise RuntimeError(f"SlackFake did not start: {failure[0] if failure else 'timeout'}")
        return self

    async def _serve(self, sock: socket.socket) -> None:
        # Uploads can be larger than aiohttp's 1 MiB default body limit.
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(
            [
                web.route("*", "/api/{method}", self._handle_api),
                web.post("/upload/v1/{file_key}", self._handle_upload),
                web.post("/hooks/{kind}/{team}/{hook_id}/{secret}", self._handle_response_url),
                web.get("/link/", self._socket_mode.handle),
            ]
        )
        # No access log: request lines can carry tokens (?token=...) and response_url secrets.
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    def stop(self) -> None:
        """Close Socket Mode connections, stop serving and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            await self._socket_mode.close()
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = None
        self._loop = None
        self._runner = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The TCP port the fake listens on."""
        if self._port is None or self._thread is None:
            raise RuntimeError("SlackFake is not running; call start() first")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """The Web API base URL (``http://127.0.0.1:PORT/api/``), for ``base_url=``."""
        return f"{self.base_url}/api/"

    def reset(self) -> None:
        """Forget every message, call, fault, view, file and response URL."""
        with self._lock:
            self._reset_state()
        self._socket_mode.reset()

    # -- the workspace -----------------------------------------------------------------

    def add_user(self, user: SlackUser) -> None:
        """Add or replace a user."""
        with self._lock:
            self._users[user.id] = user

    def add_channel(self, channel: SlackChannel) -> None:
        """Add or replace a channel."""
        with self._lock:
            self._channels[channel.id] = channel

    def add_usergroup(self, group: SlackUserGroup) -> None:
        """Add or replace a user group."""
        with self._lock:
            self._usergroups[group.id] = group

    def post_user_message(
        self, channel: str, user: str, text: str, *, thread_ts: str | None = None
    ) -> str:
        """Record a message a person wrote (the bot cannot update it); return its ts."""
        with self._lock:
            ts = self._new_ts()
            data: JSON = {
                "type": "message",
                "user": user,
                "text": text,
                "ts": ts,
                "team": self.team_id,
            }
            if thread_ts is not None:
                data["thread_ts"] = thread_ts
            self._store(_Message(channel, ts, data, versions=[copy.deepcopy(data)]))
            return ts

    # -- fault injection ---------------------------------------------------------------

    def rate_limit(
        self,
        *,
        calls: int | None = None,
        seconds: float | None = None,
        retry_after: int = 1,
        method: str | None = None,
    ) -> None:
        """Answer HTTP 429 ``ratelimited`` with ``Retry-After: retry_after``.

        For the next ``calls`` calls, or for ``seconds`` from now (default: the next
        call), to every method or only ``method`` (e.g. ``"chat.postMessage"``).
        """
        self._add_fault("ratelimit", calls, seconds, method, retry_after=retry_after)

    def server_errors(
        self,
        *,
        calls: int | None = None,
        seconds: float | None = None,
        status: int = 500,
        method: str | None = None,
    ) -> None:
        """Answer HTTP ``status`` (an HTML error page, like Slack's edge) for a while."""
        self._add_fault("server_error", calls, seconds, method, status=status)

    def clear_faults(self) -> None:
        """Stop answering 429s and 5xxs (injected ones and enforced rate limits)."""
        with self._lock:
            self._faults.clear()
            self._rate_limits = None
            self._buckets.clear()

    def enforce_rate_limits(
        self,
        *,
        posts_per_second: float = 1.0,
        post_burst: int = 5,
        updates_per_minute: int = 50,
    ) -> None:
        """Rate-limit like Slack does, instead of only when told (off by default).

        ``chat.postMessage`` allows ``posts_per_second`` per channel with bursts of
        ``post_burst``; ``chat.update`` (Tier 3) allows ``updates_per_minute`` for the
        app. Past that the call is answered HTTP 429 with the ``Retry-After`` (whole
        seconds, rounded up) after which it would pass.
        """
        with self._lock:
            self._rate_limits = _RateLimits(posts_per_second, post_burst, updates_per_minute)
            self._buckets.clear()

    def _over_rate_limit(self, method: str, params: Mapping[str, Any]) -> int | None:
        limits = self._rate_limits
        if limits is None:
            return None
        if method == "chat.postMessage":
            channel = self._resolve_channel_id(str(params.get("channel", "")))
            key: tuple[str, ...] = (method, channel)
            capacity, rate = float(limits.post_burst), limits.post_rate
        elif method == "chat.update":
            key = (method,)
            capacity, rate = float(limits.updates_per_minute), limits.updates_per_minute / 60
        else:
            return None
        now = self._clock()
        bucket = self._buckets.setdefault(key, _Bucket(capacity, rate, capacity, now))
        wait = bucket.take(now)
        return None if wait is None else max(1, math.ceil(wait))

    def _add_fault(
        self,
        kind: Literal["ratelimit", "server_error"],
        calls: int | None,
        seconds: float | None,
        method: str | None,
        *,
        retry_after: int = 1,
        status: int = 500,
    ) -> None:
        if calls is not None and seconds is not None:
            raise ValueError("give calls or seconds, not both")
        if calls is None and seconds is None:
            calls = 1
        until = None if seconds is None else self._clock() + seconds
        with self._lock:
            self._faults.append(
                _Fault(kind, method, calls, until, retry_after=retry_after, status=status)
            )

    def _take_fault(self, method: str) -> _Fault | None:
        now = self._clock()
        self._faults = [
            f
            for f in self._faults
            if (f.remaining is None or f.remaining > 0) and (f.until is None or f.until > now)
        ]
        for fault in self._faults:
            if fault.method is None or fault.method == method:
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    # -- response_url ------------------------------------------------------------------

    def new_response_url(
        self,
        *,
        channel_id: str = slack_requests.DEFAULT_CHANNEL_ID,
        user_id: str = slack_requests.DEFAULT_USER_ID,
        message_ts: str | None = None,
        kind: Literal["commands", "actions"] = "commands",
    ) -> str:
        """Return a ``response_url`` served by the fake.

        ``message_ts`` ties it to a message (as for a button click on that message), so
        ``replace_original``/``delete_original`` act on it; without it (a slash command)
        they act on the last ephemeral response posted through the URL.
        """
        hook_id = f"{secrets.randbelow(10**12):012d}"
        secret = secrets.token_urlsafe(18)
        url = f"{self.base_url}/hooks/{kind}/{self.team_id}/{hook_id}/{secret}"
        with self._lock:
            self._response_urls[url] = _ResponseUrl(
                url, channel_id, user_id, message_ts, issued_at=self._clock()
            )
        return url

    def response_url_posts(self, url: str | None = None) -> list[ResponseUrlPost]:
        """Every post to a response URL (or to ``url``), accepted or not, in order."""
        with self._lock:
            return [p for p in self._response_url_posts if url is None or p.url == url]

    # -- trigger ids -------------------------------------------------------------------

    def new_trigger_id(self) -> str:
        """Return a fresh trigger id, as an interaction payload carries."""
        return slack_requests.make_trigger_id(issued_at=self._clock())

    # -- views for assertions ----------------------------------------------------------

    def calls(self, method: str | None = None) -> list[RecordedCall]:
        """Every Web API call (or every call of ``method``), in order."""
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def messages(self, channel: str, *, include_replies: bool = False) -> list[JSON]:
        """Messages as the channel shows them, oldest first.

        Thread replies are left out unless broadcast (or ``include_replies``). Each is
        the message in its current state, as ``conversations.history`` would return it.
        """
        with self._lock:
            out = []
            for msg in self._messages.get(self._resolve_channel_id(channel), []):
                if msg.deleted:
                    continue
                is_reply = msg.thread_ts is not None and msg.thread_ts != msg.ts
                if (
                    is_reply
                    and not include_replies
                    and msg.data.get("subtype") != "thread_broadcast"
                ):
                    continue
                out.append(self._render(msg))
            return out

    def message(self, channel: str, ts: str) -> JSON:
        """One message in its current state; KeyError if there is none."""
        with self._lock:
            msg = self._find(self._resolve_channel_id(channel), ts)
            if msg is None or msg.deleted:
                raise KeyError(f"no message {ts} in {channel}")
            return self._render(msg)

    def thread(self, channel: str, ts: str) -> list[JSON]:
        """The thread rooted at ``ts``: the root, then its replies in order."""
        with self._lock:
            channel_id = self._resolve_channel_id(channel)
            root = self._find(channel_id, ts)
            if root is None or root.deleted:
                raise KeyError(f"no message {ts} in {channel}")
            return [self._render(root)] + [self._render(m) for m in self._replies(root)]

    def updates_of(self, channel: str, ts: str) -> list[JSON]:
        """The message as it looked after each update, oldest first (empty if never updated)."""
        return self.versions_of(channel, ts)[1:]

    def versions_of(self, channel: str, ts: str) -> list[JSON]:
        """The message as first posted, then after each update."""
        with self._lock:
            msg = self._find(self._resolve_channel_id(channel), ts)
            if msg is None:
                raise KeyError(f"no message {ts} in {channel}")
            return copy.deepcopy(msg.versions)

    def ephemerals(self, *, channel: str | None = None, user: str | None = None) -> list[JSON]:
        """Ephemeral messages (chat.postEphemeral, response URLs) still shown, in order."""
        with self._lock:
            channel_id = None if channel is None else self._resolve_channel_id(channel)
            return [
                copy.deepcopy(e)
                for e in self._ephemerals
                if not e.get("deleted")
                and (channel_id is None or e["channel"] == channel_id)
                and (user is None or e["user"] == user)
            ]

    def views(self) -> list[JSON]:
        """Every modal opened or pushed, in its current state."""
        with self._lock:
            return copy.deepcopy(list(self._views.values()))

    def files(self) -> list[UploadedFile]:
        """Every file whose upload was completed."""
        with self._lock:
            return list(self._files.values())

    # -- Socket Mode -------------------------------------------------------------------

    async def deliver_slash_command(
        self,
        payload: Mapping[str, Any],
        *,
        ack_timeout: float = 3.0,
        connect_timeout: float = 5.0,
    ) -> SocketModeAck:
        """Send a ``slash_commands`` envelope to the connected app and return its ack.

        Raises :class:`~sandbox.slack_socket_mode.SocketModeAckTimeout` without an ack
        within ``ack_timeout`` (Slack's 3 s), and
        :class:`~sandbox.slack_socket_mode.SocketModeNotConnected` if no app connects
        within ``connect_timeout``.
        """
        return await self.deliver_envelope(
            "slash_commands", payload, ack_timeout=ack_timeout, connect_timeout=connect_timeout
        )

    async def deliver_interactive(
        self,
        payload: Mapping[str, Any],
        *,
        ack_timeout: float = 3.0,
        connect_timeout: float = 5.0,
        accepts_response_payload: bool = True,
    ) -> SocketModeAck:
        """Send an ``interactive`` envelope (block_actions, view_submission, ...)."""
        return await self.deliver_envelope(
            "interactive",
            payload,
            ack_timeout=ack_timeout,
            connect_timeout=connect_timeout,
            accepts_response_payload=accepts_response_payload,
        )

    async def deliver_envelope(
        self,
        envelope_type: str,
        payload: Mapping[str, Any],
        *,
        ack_timeout: float = 3.0,
        connect_timeout: float = 5.0,
        accepts_response_payload: bool = True,
    ) -> SocketModeAck:
        """Send any envelope type and wait for the ack."""
        return await self._on_server_loop(
            self._socket_mode.deliver(
                envelope_type,
                payload,
                ack_timeout=ack_timeout,
                connect_timeout=connect_timeout,
                accepts_response_payload=accepts_response_payload,
            )
        )

    def deliver_envelope_sync(
        self,
        envelope_type: str,
        payload: Mapping[str, Any],
        *,
        ack_timeout: float = 3.0,
        connect_timeout: float = 5.0,
        accepts_response_payload: bool = True,
    ) -> SocketModeAck:
        """Blocking :meth:`deliver_envelope`, for an app that runs in another thread."""
        return self._blocking(
            self._socket_mode.deliver(
                envelope_type,
                payload,
                ack_timeout=ack_timeout,
                connect_timeout=connect_timeout,
                accepts_response_payload=accepts_response_payload,
            ),
            ack_timeout + connect_timeout + 5,
        )

    def deliver_slash_command_sync(
        self,
        payload: Mapping[str, Any],
        *,
        ack_timeout: float = 3.0,
        connect_timeout: float = 5.0,
    ) -> SocketModeAck:
        """Blocking :meth:`deliver_slash_command`, for an app that runs in another thread."""
        return self.deliver_envelope_sync(
            "slash_commands", payload, ack_timeout=ack_timeout, connect_timeout=connect_timeout
        )

    def deliver_interactive_sync(
        self,
        payload: Mapping[str, Any],
        *,
        ack_timeout: float = 3.0,
        connect_timeout: float = 5.0,
        accepts_response_payload: bool = True,
    ) -> SocketModeAck:
        """Blocking :meth:`deliver_interactive`, for an app that runs in another thread."""
        return self.deliver_envelope_sync(
            "interactive",
            payload,
            ack_timeout=ack_timeout,
            connect_timeout=connect_timeout,
            accepts_response_payload=accepts_response_payload,
        )

    async def wait_for_socket_connection(
        self, *, after: int = 0, within: float = 5.0
    ) -> SocketConnection:
        """Wait until an app holds an open connection with an id above ``after``."""
        return await self._on_server_loop(
            self._socket_mode.wait_for_connection(after=after, within=within)
        )

    async def disconnect_socket(
        self,
        reason: str = "refresh_requested",
        *,
        connection_id: int | None = None,
        close_after: float = 1.0,
    ) -> list[int]:
        """Send Slack's ``disconnect`` message (``warning``, ``refresh_requested``, ...).

        For every reason but ``warning`` the socket is closed ``close_after`` seconds
        later, as Slack does. Returns the ids of the connections told.
        """
        return await self._on_server_loop(
            self._socket_mode.disconnect(
                reason, connection_id=connection_id, close_after=close_after
            )
        )

    async def drop_socket_connections(self, *, connection_id: int | None = None) -> list[int]:
        """Close sockets abruptly, without a ``disconnect`` message (a network failure)."""
        return await self._on_server_loop(self._socket_mode.drop(connection_id=connection_id))

    def socket_connections(self) -> list[SocketConnection]:
        """Every Socket Mode connection so far, oldest first."""
        return self._socket_mode.connections()

    def socket_envelopes(self) -> list[SocketEnvelope]:
        """Every envelope sent, with the ack it got."""
        return self._socket_mode.envelopes()

    def _on_server_loop(self, coro: Coroutine[Any, Any, _T]) -> Awaitable[_T]:
        # The fake's state lives on its own loop; callers await from theirs.
        if self._loop is None:
            coro.close()
            raise RuntimeError("SlackFake is not running; call start() first")
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def _blocking(self, coro: Coroutine[Any, Any, _T], deadline: float) -> _T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coro.close()
            # Blocking here would freeze the loop the app is acking from: a deadlock.
            raise RuntimeError(
                "called from a running event loop; use `await fake.deliver_...()` instead"
            )
        if self._loop is None:
            coro.close()
            raise RuntimeError("SlackFake is not running; call start() first")
        future: ConcurrentFuture[_T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(deadline)

    # -- HTTP handlers -----------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params: JSON = dict(request.query)
        body_token: str | None = params.pop("token", None)
        parse_error: str | None = None
        if request.method == "POST" and request.body_exists:
            if request.content_type == "application/json":
                try:
                    body = json.loads(await request.read() or b"{}")
                except ValueError:
                    body = None
                if isinstance(body, dict):
                    # Slack reads the token of a JSON request only from the header.
                    body.pop("token", None)
                    params.update(body)
                else:
                    parse_error = "invalid_json"
            elif request.content_type in (
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            ):
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, str):
                        params[key] = value
                form_token = params.pop("token", None)
                body_token = body_token or form_token
            else:
                parse_error = "invalid_form_data"
        for key in _JSON_PARAMS:
            raw_value = params.get(key)
            if isinstance(raw_value, str):
                # Left as a string when it is not JSON: the method answers *_format errors.
                with contextlib.suppress(ValueError):
                    params[key] = json.loads(raw_value)
        token = _bearer(request.headers.get("Authorization")) or body_token
        status, payload, headers = self._dispatch(method, params, token, parse_error)
        if status >= 500:
            return web.Response(
                status=status,
                text="<html><body><h1>Server Error</h1></body></html>",
                content_type="text/html",
            )
        return web.json_response(payload, status=status, headers=headers)

    def _dispatch(
        self, method: str, params: JSON, token: str | None, parse_error: str | None
    ) -> tuple[int, JSON, dict[str, str]]:
        with self._lock:
            token_type: Literal["bot", "app", "invalid"] | None
            if token is None:
                token_type = None
            elif token == self.bot_token:
                token_type = "bot"
            elif token == self.app_token:
                token_type = "app"
            else:
                token_type = "invalid"
            status, headers = 200, {}
            fault = self._take_fault(method)
            over_limit = None
            if fault is None and token_type in ("bot", "app"):
                over_limit = self._over_rate_limit(method, params)
            if fault is not None and fault.kind == "ratelimit":
                status, payload = 429, {"ok": False, "error": "ratelimited"}
                headers = {"Retry-After": str(fault.retry_after)}
            elif fault is not None:
                status, payload = fault.status, {"ok": False, "error": "fatal_error"}
            elif over_limit is not None:
                status, payload = 429, {"ok": False, "error": "ratelimited"}
                headers = {"Retry-After": str(over_limit)}
            else:
                payload = self._call(method, params, token_type, parse_error)
            self._calls.append(
                RecordedCall(
                    method=method,
                    params=_redacted(params),
                    at=self._clock(),
                    status=status,
                    response=copy.deepcopy(payload),
                    token_type=token_type,
                )
            )
            return status, payload, headers

    def _call(
        self,
        method: str,
        params: JSON,
        token_type: Literal["bot", "app", "invalid"] | None,
        parse_error: str | None,
    ) -> JSON:
        handler = self._METHODS.get(method)
        try:
            if handler is None:
                raise _ApiError("unknown_method")
            if parse_error is not None:
                raise _ApiError(parse_error)
            if token_type is None:
                raise _ApiError("not_authed")
            if token_type == "invalid":
                raise _ApiError("invalid_auth")
            wanted = "app" if method == "apps.connections.open" else "bot"
            if token_type != wanted:
                raise _ApiError("not_allowed_token_type")
            result = handler(self, params)
        except _ApiError as exc:
            return {"ok": False, "error": exc.error, **exc.extra}
        return {"ok": True, **result}

    async def _handle_upload(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["file_key"]
        if request.content_type == "multipart/form-data":
            content = b""
            reader = await request.multipart()
            async for part in reader:
                if getattr(part, "filename", None):
                    content = await part.read()  # type: ignore[union-attr]
                    break
        else:
            content = await request.read()
        with self._lock:
            pending = self._pending_files.get(key)
            if pending is None:
                return web.Response(status=404, text="Not Found")
            pending.content = content
        return web.Response(status=200, text=f"OK - {len(content)}", content_type="text/plain")

    async def _handle_response_url(self, request: web.Request) -> web.StreamResponse:
        url = f"{self.base_url}{request.path}"
        raw = await request.read()
        body: Any
        if request.content_type == "application/json":
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = None
        else:
            form = await request.post()
            payload = form.get("payload")
            try:
                body = json.loads(payload) if isinstance(payload, str) else None
            except ValueError:
                body = None
        with self._lock:
            status, error = self._post_to_response_url(url, body)
            self._response_url_posts.append(
                ResponseUrlPost(
                    url=url,
                    body=copy.deepcopy(body)
                    if isinstance(body, dict)
                    else {"_raw": raw.decode(errors="replace")},
                    at=self._clock(),
                    status=status,
                    error=error,
                )
            )
        if error is None:
            return web.json_response({"ok": True})
        return web.json_response({"ok": False, "error": error}, status=status)

    # -- state helpers (callers hold the lock) -----------------------------------------

    def _new_ts(self) -> str:
        # Slack's ts is seconds.microseconds and unique per channel; keep it strictly
        # increasing across the whole fake so ordering by ts is ordering by time.
        now_us = int(self._clock() * 1_000_000)
        self._last_ts_us = max(now_us, self._last_ts_us + 100)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def _new_id(self, prefix: str) -> str:
        self._id_counter += 1
        return f"{prefix}0{self._id_counter:08X}"

    def _resolve_channel_id(self, channel: str) -> str:
        name = channel.lstrip("#")
        for c in self._channels.values():
            if c.id == channel or c.name == name:
                return c.id
        return channel

    def _channel(self, params: Mapping[str, Any], key: str = "channel") -> SlackChannel:
        value = _str_param(params, key)
        if value is None:
            raise _ApiError("channel_not_found")
        channel = self._channels.get(self._resolve_channel_id(value))
        # A private channel the bot is not in does not exist as far as the bot can tell.
        if channel is None or (channel.is_private and not channel.bot_is_member):
            raise _ApiError("channel_not_found")
        return channel

    def _postable_channel(self, params: Mapping[str, Any], key: str = "channel") -> SlackChannel:
        channel = self._channel(params, key)
        if channel.is_archived:
            raise _ApiError("is_archived")
        if not channel.bot_is_member:
            raise _ApiError("not_in_channel")
        return channel

    def _find(self, channel_id: str, ts: str) -> _Message | None:
        for msg in self._messages.get(channel_id, []):
            if msg.ts == ts:
                return msg
        return None

    def _store(self, msg: _Message) -> None:
        self._messages.setdefault(msg.channel, []).append(msg)

    def _replies(self, root: _Message) -> list[_Message]:
        return [
            m
            for m in self._messages.get(root.channel, [])
            if m.thread_ts == root.ts and m.ts != root.ts and not m.deleted
        ]

    def _render(self, msg: _Message) -> JSON:
        data = copy.deepcopy(msg.data)
        replies = self._replies(msg)
        if replies:
            # Thread roots carry the thread summary, as conversations.history shows it.
            data["thread_ts"] = msg.ts
            data["reply_count"] = len(replies)
            data["reply_users"] = sorted({str(r.data.get("user")) for r in replies})
            data["reply_users_count"] = len(data["reply_users"])
            data["latest_reply"] = replies[-1].ts
        return data

    def _content(self, params: Mapping[str, Any], *, required: bool) -> JSON:
        """Validate text/blocks/attachments; return those given."""
        content: JSON = {}
        text = params.get("text")
        if text is not None:
            if not isinstance(text, str):
                text = str(text)
            if len(text) > MESSAGE_TEXT_LIMIT:
                raise _ApiError("msg_too_long")
            content["text"] = text
        if "blocks" in params and params["blocks"] is not None:
            blocks = params["blocks"]
            if not isinstance(blocks, list):
                raise _ApiError("invalid_blocks_format")
            _check_blocks(blocks)
            content["blocks"] = [self._with_block_id(b) for b in blocks]
        if "attachments" in params and params["attachments"] is not None:
            attachments = params["attachments"]
            if not isinstance(attachments, list):
                raise _ApiError("invalid_attachments")
            if len(attachments) > 100:
                raise _ApiError("too_many_attachments")
            for a in attachments:
                if isinstance(a, dict) and "blocks" in a:
                    _check_blocks(a["blocks"])
            content["attachments"] = attachments
        if required and not (
            content.get("text") or content.get("blocks") or content.get("attachments")
        ):
            raise _ApiError("no_text")
        return content

    @staticmethod
    def _with_block_id(block: Any) -> Any:
        # Slack fills in a block_id for blocks sent without one.
        if isinstance(block, dict) and "block_id" not in block:
            return {**block, "block_id": secrets.token_urlsafe(4)}
        return block

    def _bot_message(self, ts: str, content: JSON) -> JSON:
        return {
            "user": self.bot_user_id,
            "type": "message",
            "ts": ts,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "text": content.get("text", ""),
            "team": self.team_id,
            "bot_profile": {
                "id": self.bot_id,
                "app_id": self.app_id,
                "name": BOT_NAME,
                "deleted": False,
                "team_id": self.team_id,
            },
            **{k: v for k, v in content.items() if k != "text"},
        }

    def _thread_root(self, channel_id: str, thread_ts: str | None) -> _Message | None:
        if thread_ts is None:
            return None
        root = self._find(channel_id, thread_ts)
        if root is None or root.deleted:
            raise _ApiError("thread_not_found")
        # A reply's ts names the same thread as its root's.
        if root.thread_ts is not None and root.thread_ts != root.ts:
            parent = self._find(channel_id, root.thread_ts)
            if parent is not None:
                return parent
        return root

    # -- Web API methods ---------------------------------------------------------------

    def _auth_test(self, params: JSON) -> JSON:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_domain,
            "user": BOT_NAME,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: JSON) -> JSON:
        channel = self._postable_channel(params)
        content = self._content(params, required=True)
        root = self._thread_root(channel.id, _str_param(params, "thread_ts"))
        ts = self._new_ts()
        data = self._bot_message(ts, content)
        if root is not None:
            data["thread_ts"] = root.ts
            data["parent_user_id"] = root.data.get("user")
            if _truthy(params.get("reply_broadcast")):
                data["subtype"] = "thread_broadcast"
        if isinstance(params.get("metadata"), dict):
            data["metadata"] = params["metadata"]
        self._store(_Message(channel.id, ts, data, versions=[copy.deepcopy(data)]))
        return {"channel": channel.id, "ts": ts, "message": copy.deepcopy(data)}

    def _own_message(self, channel: SlackChannel, params: JSON, not_ours: str) -> _Message:
        ts = _str_param(params, "ts")
        msg = None if ts is None else self._find(channel.id, ts)
        if msg is None or msg.deleted:
            raise _ApiError("message_not_found")
        if msg.data.get("bot_id") != self.bot_id:
            raise _ApiError(not_ours)
        return msg

    def _apply_update(self, msg: _Message, content: JSON) -> None:
        # Fields not given keep their value, as chat.update keeps unspecified blocks.
        msg.data.update(content)
        msg.data["edited"] = {"user": self.bot_user_id, "ts": self._new_ts()}
        msg.versions.append(copy.deepcopy(msg.data))

    def _chat_update(self, params: JSON) -> JSON:
        channel = self._channel(params)
        msg = self._own_message(channel, params, "cant_update_message")
        self._apply_update(msg, self._content(params, required=True))
        return {
            "channel": channel.id,
            "ts": msg.ts,
            "text": msg.data.get("text", ""),
            "message": {k: copy.deepcopy(v) for k, v in msg.data.items() if k != "ts"},
        }

    def _chat_delete(self, params: JSON) -> JSON:
        channel = self._channel(params)
        msg = self._own_message(channel, params, "cant_delete_message")
        msg.deleted = True
        return {"channel": channel.id, "ts": msg.ts}

    def _chat_post_ephemeral(self, params: JSON) -> JSON:
        channel = self._postable_channel(params)
        user_id = _str_param(params, "user")
        if user_id is None or user_id not in self._users:
            raise _ApiError("user_not_found")
        if channel.members is not None and user_id not in channel.members:
            raise _ApiError("user_not_in_channel")
        content = self._content(params, required=True)
        ts = self._new_ts()
        self._ephemerals.append(
            {
                "channel": channel.id,
                "user": user_id,
                "message_ts": ts,
                "thread_ts": _str_param(params, "thread_ts"),
                "via": "chat.postEphemeral",
                "text": content.get("text", ""),
                **{k: v for k, v in content.items() if k != "text"},
            }
        )
        return {"message_ts": ts}

    def _chat_get_permalink(self, params: JSON) -> JSON:
        channel = self._channel(params)
        ts = _str_param(params, "message_ts")
        msg = None if ts is None else self._find(channel.id, ts)
        if msg is None or msg.deleted:
            raise _ApiError("message_not_found")
        link = (
            f"https://{self.team_domain}.slack.com/archives/{channel.id}/p{msg.ts.replace('.', '')}"
        )
        if msg.thread_ts is not None and msg.thread_ts != msg.ts:
            link += f"?thread_ts={msg.thread_ts}&cid={channel.id}"
        return {"channel": channel.id, "permalink": link}

    def _conversations_info(self, params: JSON) -> JSON:
        channel = self._channel(params)
        created = 1_700_000_000
        info: JSON = {
            "id": channel.id,
            "name": channel.name,
            "name_normalized": channel.name,
            "is_channel": not channel.is_private,
            "is_group": channel.is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": channel.is_private,
            "is_archived": channel.is_archived,
            "is_general": False,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "is_member": channel.bot_is_member,
            "created": created,
            "creator": slack_requests.DEFAULT_USER_ID,
            "topic": {"value": channel.topic, "creator": "", "last_set": 0},
            "purpose": {"value": channel.purpose, "creator": "", "last_set": 0},
        }
        if _truthy(params.get("include_num_members")):
            members = channel.members if channel.members is not None else self._users.keys()
            info["num_members"] = len(members)
        return {"channel": info}

    def _users_info(self, params: JSON) -> JSON:
        user = self._users.get(_str_param(params, "user") or "")
        if user is None:
            raise _ApiError("user_not_found")
        return {
            "user": {
                "id": user.id,
                "team_id": self.team_id,
                "name": user.name,
                "deleted": user.deleted,
                "real_name": user.real_name or user.name,
                "tz": user.tz,
                "tz_label": user.tz,
                "tz_offset": 3600,
                "is_admin": user.is_admin,
                "is_owner": False,
                "is_primary_owner": False,
                "is_restricted": False,
                "is_ultra_restricted": False,
                "is_bot": user.is_bot,
                "is_app_user": False,
                "updated": 1_700_000_000,
                "profile": {
                    "real_name": user.real_name or user.name,
                    "display_name": user.name,
                    "email": user.email,
                    "team": self.team_id,
                },
            }
        }

    def _usergroup_json(
        self, group: SlackUserGroup, *, include_users: bool, include_count: bool
    ) -> JSON:
        data: JSON = {
            "id": group.id,
            "team_id": self.team_id,
            "is_usergroup": True,
            "is_subteam": True,
            "name": group.name,
            "description": group.description,
            "handle": group.handle,
            "is_external": False,
            "date_create": 1_700_000_000,
            "date_update": 1_700_000_000,
            "date_delete": 0 if group.enabled else 1_700_000_100,
            "auto_type": None,
            "created_by": slack_requests.DEFAULT_USER_ID,
            "updated_by": slack_requests.DEFAULT_USER_ID,
            "deleted_by": None,
            "prefs": {"channels": [], "groups": []},
        }
        if include_users:
            data["users"] = list(group.users)
        if include_count:
            data["user_count"] = len(group.users)
        return data

    def _usergroups_list(self, params: JSON) -> JSON:
        include_disabled = _truthy(params.get("include_disabled"))
        return {
            "usergroups": [
                self._usergroup_json(
                    g,
                    include_users=_truthy(params.get("include_users")),
                    include_count=_truthy(params.get("include_count")),
                )
                for g in self._usergroups.values()
                if g.enabled or include_disabled
            ]
        }

    def _usergroups_users_list(self, params: JSON) -> JSON:
        group = self._usergroups.get(_str_param(params, "usergroup") or "")
        if group is None or (not group.enabled and not _truthy(params.get("include_disabled"))):
            raise _ApiError("no_such_subteam")
        return {"users": list(group.users)}

    def _apps_connections_open(self, params: JSON) -> JSON:
        return {"url": self._socket_mode.issue_url(f"ws://127.0.0.1:{self.port}")}

    # views

    def _use_trigger(self, params: JSON) -> None:
        trigger_id = _str_param(params, "trigger_id")
        if trigger_id is None:
            raise _invalid_arguments("missing required field: trigger_id")
        issued_at = slack_requests.trigger_issued_at(trigger_id)
        if issued_at is None:
            raise _ApiError("invalid_trigger_id")
        if trigger_id in self._used_triggers:
            raise _ApiError("exchanged_trigger_id")
        if self._trigger_ttl is not None and self._clock() - issued_at > self._trigger_ttl:
            raise _ApiError("expired_trigger_id")
        self._used_triggers.add(trigger_id)

    def _view_json(
        self, view: JSON, *, view_id: str, root_view_id: str, previous: str | None
    ) -> JSON:
        return {
            "id": view_id,
            "team_id": self.team_id,
            "type": view.get("type", "modal"),
            "title": view.get("title"),
            "submit": view.get("submit"),
            "close": view.get("close"),
            "blocks": [self._with_block_id(b) for b in view.get("blocks", [])],
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "external_id": view.get("external_id", ""),
            "state": {"values": {}},
            "hash": f"{int(self._clock())}.{secrets.token_hex(4)}",
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "previous_view_id": previous,
            "root_view_id": root_view_id,
            "app_id": self.app_id,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }

    def _checked_view(self, params: JSON, *, replacing: str | None = None) -> JSON:
        view = params.get("view")
        if view is None:
            raise _invalid_arguments("missing required field: view")
        messages = _validate_view(view)
        if messages:
            raise _invalid_arguments(*messages)
        assert isinstance(view, dict)  # _validate_view rejects anything else
        external_id = view.get("external_id")
        if external_id and any(
            v.get("external_id") == external_id and v["id"] != replacing
            for v in self._views.values()
        ):
            raise _ApiError("duplicate_external_id")
        return view

    def _views_open(self, params: JSON) -> JSON:
        # views.push takes the same arguments; the fake does not model the view stack.
        self._use_trigger(params)
        view = self._checked_view(params)
        view_id = self._new_id("V")
        self._views[view_id] = self._view_json(
            view, view_id=view_id, root_view_id=view_id, previous=None
        )
        return {"view": copy.deepcopy(self._views[view_id])}

    def _views_update(self, params: JSON) -> JSON:
        view_id = _str_param(params, "view_id")
        external_id = _str_param(params, "external_id")
        if view_id is None and external_id is None:
            raise _invalid_arguments("missing required field: view_id or external_id")
        current = None
        if view_id is not None:
            current = self._views.get(view_id)
        else:
            current = next(
                (v for v in self._views.values() if v.get("external_id") == external_id), None
            )
        if current is None:
            raise _ApiError("not_found")
        expected_hash = _str_param(params, "hash")
        if expected_hash is not None and expected_hash != current["hash"]:
            raise _ApiError("hash_conflict")
        view = self._checked_view(params, replacing=current["id"])
        updated = self._view_json(
            view,
            view_id=current["id"],
            root_view_id=current["root_view_id"],
            previous=current["previous_view_id"],
        )
        self._views[current["id"]] = updated
        return {"view": copy.deepcopy(updated)}

    # files (the flow files_upload_v2 uses)

    def _files_get_upload_url_external(self, params: JSON) -> JSON:
        filename = _str_param(params, "filename")
        length = params.get("length")
        if filename is None:
            raise _invalid_arguments("missing required field: filename")
        try:
            size = int(length) if length is not None else -1
        except (TypeError, ValueError):
            size = -1
        if size < 0:
            raise _invalid_arguments("missing required field: length")
        file_id = self._new_id("F")
        key = secrets.token_urlsafe(16)
        self._pending_files[key] = _PendingFile(file_id, filename)
        return {"upload_url": f"{self.base_url}/upload/v1/{key}", "file_id": file_id}

    def _files_complete_upload_external(self, params: JSON) -> JSON:
        files = params.get("files")
        if not isinstance(files, list) or not files:
            raise _invalid_arguments("missing required field: files")
        channel_id = None
        if _str_param(params, "channel_id") is not None:
            channel_id = self._postable_channel(params, "channel_id").id
        elif _str_param(params, "channels") is not None:
            # files_upload_v2(channels=[...]) sends a comma-separated list; share to the first.
            first = str(params["channels"]).split(",")[0]
            channel_id = self._postable_channel({"channel": first}).id
        thread_ts = _str_param(params, "thread_ts")
        root = None if channel_id is None else self._thread_root(channel_id, thread_ts)
        by_id = {p.id: (key, p) for key, p in self._pending_files.items()}
        completed: list[JSON] = []
        for entry in files:
            file_id = entry.get("id") if isinstance(entry, dict) else None
            found = by_id.get(str(file_id))
            if found is None or found[1].content is None:
                raise _ApiError("file_not_found")
            key, pending = found
            title = str(entry.get("title") or pending.filename)
            uploaded = UploadedFile(
                id=pending.id,
                filename=pending.filename,
                title=title,
                content=pending.content or b"",
                channel=channel_id,
                thread_ts=None if root is None else root.ts,
                initial_comment=_str_param(params, "initial_comment"),
            )
            self._files[pending.id] = uploaded
            del self._pending_files[key]
            completed.append(
                {
                    "id": uploaded.id,
                    "name": uploaded.filename,
                    "title": uploaded.title,
                    "size": len(uploaded.content),
                    "user": self.bot_user_id,
                    "created": int(self._clock()),
                    "permalink": (
                        f"https://{self.team_domain}.slack.com/files/"
                        f"{self.bot_user_id}/{uploaded.id}/{uploaded.filename}"
                    ),
                    "channels": [] if channel_id is None else [channel_id],
                }
            )
        if channel_id is not None:
            # Sharing the files posts a message, in the thread when thread_ts is given.
            ts = self._new_ts()
            data = self._bot_message(ts, {"text": _str_param(params, "initial_comment") or ""})
            data["files"] = copy.deepcopy(completed)
            data["upload"] = True
            if root is not None:
                data["thread_ts"] = root.ts
                data["parent_user_id"] = root.data.get("user")
            self._store(_Message(channel_id, ts, data, versions=[copy.deepcopy(data)]))
        return {"files": completed}

    _METHODS: dict[str, Callable[[SlackFake, JSON], JSON]] = {
        "auth.test": _auth_test,
        "chat.postMessage": _chat_post_message,
        "chat.update": _chat_update,
        "chat.delete": _chat_delete,
        "chat.postEphemeral": _chat_post_ephemeral,
        "chat.getPermalink": _chat_get_permalink,
        "conversations.info": _conversations_info,
        "users.info": _users_info,
        "usergroups.list": _usergroups_list,
        "usergroups.users.list": _usergroups_users_list,
        "apps.connections.open": _apps_connections_open,
        "views.open": _views_open,
        "views.push": _views_open,
        "views.update": _views_update,
        "files.getUploadURLExternal": _files_get_upload_url_external,
        "files.completeUploadExternal": _files_complete_upload_external,
    }

    # -- response_url semantics --------------------------------------------------------

    def _post_to_response_url(self, url: str, body: Any) -> tuple[int, str | None]:
        hook = self._response_urls.get(url)
        if hook is None:
            return 404, "no_service"
        if self._clock() - hook.issued_at > RESPONSE_URL_TTL:
            return 404, "expired_url"
        if hook.posts >= RESPONSE_URL_MAX_POSTS:
            return 404, "used_url"
        if not isinstance(body, dict):
            return 400, "invalid_payload"
        hook.posts += 1
        original = None if hook.message_ts is None else self._find(hook.channel, hook.message_ts)
        if _truthy(body.get("delete_original")):
            if original is not None and not original.deleted:
                original.deleted = True
                return 200, None
            if hook.last_ephemeral is not None:
                self._ephemerals[hook.last_ephemeral]["deleted"] = True
                return 200, None
            return 404, "message_not_found"
        try:
            content = self._content(body, required=True)
        except _ApiError as exc:
            return 400, exc.error
        if _truthy(body.get("replace_original")):
            if original is not None and not original.deleted:
                self._apply_update(original, content)
                return 200, None
            if hook.last_ephemeral is not None:
                self._ephemerals[hook.last_ephemeral].update(content)
                return 200, None
        if body.get("response_type") == "in_channel":
            ts = self._new_ts()
            data = self._bot_message(ts, content)
            thread_ts = body.get("thread_ts")
            if isinstance(thread_ts, str) and self._find(hook.channel, thread_ts) is not None:
                data["thread_ts"] = thread_ts
            self._store(_Message(hook.channel, ts, data, versions=[copy.deepcopy(data)]))
            return 200, None
        self._ephemerals.append(
            {
                "channel": hook.channel,
                "user": hook.user,
                "message_ts": self._new_ts(),
                "thread_ts": body.get("thread_ts"),
                "via": "response_url",
                "response_url": url,
                "text": content.get("text", ""),
                **{k: v for k, v in content.items() if k != "text"},
            }
        )
        hook.last_ephemeral = len(self._ephemerals) - 1
        return 200, None


def _bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()

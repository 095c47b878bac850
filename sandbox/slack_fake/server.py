"""The :class:`SlackFake` server: lifecycle, workspace edits, faults and assertion views."""

from __future__ import annotations

import asyncio
import copy
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Literal, Self

from aiohttp import web

from sandbox import slack_requests
from sandbox.slack_fake.handlers import HttpHandlers
from sandbox.slack_fake.records import (
    JSON,
    Message,
    RecordedCall,
    ResponseUrl,
    ResponseUrlPost,
    UploadedFile,
)
from sandbox.slack_fake.state import SlackState
from sandbox.slack_fake.views import TRIGGER_TTL
from sandbox.slack_fake.workspace import (
    DEFAULT_APP_TOKEN,
    DEFAULT_BOT_TOKEN,
    DEFAULT_CHANNELS,
    DEFAULT_USERGROUPS,
    DEFAULT_USERS,
    SlackChannel,
    SlackUser,
    SlackUserGroup,
)
from sandbox.slack_socket_mode import SocketModeDelivery, SocketModeEndpoint


class SlackFake(SocketModeDelivery):
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
        self._state = SlackState(
            users=users,
            channels=channels,
            usergroups=usergroups,
            bot_token=bot_token,
            app_token=app_token,
            team_id=team_id,
            team_domain=team_domain,
            app_id=app_id,
            trigger_ttl=trigger_ttl,
            clock=clock,
        )
        self._lock = self._state.lock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # -- identity --------------------------------------------------------------------------

    @property
    def bot_token(self) -> str:
        """The bot token (``xoxb-``) the fake accepts."""
        return self._state.bot_token

    @property
    def app_token(self) -> str:
        """The app-level token (``xapp-``) Socket Mode needs."""
        return self._state.app_token

    @property
    def team_id(self) -> str:
        """The workspace id."""
        return self._state.team_id

    @property
    def team_domain(self) -> str:
        """The workspace's domain (``<domain>.slack.com``)."""
        return self._state.team_domain

    @property
    def app_id(self) -> str:
        """The app's id."""
        return self._state.app_id

    @property
    def bot_user_id(self) -> str:
        """The bot user's id (``auth.test``'s ``user_id``)."""
        return self._state.bot_user_id

    @property
    def bot_id(self) -> str:
        """The bot's id, as its messages carry it."""
        return self._state.bot_id

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        """Bind a free port on 127.0.0.1 and serve in a background thread."""
        if self._thread is not None:
            raise RuntimeError("SlackFake is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self._port = sock.getsockname()[1]
        self._state.base_url = f"http://127.0.0.1:{self._port}"
        # asyncio primitives belong to one loop: a restarted fake gets a fresh endpoint.
        self._state.socket_mode = SocketModeEndpoint(app_id=self.app_id, clock=self._state.clock)
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
                *HttpHandlers(self._state).routes(),
                web.get("/link/", self._state.socket_mode.handle),
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
            await self._state.socket_mode.close()
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
            self._state.reset()
        self._state.socket_mode.reset()

    def _socket_endpoint(self) -> SocketModeEndpoint:
        return self._state.socket_mode

    def _server_loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    # -- the workspace -----------------------------------------------------------------

    def add_user(self, user: SlackUser) -> None:
        """Add or replace a user."""
        with self._lock:
            self._state.users[user.id] = user

    def add_channel(self, channel: SlackChannel) -> None:
        """Add or replace a channel."""
        with self._lock:
            self._state.channels[channel.id] = channel

    def add_usergroup(self, group: SlackUserGroup) -> None:
        """Add or replace a user group."""
        with self._lock:
            self._state.usergroups[group.id] = group

    def post_user_message(
        self, channel: str, user: str, text: str, *, thread_ts: str | None = None
    ) -> str:
        """Record a message a person wrote (the bot cannot update it); return its ts."""
        with self._lock:
            ts = self._state.new_ts()
            data: JSON = {
                "type": "message",
                "user": user,
                "text": text,
                "ts": ts,
                "team": self.team_id,
            }
            if thread_ts is not None:
                data["thread_ts"] = thread_ts
            self._state.store(Message(channel, ts, data, versions=[copy.deepcopy(data)]))
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
        with self._lock:
            self._state.faults.add("ratelimit", calls, seconds, method, retry_after=retry_after)

    def server_errors(
        self,
        *,
        calls: int | None = None,
        seconds: float | None = None,
        status: int = 500,
        method: str | None = None,
    ) -> None:
        """Answer HTTP ``status`` (an HTML error page, like Slack's edge) for a while."""
        with self._lock:
            self._state.faults.add("server_error", calls, seconds, method, status=status)

    def clear_faults(self) -> None:
        """Stop answering 429s and 5xxs (injected ones and enforced rate limits)."""
        with self._lock:
            self._state.faults.clear()

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
            self._state.faults.enforce_rate_limits(posts_per_second, post_burst, updates_per_minute)

    # -- response_url and trigger ids --------------------------------------------------

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
            self._state.response_urls[url] = ResponseUrl(
                url, channel_id, user_id, message_ts, issued_at=self._state.clock()
            )
        return url

    def response_url_posts(self, url: str | None = None) -> list[ResponseUrlPost]:
        """Every post to a response URL (or to ``url``), accepted or not, in order."""
        with self._lock:
            return [p for p in self._state.response_url_posts if url is None or p.url == url]

    def new_trigger_id(self) -> str:
        """Return a fresh trigger id, as an interaction payload carries."""
        return slack_requests.make_trigger_id(issued_at=self._state.clock())

    # -- views for assertions ----------------------------------------------------------

    def calls(self, method: str | None = None) -> list[RecordedCall]:
        """Every Web API call (or every call of ``method``), in order."""
        with self._lock:
            return [c for c in self._state.calls if method is None or c.method == method]

    def messages(self, channel: str, *, include_replies: bool = False) -> list[JSON]:
        """Messages as the channel shows them, oldest first.

        Thread replies are left out unless broadcast (or ``include_replies``). Each is
        the message in its current state, as ``conversations.history`` would return it.
        """
        with self._lock:
            state = self._state
            out = []
            for msg in state.messages.get(state.resolve_channel_id(channel), []):
                if msg.deleted:
                    continue
                is_reply = msg.thread_ts is not None and msg.thread_ts != msg.ts
                if (
                    is_reply
                    and not include_replies
                    and msg.data.get("subtype") != "thread_broadcast"
                ):
                    continue
                out.append(state.render(msg))
            return out

    def message(self, channel: str, ts: str) -> JSON:
        """One message in its current state; KeyError if there is none."""
        with self._lock:
            msg = self._state.find(self._state.resolve_channel_id(channel), ts)
            if msg is None or msg.deleted:
                raise KeyError(f"no message {ts} in {channel}")
            return self._state.render(msg)

    def thread(self, channel: str, ts: str) -> list[JSON]:
        """The thread rooted at ``ts``: the root, then its replies in order."""
        with self._lock:
            state = self._state
            root = state.find(state.resolve_channel_id(channel), ts)
            if root is None or root.deleted:
                raise KeyError(f"no message {ts} in {channel}")
            return [state.render(root)] + [state.render(m) for m in state.replies(root)]

    def updates_of(self, channel: str, ts: str) -> list[JSON]:
        """The message as it looked after each update, oldest first (empty if never updated)."""
        return self.versions_of(channel, ts)[1:]

    def versions_of(self, channel: str, ts: str) -> list[JSON]:
        """The message as first posted, then after each update."""
        with self._lock:
            msg = self._state.find(self._state.resolve_channel_id(channel), ts)
            if msg is None:
                raise KeyError(f"no message {ts} in {channel}")
            return copy.deepcopy(msg.versions)

    def ephemerals(self, *, channel: str | None = None, user: str | None = None) -> list[JSON]:
        """Ephemeral messages (chat.postEphemeral, response URLs) still shown, in order."""
        with self._lock:
            channel_id = None if channel is None else self._state.resolve_channel_id(channel)
            return [
                copy.deepcopy(e)
                for e in self._state.ephemerals
                if not e.get("deleted")
                and (channel_id is None or e["channel"] == channel_id)
                and (user is None or e["user"] == user)
            ]

    def views(self) -> list[JSON]:
        """Every modal opened or pushed, in its current state."""
        with self._lock:
            return copy.deepcopy(list(self._state.views.values()))

    def files(self) -> list[UploadedFile]:
        """Every file whose upload was completed."""
        with self._lock:
            return list(self._state.files.values())

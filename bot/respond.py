"""Answers through a request's ``response_url`` over one shared HTTP session.

Bolt's own ``respond`` builds a new webhook client for every answer, and with it a new
aiohttp session and connection (against slack.com a TLS handshake each). Under a burst
of commands that setup was the largest part of the event loop's work, and every ack
waits behind it. ``Responder`` keeps one session (and its connection pool) for the
process; ``install`` puts a ``SharedSessionRespond`` in every request's context, so the
listeners' ``respond`` argument uses it without knowing. ``aclose`` on shutdown.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from ssl import SSLContext
from typing import Any

import aiohttp
from slack_bolt import BoltResponse
from slack_bolt.async_app import AsyncApp, AsyncBoltRequest, AsyncRespond
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_sdk.models.attachments import Attachment
from slack_sdk.models.blocks import Block
from slack_sdk.webhook import WebhookResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

# What Bolt's webhook client allows an answer (its default); Slack answers in well under.
RESPONSE_TIMEOUT_S = 30.0
# Connections kept open per host: answers all go to Slack's one response_url host.
CONNECTIONS_PER_HOST = 32


class Responder:
    """One aiohttp session for every ``response_url`` answer of the process."""

    def __init__(
        self,
        *,
        proxy: str | None = None,
        ssl: SSLContext | None = None,
        timeout: float = RESPONSE_TIMEOUT_S,
    ) -> None:
        self._proxy, self._ssl, self._timeout = proxy, ssl, timeout
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def session(self) -> aiohttp.ClientSession:
        """The shared session, opened on first use (inside the running event loop)."""
        if self._closed:
            raise RuntimeError("the responder is closed (the bot is shutting down)")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                connector=aiohttp.TCPConnector(limit_per_host=CONNECTIONS_PER_HOST),
            )
        return self._session

    def respond_to(self, response_url: str) -> SharedSessionRespond:
        """A ``respond`` for one request, answering over the shared session."""
        return SharedSessionRespond(
            response_url=response_url, responder=self, proxy=self._proxy, ssl=self._ssl
        )

    def install(self, app: AsyncApp) -> None:
        """Give every request of ``app`` that has a ``response_url`` this ``respond``."""
        app.use(_SharedRespondMiddleware(self))

    async def aclose(self) -> None:
        """Close the session; answers after this raise instead of opening a new one."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None


class _SharedRespondMiddleware(AsyncMiddleware):
    """Puts the ``Responder``'s ``respond`` in the request's context.

    A middleware class, not a function: Bolt builds a function middleware's keyword
    arguments (every context item) on each request, which costs more than the rest.
    """

    def __init__(self, responder: Responder) -> None:
        self._responder = responder

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],  # Bolt's name for it
    ) -> BoltResponse | None:
        url = req.context.response_url
        if url:
            req.context["respond"] = self._responder.respond_to(url)
        return await next()


class SharedSessionRespond(AsyncRespond):
    """Bolt's ``respond`` with the same arguments, over the ``Responder``'s session."""

    def __init__(
        self,
        *,
        response_url: str,
        responder: Responder,
        proxy: str | None = None,
        ssl: SSLContext | None = None,
    ) -> None:
        super().__init__(response_url=response_url, proxy=proxy, ssl=ssl)
        self._responder = responder

    async def __call__(  # Bolt's signature, argument for argument
        self,
        text: str | dict[str, Any] = "",
        blocks: Sequence[dict[str, Any] | Block] | None = None,
        attachments: Sequence[dict[str, Any] | Attachment] | None = None,
        response_type: str | None = None,
        replace_original: bool | None = None,
        delete_original: bool | None = None,
        unfurl_links: bool | None = None,
        unfurl_media: bool | None = None,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> WebhookResponse:
        if self.response_url is None:
            raise ValueError("respond is unsupported here as there is no response_url")
        if isinstance(text, dict):
            message = build_message(**text)
        else:
            message = build_message(
                text=text,
                blocks=blocks,
                attachments=attachments,
                response_type=response_type,
                replace_original=replace_original,
                delete_original=delete_original,
                unfurl_links=unfurl_links,
                unfurl_media=unfurl_media,
                thread_ts=thread_ts,
                metadata=metadata,
            )
        client = AsyncWebhookClient(
            url=self.response_url,
            session=self._responder.session(),
            proxy=self.proxy,
            ssl=self.ssl,
        )
        return await client.send_dict(message)


def build_message(
    text: str = "",
    blocks: Sequence[dict[str, Any] | Block] | None = None,
    attachments: Sequence[dict[str, Any] | Attachment] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The JSON body of an answer: the text, blocks and attachments as dicts, and the
    options (``response_type``, ``replace_original``, …) that were given."""
    message: dict[str, Any] = {"text": text}
    if blocks:
        message["blocks"] = [b if isinstance(b, dict) else b.to_dict() for b in blocks]
    if attachments:
        message["attachments"] = [a if isinstance(a, dict) else a.to_dict() for a in attachments]
    message.update({key: value for key, value in options.items() if value is not None})
    return message

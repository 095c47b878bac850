"""The HTTP side: Web API requests parsed and authenticated as Slack does, uploads, and
``response_url`` posts. Every Web API call is recorded, faults included.
"""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any, Literal

from aiohttp import web

from sandbox.slack_fake import auth, chat, conversations, files, response_urls, usergroups, users
from sandbox.slack_fake import views as views_api
from sandbox.slack_fake.errors import ApiError
from sandbox.slack_fake.params import JSON_PARAMS, redacted
from sandbox.slack_fake.records import JSON, RecordedCall, ResponseUrlPost
from sandbox.slack_fake.state import SlackState, WebApiMethod

METHODS: dict[str, WebApiMethod] = {
    **auth.METHODS,
    **chat.METHODS,
    **conversations.METHODS,
    **users.METHODS,
    **usergroups.METHODS,
    **views_api.METHODS,
    **files.METHODS,
}

TokenType = Literal["bot", "app", "invalid"] | None


class HttpHandlers:
    """aiohttp handlers over one :class:`SlackState`."""

    def __init__(self, slack: SlackState) -> None:
        self._slack = slack

    def routes(self) -> list[web.RouteDef]:
        """The routes the fake serves (Socket Mode's WebSocket route is added apart)."""
        return [
            web.route("*", "/api/{method}", self.handle_api),
            web.post("/upload/v1/{file_key}", self.handle_upload),
            web.post("/hooks/{kind}/{team}/{hook_id}/{secret}", self.handle_response_url),
        ]

    async def handle_api(self, request: web.Request) -> web.StreamResponse:
        """One Web API call: HTTP 200 with ``ok`` true or false, 429, or an HTML 5xx."""
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
        for key in JSON_PARAMS:
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

    def _token_type(self, token: str | None) -> TokenType:
        if token is None:
            return None
        if token == self._slack.bot_token:
            return "bot"
        if token == self._slack.app_token:
            return "app"
        return "invalid"

    def _dispatch(
        self, method: str, params: JSON, token: str | None, parse_error: str | None
    ) -> tuple[int, JSON, dict[str, str]]:
        slack = self._slack
        with slack.lock:
            token_type = self._token_type(token)
            status, headers = 200, {}
            fault = slack.faults.take(method)
            over_limit = None
            if fault is None and token_type in ("bot", "app"):
                channel_id = slack.resolve_channel_id(str(params.get("channel", "")))
                over_limit = slack.faults.over_rate_limit(method, channel_id)
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
            slack.calls.append(
                RecordedCall(
                    method=method,
                    params=redacted(params),
                    at=slack.clock(),
                    status=status,
                    response=copy.deepcopy(payload),
                    token_type=token_type,
                )
            )
            return status, payload, headers

    def _call(
        self, method: str, params: JSON, token_type: TokenType, parse_error: str | None
    ) -> JSON:
        handler = METHODS.get(method)
        try:
            if handler is None:
                raise ApiError("unknown_method")
            if parse_error is not None:
                raise ApiError(parse_error)
            if token_type is None:
                raise ApiError("not_authed")
            if token_type == "invalid":
                raise ApiError("invalid_auth")
            wanted = "app" if method == "apps.connections.open" else "bot"
            if token_type != wanted:
                raise ApiError("not_allowed_token_type")
            result = handler(self._slack, params)
        except ApiError as exc:
            return {"ok": False, "error": exc.error, **exc.extra}
        return {"ok": True, **result}

    async def handle_upload(self, request: web.Request) -> web.StreamResponse:
        """The upload URL ``files.getUploadURLExternal`` handed out."""
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
        with self._slack.lock:
            pending = self._slack.pending_files.get(key)
            if pending is None:
                return web.Response(status=404, text="Not Found")
            pending.content = content
        return web.Response(status=200, text=f"OK - {len(content)}", content_type="text/plain")

    async def handle_response_url(self, request: web.Request) -> web.StreamResponse:
        """A POST to a ``response_url``, JSON or a form with a ``payload`` field."""
        slack = self._slack
        url = f"{slack.base_url}{request.path}"
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
        with slack.lock:
            status, error = response_urls.post(slack, url, body)
            slack.response_url_posts.append(
                ResponseUrlPost(
                    url=url,
                    body=copy.deepcopy(body)
                    if isinstance(body, dict)
                    else {"_raw": raw.decode(errors="replace")},
                    at=slack.clock(),
                    status=status,
                    error=error,
                    peer=_peer(request),
                )
            )
        if error is None:
            return web.json_response({"ok": True})
        return web.json_response({"ok": False, "error": error}, status=status)


def _peer(request: web.Request) -> str:
    peername = request.transport.get_extra_info("peername") if request.transport else None
    return f"{peername[0]}:{peername[1]}" if peername else ""


def _bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()

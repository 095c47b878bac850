"""The Socket Mode side of the local Slack fake.

Slack's Socket Mode protocol, as an app sees it:

1. The app calls ``apps.connections.open`` with its app-level (``xapp-``) token and gets
   a one-time WebSocket URL.
2. On connect, Slack sends ``{"type": "hello", "num_connections": n, "debug_info": {...},
   "connection_info": {"app_id": ...}}``.
3. Slack sends envelopes ``{"envelope_id", "type", "payload", "accepts_response_payload"}``
   (``type`` is ``slash_commands``, ``interactive``, ``events_api``); the app acks each
   with ``{"envelope_id": ..., "payload": {...}?}`` within 3 seconds.
4. Slack refreshes connections: it sends ``{"type": "disconnect", "reason": ...}``
   (``warning`` about 10 s ahead, then ``refresh_requested``; ``link_disabled`` when
   Socket Mode is turned off; ``too_many_websockets`` past 10 connections) and closes
   the socket; the app opens a new one with a fresh URL.

:class:`SocketModeEndpoint` plays Slack's part inside the fake's aiohttp server. All of
its coroutines run on the server's event loop; :class:`SocketModeDelivery`, mixed into
:class:`sandbox.slack_fake.SlackFake`, exposes them to tests running on other loops or
threads.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import Future as ConcurrentFuture
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web

__all__ = [
    "SocketConnection",
    "SocketEnvelope",
    "SocketModeAck",
    "SocketModeAckTimeout",
    "SocketModeDelivery",
    "SocketModeEndpoint",
    "SocketModeError",
    "SocketModeNotConnected",
]

_T = TypeVar("_T")

# Slack allows up to 10 simultaneous Socket Mode connections per app.
MAX_CONNECTIONS = 10

# Reasons after which Slack closes the socket itself; after "warning" it does not.
_CLOSING_REASONS = frozenset({"refresh_requested", "link_disabled", "too_many_websockets"})


class SocketModeError(Exception):
    """Base class of the Socket Mode fake's errors."""


class SocketModeAckTimeout(SocketModeError, TimeoutError):
    """The app did not acknowledge an envelope in time (Slack shows the user an error)."""


class SocketModeNotConnected(SocketModeError, ConnectionError):
    """No app is connected to the Socket Mode endpoint, so nothing can be delivered."""


@dataclass(frozen=True)
class SocketModeAck:
    """An app's acknowledgement of one envelope, with its optional response payload."""

    envelope_id: str
    envelope_type: str
    payload: dict[str, Any] | None
    elapsed: float
    connection_id: int


@dataclass(frozen=True)
class SocketConnection:
    """One WebSocket connection an app opened (``closed_at`` is None while open)."""

    id: int
    opened_at: float
    closed_at: float | None = None
    disconnect_reason: str | None = None

    @property
    def is_open(self) -> bool:
        """Whether the connection is still open."""
        return self.closed_at is None


@dataclass(frozen=True)
class SocketEnvelope:
    """An envelope the fake sent, and the ack it got (None if none, ``late`` if too late)."""

    envelope_id: str
    type: str
    payload: dict[str, Any]
    accepts_response_payload: bool
    connection_id: int
    sent_at: float
    ack: SocketModeAck | None = None
    late: bool = False


@dataclass
class _Connection:
    info: SocketConnection
    ws: web.WebSocketResponse


@dataclass
class _State:
    connections: list[_Connection] = field(default_factory=list)
    envelopes: dict[str, SocketEnvelope] = field(default_factory=dict)


class SocketModeEndpoint:
    """Slack's end of Socket Mode: tickets, hello, envelopes, acks and disconnects."""

    def __init__(self, *, app_id: str, clock: Callable[[], float] = time.time) -> None:
        """Create an endpoint for the app ``app_id``; ``clock`` stamps the records."""
        self._app_id = app_id
        self._clock = clock
        self._tickets: set[str] = set()
        self._state = _State()
        # Readers on other threads take copies under this lock; only the server loop writes.
        self._lock = threading.Lock()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._changed: asyncio.Condition | None = None
        self._next_id = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # -- called from the Web API side -------------------------------------------------

    def issue_url(self, ws_base: str) -> str:
        """Return a one-time WebSocket URL, as ``apps.connections.open`` does."""
        ticket = secrets.token_hex(16)
        with self._lock:
            self._tickets.add(ticket)
        return f"{ws_base}/link/?ticket={ticket}&app_id={self._app_id}"

    # -- records (any thread) ----------------------------------------------------------

    def connections(self) -> list[SocketConnection]:
        """Every connection opened so far, oldest first."""
        with self._lock:
            return [c.info for c in self._state.connections]

    def envelopes(self) -> list[SocketEnvelope]:
        """Every envelope sent so far, with its ack."""
        with self._lock:
            return list(self._state.envelopes.values())

    def reset(self) -> None:
        """Forget envelopes (connections stay as they are)."""
        with self._lock:
            self._state.envelopes.clear()

    # -- server loop -------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one WebSocket connection for the ticket in the URL."""
        ticket = request.query.get("ticket", "")
        with self._lock:
            known = ticket in self._tickets
            self._tickets.discard(ticket)
        if not known:
            # Tickets are single use: reconnecting means calling apps.connections.open again.
            return web.Response(status=401, text="invalid or already used ticket")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = await self._register(ws)
        try:
            if len(self._open()) > MAX_CONNECTIONS:
                await self._send_disconnect(conn, "too_many_websockets")
                await ws.close(code=WSCloseCode.POLICY_VIOLATION)
                return ws
            await ws.send_str(json.dumps(self._hello()))
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_text(conn, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            await self._mark_closed(conn, None)
        return ws

    async def deliver(
        self,
        envelope_type: str,
        payload: Mapping[str, Any],
        *,
        ack_timeout: float,
        connect_timeout: float,
        accepts_response_payload: bool,
    ) -> SocketModeAck:
        """Send one envelope to the newest open connection and wait for its ack."""
        conn = await self._newest_open(connect_timeout)
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "payload": dict(payload),
            "type": envelope_type,
            "accepts_response_payload": accepts_response_payload,
        }
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[envelope_id] = future
        record = SocketEnvelope(
            envelope_id=envelope_id,
            type=envelope_type,
            payload=dict(payload),
            accepts_response_payload=accepts_response_payload,
            connection_id=conn.info.id,
            sent_at=self._clock(),
        )
        with self._lock:
            self._state.envelopes[envelope_id] = record
        started = time.monotonic()
        try:
            await conn.ws.send_str(json.dumps(envelope))
            try:
                ack_message = await asyncio.wait_for(future, ack_timeout)
            except TimeoutError:
                raise SocketModeAckTimeout(
                    f"the app did not ack the {envelope_type} envelope {envelope_id} within "
                    f"{ack_timeout:.1f} s; Slack would have told the user the app did not respond"
                ) from None
        finally:
            self._pending.pop(envelope_id, None)
        ack_payload = ack_message.get("payload")
        ack = SocketModeAck(
            envelope_id=envelope_id,
            envelope_type=envelope_type,
            payload=dict(ack_payload) if isinstance(ack_payload, dict) else None,
            elapsed=time.monotonic() - started,
            connection_id=conn.info.id,
        )
        with self._lock:
            self._state.envelopes[envelope_id] = replace(record, ack=ack)
        return ack

    async def wait_for_connection(self, *, after: int, within: float) -> SocketConnection:
        """Wait for an open connection whose id is greater than ``after``."""
        try:
            async with asyncio.timeout(within):
                cond = self._condition()
                async with cond:
                    while True:
                        for conn in self._open():
                            if conn.info.id > after:
                                return conn.info
                        await cond.wait()
        except TimeoutError:
            raise SocketModeNotConnected(
                f"no Socket Mode connection newer than #{after} opened within {within:.1f} s"
            ) from None

    async def disconnect(
        self, reason: str, *, connection_id: int | None, close_after: float
    ) -> list[int]:
        """Send a ``disconnect`` message; for closing reasons close the socket afterwards."""
        targets = [c for c in self._open() if connection_id is None or c.info.id == connection_id]
        for conn in targets:
            await self._send_disconnect(conn, reason)
            if reason in _CLOSING_REASONS:
                self._close_later(conn, reason, close_after)
        return [c.info.id for c in targets]

    def _close_later(self, conn: _Connection, reason: str, delay: float) -> None:
        async def close_after_delay() -> None:
            await asyncio.sleep(delay)
            await self._close(conn, reason)

        # Keep a reference: the loop holds tasks only weakly.
        task = asyncio.get_running_loop().create_task(close_after_delay())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drop(self, *, connection_id: int | None = None) -> list[int]:
        """Close sockets without a ``disconnect`` message first (a network failure)."""
        targets = [c for c in self._open() if connection_id is None or c.info.id == connection_id]
        for conn in targets:
            await self._close(conn, "dropped")
        return [c.info.id for c in targets]

    async def close(self) -> None:
        """Close every connection (the server is shutting down)."""
        for task in list(self._tasks):
            task.cancel()
        for conn in self._open():
            await self._close(conn, "server_stopped")

    # -- internals (server loop) -------------------------------------------------------

    def _condition(self) -> asyncio.Condition:
        # Created on first use so it belongs to the server loop, not the constructing thread.
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _notify(self) -> None:
        cond = self._condition()
        async with cond:
            cond.notify_all()

    def _open(self) -> list[_Connection]:
        with self._lock:
            return [c for c in self._state.connections if c.info.is_open]

    async def _register(self, ws: web.WebSocketResponse) -> _Connection:
        with self._lock:
            self._next_id += 1
            conn = _Connection(SocketConnection(id=self._next_id, opened_at=self._clock()), ws)
            self._state.connections.append(conn)
        await self._notify()
        return conn

    async def _mark_closed(self, conn: _Connection, reason: str | None) -> None:
        with self._lock:
            if conn.info.closed_at is None:
                conn.info = replace(
                    conn.info,
                    closed_at=self._clock(),
                    disconnect_reason=reason or conn.info.disconnect_reason,
                )
        await self._notify()

    async def _close(self, conn: _Connection, reason: str) -> None:
        if conn.info.closed_at is not None:
            return
        with self._lock:
            conn.info = replace(conn.info, disconnect_reason=reason)
        await conn.ws.close(code=WSCloseCode.GOING_AWAY)
        await self._mark_closed(conn, reason)

    async def _send_disconnect(self, conn: _Connection, reason: str) -> None:
        with self._lock:
            conn.info = replace(conn.info, disconnect_reason=reason)
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
        if not conn.ws.closed:
            await conn.ws.send_str(json.dumps(message))

    async def _newest_open(self, within: float) -> _Connection:
        # Apps call connect() and then expect deliveries; give the handshake time to land.
        deadline = time.monotonic() + within
        while True:
            open_now = self._open()
            if open_now:
                return open_now[-1]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SocketModeNotConnected(
                    f"no app is connected over Socket Mode (waited {within:.1f} s); "
                    "start the app's Socket Mode handler first"
                )
            cond = self._condition()
            try:
                async with asyncio.timeout(remaining):
                    async with cond:
                        await cond.wait()
            except TimeoutError:
                continue

    def _hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "num_connections": len(self._open()),
            "debug_info": {
                "host": "applink-fake",
                "build_number": 1,
                "approximate_connection_time": 3600,
            },
            "connection_info": {"app_id": self._app_id},
        }

    def _on_text(self, conn: _Connection, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        envelope_id = message.get("envelope_id")
        if not isinstance(envelope_id, str):
            return
        future = self._pending.get(envelope_id)
        if future is not None and not future.done():
            future.set_result(message)
            return
        # An ack after the deadline (or for an unknown envelope) is kept for assertions.
        with self._lock:
            record = self._state.envelopes.get(envelope_id)
            if record is not None and record.ack is None:
                self._state.envelopes[envelope_id] = replace(record, late=True)


class SocketModeDelivery:
    """Socket Mode for tests: deliver envelopes to the connected app and wait for its ack.

    Mixed into :class:`sandbox.slack_fake.SlackFake`. The endpoint's coroutines run on the
    fake's server loop; these methods let a test on any other loop or thread call them.
    """

    def _socket_endpoint(self) -> SocketModeEndpoint:
        raise NotImplementedError

    def _server_loop(self) -> asyncio.AbstractEventLoop | None:
        raise NotImplementedError

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
            self._socket_endpoint().deliver(
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
            self._socket_endpoint().deliver(
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
            self._socket_endpoint().wait_for_connection(after=after, within=within)
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
            self._socket_endpoint().disconnect(
                reason, connection_id=connection_id, close_after=close_after
            )
        )

    async def drop_socket_connections(self, *, connection_id: int | None = None) -> list[int]:
        """Close sockets abruptly, without a ``disconnect`` message (a network failure)."""
        return await self._on_server_loop(self._socket_endpoint().drop(connection_id=connection_id))

    def socket_connections(self) -> list[SocketConnection]:
        """Every Socket Mode connection so far, oldest first."""
        return self._socket_endpoint().connections()

    def socket_envelopes(self) -> list[SocketEnvelope]:
        """Every envelope sent, with the ack it got."""
        return self._socket_endpoint().envelopes()

    def _on_server_loop(self, coro: Coroutine[Any, Any, _T]) -> Awaitable[_T]:
        # The fake's state lives on its own loop; callers await from theirs.
        loop = self._server_loop()
        if loop is None:
            coro.close()
            raise RuntimeError("SlackFake is not running; call start() first")
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

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
        loop = self._server_loop()
        if loop is None:
            coro.close()
            raise RuntimeError("SlackFake is not running; call start() first")
        future: ConcurrentFuture[_T] = asyncio.run_coroutine_threadsafe(coro, loop)
        return future.result(deadline)

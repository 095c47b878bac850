"""The HTTP endpoint: ``GET /metrics``, ``GET``/``POST /control``."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from sandbox.traffic.settings import ControlError

if TYPE_CHECKING:
    from sandbox.traffic.simulator import TrafficSimulator


def make_handler(sim: TrafficSimulator) -> type[BaseHTTPRequestHandler]:
    """A request handler class serving ``sim``'s metrics and control endpoint."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, payload: Any) -> None:
            self._send(status, json.dumps(payload).encode() + b"\n", "application/json")

        def do_GET(self) -> None:
            route = self.path.split("?", 1)[0]
            if route == "/metrics":
                self._send(200, sim.render_metrics(), "text/plain; version=0.0.4; charset=utf-8")
            elif route == "/control":
                self._json(200, sim.state())
            else:
                self._json(404, {"error": f"no such path {route}; try /metrics or /control"})

        def do_POST(self) -> None:
            route = self.path.split("?", 1)[0]
            if route != "/control":
                self._json(404, {"error": f"no such path {route}; POST /control"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
            try:
                update = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                self._json(400, {"error": f"the body is not valid JSON: {exc}"})
                return
            try:
                state = sim.apply_control(update)
            except ControlError as exc:
                self._json(400, {"error": str(exc)})
                return
            self._json(200, state)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scraped every second; access logs would drown everything else

    return Handler

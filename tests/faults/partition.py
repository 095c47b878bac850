"""A TCP proxy in front of the API server for one client, which a test can partition.

``cut()`` models a network partition between that client and the server while both keep
running: the proxy still accepts connections and reads what either side sends, but
forwards nothing, so requests (and their answers) are lost and the client's calls hang
until its own timeouts. ``heal()`` forwards again; the connections that spanned the
partition are reset, as TCP peers whose segments were dropped would be (the engine
resets a connection it gave up on, see ``rollout.kube``), and new connections work.

The proxy forwards bytes and never reads TLS, so the client verifies the real server.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Link:
    client: socket.socket
    server: socket.socket
    spanned: bool = False
    closed: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        self.closed.set()
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.close()


class PartitionProxy:
    """Forwards 127.0.0.1:<port> to ``target`` until ``cut()``; see the module doc."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._cut = False
        self._stopped = False
        self.dropped_bytes = 0
        threading.Thread(target=self._accept, name="partition-accept", daemon=True).start()

    @property
    def address(self) -> str:
        """``https://127.0.0.1:<port>`` (the API server's certificate names 127.0.0.1)."""
        return f"https://127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Stop forwarding in both directions (connections stay open, bytes are lost)."""
        with self._lock:
            self._cut = True
            for link in self._links:
                link.spanned = True

    def heal(self) -> None:
        """Forward again; reset the connections that lived through the partition."""
        with self._lock:
            self._cut = False
            spanned = [link for link in self._links if link.spanned]
            for link in spanned:
                self._links.discard(link)
        for link in spanned:
            link.close()

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._stopped = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            links, self._links = list(self._links), set()
        for link in links:
            link.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._target, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            link = _Link(client, server)
            with self._lock:
                link.spanned = self._cut
                self._links.add(link)
            for src, dst in ((client, server), (server, client)):
                threading.Thread(
                    target=self._pump, args=(link, src, dst), name="partition-pump", daemon=True
                ).start()

    def _pump(self, link: _Link, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not link.closed.is_set():
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    dropping = self._cut or link.spanned
                    if dropping:
                        self.dropped_bytes += len(data)
                if not dropping:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._links.discard(link)
            link.close()

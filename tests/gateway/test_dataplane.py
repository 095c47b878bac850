"""The data plane listens on loopback only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox.gateway.dataplane import DataPlane

pytestmark = pytest.mark.cluster

_LISTEN = "0A"


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket ``pid`` listens on (IPv4 and IPv6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != _LISTEN or inode not in inodes:
                continue
            address, port = local.split(":")
            if table == "tcp":
                ip = ".".join(str(b) for b in reversed(bytes.fromhex(address)))
            else:
                ip = "::1" if address == "0" * 24 + "01000000" else address
            found.add((ip, int(port, 16)))
    return found


def test_contour_and_envoy_listen_on_loopback_only(gateway: DataPlane) -> None:
    pids = gateway.pids
    assert set(pids) == {"contour", "envoy"}
    sockets = {name: _listening(pid) for name, pid in pids.items()}
    assert sockets["contour"] and sockets["envoy"], sockets
    for name, found in sockets.items():
        assert {ip for ip, _ in found} == {"127.0.0.1"}, f"{name} listens on {found}"
    assert ("127.0.0.1", int(gateway.metrics_address.split(":")[1])) in sockets["envoy"]

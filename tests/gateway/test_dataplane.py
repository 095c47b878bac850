"""The data plane listens on loopback only; pod addresses live in the run's own netns."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from sandbox.controlplane import POD_CIDR
from sandbox.gateway.dataplane import DataPlane
from sandbox.gateway.podnet import NETNS_PREFIX, in_netns, remove_stale

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


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def test_pod_addresses_are_reached_only_through_the_runs_own_netns(gateway: DataPlane) -> None:
    net = gateway.pod_network
    assert net.name in _ip("netns", "list")
    route = _ip("route", "get", "10.244.0.5")
    assert f"via {net.peer_address} dev {net.host_device} " in route, route
    assert "10.244." not in _ip("route", "show", "table", "local"), "pod range local on host"
    assert f"local {POD_CIDR} dev lo" in _ip("-n", net.name, "route", "show", "table", "local")

    # A socket made in the namespace listens on a pod address the host cannot bind.
    with pytest.raises(OSError, match="Cannot assign requested address"):
        socket.create_server(("10.244.250.1", 0))
    server = in_netns(gateway.pod_netns, lambda: socket.create_server(("10.244.250.1", 0)))
    with server:
        port = server.getsockname()[1]
        with socket.create_connection(("10.244.250.1", port), timeout=5) as client:
            peer, _ = server.accept()
            with peer:
                client.sendall(b"ping")
                assert peer.recv(4) == b"ping"
                # The host reaches the pod address from its end of the veth.
                assert peer.getpeername()[0] == net.host_address


def test_namespaces_of_dead_runs_are_removed() -> None:
    stale = f"{NETNS_PREFIX}999999999"  # above the kernel's largest pid
    _ip("netns", "add", stale)
    try:
        remove_stale()
        assert stale not in _ip("netns", "list")
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True, check=False)

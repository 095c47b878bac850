"""kwok's pod addresses, inside a network namespace of their own.

kwok gives Pods IPs from its ``--cidr`` pool (``sandbox.controlplane.POD_CIDR``), and
Kubernetes refuses loopback addresses in EndpointSlices ("may not be in the loopback
range"), so the pool cannot be 127.x. Nothing may answer for those addresses in the
host's own network namespace either, so :class:`PodNetwork` creates one for this run::

    host namespace                          netns cbpods-<pid>
    Envoy, tests   -- veth cbh<pid> ----- cbn<pid> --   lo: local 10.244.0.0/16
    route 10.244.0.0/16 via 10.245.N.2      default via 10.245.N.1

Every pod IP is local inside the namespace (``ip route add local <cidr> dev lo``, the
way 127.0.0.0/8 is local), the backend simulator (``sandbox.gateway.backends``) binds
its listeners there with :func:`in_netns`, and the host reaches pod IPs only through
the veth pair. ``stop()`` (also run at exit) deletes the route, the veth and the
namespace; ``start()`` first removes what a killed earlier run left behind.

Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2's ``ip``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sandbox.controlplane import POD_CIDR
from sandbox.gateway.binaries import DataPlaneError

__all__ = ["NETNS_PREFIX", "PodNetwork", "in_netns", "remove_stale"]

NETNS_PREFIX = "cbpods-"
"""Every namespace this module creates is named ``cbpods-<pid of the creating process>``."""

_NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000
_T = TypeVar("_T")


def _log(message: str) -> None:
    print(f"[gateway] {message}", file=sys.stderr, flush=True)


def _ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    argv = ["ip", *(("-n", netns) if netns else ()), *args]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise DataPlaneError(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")
    return result.stdout


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns(CLONE_NEWNET): {os.strerror(errno)}")


def in_netns(name: str, make: Callable[[], _T]) -> _T:
    """Call ``make()`` in network namespace ``name`` and return what it returns.

    Python 3.11 has no ``os.setns``, so this calls libc's ``setns`` in a thread of its
    own: a thread's network namespace is its own, the rest of the process stays where it
    is. Sockets ``make()`` creates keep that namespace for their whole life, so any
    thread (or an event loop) can serve them afterwards. The thread switches back before
    it ends; should that fail, it ends anyway and takes the namespace with it.
    """
    result: list[_T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            try:
                target = os.open(_NETNS_DIR / name, os.O_RDONLY)
                try:
                    _setns(target)
                finally:
                    os.close(target)
                try:
                    result.append(make())
                finally:
                    _setns(home)
            finally:
                os.close(home)
        except BaseException as exc:  # handed to the caller below
            error.append(exc)

    thread = threading.Thread(target=run, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PodNetwork:
    """A network namespace holding every pod address of ``cidr``, joined to the host by veth.

    Attributes:
        name: the namespace's name (``cbpods-<pid>``), for :func:`in_netns`.
        host_device: the veth end in the host namespace that routes ``cidr``.
    """

    def __init__(self, cidr: str = POD_CIDR) -> None:
        """Prepare (not create) the namespace for this process."""
        pid = os.getpid()
        self.cidr = cidr
        self.name = f"{NETNS_PREFIX}{pid}"
        self.host_device = f"cbh{pid}"  # interface names are at most 15 characters
        self._peer_device = f"cbn{pid}"
        # A /30 for the two veth ends; the third octet only keeps runs apart in logs.
        subnet = pid % 256
        self.host_address = f"10.245.{subnet}.1"
        self.peer_address = f"10.245.{subnet}.2"
        self._created = False

    def start(self) -> None:
        """Create the namespace, the veth pair and the routes; check the host's route.

        Raises:
            DataPlaneError: not root, ``ip`` missing, or the route to the pods does not
                go through the veth; whatever was created is removed again.
        """
        if os.geteuid() != 0:
            raise DataPlaneError(
                "the Gateway data plane puts kwok's pod addresses in a network namespace "
                "of its own (ip netns add + veth), which needs root; run the gateway "
                "tests as root"
            )
        remove_stale()
        try:
            self._create()
            self._check_route()
        except BaseException:
            self.stop()
            raise
        _log(f"pod addresses {self.cidr} live in netns {self.name} (via {self.host_device})")

    def stop(self) -> None:
        """Delete the host route, the veth pair and the namespace; safe to call twice."""
        if not self._created:
            return
        _remove(self.name, self.host_device, self.cidr)
        self._created = False
        atexit.unregister(self.stop)

    def _create(self) -> None:
        self._created = True
        atexit.register(self.stop)  # also when the session ends without a teardown
        ns, host, peer = self.name, self.host_device, self._peer_device
        _ip("netns", "add", ns)
        _ip("link", "add", host, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", ns)
        _ip("addr", "add", f"{self.host_address}/30", "dev", host)
        _ip("link", "set", host, "up")
        _ip("link", "set", "lo", "up", netns=ns)
        _ip("addr", "add", f"{self.peer_address}/30", "dev", peer, netns=ns)
        _ip("link", "set", peer, "up", netns=ns)
        # Inside the namespace every pod IP is local, so sockets can bind to any of them.
        _ip("route", "add", "local", self.cidr, "dev", "lo", netns=ns)
        _ip("route", "add", "default", "via", self.host_address, netns=ns)
        _ip("route", "add", self.cidr, "via", self.peer_address, "dev", host)

    def _check_route(self) -> None:
        probe = self.cidr.split("/")[0].rsplit(".", 1)[0] + ".5"
        route = _ip("route", "get", probe).strip()
        if f" dev {self.host_device} " not in f"{route} ":
            raise DataPlaneError(
                f"the host's route to the pod address {probe} must go through "
                f"{self.host_device} into netns {self.name}, and `ip route get {probe}` "
                f"says: {route!r}; remove the other route to {self.cidr} (e.g. "
                f"`ip route del local {self.cidr} dev lo`)"
            )


def _remove(name: str, host_device: str, cidr: str) -> None:
    """Remove one namespace and what goes with it, tolerating parts already gone."""
    _ip("route", "del", cidr, "dev", host_device, check=False)
    _ip("link", "del", host_device, check=False)  # deletes its peer as well
    _ip("netns", "del", name, check=False)


def remove_stale() -> None:
    """Remove the namespaces (and their veth and route) of runs that no longer exist."""
    if not _NETNS_DIR.is_dir():
        return
    for path in _NETNS_DIR.glob(f"{NETNS_PREFIX}*"):
        pid_text = path.name.removeprefix(NETNS_PREFIX)
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        _log(f"removing netns {path.name}, left behind by an earlier run")
        with contextlib.suppress(DataPlaneError):
            _remove(path.name, f"cbh{pid_text}", POD_CIDR)

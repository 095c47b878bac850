"""Where webhooks may connect, and how a URL is shown to people.

A webhook URL is written by whoever can write a CanaryRelease or a profile, and the call
is made from inside the cluster with canary-bot's network position. So the address a
hook resolves to is checked at call time, on the resolved address itself (a name that
resolved to an allowed address at validation time may resolve elsewhere later: DNS
rebinding), and the connection goes to exactly the address that was checked.

Default policy (decided for a cluster where hooks are in-cluster Services):

- refused: link-local addresses (``169.254.0.0/16``, ``fe80::/10``), which include the
  cloud metadata services of AWS, GCP, Azure and others (``169.254.169.254``), AWS's IPv6
  metadata address ``fd00:ec2::254``, Alibaba Cloud's ``100.100.100.200``, the
  "this host" addresses ``0.0.0.0/8`` and ``::``, and metadata host names such as
  ``metadata.google.internal``;
- allowed: everything else, loopback and private ranges included (in-cluster Services,
  a load tester next to the engine).

``allow`` CIDRs open refused ranges (e.g. NodeLocal DNSCache's ``169.254.20.10/32``);
``deny`` CIDRs refuse more (e.g. ``127.0.0.0/8`` where no hook runs on the engine's host).
``allow`` wins where the two overlap. Metadata host names are refused whatever the lists
say: no hook needs them, and their addresses can be allowed by IP if one ever does.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES: tuple[str, ...] = (
    "169.254.169.254/32",  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean
    "fd00:ec2::254/128",  # AWS IPv6
    "100.100.100.200/32",  # Alibaba Cloud
)
LINK_LOCAL: tuple[str, ...] = ("169.254.0.0/16", "fe80::/10")
THIS_HOST: tuple[str, ...] = ("0.0.0.0/8", "::/128")
METADATA_NAMES: frozenset[str] = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
        "metadata.platformequinix.com",
    }
)

_WHY = {
    "metadata": "a cloud metadata address",
    "link-local": "a link-local address",
    "this-host": "an unspecified (this host) address",
    "denied": "in a range the webhook policy denies",
}


class AddressRefused(OSError):
    """A webhook's host resolved only to addresses the policy refuses.

    An ``OSError`` so that aiohttp's connector reports it like any other resolution
    failure (``ClientConnectorError`` with this as ``os_error``).
    """


def parse_networks(values: Iterable[str], what: str = "CIDR") -> tuple[IPNetwork, ...]:
    """``["10.0.0.0/8", "fd00::/8"]`` as networks; ValueError naming a bad entry."""
    networks = []
    for value in values:
        text = value.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(
                f"{value!r} is not a {what}; write an address range such as 10.0.0.0/8, "
                "169.254.20.10/32 or fd00::/8"
            ) from None
    return tuple(networks)


def _plain(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (``::ffff:169.254.169.254``) as the IPv4 one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# In order: the first matching kind names the refusal (metadata before link-local).
_REFUSED: tuple[tuple[str, tuple[IPNetwork, ...]], ...] = (
    ("metadata", parse_networks(METADATA_ADDRESSES)),
    ("link-local", parse_networks(LINK_LOCAL)),
    ("this-host", parse_networks(THIS_HOST)),
)


@dataclass(frozen=True)
class EgressPolicy:
    """Which addresses webhooks may connect to (see the module docstring)."""

    allow: tuple[IPNetwork, ...] = ()
    deny: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_strings(cls, allow: Sequence[str] = (), deny: Sequence[str] = ()) -> EgressPolicy:
        """A policy from CIDR strings (config file or environment)."""
        return cls(allow=parse_networks(allow), deny=parse_networks(deny))

    def refusal(self, address: str) -> str | None:
        """Why ``address`` may not be called, or None when it may."""
        try:
            ip = _plain(ipaddress.ip_address(address.split("%", 1)[0]))
        except ValueError:
            return f"{address} is not an IP address"
        if any(ip in net for net in self.allow if net.version == ip.version):
            return None
        for kind, networks in (*_REFUSED, ("denied", self.deny)):
            if any(ip in net for net in networks if net.version == ip.version):
                return f"{ip} is {_WHY[kind]}"
        return None

    def host_refusal(self, host: str) -> str | None:
        """Why a URL's host may not be called before resolving it (names and literals)."""
        name = host.strip("[]").rstrip(".").lower()
        if name in METADATA_NAMES:
            return f"{name} is a cloud metadata host name"
        try:
            ipaddress.ip_address(name.split("%", 1)[0])
        except ValueError:
            return None  # a name: checked once resolved
        return self.refusal(name)


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` and keeps only the addresses the policy allows.

    aiohttp connects to the addresses a resolver returns, so what was checked is what is
    connected to. No allowed address left: ``AddressRefused``.
    """

    def __init__(self, policy: EgressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The allowed addresses of ``host``."""
        refused = self.policy.host_refusal(host)
        if refused is not None:
            raise AddressRefused(f"{host}: {refused}")
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if self.policy.refusal(r["host"]) is None]
        if not allowed:
            reasons = sorted({self.policy.refusal(r["host"]) or "" for r in results})
            raise AddressRefused(
                f"{host} resolves only to refused addresses ({'; '.join(reasons) or 'none'})"
            )
        return allowed

    async def close(self) -> None:
        """Close the inner resolver."""
        await self._inner.close()


# -- showing URLs ----------------------------------------------------------------------

# Path segments this long with letters and digits are treated as tokens (Slack's
# /services/T…/B…/<token>, Discord's /api/webhooks/<id>/<token>).
_TOKENISH = re.compile(r"^(?=.*[A-Za-z])(?=.*\d)[A-Za-z0-9_\-]{16,}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def mask_url(url: str) -> str:
    """``url`` safe to show: no user info, every query value and token-like segment ``***``.

    ``http://bot:pw@hooks.example.com/services/T0/B0/abcdEFGH12345678xyz?token=1&x=2``
    becomes ``http://***@hooks.example.com/services/T0/B0/***?token=***&x=***``.
    """
    try:
        parts = urlsplit(plain_text(url, 2048))
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(unparsable URL)"
    if ":" in host:
        host = f"[{host}]"
    netloc = ("***@" if "@" in parts.netloc else "") + host + (f":{port}" if port else "")
    path = "/".join("***" if _TOKENISH.match(seg) else seg for seg in parts.path.split("/"))
    query = "&".join(f"{key}=***" for key, _ in parse_qsl(parts.query, keep_blank_values=True))
    scheme = f"{parts.scheme}://" if parts.scheme else ""
    return f"{scheme}{netloc}{path}" + (f"?{query}" if query else "")


def has_credentials(url: str) -> bool:
    """Whether ``url`` carries user info or a credential-looking query parameter."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return True
    secret_names = ("token", "key", "secret", "pass", "auth", "sig", "code", "credential")
    return any(
        any(word in name.lower() for word in secret_names)
        for name, _ in parse_qsl(parts.query, keep_blank_values=True)
    )


def plain_text(text: str, limit: int) -> str:
    """``text`` on one line, without control or bidi characters, at most ``limit`` chars."""
    flat = " ".join(_CONTROL.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>)]+")


def error_text(exc: BaseException, limit: int = 300, *, urls: str | None = None) -> str:
    """``Type: message`` of ``exc``, safe for a log line: on one line, at most ``limit``
    characters, every URL in it masked (``mask_url``), or replaced by ``urls`` when given
    (for messages that must never show a URL at all, such as a webhook's)."""
    message = _URL_IN_TEXT.sub(
        lambda m: urls if urls is not None else mask_url(m.group(0)), str(exc)
    )
    name = type(exc).__name__
    return plain_text(f"{name}: {message}" if message else name, limit)


def describe_refusal(exc: BaseException) -> str | None:
    """The policy's words when ``exc`` (or its cause) is an ``AddressRefused``."""
    seen: set[int] = set()
    current: Any = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, AddressRefused):
            return str(current)
        current = getattr(current, "os_error", None) or current.__cause__
    return None


__all__ = [
    "AddressRefused",
    "EgressPolicy",
    "GuardedResolver",
    "describe_refusal",
    "error_text",
    "has_credentials",
    "mask_url",
    "parse_networks",
    "plain_text",
]

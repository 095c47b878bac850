"""The canary split ingress-nginx derives from the canary Ingress's annotations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ANNOTATION_PREFIX = "nginx.ingress.kubernetes.io/"


@dataclass(frozen=True)
class CanaryRouting:
    """The canary configuration ingress-nginx derives from the canary Ingress.

    ``enabled`` is False when there is no canary Ingress or its ``canary`` annotation
    is not ``"true"``; then every request goes to the stable upstream.
    """

    enabled: bool = False
    weight: float = 0.0
    weight_total: float = 100.0
    header: str | None = None
    header_value: str | None = None
    header_pattern: str | None = None
    cookie: str | None = None
    backend_service: str | None = None
    backend_port: str | None = None

    @classmethod
    def weighted(cls, weight: float, total: float = 100.0) -> CanaryRouting:
        """Plain weight-based routing, as Flagger sets it during an analysis."""
        return cls(enabled=True, weight=weight, weight_total=total)

    @classmethod
    def from_ingress(cls, ingress: Any) -> CanaryRouting:
        """Read a ``V1Ingress`` (or None for a missing Ingress) like ingress-nginx does."""
        if ingress is None:
            return cls()
        annotations: dict[str, str] = dict(ingress.metadata.annotations or {})
        service, port = _first_backend(ingress)
        return cls.from_annotations(annotations, backend_service=service, backend_port=port)

    @classmethod
    def from_annotations(
        cls,
        annotations: Mapping[str, str],
        *,
        backend_service: str | None = None,
        backend_port: str | None = None,
    ) -> CanaryRouting:
        """Interpret ``nginx.ingress.kubernetes.io/canary*`` annotations."""

        def get(name: str) -> str | None:
            value = annotations.get(ANNOTATION_PREFIX + name)
            return value if value else None

        if (get("canary") or "").strip().lower() != "true":
            return cls(backend_service=backend_service, backend_port=backend_port)
        # ingress-nginx ignores a malformed number and falls back to the default.
        weight = _int_or(get("canary-weight"), 0)
        total = _int_or(get("canary-weight-total"), 100)
        if total <= 0:
            total = 100
        return cls(
            enabled=True,
            weight=float(max(weight, 0)),
            weight_total=float(total),
            header=get("canary-by-header"),
            header_value=get("canary-by-header-value"),
            header_pattern=get("canary-by-header-pattern"),
            cookie=get("canary-by-cookie"),
            backend_service=backend_service,
            backend_port=backend_port,
        )

    @property
    def weight_share(self) -> float:
        """Fraction of weight-routed requests sent to the canary."""
        if not self.enabled or self.weight_total <= 0:
            return 0.0
        return min(max(self.weight / self.weight_total, 0.0), 1.0)

    def canary_share(self, header_share: float = 0.0, cookie_share: float = 0.0) -> float:
        """Fraction of all requests routed to the canary.

        ``header_share`` of the requests carry the canary header (with the configured
        value, or ``always``) and ``cookie_share`` carry the canary cookie set to
        ``always``. The header is looked at first, then the cookie, then the weight;
        shares only count when the matching annotation is present.
        """
        if not self.enabled:
            return 0.0
        remaining = 1.0
        share = 0.0
        if self.header:
            share += remaining * header_share
            remaining *= 1.0 - header_share
        if self.cookie:
            share += remaining * cookie_share
            remaining *= 1.0 - cookie_share
        return share + remaining * self.weight_share


def _int_or(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    try:
        return int(raw.strip())
    except ValueError:
        return default


def _first_backend(ingress: Any) -> tuple[str | None, str | None]:
    spec = ingress.spec
    backend = None
    for rule in (spec.rules or []) if spec is not None else []:
        paths = rule.http.paths if rule.http is not None else []
        if paths:
            backend = paths[0].backend
            break
    if backend is None and spec is not None:
        backend = spec.default_backend
    if backend is None or backend.service is None:
        return None, None
    port = backend.service.port
    port_text = None
    if port is not None:
        port_text = str(port.number) if port.number is not None else port.name
    name: str | None = backend.service.name
    return name, port_text

"""A real Gateway API data plane for tests and the sandbox: Contour, Envoy and backends
that answer for kwok's pods (see ``dataplane`` and ``backends``)."""

"""An ingress-nginx data-plane simulator.

A :class:`TrafficSimulator` stands in for the ingress controller in front of one
Ingress. Every tick it reads the canary Ingress (``<ingress>-canary``) from the
Kubernetes API, produces a steady stream of synthetic requests split between the
stable and the canary upstream exactly as the canary annotations say, applies the
error rate and latency configured for each side, and exports what ingress-nginx would
export for those requests:

* ``nginx_ingress_controller_requests`` (counter)
* ``nginx_ingress_controller_request_duration_seconds`` (histogram, default buckets)
* ``nginx_ingress_controller_response_duration_seconds`` (histogram; Flagger's
  request-duration check reads its ``_sum`` and ``_count``)

with ingress-nginx's label set. Series are labelled with the *main* Ingress name for
both sides; the ``canary`` label holds the canary upstream name on the canary side and
is empty on the stable side, which is what the Flagger queries filter on.

Counts are deterministic: request, canary-share and error fractions are carried over
from tick to tick instead of being drawn at random, so a 50 % error rate yields 50 % of
the requests as 5xx, give or take one request.

Settings can be changed at runtime through the Python API or the HTTP control
endpoint (``GET``/``POST /control``) served next to ``/metrics

The package: :mod:`~sandbox.traffic.settings` (each side's behaviour, validated),
:mod:`~sandbox.traffic.routing` (the split ingress-nginx derives from the canary
Ingress), :mod:`~sandbox.traffic.metrics` (the exported series),
:mod:`~sandbox.traffic.simulator` (:class:`TrafficSimulator`),
:mod:`~sandbox.traffic.control` (the HTTP endpoint) and :mod:`~sandbox.traffic.cli`.
"""

from sandbox.traffic.cli import main
from sandbox.traffic.metrics import (
    DEFAULT_BUCKETS,
    LABEL_NAMES,
    REQUEST_DURATION,
    REQUESTS,
    RESPONSE_DURATION,
)
from sandbox.traffic.routing import ANNOTATION_PREFIX, CanaryRouting
from sandbox.traffic.settings import SIDES, ControlError, Side, SideSettings
from sandbox.traffic.simulator import TrafficSimulator

__all__ = [
    "ANNOTATION_PREFIX",
    "DEFAULT_BUCKETS",
    "LABEL_NAMES",
    "REQUESTS",
    "REQUEST_DURATION",
    "RESPONSE_DURATION",
    "SIDES",
    "CanaryRouting",
    "ControlError",
    "Side",
    "SideSettings",
    "TrafficSimulator",
    "main",
]

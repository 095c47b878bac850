"""Metric checks: measure a release's analysis metrics in Prometheus and judge them.

This is the only module that imports ``prometheus_api_client``. Its calls block, so each
query runs in one of the provider's own worker threads and the event loop stays free.

Built-in metrics read the series the release's data plane exports (``spec.provider``;
their PromQL lives in ``rollout.providers``):

- ``request-success-rate``: non-5xx request rate / all request rate x 100, in percent.
- ``request-duration``: the real 99th percentile of the request duration histogram, in
  milliseconds (Flagger's nginx query is a mean; a percentile is what its docs promise).
  It is only as fine as the data plane's histogram buckets: with ingress-nginx's default
  buckets (…, 0.1, 0.25, 0.5, 1 s, …) requests that all take 300 ms read as a p99 of
  about 497 ms, the top of their bucket. Give the controller finer ``--time-buckets``
  when thresholds sit inside one bucket.

Judgement, in order: no value (empty result, NaN, Inf) fails with Flagger's "no values
found" wording; a value outside ``thresholdRange`` fails; with ``compareToStable`` a
canary worse than the stable side by more than the tolerance fails too. ``failFast`` marks
a value so far off that the engine should roll back at once instead of counting checks.
A Prometheus that cannot be queried fails the check with the reason, never the URL.

What one query may make the engine read is bounded (``rollout.promresult``): a larger
answer fails the check with a message that says to aggregate the query.

``PrometheusProvider.query_range`` runs the same queries over a time range, for the
end-of-rollout chart (``rollout.timeline``).
"""

from __future__ import annotations

import ast
import asyncio
import functools
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from rollout import providers
from rollout.decision import Measurement
from rollout.models import CanaryRelease, Metric
from rollout.promresult import MAX_RESULT_BYTES as MAX_RESULT_BYTES
from rollout.promresult import MAX_SAMPLES as MAX_SAMPLES
from rollout.promresult import MAX_SERIES as MAX_SERIES
from rollout.promresult import ResultTooLarge as ResultTooLarge
from rollout.promresult import UnusableResult as UnusableResult
from rollout.promresult import bounded_body, range_samples, sample_value

log = logging.getLogger("canary_bot.analysis")

_T = TypeVar("_T")

# The built-in metric names (their queries: rollout.providers, per data plane).
REQUEST_SUCCESS_RATE = providers.REQUEST_SUCCESS_RATE
REQUEST_DURATION = providers.REQUEST_DURATION
BUILTIN_METRICS = providers.BUILTIN_METRICS

_LOAD_TEST_HINT = (
    "add a load-test webhook (type rollout, e.g. flagger-loadtester running hey against "
    "the ingress host) so the canary gets requests"
)
_CUSTOM_HINT = "; check that the query returns data for this release"

# Queries in flight at once (threads and pooled connections). asyncio's default pool
# has cores + 4 threads, shared with everything else: at 1000 releases ticking every
# 10 s (100 queries/s) its queue, not Prometheus, would set the analysis's pace.
QUERY_WORKERS = 16

# Errors from Prometheus are user-visible; keep them to one readable line.
_MAX_ERROR_CHARS = 300


class QueryTemplateError(ValueError):
    """A query template uses a variable that is not defined, or is malformed."""


@dataclass(frozen=True)
class QueryContext:
    """Where a release's traffic shows up: the names the queries are built from."""

    namespace: str
    target: str
    ingress: str
    service: str
    port: int
    release: str
    # whose metrics the built-ins read (``spec.provider``; None: a routeRef without one)
    provider: str | None = "nginx"
    route: str = ""

    @classmethod
    def of(cls, release: CanaryRelease) -> QueryContext:
        """The names ``release``'s traffic is reported under (the analysis and the chart
        query the same ones)."""
        return cls(
            namespace=release.metadata.namespace,
            target=release.spec.target_ref.name,
            ingress=release.spec.ingress_ref.name if release.spec.ingress_ref else "",
            service=release.spec.target_ref.name,
            port=release.spec.service.port,
            release=release.metadata.name,
            provider=release.spec.metrics_provider,
            route=release.spec.route_ref.name if release.spec.route_ref else "",
        )

    @property
    def canary(self) -> str:
        """The canary upstream as ingress-nginx names it (the ``canary`` label's value)."""
        return f"{self.namespace}-{self.target}-canary-{self.port}"


class MetricProvider(Protocol):
    """Measures one analysis metric of a release."""

    async def measure(self, ctx: QueryContext, metric: Metric) -> Measurement:
        """Query and judge ``metric``; never raises for a failed query (ok=False)."""
        ...


# -- query rendering ---------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)?)\s*\}\}")


def render_query(template: str, variables: Mapping[str, str]) -> str:
    """Fill Flagger-style ``{{ name }}`` placeholders in a PromQL template.

    ``variables`` maps placeholder names to values; user variables are keyed
    ``variables.<name>`` (written ``{{ variables.<name> }}`` in the template, as in
    Flagger). Raises ``QueryTemplateError`` naming every unknown placeholder, or an
    opening ``{{`` that is not a placeholder, so a typo fails loudly instead of sending
    a broken query.
    """
    unknown = sorted({m.group(1) for m in _PLACEHOLDER.finditer(template)} - set(variables))
    if unknown:
        known = ", ".join(sorted(variables)) or "none"
        names = ", ".join(f"{{{{ {name} }}}}" for name in unknown)
        raise QueryTemplateError(f"unknown template variable {names}; known: {known}")
    rendered = _PLACEHOLDER.sub(lambda m: variables[m.group(1)], template)
    leftover = _PLACEHOLDER.sub("", template)
    if "{{" in leftover:
        start = leftover.find("{{")
        raise QueryTemplateError(
            f"malformed template placeholder near {leftover[start : start + 40]!r}; "
            "write {{ name }} with a variable name"
        )
    return rendered


#: Every ``{{ variable }}`` a query template can use, with its meaning (docs/metrics.md is
#: generated from this). The first seven are Flagger's, with Flagger's values: a Flagger
#: Canary is named after its target, so ``name`` is the target's name, not the release's.
TEMPLATE_VARIABLES: dict[str, str] = {
    "name": "the target Deployment's name (Flagger: the Canary's name, which is the target's)",
    "namespace": "the release's namespace",
    "target": "the target Deployment's name (`spec.targetRef.name`)",
    "service": "the stable Service's name (the target's name)",
    "ingress": "the main Ingress's name (`spec.ingressRef.name`)",
    "route": "the `routeRef`'s name (without one: the target's name, as Flagger gives it)",
    "interval": "the metric's `interval` (the rate window), e.g. `1m`",
    "variables.<key>": "the metric's `templateVariables` entry `<key>` (Flagger's variables map)",
    "canary": "canary-bot only: the canary upstream as ingress-nginx labels it "
    "(`<namespace>-<target>-canary-<port>`, the `canary` label's value)",
    "release": "canary-bot only: the CanaryRelease's name (e.g. `podinfo-x7k2p`)",
}


def query_variables(ctx: QueryContext, metric: Metric) -> dict[str, str]:
    """The variables a custom query of ``metric`` can use (see ``TEMPLATE_VARIABLES``)."""
    variables = {
        "name": ctx.target,
        "namespace": ctx.namespace,
        "target": ctx.target,
        "service": ctx.service,
        "ingress": ctx.ingress,
        "route": ctx.route or ctx.target,
        "interval": metric.interval,
        "canary": ctx.canary,
        "release": ctx.release,
    }
    variables.update({f"variables.{k}": v for k, v in metric.template_variables.items()})
    return variables


def builtin_query(ctx: QueryContext, name: str, interval: str, *, stable: bool = False) -> str:
    """The PromQL of a built-in metric for the canary side (or the stable side), as the
    release's data plane (``ctx.provider``) exports it."""
    service = ctx.service if stable else f"{ctx.target}-canary"
    side = providers.Side(ctx.namespace, ctx.ingress, service, ctx.port, canary=not stable)
    return providers.builtin_query(ctx.provider, side, name, interval)


# -- judgement (pure) --------------------------------------------------------------------


def _format_value(name: str, value: float) -> str:
    if name == REQUEST_SUCCESS_RATE:
        return f"{value:.2f}%"
    if name == REQUEST_DURATION:
        return f"{value:.0f}ms" if abs(value) >= 10 else f"{value:.1f}ms"
    return f"{value:.4g}"


def _comparison_failure(name: str, value: float, stable: float, tolerance: float) -> str | None:
    """Why the canary is worse than stable beyond ``tolerance``, or None when it is not."""
    if name == REQUEST_SUCCESS_RATE:
        drop = stable - value
        if drop > tolerance:
            return f"{drop:.2f} points below stable, tolerance {tolerance:g}"
        return None
    if name == REQUEST_DURATION:
        if stable <= 0:
            return None
        rise = (value - stable) / stable * 100
        if rise > tolerance:
            return f"{rise:.0f}% slower than stable, tolerance {tolerance:g}%"
        return None
    return None


def no_value_message(ctx: QueryContext, metric: Metric) -> str:
    """Flagger's wording for a metric without data, with a hint on what to do."""
    builtin = _is_builtin(metric)
    return (
        f"no values found for {(ctx.provider or 'built-in') if builtin else 'custom'} metric {metric.name} "
        f"probably {ctx.target}.{ctx.namespace} is not receiving traffic: {_LOAD_TEST_HINT}"
        f"{'; ' + providers.no_values_hint(ctx.provider) if builtin else _CUSTOM_HINT}"
    )


def judge(
    ctx: QueryContext,
    metric: Metric,
    value: float | None,
    stable_value: float | None,
    query: str,
) -> Measurement:
    """Turn measured values into a verdict and a message a person can act on."""
    if value is None:
        return _failed(metric, no_value_message(ctx, metric), query)
    threshold = metric.threshold_range
    shown = f"{metric.name} {_format_value(metric.name, value)}"
    if stable_value is not None:
        shown += f" vs stable {_format_value(metric.name, stable_value)}"
    # The threshold is always shown; only reasons beyond it are spelled out.
    problems: list[str] = []
    ok = threshold.contains(value)
    notes: list[str] = []
    if metric.compare_to_stable is not None:
        if not _is_builtin(metric):
            notes.append("compareToStable applies to built-in metrics only")
        elif stable_value is None:
            notes.append("stable side has no data, compared with the threshold only")
        else:
            worse = _comparison_failure(metric.name, value, stable_value, metric.compare_to_stable)
            if worse:
                problems.append(worse)
    fail_fast = False
    if metric.fail_fast is not None and not metric.fail_fast.contains(value):
        fail_fast = True
        problems.append(f"beyond fail-fast range {metric.fail_fast.describe()}")
    detail = "; ".join([f"threshold {threshold.describe()}", *problems, *notes])
    return Measurement(
        name=metric.name,
        value=value,
        stable_value=stable_value,
        ok=ok and not problems,
        fail_fast=fail_fast,
        message=f"{shown} ({detail})",
        threshold=threshold.describe(),
        query=query,
    )


def _failed(metric: Metric, message: str, query: str = "") -> Measurement:
    """A check that produced no usable value."""
    threshold = metric.threshold_range.describe()
    return Measurement(metric.name, None, None, False, False, message, threshold, query)


def _is_builtin(metric: Metric) -> bool:
    return metric.query is None and metric.template_ref is None and metric.name in BUILTIN_METRICS


# -- Prometheus --------------------------------------------------------------------------


class PrometheusUnavailable(Exception):
    """Prometheus could not answer a query; the message is safe to show to people."""


def _describe_api_error(exc: PrometheusApiClientException) -> str:
    """Prometheus's own error text (``bad_data: parse error …``) without the raw bytes.

    The client reports ``HTTP Status Code 400 (b'<body>')``: the body is a bytes repr.
    """
    match = re.match(r"HTTP Status Code (\d+) \((b'.*'|b\".*\")\)$", str(exc), re.DOTALL)
    if not match:
        return str(exc)[:_MAX_ERROR_CHARS]
    status, body = match.group(1), match.group(2)
    try:
        raw = ast.literal_eval(body)
        payload = json.loads(raw)
        detail = f"{payload.get('errorType', 'error')}: {payload.get('error', '')}"
    except (ValueError, SyntaxError, AttributeError, TypeError):
        detail = body[2:-1]
    return f"HTTP {status}, {detail}"[:_MAX_ERROR_CHARS]


def _settled_session(url: str, auth: tuple[str, str] | None) -> requests.Session:
    """A session with the environment's settings for ``url`` (proxies and no_proxy, CA
    bundle, ``.netrc`` credentials) read once, here: requests would otherwise look them
    all up again, ``.netrc`` file included, for every query."""
    session = requests.Session()
    settings = session.merge_environment_settings(url, {}, None, None, None)
    session.proxies.update(settings["proxies"])
    session.verify = settings["verify"]
    if auth is None:
        netrc = requests.utils.get_netrc_auth(url)
        if netrc is not None:
            session.auth = netrc
    session.trust_env = False
    return session


class PrometheusProvider:
    """``MetricProvider`` over a Prometheus server's HTTP API.

    ``url`` may carry basic-auth credentials (``https://user:pass@prom``); they are moved
    to the request's auth and never appear in a message. ``templates`` maps a metric's
    ``templateRef.name`` to a PromQL template. ``timeout`` bounds one query in seconds.
    """

    def __init__(
        self,
        url: str,
        templates: Mapping[str, str] | None = None,
        timeout: float = 10,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        parts = urlsplit(url)
        auth: tuple[str, str] | None = None
        if parts.username is not None:
            auth = (parts.username, parts.password or "")
            host = parts.hostname or ""
            netloc = f"{host}:{parts.port}" if parts.port else host
            parts = parts._replace(netloc=netloc)
        self._url = urlunsplit(parts).rstrip("/")
        self._templates = dict(templates or {})
        self._timeout = timeout
        # The client's default retries back off for seconds on 5xx; one quick retry covers
        # a blip without stalling the analysis tick.
        # raise_on_status=False hands the last 5xx answer back, so its error text is shown.
        retry = Retry(
            total=1, backoff_factor=0.2, status_forcelist=[502, 503, 504], raise_on_status=False
        )
        session = _settled_session(self._url, auth)
        session.hooks["response"].append(bounded_body)
        self._client = PrometheusConnect(
            url=self._url,
            headers=dict(headers or {}) or None,
            retry=retry,
            auth=auth,
            session=session,
        )
        # one pooled connection per worker (the client's adapter keeps 10)
        session.mount(self._url, HTTPAdapter(max_retries=retry, pool_maxsize=QUERY_WORKERS))
        self._executor = ThreadPoolExecutor(QUERY_WORKERS, thread_name_prefix="prometheus")

    @property
    def url(self) -> str:
        """The server's base URL, without credentials."""
        return self._url

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._client.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def query_sync(self, promql: str) -> float | None:
        """Run an instant query (blocking); None when it has no finite value.

        Raises ``PrometheusUnavailable`` with a readable reason when Prometheus could not
        be queried, ``UnusableResult`` when the answer is not a single number.
        """
        result = self._guarded(lambda: self._client.custom_query(promql, timeout=self._timeout))
        return sample_value(result)

    async def query(self, promql: str) -> float | None:
        """``query_sync`` in a worker thread."""
        call = functools.partial(self.query_sync, promql)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def query_range_sync(
        self, promql: str, start: datetime, end: datetime, step_seconds: float
    ) -> list[tuple[datetime, float]]:
        """Run a range query (blocking): ``(time, value)`` samples of its one series.

        Prometheus's query_range API evaluates ``promql`` every ``step_seconds`` from
        ``start`` to ``end`` (both rounded to whole seconds by the client). An empty
        result is an empty list; errors are raised as by ``query_sync``.
        """
        if step_seconds <= 0:
            raise ValueError(f"step_seconds must be positive, got {step_seconds!r}")
        result = self._guarded(
            lambda: self._client.custom_query_range(
                promql,
                start_time=start,
                end_time=end,
                step=f"{step_seconds:g}",
                timeout=self._timeout,
            )
        )
        return range_samples(result)

    async def query_range(
        self, promql: str, start: datetime, end: datetime, step_seconds: float
    ) -> list[tuple[datetime, float]]:
        """``query_range_sync`` in a worker thread."""
        call = functools.partial(self.query_range_sync, promql, start, end, step_seconds)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _guarded(self, call: Callable[[], _T]) -> _T:
        """Run one client call; failures become ``PrometheusUnavailable`` with a reason."""
        try:
            return call()
        except PrometheusApiClientException as exc:
            raise PrometheusUnavailable(_describe_api_error(exc)) from None
        except requests.Timeout:
            raise PrometheusUnavailable(f"no answer within {self._timeout:g}s") from None
        except requests.ConnectionError as exc:
            raise PrometheusUnavailable(f"connection failed ({_root_cause(exc)})") from None
        except requests.RequestException as exc:
            raise PrometheusUnavailable(type(exc).__name__) from None
        except UnusableResult:
            raise
        except ValueError:  # the answer was not JSON: not a Prometheus API
            raise PrometheusUnavailable("the answer was not Prometheus API JSON") from None

    def render(self, ctx: QueryContext, metric: Metric) -> str:
        """The canary-side PromQL of ``metric``: inline query, template, or built-in."""
        if metric.query is not None:
            return render_query(metric.query, query_variables(ctx, metric))
        if metric.template_ref is not None:
            template = self._templates.get(metric.template_ref.name)
            if template is None:
                known = ", ".join(sorted(self._templates)) or "none configured"
                raise QueryTemplateError(
                    f"metric template {metric.template_ref.name!r} is not defined "
                    f"(known templates: {known})"
                )
            return render_query(template, query_variables(ctx, metric))
        return builtin_query(ctx, metric.name, metric.interval)

    async def measure(self, ctx: QueryContext, metric: Metric) -> Measurement:
        """Query the canary side (and the stable side in comparison mode) and judge."""
        try:
            query = self.render(ctx, metric)
        except ValueError as exc:
            return _failed(metric, f"{metric.name} cannot be measured: {exc}")
        compare = metric.compare_to_stable is not None and _is_builtin(metric)
        try:
            if compare:
                stable_query = builtin_query(ctx, metric.name, metric.interval, stable=True)
                value, stable_value = await asyncio.gather(
                    self.query(query), self.query(stable_query)
                )
            else:
                value, stable_value = await self.query(query), None
        except PrometheusUnavailable as exc:
            log.warning(
                "metric query failed",
                extra={
                    "namespace": ctx.namespace,
                    "release": ctx.release,
                    "metric": metric.name,
                    "error": str(exc),
                },
            )
            return _failed(metric, f"{metric.name}: Prometheus could not be queried: {exc}", query)
        except UnusableResult as exc:
            return _failed(metric, f"{metric.name}: {exc}", query)
        return judge(ctx, metric, value, stable_value, query)


_CONNECTION_REASONS = (
    "connection refused",
    "name or service not known",
    "temporary failure in name resolution",
    "no route to host",
    "connection reset",
    "certificate verify failed",
    "timed out",
)


def _root_cause(exc: requests.ConnectionError) -> str:
    """Why a connection failed, in a few words: never the host, URL or query."""
    text = str(exc).lower()  # requests folds the whole cause chain into its text
    return next((r for r in _CONNECTION_REASONS if r in text), type(exc).__name__)


# -- running a release's checks ----------------------------------------------------------


async def run_checks(
    provider: MetricProvider, ctx: QueryContext, metrics: Sequence[Metric]
) -> list[Measurement]:
    """Measure every metric concurrently; results come back in the metrics' order.

    A provider that raises does not take the others down: its metric fails with the
    error in the message.
    """

    async def one(metric: Metric) -> Measurement:
        try:
            return await provider.measure(ctx, metric)
        except Exception as exc:  # a misbehaving provider must not abort the analysis
            log.exception("metric provider failed", extra={"metric": metric.name})
            message = f"{metric.name} could not be measured: {type(exc).__name__}: {exc}"
            return _failed(metric, message[:500])

    return list(await asyncio.gather(*(one(m) for m in metrics)))


__all__ = [
    "BUILTIN_METRICS",
    "MAX_RESULT_BYTES",
    "MAX_SAMPLES",
    "MAX_SERIES",
    "REQUEST_DURATION",
    "REQUEST_SUCCESS_RATE",
    "TEMPLATE_VARIABLES",
    "MetricProvider",
    "PrometheusProvider",
    "PrometheusUnavailable",
    "QueryContext",
    "QueryTemplateError",
    "ResultTooLarge",
    "UnusableResult",
    "builtin_query",
    "judge",
    "no_value_message",
    "query_variables",
    "render_query",
    "run_checks",
]

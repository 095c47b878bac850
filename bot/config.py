"""The Slack front's configuration: one YAML file plus secrets from the environment.

The YAML file (path in ``CANARY_BOT_CONFIG``) says where each namespace's threads go,
who may do what where, and which analysis a ``/canary start`` gets::

    cluster: prod-eu-1
    channels:
      default: C0DEPLOYS          # a channel id (or #name with chat:write.public)
      routes:
        - namespaces: ["team-a-*"]
          channel: C0TEAMA
    authorization:
      rules:
        - namespaces: ["test", "staging-*"]
          verbs: [start, promote, abort, pause, resume, approve]   # or ["*"]
          users: [U012ABC]
          groups: [S0OPS]          # Slack user group ids
    limits:                        # bounds that /canary start flags cannot cross
      - namespaces: ["prod-*"]
        maxWeight: 50              # ceiling for --max
        maxStepWeight: 10          # ceiling for --step
        interval: {min: 30s, max: 10m}
        threshold: {min: 2, max: 10}
        requireApproval: true      # --approval is forced
    defaults:
      namespace: test
      profile: tutorial
      progressDeadlineSeconds: 60
    profiles:
      tutorial:                    # a Flagger ``analysis:`` block, pasted unchanged
        interval: 10s
        threshold: 10
        maxWeight: 50
        stepWeight: 5
        metrics:
          - name: request-success-rate
            thresholdRange: {min: 99}
            interval: 1m
        webhooks:                  # credentials come from a Secret, never inline
          - name: load-test
            urlFrom: {secretKeyRef: {name: canary-bot-webhooks, key: load-test-url}}
    webhooks:                      # where hook calls may go (docs/security.md)
      allowCIDRs: ["169.254.20.10/32"]
    metricTemplates:
      latency-p99: |              # rendered by the engine with Flagger's variables
        histogram_quantile(0.99, sum(rate(
          nginx_ingress_controller_request_duration_seconds_bucket{
            namespace="{{ namespace }}", ingress="{{ ingress }}", canary="{{ canary }}"}[{{ interval }}]
        )) by (le)) * 1000

One front can serve several clusters: ``clusters:`` lists them, each with its credentials
(a kubeconfig ``context`` or a ``kubeconfig`` file) and the ``channels`` whose commands
default to it (``bot.config_clusters``, docs/multicluster.md). A command goes to
``--cluster``, else its channel's cluster, else the ``default: true`` one; with several and
none chosen it is refused with the list. Without ``clusters:``, the front serves the one
cluster it reaches and ``cluster:`` is only the name its cards show.

Decisions: routing takes the first route whose glob matches the namespace, then
``channels.default``; with neither, the release gets no Slack thread (a warning is logged).
The channel a command was typed in, or a release's ``requestedBy.channel``, never picks the
channel: both come from whoever asks, routes from whoever runs canary-bot. Authorization
denies unless a rule names the namespace, the verb and the user (or one of the user's
groups); ``"*"`` grants every verb except ``skip-analysis``, which a rule must name.
``status``, ``list``, ``history``, ``plan`` and ``help`` are open to everyone. Precedence
for analysis values: command flags, then the chosen profile, then ``defaults``, then
Flagger's defaults; the result must stay inside every ``limits`` entry that applies, and
inside built-in bounds where no entry sets one (``bot.bounds.BUILT_IN``).
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.config_clusters import (
    MAX_CLUSTERS,
    ClusterEntry,
    check_channel,
    check_cluster_globs,
    check_clusters,
    check_rule_clusters,
)
from rollout.egress import has_credentials, parse_networks
from rollout.models import Analysis, Provider, format_duration, is_dns_label, parse_duration
from rollout.text import validation_problems

Verb = Literal["start", "promote", "abort", "pause", "resume", "approve", "skip-analysis"]
VERBS: tuple[Verb, ...] = (
    "start",
    "promote",
    "abort",
    "pause",
    "resume",
    "approve",
    "skip-analysis",
)
# Verbs a ``"*"`` rule does not grant: they must be named in the rule's ``verbs``.
EXPLICIT_VERBS: frozenset[Verb] = frozenset({"skip-analysis"})

_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GROUP = re.compile(r"^S[A-Z0-9]{2,}$")
_TEMPLATE_VARIABLE = re.compile(r"{{\s*([A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)?)\s*}}")
# What the engine fills in (rollout.analysis.query_variables); ``variables.<x>`` come from
# a metric's templateVariables.
TEMPLATE_VARIABLES = ("name", "namespace", "target", "ingress", "service", "interval", "canary")
# No analysis interval may be longer, whatever the config says (``--interval`` included).
MAX_INTERVAL_SECONDS = 24 * 3600


class ConfigError(Exception):
    """The configuration file is missing or invalid; the message says where and how to fix."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")


def _check_globs(value: list[str]) -> list[str]:
    if not value:
        raise ValueError('needs at least one namespace or glob, e.g. ["test"] or ["team-a-*"]')
    for glob in value:
        if not glob or not re.fullmatch(r"[a-z0-9*?\[\]-]+", glob):
            raise ValueError(
                f"{glob!r} is not a namespace glob; use names like test, team-a-* or *"
            )
    return value


class ChannelRoute(_Frozen):
    """Threads of releases in namespaces matching ``namespaces`` go to ``channel``."""

    namespaces: list[str]
    channel: str

    _globs = field_validator("namespaces")(_check_globs)

    @field_validator("channel")
    @classmethod
    def _channel_id(cls, value: str) -> str:
        return check_channel(value)


class Channels(_Frozen):
    """Where each namespace's release threads are posted: the first route whose glob
    matches, else `default`; with neither, the release gets no thread and a warning is
    logged. The channel a command was typed in and a CanaryRelease's `requestedBy.channel`
    never choose it."""

    default: str | None = None
    routes: list[ChannelRoute] = Field(default_factory=list)

    @field_validator("default")
    @classmethod
    def _default_id(cls, value: str | None) -> str | None:
        return None if value is None else check_channel(value)

    def route(self, namespace: str) -> str | None:
        """The channel for a release in ``namespace``: the first matching route, else default.

        None when neither is configured: the release then gets no thread. Where a command
        was typed, or what a CanaryRelease says in ``requestedBy.channel``, is chosen by
        whoever asks and so never decides where canary-bot speaks.
        """
        for route in self.routes:
            if any(fnmatch.fnmatchcase(namespace, glob) for glob in route.namespaces):
                return route.channel
        return self.default


class AuthorizationRule(_Frozen):
    """Users and user groups allowed some verbs in some namespaces. `"*"` grants every verb
    except `skip-analysis` (`/canary start --skip-analysis`, which also needs `start`):
    that one is granted only where a rule names it. `clusters` (globs over the names under
    `clusters:`) limits the rule to those clusters; left out, it applies in every one."""

    namespaces: list[str]
    verbs: list[Verb | Literal["*"]]
    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    clusters: list[str] | None = Field(default=None, max_length=MAX_CLUSTERS)

    _globs = field_validator("namespaces")(_check_globs)

    _cluster_globs = field_validator("clusters")(check_cluster_globs)

    @field_validator("users")
    @classmethod
    def _user_ids(cls, value: list[str]) -> list[str]:
        for user in value:
            if not _USER.match(user):
                raise ValueError(
                    f"{user!r} is not a Slack user id; use ids like U012ABCDE "
                    "(profile > ⋮ > Copy member ID), not names"
                )
        return value

    @field_validator("groups")
    @classmethod
    def _group_ids(cls, value: list[str]) -> list[str]:
        for group in value:
            if not _GROUP.match(group):
                raise ValueError(
                    f"{group!r} is not a Slack user group id; use ids like S012ABCDE, not @handles"
                )
        return value

    @model_validator(mode="after")
    def _someone(self) -> AuthorizationRule:
        if not self.users and not self.groups:
            raise ValueError("a rule needs at least one entry in users or groups")
        if not self.verbs:
            raise ValueError(f"a rule needs verbs: any of {', '.join(VERBS)} or *")
        return self

    def covers(self, namespace: str, verb: Verb, cluster: str = "") -> bool:
        """Whether the rule speaks about ``verb`` in ``namespace`` of ``cluster``.

        ``"*"`` grants every verb except those in ``EXPLICIT_VERBS`` (``skip-analysis``):
        a rule written before such a verb existed must not start granting it.
        """
        granted = verb in self.verbs or ("*" in self.verbs and verb not in EXPLICIT_VERBS)
        return (
            granted
            and self.in_cluster(cluster)
            and any(fnmatch.fnmatchcase(namespace, glob) for glob in self.namespaces)
        )

    def in_cluster(self, cluster: str) -> bool:
        """Whether the rule applies in ``cluster`` (every cluster when it names none)."""
        if self.clusters is None:
            return True
        return any(fnmatch.fnmatchcase(cluster, glob) for glob in self.clusters)


class Authorization(_Frozen):
    """Per-namespace, per-verb rules. Nothing matches: denied."""

    rules: list[AuthorizationRule] = Field(default_factory=list)

    def rules_for(self, namespace: str, verb: Verb, cluster: str = "") -> list[AuthorizationRule]:
        """The rules that could allow ``verb`` in ``namespace`` of ``cluster``."""
        return [rule for rule in self.rules if rule.covers(namespace, verb, cluster)]


class IntervalRange(_Frozen):
    """The shortest and longest analysis interval a start may use, e.g. ``{min: 30s, max: 10m}``."""

    min: str | None = None
    max: str | None = None

    @field_validator("min", "max")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            seconds = _bounded_duration(value)
            if seconds < 1:
                raise ValueError(f"{value!r} is shorter than 1s, the shortest interval")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> IntervalRange:
        if (
            self.min is not None
            and self.max is not None
            and parse_duration(self.min) > parse_duration(self.max)
        ):
            raise ValueError(f"min {self.min} is longer than max {self.max}")
        return self


def _bounded_duration(value: str) -> float:
    try:
        seconds = parse_duration(value)
    except OverflowError:
        raise ValueError(f"{value[:40]!r} is too long a duration") from None
    if seconds > MAX_INTERVAL_SECONDS:
        raise ValueError(f"{value!r} is longer than {format_duration(MAX_INTERVAL_SECONDS)}")
    return seconds


class ThresholdRange(_Frozen):
    """The fewest and most failed checks before rollback a start may ask for."""

    min: int | None = Field(default=None, ge=1, le=1000)
    max: int | None = Field(default=None, ge=1, le=1000)

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdRange:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


class LimitRule(_Frozen):
    """Bounds that `/canary start` (typed or from the form) and `plan` cannot cross. An
    entry applies to a start whose namespace matches `namespaces` (globs) and whose profile
    is one of `profiles`; a selector left out matches every start, and an entry needs at
    least one. `maxWeight` caps `--max`; `maxStepWeight` caps the largest step (`--step`,
    or a profile's `stepWeights`); `interval` and `threshold` give a `min` and `max` for
    `--interval` and `--threshold`; `requireApproval: true` forces `--approval`. Every
    entry that applies is enforced and, where two set the same bound, the stricter wins. A
    bound no entry sets keeps its built-in default: step at most 50, interval from 1s to
    1h, threshold from 1 to 100 (max weight: no bound below 100). The bounds hold for the
    analysis that would run, whichever of the flags, the profile or `defaults` set a value;
    a start outside them is refused with a message naming the value and the bound.

    Enforced by ``bot.bounds`` on the Slack side only: a CanaryRelease applied with kubectl
    is bounded by the CRD and by who may create it.
    """

    namespaces: list[str] | None = None
    profiles: list[str] | None = None
    max_weight: int | None = Field(default=None, ge=1, le=100, alias="maxWeight")
    max_step_weight: int | None = Field(default=None, ge=1, le=100, alias="maxStepWeight")
    interval: IntervalRange | None = None
    threshold: ThresholdRange | None = None
    require_approval: bool = Field(default=False, alias="requireApproval")

    @field_validator("namespaces")
    @classmethod
    def _namespace_globs(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_globs(value)

    @field_validator("profiles")
    @classmethod
    def _profile_names(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("needs at least one profile name, or leave profiles out")
        return value

    @model_validator(mode="after")
    def _selects_and_bounds(self) -> LimitRule:
        if self.namespaces is None and self.profiles is None:
            raise ValueError(
                'a limits entry needs namespaces (e.g. ["prod-*"], or ["*"] for all) or profiles'
            )
        if (
            self.max_weight is None
            and self.max_step_weight is None
            and self.interval is None
            and self.threshold is None
            and not self.require_approval
        ):
            raise ValueError(
                "a limits entry sets nothing; give maxWeight, maxStepWeight, interval, "
                "threshold or requireApproval"
            )
        return self

    def applies(self, namespace: str, profile: str | None) -> bool:
        """Whether a start in ``namespace`` with ``profile`` falls under this rule."""
        if self.namespaces is not None and not any(
            fnmatch.fnmatchcase(namespace, glob) for glob in self.namespaces
        ):
            return False
        return self.profiles is None or profile in self.profiles


class Defaults(_Frozen):
    """Values used when neither the command nor the profile sets them."""

    namespace: str = "default"
    profile: str | None = None
    interval: str | None = None
    threshold: int | None = Field(default=None, ge=1, le=1000)
    max_weight: int | None = Field(default=None, ge=1, le=100, alias="maxWeight")
    step_weight: int | None = Field(default=None, ge=1, le=100, alias="stepWeight")
    progress_deadline_seconds: int = Field(default=600, ge=10, alias="progressDeadlineSeconds")
    port: int = Field(default=80, ge=1, le=65535)
    target_port: int | str | None = Field(default=None, alias="targetPort")
    approval: Literal["auto", "manual"] = "auto"
    # How `/canary start` routes: "ingress" (ingressRef, the --ingress flag) or "gateway"
    # (routeRef to the HTTPRoute named like the Deployment, or --ingress's name).
    router: Literal["ingress", "gateway"] = "ingress"
    # The releases' spec.provider (None: nginx with ingress, required with gateway).
    provider: Provider | None = None

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not is_dns_label(value):
            raise ValueError(f"{value!r} is not a valid namespace name")
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class WebhookPolicy(_Frozen):
    """Where the engine's webhook calls may connect, and where hook Secrets are read.

    Link-local and cloud metadata addresses are refused by default; loopback and private
    ranges are allowed. ``allowCIDRs`` opens refused ranges (e.g. ``169.254.20.10/32``),
    ``denyCIDRs`` refuses more (e.g. ``127.0.0.0/8``); ``allowCIDRs`` wins on overlap.
    ``secretNamespace`` holds the Secrets that ``urlFrom``/``metadataFrom`` name
    (default: the namespace canary-bot runs in).
    """

    allow_cidrs: list[str] = Field(default_factory=list, alias="allowCIDRs")
    deny_cidrs: list[str] = Field(default_factory=list, alias="denyCIDRs")
    secret_namespace: str | None = Field(default=None, alias="secretNamespace")

    @field_validator("allow_cidrs", "deny_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        parse_networks(value)
        return value

    @field_validator("secret_namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None and not is_dns_label(value):
            raise ValueError(f"{value!r} is not a valid namespace name")
        return value


class BotConfig(_Frozen):
    """The whole YAML file. `cluster`: the name this process's cards show for its own
    cluster (an engine's, or a single-cluster front's). `clusters`: the clusters one
    front serves (docs/multicluster.md); without it, the one cluster it can reach."""

    cluster: str = Field(default="", max_length=63)
    clusters: list[ClusterEntry] = Field(default_factory=list, max_length=MAX_CLUSTERS)
    channels: Channels = Field(default_factory=Channels)
    authorization: Authorization = Field(default_factory=Authorization)
    defaults: Defaults = Field(default_factory=Defaults)
    profiles: dict[str, Analysis] = Field(default_factory=dict)
    metric_templates: dict[str, str] = Field(default_factory=dict, alias="metricTemplates")
    limits: list[LimitRule] = Field(default_factory=list, max_length=100)
    webhooks: WebhookPolicy = Field(default_factory=WebhookPolicy)

    @field_validator("profiles")
    @classmethod
    def _no_inline_credentials(cls, value: dict[str, Analysis]) -> dict[str, Analysis]:
        # A profile is copied into every release it starts: credentials belong in a Secret.
        for profile_name, analysis in value.items():
            for hook in analysis.webhooks:
                if hook.url is not None and has_credentials(hook.url):
                    raise ValueError(
                        f"profiles.{profile_name}: webhook {hook.name} has credentials in its "
                        "url (user:password@ or a token/key/secret query parameter); put the "
                        "URL in the Secret canary-bot-webhooks and use urlFrom: {secretKeyRef: "
                        "{name: canary-bot-webhooks, key: <key>}}"
                    )
        return value

    @field_validator("metric_templates")
    @classmethod
    def _templates(cls, value: dict[str, str]) -> dict[str, str]:
        for name, query in value.items():
            if not query.strip():
                raise ValueError(f"metric template {name} has an empty query")
            for variable in _TEMPLATE_VARIABLE.findall(query):
                if variable not in TEMPLATE_VARIABLES and not variable.startswith("variables."):
                    raise ValueError(
                        f"metric template {name} uses {{{{ {variable} }}}}; known variables "
                        f"are {', '.join(TEMPLATE_VARIABLES)} and variables.<name>"
                    )
        return value

    @model_validator(mode="after")
    def _references(self) -> BotConfig:
        profile = self.defaults.profile
        if profile is not None and profile not in self.profiles:
            known = ", ".join(sorted(self.profiles)) or "none defined"
            raise ValueError(
                f"defaults.profile names {profile!r}, which is not under profiles "
                f"(profiles: {known})"
            )
        for profile_name, analysis in self.profiles.items():
            for metric in analysis.metrics:
                ref = metric.template_ref
                if ref is not None and ref.name not in self.metric_templates:
                    raise ValueError(
                        f"profiles.{profile_name}: metric {metric.name} uses templateRef "
                        f"{ref.name!r}; add it under metricTemplates"
                    )
        for index, rule in enumerate(self.limits):
            for name in rule.profiles or []:
                if name not in self.profiles:
                    raise ValueError(
                        f"limits[{index}].profiles names {name!r}, which is not under profiles"
                    )
        check_clusters(self.clusters)
        check_rule_clusters(self.authorization.rules, self.cluster_names)
        return self

    @property
    def cluster_names(self) -> list[str]:
        """The names commands may give to ``--cluster``: ``clusters:``, else ``cluster:``."""
        if self.clusters:
            return [entry.name for entry in self.clusters]
        return [self.cluster] if self.cluster else []


def describe_errors(error: ValidationError) -> str:
    """One line per problem, naming the field as written in the YAML file."""
    hint = "unknown field; check its spelling against the documented fields"
    return "\n".join(f"  {line}" for line in validation_problems(error, unknown_field=hint))


def parse_config(text: str, source: str = "config") -> BotConfig:
    """Validate YAML text; raises ``ConfigError`` listing every problem."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source} must be a YAML mapping (key: value), not {type(data).__name__}"
        )
    try:
        return BotConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source} has problems:\n{describe_errors(exc)}") from None


def load_config(path: str | Path | None) -> BotConfig:
    """Read the YAML file; no path means an empty config (everything denied but status)."""
    if path is None:
        return BotConfig()
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {file}: {exc.strerror}; set CANARY_BOT_CONFIG to its path"
        ) from None
    return parse_config(text, str(file))


class Environment(BaseSettings):
    """Secrets and endpoints from the environment. Secrets are ``SecretStr``: never printed."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    slack_bot_token: SecretStr | None = Field(
        default=None, description="Bot token (`xoxb-…`). Without it: console mode."
    )
    slack_app_token: SecretStr | None = Field(
        default=None, description="App-level token (`xapp-…`): selects Socket Mode."
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None,
        description="Signing secret: HTTP mode (`/slack/events`) when there is no app token.",
    )
    slack_api_url: str | None = Field(
        default=None, description="Web API base URL override (proxies, tests)."
    )
    kubeconfig: str | None = Field(
        default=None, description="kubeconfig file; in a Pod the ServiceAccount is used."
    )
    prometheus_url: str | None = Field(
        default=None, description="Prometheus base URL (default `http://127.0.0.1:9090`)."
    )
    canary_bot_config: str | None = Field(default=None, description="Path of the YAML config file.")
    canary_bot_protected_namespaces: str | None = Field(
        default=None,
        description="Namespaces (comma-separated) the engine never acts in, besides "
        "`kube-system`, `kube-public`, `kube-node-lease` and its own (the Lease namespace, `canary-bot` by default).",
    )

    @property
    def transport(self) -> Literal["socket", "http", "console"]:
        """Socket Mode with an app token, HTTP with a signing secret, else console only."""
        if self.slack_bot_token is not None and self.slack_app_token is not None:
            return "socket"
        if self.slack_bot_token is not None and self.slack_signing_secret is not None:
            return "http"
        return "console"

    @property
    def api_url(self) -> str:
        """The Slack Web API base URL (always ending in a slash, as slack_sdk expects)."""
        url = self.slack_api_url or "https://slack.com/api/"
        return url if url.endswith("/") else url + "/"

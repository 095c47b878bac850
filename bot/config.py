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
    metricTemplates:
      latency-p99: |              # rendered by the engine with Flagger's variables
        histogram_quantile(0.99, sum(rate(
          nginx_ingress_controller_request_duration_seconds_bucket{
            namespace="{{ namespace }}", ingress="{{ ingress }}", canary="{{ canary }}"}[{{ interval }}]
        )) by (le)) * 1000

Decisions: routing takes the first route whose glob matches the namespace, then
``channels.default``, then the channel the command was typed in. Authorization denies
unless a rule names the namespace, the verb and the user (or one of the user's groups);
``status``, ``list``, ``history``, ``plan`` and ``help`` are open to everyone. Precedence for
analysis values: command flags, then the chosen profile, then ``defaults``, then Flagger's
defaults.
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

from rollout.models import Analysis, is_dns_label, parse_duration

Verb = Literal["start", "promote", "abort", "pause", "resume", "approve"]
VERBS: tuple[Verb, ...] = ("start", "promote", "abort", "pause", "resume", "approve")

_CHANNEL = re.compile(r"^(?:[CGD][A-Z0-9]{2,}|#[a-z0-9][a-z0-9._-]{0,79})$")
_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GROUP = re.compile(r"^S[A-Z0-9]{2,}$")
_TEMPLATE_VARIABLE = re.compile(r"{{\s*([A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)?)\s*}}")
# What the engine fills in (rollout.analysis.query_variables); ``variables.<x>`` come from
# a metric's templateVariables.
TEMPLATE_VARIABLES = ("name", "namespace", "target", "ingress", "service", "interval", "canary")


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
        return _check_channel(value)


def _check_channel(value: str) -> str:
    if not _CHANNEL.match(value):
        raise ValueError(
            f"{value!r} is not a Slack channel; use a channel id such as C0123ABCD "
            "(channel details > About) or #name"
        )
    return value


class Channels(_Frozen):
    """Where each namespace's release threads are posted."""

    default: str | None = None
    routes: list[ChannelRoute] = Field(default_factory=list)

    @field_validator("default")
    @classmethod
    def _default_id(cls, value: str | None) -> str | None:
        return None if value is None else _check_channel(value)

    def route(self, namespace: str, requested_in: str = "") -> str | None:
        """The channel for a release in ``namespace``: first matching route, default, origin."""
        for route in self.routes:
            if any(fnmatch.fnmatchcase(namespace, glob) for glob in route.namespaces):
                return route.channel
        return self.default or requested_in or None


class AuthorizationRule(_Frozen):
    """Users and user groups allowed some verbs in some namespaces."""

    namespaces: list[str]
    verbs: list[Verb | Literal["*"]]
    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)

    _globs = field_validator("namespaces")(_check_globs)

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

    def covers(self, namespace: str, verb: Verb) -> bool:
        """Whether the rule speaks about ``verb`` in ``namespace``."""
        return ("*" in self.verbs or verb in self.verbs) and any(
            fnmatch.fnmatchcase(namespace, glob) for glob in self.namespaces
        )


class Authorization(_Frozen):
    """Per-namespace, per-verb rules. Nothing matches: denied."""

    rules: list[AuthorizationRule] = Field(default_factory=list)

    def rules_for(self, namespace: str, verb: Verb) -> list[AuthorizationRule]:
        """The rules that could allow ``verb`` in ``namespace``."""
        return [rule for rule in self.rules if rule.covers(namespace, verb)]


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


class BotConfig(_Frozen):
    """The whole YAML file."""

    cluster: str = Field(default="", max_length=63)
    channels: Channels = Field(default_factory=Channels)
    authorization: Authorization = Field(default_factory=Authorization)
    defaults: Defaults = Field(default_factory=Defaults)
    profiles: dict[str, Analysis] = Field(default_factory=dict)
    metric_templates: dict[str, str] = Field(default_factory=dict, alias="metricTemplates")

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
        return self


def describe_errors(error: ValidationError) -> str:
    """One line per problem, naming the field as written in the YAML file."""
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field; check its spelling against the documented fields"
        lines.append(f"  {where}: {message}" if where else f"  {message}")
    return "\n".join(lines)


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
        "`kube-system`, `kube-public`, `kube-node-lease` and its own (`POD_NAMESPACE`).",
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

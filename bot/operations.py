"""What each ``/canary`` command and button does, independent of how it arrived.

The Slack handlers translate requests into calls here and replies back into Slack
messages; console mode can call the same methods. Every method returns a ``Reply`` a
person can act on; expected problems (bad input, refusals, missing objects) never raise.
Writes go only to CanaryRelease objects, through the ``ReleaseStore``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.authz import Authorizer
from bot.commands import (
    Command,
    ControlCommand,
    HistoryCommand,
    ListCommand,
    PlanCommand,
    ReleaseOptions,
    StartCommand,
    StatusCommand,
    help_reply,
)
from bot.config import BotConfig
from bot.managed import (
    Protection,
    analysis_flags,
    managed_image_problem,
    protection_of,
    wait_for_release,
    write_images,
)
from bot.releases import (
    TARGET_LABEL,
    RequestProblem,
    approval_of,
    build_analysis,
    build_spec,
    choose_images,
    is_active,
    plan_of,
    release_name,
    releases_of,
    resolve,
)
from bot.render.card import headline
from bot.render.events import AUDIT_VERB, audit_line
from bot.render.facts import PHASE_EMOJI, elapsed_seconds
from bot.reply import (
    Card,
    Channel,
    Code,
    Icon,
    Line,
    Mention,
    Reply,
    Span,
    Strong,
    failure,
    reply,
    spans_of,
    warning,
)
from bot.targets import deployment_containers
from rollout.actions import actions_for
from rollout.actions import refusal as phase_refusal
from rollout.egress import mask_url
from rollout.kube import CANARIES, Kube, KubeError
from rollout.models import (
    CanaryRelease,
    CanaryReleaseSpec,
    ControlAction,
    ControlRequest,
    Requester,
    Webhook,
    format_duration,
)
from rollout.preflight import check_start
from rollout.store import InvalidRelease, ReleaseExists, ReleaseNotFound, ReleaseStore

log = logging.getLogger("canary_bot.operations")

MAX_LISTED = 20


@dataclass(frozen=True)
class Actor:
    """Who asked, and from where."""

    user: str
    user_name: str = ""
    channel: str = ""
    source: str = "slack"


@dataclass(frozen=True)
class ControlOutcome:
    """A control request's reply, and the audit line for the release's thread."""

    reply: Reply
    release: CanaryRelease | None = None
    audit: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Operations:
    """The commands, over the release store, the preflight check and the authorizer."""

    config: BotConfig
    store: ReleaseStore
    kube: Kube
    authorizer: Authorizer
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # A namespace-scoped bot (``canary-bot run --namespace``) reads and acts only here.
    scope: str | None = None

    def namespace_of(self, requested: str | None) -> str:
        """The namespace a command means: ``-n``, else the bot's scope, else the default."""
        return requested or self.scope or self.config.defaults.namespace

    def out_of_scope(self, namespace: str | None) -> Reply | None:
        """A refusal when a scoped bot is asked about another namespace."""
        if self.scope is None or namespace is None or namespace == self.scope:
            return None
        return warning(
            f"This canary-bot handles namespace {self.scope} only; it cannot see or "
            f"change releases in {namespace}. Leave out -n, or ask the bot that serves {namespace}."
        )

    # -- start / plan -------------------------------------------------------------------

    async def start(self, options: ReleaseOptions, actor: Actor, request_key: str) -> Reply:
        """Create a release after the authorization and preflight checks pass.

        ``request_key`` identifies the Slack request, so a retried request maps to the same
        release name and creates nothing twice.
        """
        namespace = self.namespace_of(options.namespace)
        scoped = self.out_of_scope(namespace)
        if scoped is not None:
            return scoped
        refusal = await self.authorizer.refusal(actor.user, namespace, "start")
        if refusal is None and options.skip_analysis:
            refusal = await self.authorizer.refusal(actor.user, namespace, "skip-analysis")
        if refusal is not None:
            return refusal
        try:
            containers = await deployment_containers(self.kube, namespace, options.deployment)
            protection = await self._protection(namespace, options.deployment)
            if protection is not None and containers is not None:
                return await self._start_managed(options, actor, protection, containers)
            requester = Requester(
                user=actor.user,
                user_name=actor.user_name,
                channel=actor.channel,
                source="slack" if actor.source == "slack" else "console",
            )
            spec = build_spec(options, self.config, requester, containers)
        except RequestProblem as exc:
            return warning(*spans_of(str(exc)))
        name = release_name(options.deployment, f"{namespace}/{request_key}")
        problems = await check_start(self.kube, namespace, name, spec)
        if problems:
            return warning("Nothing was started:", more=tuple(("• ", *spans_of(p)) for p in problems))
        try:
            release = await self.store.create(
                namespace, name, spec, labels={TARGET_LABEL: options.deployment}
            )
        except ReleaseExists:
            return reply("info", f"Release {name} was already started for this request.")
        log.info(
            "release created",
            extra={"namespace": namespace, "release": name, "user": actor.user},
        )
        slack = actor.source == "slack"
        return Reply("ok", self._started(release.metadata.name, options, namespace, spec, slack))

    async def _protection(self, namespace: str, deployment: str) -> Protection | None:
        """The Canary protecting ``deployment``; None without the Canary CRD or rights."""
        try:
            return await protection_of(self.kube, namespace, deployment)
        except KubeError as exc:
            if exc.status in (403, 404):  # no Canary CRD, or a bot not allowed to list them
                return None
            raise RequestProblem(
                f"could not check for a Canary protecting {deployment}: {exc}"
            ) from None

    async def _start_managed(
        self,
        options: ReleaseOptions,
        actor: Actor,
        protection: Protection,
        containers: dict[str, str],
    ) -> Reply:
        """Write the image(s) into a protected Deployment; the revision path releases it."""
        deployment, namespace = options.deployment, protection.namespace
        guarded = f"{deployment} is protected by Canary {protection.canary} in {namespace}"
        flags = analysis_flags(options)
        if flags:
            return warning(
                f"{guarded}: every revision runs with the Canary's analysis, "
                f"so {', '.join(flags)} cannot apply. Leave them out, or change the Canary."
            )
        images = choose_images(options, containers)
        problem = managed_image_problem(deployment, images, containers)
        if problem is not None:
            return warning(*spans_of(problem))
        known = {r.metadata.name for r in await releases_of(self.store, namespace, deployment)}
        try:
            await write_images(self.kube, namespace, deployment, images, actor.user)
        except KubeError as exc:
            return warning(f"Nothing changed: could not write the image: {exc}")
        log.info(
            "template image written for a protected Deployment",
            extra={"namespace": namespace, "deployment": deployment, "user": actor.user},
        )
        release = await wait_for_release(
            self.store, namespace, deployment, images, known, with_thread=actor.source == "slack"
        )
        shown = ", ".join(f"{c}={i}" for c, i in sorted(images.items()))
        wrote = reply(
            "ok",
            Icon(":seedling:"),
            f"Wrote {shown} into the pod template of {deployment} in {namespace} "
            f"(protected by Canary {protection.canary}).",
        )
        if release is None:
            return wrote.extended(
                " The release has not appeared yet: ",
                Code(f"/canary status {deployment} -n {namespace}"),
                " shows it once canary-bot has picked it up.",
            )
        wrote = wrote.extended(
            " Release ",
            Code(release.metadata.name),
            f" of {deployment} in {namespace} runs it with the Canary's analysis.",
        )
        thread = release.status.notification
        if thread.channel and thread.thread_ts:
            return dataclasses.replace(wrote, thread=(thread.channel, thread.thread_ts))
        if actor.source == "slack":
            return wrote.extended(" Its status card follows in the namespace's channel.")
        return wrote

    def _started(
        self,
        name: str,
        options: ReleaseOptions,
        namespace: str,
        spec: CanaryReleaseSpec,
        slack: bool,
    ) -> tuple[Line, ...]:
        """The start reply: what runs, where its thread goes, and what the config forced."""
        plan = plan_of(spec.analysis).describe()
        if spec.skip_analysis:
            after = "approval" if spec.approval == "manual" else "promotion"
            plan = f"analysis skipped: goes to {after} as soon as the canary runs"
        images = ", ".join(f"{c}={i}" for c, i in sorted(spec.images.items()))
        started: Line = (
            Icon(":seedling:"),
            "Started release ",
            Code(name),
            f" of {options.deployment} in {namespace} ({images}): {plan}.",
            *(self._card_channel(namespace) if slack else ()),  # the console prints the card
        )
        note = approval_of(options, self.config)[1]
        return (started, spans_of(note)) if note else (started,)

    def _card_channel(self, namespace: str) -> Line:
        """Where the status card of a release in ``namespace`` is posted."""
        channel = self.config.channels.route(namespace)
        if channel is None:
            return (
                " No channel is configured for this namespace (channels.routes or "
                "channels.default), so there will be no status thread.",
            )
        return (" The status card follows in ", Channel(channel), ".")

    def plan(self, options: ReleaseOptions) -> Reply:
        """The steps and duration a start with these options would have."""
        namespace = self.namespace_of(options.namespace)
        try:
            analysis = build_analysis(options, self.config)
        except RequestProblem as exc:
            return warning(*spans_of(str(exc)))
        lines: list[Line] = [
            (Strong(f"Plan for {options.deployment} in {namespace}"), " (nothing was changed)"),
            (plan_of(analysis).describe() + ".",),
        ]
        for metric in analysis.metrics:
            lines.append(
                (
                    f"• check {metric.name} {metric.threshold_range.describe()} over {metric.interval}",
                )
            )
        for hook in analysis.webhooks:
            lines.append((f"• webhook {hook.name} ({hook.type}) → {hook_target(hook)}",))
        if not analysis.metrics:
            lines.append(("• no metric checks: weights advance on schedule",))
        return Reply("info", tuple(lines))

    # -- reading ------------------------------------------------------------------------

    async def status(self, name: str | None, namespace: str | None) -> Reply:
        """One release's card, or the active releases."""
        if name is None:
            return await self.list_active(namespace)
        ns = self.namespace_of(namespace)
        scoped = self.out_of_scope(ns)
        if scoped is not None:
            return scoped
        release = await resolve(self.store, ns, name)
        if release is None:
            return _not_found(name, ns)
        lines: list[Line] = [(headline(release),)]
        state = await self._canary_state(release)
        if state is not None:  # what the Deployment is doing now, beyond this release
            lines.append((state,))
        return Reply("info", tuple(lines), card=Card(release, self.clock()))

    async def _canary_state(self, release: CanaryRelease) -> str | None:
        """``Canary podinfo: Idle — spec asks for …``: the protecting Canary's status."""
        ref = release.spec.canary_ref
        if ref is None:
            return None
        try:
            raw = await self.kube.get(CANARIES, release.metadata.namespace, ref.name)
        except KubeError:
            return None
        status = (raw or {}).get("status") or {}
        message = str(status.get("message") or "")
        if not message:
            return None
        return f"Canary {ref.name}: {str(status.get('state') or 'Idle')[:64]} — {message[:2000]}"

    async def list_active(self, namespace: str | None) -> Reply:
        """Active releases in a namespace, or everywhere (a scoped bot: its namespace).

        Releases the engine cannot read are listed apart as invalid.
        """
        scoped = self.out_of_scope(namespace)
        if scoped is not None:
            return scoped
        namespace = namespace or self.scope
        listing = await self.store.list_all(namespace)
        releases = [r for r in listing.releases if is_active(r)]
        where = f"in {namespace}" if namespace else "in any namespace"
        invalid = [_invalid_line(e) for e in listing.invalid[:MAX_LISTED]]
        none: Line = (f"No active releases {where}.",)
        if not releases and not invalid:
            return Reply("info", (none,))
        lines = [(Strong(f"Active releases {where}"),) if releases else none]
        lines += [self._summary(r) for r in releases[-MAX_LISTED:]]
        if invalid:
            lines += [(Strong("Invalid releases"), " (fix or delete them with kubectl)"), *invalid]
        return Reply("info", tuple(lines))

    async def history(self, name: str | None, namespace: str | None) -> Reply:
        """Finished releases, newest first."""
        ns = self.namespace_of(namespace) if name is not None else namespace or self.scope
        scoped = self.out_of_scope(ns)
        if scoped is not None:
            return scoped
        releases = await releases_of(self.store, ns, name)
        finished = [r for r in releases if not is_active(r)][::-1][:MAX_LISTED]
        subject = f"of {name}" if name else (f"in {ns}" if ns else "in any namespace")
        if not finished:
            return reply("info", f"No finished releases {subject}.")
        title: Line = (Strong(f"Release history {subject}"),)
        return Reply("info", (title, *(self._summary(r) for r in finished)))

    def _summary(self, release: CanaryRelease) -> Line:
        """``✅ `podinfo-x` (test) Succeeded at 0% → image, 3m by @alice``."""
        status = release.status
        emoji = PHASE_EMOJI.get(status.phase)
        images = ", ".join(sorted(release.spec.images.values()))
        elapsed = elapsed_seconds(release, self.clock())
        took = f", {format_duration(elapsed)}" if elapsed is not None else ""
        by: tuple[Span, ...] = (
            (" by ", _requester(release)) if release.spec.requested_by.user else ()
        )
        return (
            *((Icon(emoji),) if emoji else ()),
            Code(release.metadata.name),
            f" ({release.metadata.namespace}) "
            f"{status.phase.value} at {status.canary_weight}% → {images}{took}",
            *by,
        )

    # -- any command ----------------------------------------------------------------------

    async def run_command(self, parsed: Command, actor: Actor, request_key: str) -> ControlOutcome:
        """Carry out a parsed command the same way for Slack and the console.

        ``request_key`` identifies the request (Slack's trigger id): a retried request maps
        to the same release name or control request id, so it acts once. Help and the start
        form are the caller's, since they look different in each place.
        """
        if isinstance(parsed, StartCommand):
            return ControlOutcome(await self.start(parsed.options, actor, request_key))
        if isinstance(parsed, PlanCommand):
            return ControlOutcome(self.plan(parsed.options))
        if isinstance(parsed, StatusCommand):
            return ControlOutcome(await self.status(parsed.name, parsed.namespace))
        if isinstance(parsed, ListCommand):
            return ControlOutcome(await self.list_active(parsed.namespace))
        if isinstance(parsed, HistoryCommand):
            return ControlOutcome(await self.history(parsed.name, parsed.namespace))
        if isinstance(parsed, ControlCommand):
            rid = request_id("cmd", request_key, parsed.action, actor.user)
            return await self.control(
                parsed.action, parsed.name, parsed.namespace, actor, rid, parsed.reason
            )
        return ControlOutcome(help_reply(None))

    # -- control ------------------------------------------------------------------------

    async def _control_target(
        self, action: ControlAction, name: str | None, ns: str
    ) -> CanaryRelease | Reply:
        """The release a control request means, or why there is none."""
        if name is None:
            active = [r for r in await self.store.list_objects(ns) if is_active(r)]
            if len(active) != 1:
                names: list[Span] = [Code(r.metadata.name) for r in active] or ["none"]
                listed = [span for n in names for span in (", ", n)][1:]
                return reply(
                    "refused",
                    "Which release? Say ",
                    Code(f"/canary {action} <name> -n {ns}"),
                    f"; active releases in {ns}: ",
                    *listed,
                    ".",
                )
            return active[0]
        release = await resolve(self.store, ns, name)
        return release if release is not None else _not_found(name, ns)

    async def control(
        self,
        action: ControlAction,
        name: str | None,
        namespace: str | None,
        actor: Actor,
        request_id: str,
        reason: str = "",
    ) -> ControlOutcome:
        """Record a control request (once per ``request_id``) after authorization."""
        ns = self.namespace_of(namespace)
        release = self.out_of_scope(ns) or await self._control_target(action, name, ns)
        if isinstance(release, Reply):
            return ControlOutcome(release)
        refusal = await self.authorizer.refusal(actor.user, ns, action)
        if refusal is not None:
            return ControlOutcome(refusal, release)
        if phase_refusal(release.status.phase, action) is not None:
            return ControlOutcome(_not_now(release, action), release)
        if action == "promote" and _awaits_approval(release):
            return ControlOutcome(_approve_first(release, ns), release)
        request = ControlRequest(
            id=request_id,
            action=action,
            user=actor.user,
            user_name=actor.user_name,
            reason=reason,
            at=self.clock(),
        )
        try:
            updated = await self.store.request_control(
                release.metadata.namespace, release.metadata.name, request
            )
        except ReleaseNotFound:
            return ControlOutcome(_not_found(release.metadata.name, ns))
        log.info(
            "control requested",
            extra={
                "namespace": ns,
                "release": release.metadata.name,
                "action": action,
                "user": actor.user,
                "request": request_id,
            },
        )
        icon, done = _VERB_DONE[action]
        return ControlOutcome(
            reply("ok", Icon(icon), f"{done} requested for ", Code(release.metadata.name), "."),
            updated,
            audit_line(action, actor.user, reason, actor.user_name),
            request_id,
        )


_VERB_DONE: dict[ControlAction, tuple[str, str]] = {
    "abort": (":octagonal_sign:", "Abort"),
    "promote": (":rocket:", "Promotion"),
    "pause": (":double_vertical_bar:", "Pause"),
    "resume": (":arrow_forward:", "Resume"),
    "approve": (":ok_hand:", "Approval"),
}


def hook_target(hook: Webhook) -> str:
    """Where a hook goes, as shown to anyone: credentials masked, Secret values never read."""
    if hook.url_from is not None:
        ref = hook.url_from.secret_key_ref
        where = f"URL from Secret {ref.name} (key {ref.key})"
    else:
        where = mask_url(hook.url or "")
    if hook.metadata_from:
        where += f"; metadata {', '.join(sorted(hook.metadata_from))} from a Secret"
    return where


def _requester(release: CanaryRelease) -> Span:
    """Who asked: a Slack person (mentioned when the id is valid), else a name or the door."""
    who = release.spec.requested_by
    name = who.user_name or who.user or f"({who.source})"
    return Mention(who.user, name) if who.source == "slack" else name


def _invalid_line(error: InvalidRelease) -> Line:
    """One unreadable release: its name and why, in one short, inert line."""
    reason = str(error)
    reason = _inert(reason if len(reason) <= 200 else reason[:199] + "\u2026")
    name, namespace = (error.name or "?")[:253], _inert((error.namespace or "?")[:63])
    return (Icon(":x:"), Code(name), f" ({namespace}) invalid: {reason}")


def _inert(text: str) -> str:
    """Text from an object that cannot open or close a code span next to our own."""
    return text.replace("`", "'")


def _not_found(name: str, namespace: str) -> Reply:
    return reply(
        "refused",
        f"No release or Deployment with a release named {name} in namespace {namespace}; ",
        Code(f"/canary list -n {namespace}"),
        " shows the active ones, ",
        Code("-n"),
        " picks another namespace.",
    )


def _not_now(release: CanaryRelease, action: ControlAction) -> Reply:
    phase, name = release.status.phase, Code(release.metadata.name)
    possible = actions_for(release)
    if not possible:
        return reply("refused", name, f" is {phase.value}; there is nothing left to {action}.")
    return reply(
        "refused",
        name,
        f" is {phase.value}, so it cannot be {AUDIT_VERB[action]} "
        f"now; possible now: {', '.join(possible)}.",
    )


def _awaits_approval(release: CanaryRelease) -> bool:
    """Manual approval not given nor requested: ``promote`` must not stand in for it."""
    if release.spec.approval != "manual" or release.status.approved:
        return False
    return not any(r.action == "approve" for r in release.spec.control_requests)


def _approve_first(release: CanaryRelease, namespace: str) -> Reply:
    name = release.metadata.name
    return reply(
        "refused",
        Icon(":raised_hand:"),
        Code(name),
        " waits for approval; approve first with ",
        Code(f"/canary approve {name} -n {namespace}"),
        " (promote does not replace approval).",
    )


def request_id(kind: str, *parts: str) -> str:
    """A control request id derived from the Slack request: equal for a retry or double click."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]
    return f"slack-{kind}-{digest}"


def describe_failure(exc: BaseException) -> Reply:
    """What a person reads when the cluster or Slack failed us (no internals, no secrets)."""
    if isinstance(exc, KubeError):
        return failure(
            f"The Kubernetes API did not answer as expected ({exc.reason or 'unreachable'}); "
            "nothing was changed. Try again in a minute."
        )
    if isinstance(exc, InvalidRelease):
        return failure(f"A stored release is not valid: {exc}")
    return failure("Something went wrong on canary-bot's side; nothing was changed. Try again.")

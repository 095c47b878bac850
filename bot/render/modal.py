"""The ``/canary start`` form (a modal), and reading its submission back into command text."""

from __future__ import annotations

import json
import shlex
from typing import Any

from slack_sdk.models.blocks import (
    CheckboxesElement,
    InputBlock,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.config import BotConfig

START_CALLBACK = "canary_start"
FIELDS = ("deployment", "images", "namespace", "profile", "options")


def start_modal(
    config: BotConfig, namespace: str | None, channel: str, cluster: str | None = None
) -> View:
    """The start form, prefilled with the default namespace and profile.

    ``cluster`` (a front serving several) goes in the private metadata: the submission
    starts the release there."""
    blocks = [*_target_inputs(config, namespace), *_profile_input(config), _options_input()]
    return View(
        type="modal",
        callback_id=START_CALLBACK,
        title=PlainTextObject(text="Start a canary"),
        submit=PlainTextObject(text="Start"),
        close=PlainTextObject(text="Cancel"),
        private_metadata=_metadata_of(channel, cluster),
        blocks=blocks,
    )


def _target_inputs(config: BotConfig, namespace: str | None) -> list[InputBlock]:
    """What to release: the Deployment, its new images, its namespace."""
    return [
        InputBlock(
            block_id="deployment",
            label="Deployment",
            element=PlainTextInputElement(
                action_id="deployment", placeholder="podinfo", max_length=253
            ),
            hint="The Deployment to release; its Ingress must have the same name unless set.",
        ),
        InputBlock(
            block_id="images",
            label="New images",
            element=PlainTextInputElement(
                action_id="images",
                placeholder="image=stefanprodan/podinfo:6.0.3",
                max_length=2000,
            ),
            hint="image=<ref> for a single container, or <container>=<ref> for each.",
        ),
        InputBlock(
            block_id="namespace",
            label="Namespace",
            element=PlainTextInputElement(
                action_id="namespace",
                initial_value=namespace or config.defaults.namespace,
                max_length=63,
            ),
        ),
    ]


def _profile_input(config: BotConfig) -> list[InputBlock]:
    """The analysis profile picker, when the config has profiles (Slack shows 100 at most)."""
    if not config.profiles:
        return []
    options = [Option(value=name, text=name) for name in sorted(config.profiles)][:100]
    initial = next((o for o in options if o.value == config.defaults.profile), None)
    return [
        InputBlock(
            block_id="profile",
            label="Analysis profile",
            optional=True,
            element=StaticSelectElement(
                action_id="profile", options=options, initial_option=initial
            ),
        )
    ]


def _options_input() -> InputBlock:
    """The start's switches."""
    return InputBlock(
        block_id="options",
        label="Options",
        optional=True,
        element=CheckboxesElement(
            action_id="options",
            options=[Option(value="approval", text="Wait for approval before promoting")],
        ),
    )


def submission_text(values: dict[str, Any]) -> str:
    """The ``start`` command text equivalent to a form submission (parsed as typed text)."""

    def text(block: str) -> str:
        # Slack keys state by block id, then action id (equal here: ids are unique per view)
        value = values.get(block, {}).get(block, {}).get("value")
        return str(value or "").strip()

    words = ["start", shlex.quote(text("deployment") or "")]
    words += [shlex.quote(w) for w in text("images").split()]
    if namespace := text("namespace"):
        words += ["-n", shlex.quote(namespace)]
    selected = (values.get("profile", {}).get("profile", {}) or {}).get("selected_option") or {}
    if selected.get("value"):
        words += ["--profile", shlex.quote(str(selected["value"]))]
    chosen = (values.get("options", {}).get("options", {}) or {}).get("selected_options") or []
    if any(o.get("value") == "approval" for o in chosen):
        words.append("--approval")
    return " ".join(words)


def origin_channel(private_metadata: str) -> str:
    """The channel the form was opened from (kept in the view's private metadata)."""
    return _metadata(private_metadata, "channel") or ""


def origin_cluster(private_metadata: str) -> str | None:
    """The cluster the form was opened for (None: none named). Checked by the caller."""
    cluster = _metadata(private_metadata, "cluster")
    return cluster[:64] if cluster else None


def _metadata_of(channel: str, cluster: str | None) -> str:
    data = {"channel": channel}
    if cluster:
        data["cluster"] = cluster
    return json.dumps(data)


def _metadata(private_metadata: str, key: str) -> str | None:
    try:
        data = json.loads(private_metadata or "{}")
    except ValueError:
        return None
    value = data.get(key) if isinstance(data, dict) else None
    return str(value) if value is not None else None

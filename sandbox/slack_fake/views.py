"""The ``views.*`` family: modals, opened with a trigger id Slack accepts once."""

from __future__ import annotations

import copy
import secrets

from sandbox import slack_requests
from sandbox.slack_fake.blocks import validate_view
from sandbox.slack_fake.errors import ApiError, invalid_arguments
from sandbox.slack_fake.params import str_param
from sandbox.slack_fake.records import JSON
from sandbox.slack_fake.state import SlackState, WebApiMethod, with_block_id

# Seconds a trigger id stays usable.
TRIGGER_TTL = 3.0


def _use_trigger(slack: SlackState, params: JSON) -> None:
    trigger_id = str_param(params, "trigger_id")
    if trigger_id is None:
        raise invalid_arguments("missing required field: trigger_id")
    issued_at = slack_requests.trigger_issued_at(trigger_id)
    if issued_at is None:
        raise ApiError("invalid_trigger_id")
    if trigger_id in slack.used_triggers:
        raise ApiError("exchanged_trigger_id")
    if slack.trigger_ttl is not None and slack.clock() - issued_at > slack.trigger_ttl:
        raise ApiError("expired_trigger_id")
    slack.used_triggers.add(trigger_id)


def _view_json(
    slack: SlackState, view: JSON, *, view_id: str, root_view_id: str, previous: str | None
) -> JSON:
    return {
        "id": view_id,
        "team_id": slack.team_id,
        "type": view.get("type", "modal"),
        "title": view.get("title"),
        "submit": view.get("submit"),
        "close": view.get("close"),
        "blocks": [with_block_id(b) for b in view.get("blocks", [])],
        "private_metadata": view.get("private_metadata", ""),
        "callback_id": view.get("callback_id", ""),
        "external_id": view.get("external_id", ""),
        "state": {"values": {}},
        "hash": f"{int(slack.clock())}.{secrets.token_hex(4)}",
        "clear_on_close": bool(view.get("clear_on_close", False)),
        "notify_on_close": bool(view.get("notify_on_close", False)),
        "previous_view_id": previous,
        "root_view_id": root_view_id,
        "app_id": slack.app_id,
        "app_installed_team_id": slack.team_id,
        "bot_id": slack.bot_id,
    }


def _checked_view(slack: SlackState, params: JSON, *, replacing: str | None = None) -> JSON:
    view = params.get("view")
    if view is None:
        raise invalid_arguments("missing required field: view")
    messages = validate_view(view)
    if messages:
        raise invalid_arguments(*messages)
    assert isinstance(view, dict)  # validate_view rejects anything else
    external_id = view.get("external_id")
    if external_id and any(
        v.get("external_id") == external_id and v["id"] != replacing for v in slack.views.values()
    ):
        raise ApiError("duplicate_external_id")
    return view


def open_view(slack: SlackState, params: JSON) -> JSON:
    """``views.open`` and ``views.push``: a modal, opened with a fresh trigger id."""
    # views.push takes the same arguments; the fake does not model the view stack.
    _use_trigger(slack, params)
    view = _checked_view(slack, params)
    view_id = slack.new_id("V")
    slack.views[view_id] = _view_json(
        slack, view, view_id=view_id, root_view_id=view_id, previous=None
    )
    return {"view": copy.deepcopy(slack.views[view_id])}


def update(slack: SlackState, params: JSON) -> JSON:
    """``views.update``: replace a modal, by view id or external id."""
    view_id = str_param(params, "view_id")
    external_id = str_param(params, "external_id")
    if view_id is None and external_id is None:
        raise invalid_arguments("missing required field: view_id or external_id")
    current = None
    if view_id is not None:
        current = slack.views.get(view_id)
    else:
        current = next(
            (v for v in slack.views.values() if v.get("external_id") == external_id), None
        )
    if current is None:
        raise ApiError("not_found")
    expected_hash = str_param(params, "hash")
    if expected_hash is not None and expected_hash != current["hash"]:
        raise ApiError("hash_conflict")
    view = _checked_view(slack, params, replacing=current["id"])
    updated = _view_json(
        slack,
        view,
        view_id=current["id"],
        root_view_id=current["root_view_id"],
        previous=current["previous_view_id"],
    )
    slack.views[current["id"]] = updated
    return {"view": copy.deepcopy(updated)}


METHODS: dict[str, WebApiMethod] = {
    "views.open": open_view,
    "views.push": open_view,
    "views.update": update,
}

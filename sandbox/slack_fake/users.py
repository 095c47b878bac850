"""The ``users.*`` family (``users.info``)."""

from __future__ import annotations

from sandbox.slack_fake.errors import ApiError
from sandbox.slack_fake.params import str_param
from sandbox.slack_fake.records import JSON
from sandbox.slack_fake.state import SlackState, WebApiMethod


def info(slack: SlackState, params: JSON) -> JSON:
    """``users.info``: one member of the workspace."""
    user = slack.users.get(str_param(params, "user") or "")
    if user is None:
        raise ApiError("user_not_found")
    return {
        "user": {
            "id": user.id,
            "team_id": slack.team_id,
            "name": user.name,
            "deleted": user.deleted,
            "real_name": user.real_name or user.name,
            "tz": user.tz,
            "tz_label": user.tz,
            "tz_offset": 3600,
            "is_admin": user.is_admin,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": user.is_bot,
            "is_app_user": False,
            "updated": 1_700_000_000,
            "profile": {
                "real_name": user.real_name or user.name,
                "display_name": user.name,
                "email": user.email,
                "team": slack.team_id,
            },
        }
    }


METHODS: dict[str, WebApiMethod] = {"users.info": info}

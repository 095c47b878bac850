"""The ``usergroups.*`` family: user groups (``@handle``) and their members."""

from __future__ import annotations

from sandbox import slack_requests
from sandbox.slack_fake.errors import ApiError
from sandbox.slack_fake.params import str_param, truthy
from sandbox.slack_fake.records import JSON
from sandbox.slack_fake.state import SlackState, WebApiMethod
from sandbox.slack_fake.workspace import SlackUserGroup


def _usergroup_json(
    slack: SlackState, group: SlackUserGroup, *, include_users: bool, include_count: bool
) -> JSON:
    data: JSON = {
        "id": group.id,
        "team_id": slack.team_id,
        "is_usergroup": True,
        "is_subteam": True,
        "name": group.name,
        "description": group.description,
        "handle": group.handle,
        "is_external": False,
        "date_create": 1_700_000_000,
        "date_update": 1_700_000_000,
        "date_delete": 0 if group.enabled else 1_700_000_100,
        "auto_type": None,
        "created_by": slack_requests.DEFAULT_USER_ID,
        "updated_by": slack_requests.DEFAULT_USER_ID,
        "deleted_by": None,
        "prefs": {"channels": [], "groups": []},
    }
    if include_users:
        data["users"] = list(group.users)
    if include_count:
        data["user_count"] = len(group.users)
    return data


def list_groups(slack: SlackState, params: JSON) -> JSON:
    """``usergroups.list``: the enabled groups (all with ``include_disabled``)."""
    include_disabled = truthy(params.get("include_disabled"))
    return {
        "usergroups": [
            _usergroup_json(
                slack,
                g,
                include_users=truthy(params.get("include_users")),
                include_count=truthy(params.get("include_count")),
            )
            for g in slack.usergroups.values()
            if g.enabled or include_disabled
        ]
    }


def list_users(slack: SlackState, params: JSON) -> JSON:
    """``usergroups.users.list``: a group's members."""
    group = slack.usergroups.get(str_param(params, "usergroup") or "")
    if group is None or (not group.enabled and not truthy(params.get("include_disabled"))):
        raise ApiError("no_such_subteam")
    return {"users": list(group.users)}


METHODS: dict[str, WebApiMethod] = {
    "usergroups.list": list_groups,
    "usergroups.users.list": list_users,
}

"""The ``files.*`` family: the two-step upload flow that ``files_upload_v2`` uses."""

from __future__ import annotations

import copy
import secrets

from sandbox.slack_fake.errors import ApiError, invalid_arguments
from sandbox.slack_fake.params import str_param
from sandbox.slack_fake.records import JSON, Message, PendingFile, UploadedFile
from sandbox.slack_fake.state import SlackState, WebApiMethod


def get_upload_url_external(slack: SlackState, params: JSON) -> JSON:
    """``files.getUploadURLExternal``: where to upload a file's content."""
    filename = str_param(params, "filename")
    length = params.get("length")
    if filename is None:
        raise invalid_arguments("missing required field: filename")
    try:
        size = int(length) if length is not None else -1
    except (TypeError, ValueError):
        size = -1
    if size < 0:
        raise invalid_arguments("missing required field: length")
    file_id = slack.new_id("F")
    key = secrets.token_urlsafe(16)
    slack.pending_files[key] = PendingFile(file_id, filename)
    return {"upload_url": f"{slack.base_url}/upload/v1/{key}", "file_id": file_id}


def complete_upload_external(slack: SlackState, params: JSON) -> JSON:
    """``files.completeUploadExternal``: finish uploads; share them to a channel if given."""
    files = params.get("files")
    if not isinstance(files, list) or not files:
        raise invalid_arguments("missing required field: files")
    channel_id = None
    if str_param(params, "channel_id") is not None:
        channel_id = slack.postable_channel(params, "channel_id").id
    elif str_param(params, "channels") is not None:
        # files_upload_v2(channels=[...]) sends a comma-separated list; share to the first.
        first = str(params["channels"]).split(",")[0]
        channel_id = slack.postable_channel({"channel": first}).id
    thread_ts = str_param(params, "thread_ts")
    root = None if channel_id is None else slack.thread_root(channel_id, thread_ts)
    by_id = {p.id: (key, p) for key, p in slack.pending_files.items()}
    completed: list[JSON] = []
    for entry in files:
        file_id = entry.get("id") if isinstance(entry, dict) else None
        found = by_id.get(str(file_id))
        if found is None or found[1].content is None:
            raise ApiError("file_not_found")
        key, pending = found
        title = str(entry.get("title") or pending.filename)
        uploaded = UploadedFile(
            id=pending.id,
            filename=pending.filename,
            title=title,
            content=pending.content or b"",
            channel=channel_id,
            thread_ts=None if root is None else root.ts,
            initial_comment=str_param(params, "initial_comment"),
        )
        slack.files[pending.id] = uploaded
        del slack.pending_files[key]
        completed.append(
            {
                "id": uploaded.id,
                "name": uploaded.filename,
                "title": uploaded.title,
                "size": len(uploaded.content),
                "user": slack.bot_user_id,
                "created": int(slack.clock()),
                "permalink": (
                    f"https://{slack.team_domain}.slack.com/files/"
                    f"{slack.bot_user_id}/{uploaded.id}/{uploaded.filename}"
                ),
                "channels": [] if channel_id is None else [channel_id],
            }
        )
    if channel_id is not None:
        # Sharing the files posts a message, in the thread when thread_ts is given.
        ts = slack.new_ts()
        data = slack.bot_message(ts, {"text": str_param(params, "initial_comment") or ""})
        data["files"] = copy.deepcopy(completed)
        data["upload"] = True
        if root is not None:
            data["thread_ts"] = root.ts
            data["parent_user_id"] = root.data.get("user")
        slack.store(Message(channel_id, ts, data, versions=[copy.deepcopy(data)]))
    return {"files": completed}


METHODS: dict[str, WebApiMethod] = {
    "files.getUploadURLExternal": get_upload_url_external,
    "files.completeUploadExternal": complete_upload_external,
}

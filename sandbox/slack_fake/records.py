"""What the fake records: every call and response-URL post, and the objects it stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

JSON = dict[str, Any]


@dataclass(frozen=True)
class RecordedCall:
    """One Web API call as the fake saw it. ``params`` never hold the token."""

    method: str
    params: JSON
    at: float
    status: int
    response: JSON
    token_type: Literal["bot", "app", "invalid"] | None

    @property
    def ok(self) -> bool:
        """Whether Slack would have answered ``ok: true``."""
        return self.status == 200 and bool(self.response.get("ok"))

    @property
    def error(self) -> str | None:
        """Slack's error code, if the call failed."""
        error = self.response.get("error")
        return error if isinstance(error, str) else None


@dataclass(frozen=True)
class ResponseUrlPost:
    """One POST to a ``response_url`` and how the fake answered it."""

    url: str
    body: JSON
    at: float
    status: int
    error: str | None
    # host:port the post came from: posts over one kept-alive connection share it
    peer: str = ""

    @property
    def ok(self) -> bool:
        """Whether the post was accepted."""
        return self.status == 200


@dataclass(frozen=True)
class UploadedFile:
    """A file uploaded through the ``files_upload_v2`` flow."""

    id: str
    filename: str
    title: str
    content: bytes
    channel: str | None
    thread_ts: str | None
    initial_comment: str | None


@dataclass
class Message:
    """A message in a channel: its current data, every version, and whether deleted."""

    channel: str
    ts: str
    data: JSON
    versions: list[JSON] = field(default_factory=list)
    deleted: bool = False

    @property
    def thread_ts(self) -> str | None:
        """The thread the message belongs to, if any (a root names its own ts)."""
        value = self.data.get("thread_ts")
        return value if isinstance(value, str) else None


@dataclass
class ResponseUrl:
    """A ``response_url`` the fake issued, and how often it was used."""

    url: str
    channel: str
    user: str
    message_ts: str | None
    issued_at: float
    posts: int = 0
    # The last ephemeral posted through this URL: `replace_original` replaces it when
    # the URL belongs to an ephemeral interaction (a slash command).
    last_ephemeral: int | None = None


@dataclass
class PendingFile:
    """A file whose upload URL was issued; ``content`` is set once it is uploaded."""

    id: str
    filename: str
    content: bytes | None = None

"""A local fake of Slack for end-to-end tests of the Slack front.

:class:`SlackFake` is an aiohttp server on 127.0.0.1 that runs in a background thread
with its own event loop, so both synchronous code and code on any other event loop can
talk to it. It answers the Web API methods canary-bot uses the way Slack does:

* request bodies form-encoded or JSON (or query parameters), the token in an
  ``Authorization: Bearer`` header (or a form/query ``token`` field; Slack ignores a
  token inside a JSON body);
* HTTP 200 with ``{"ok": false, "error": ...}`` for API errors: ``not_authed``,
  ``invalid_auth``, ``not_allowed_token_type``, ``channel_not_found``, ``not_in_channel``,
  ``is_archived``, ``message_not_found``, ``cant_update_message``, ``no_text``,
  ``msg_too_long``, ``invalid_blocks`` (with Slack's ``errors`` list and json-pointers),
  ``invalid_arguments``, ``expired_trigger_id``, ``exchanged_trigger_id``, ...;
* message ``ts`` values that are unique and increasing (``"1764140000.000100"``);
* HTTP 429 with ``Retry-After`` and HTTP 5xx when told to (:meth:`SlackFake.rate_limit`,
  :meth:`SlackFake.server_errors`), or at Slack's own rates
  (:meth:`SlackFake.enforce_rate_limits`);
* ``response_url`` endpoints (:meth:`SlackFake.new_response_url`) with Slack's limits;
* the file upload flow that ``files_upload_v2`` uses;
* Socket Mode (see :mod:`sandbox.slack_socket_mode`).

Every call is recorded (method, parameters, time, HTTP status, response; never the
token) and there are views for assertions: :meth:`SlackFake.messages`,
:meth:`SlackFake.thread`, :meth:`SlackFake.updates_of`, :meth:`SlackFake.ephemerals`.

Where Slack's behaviour is not documented the fake picks the stricter reading, so a
test that passes here does not rely on leniency:

* a ``thread_ts`` that names no message in the channel is ``thread_not_found``;
* a ``response_url`` answers 404 ``used_url`` after 5 posts and ``expired_url`` after
  30 minutes;
* ``views.open``/``views.push`` accept a trigger id once, within ``trigger_ttl`` seconds
  of its issue time (trigger ids from :func:`sandbox.slack_requests.make_trigger_id`).

The package, by concern: :mod:`~sandbox.slack_fake.server` (the server and the views
tests assert on), :mod:`~sandbox.slack_fake.handlers` (HTTP: parsing, tokens, faults,
call records), :mod:`~sandbox.slack_fake.state` and :mod:`~sandbox.slack_fake.records`
(what the fake holds), :mod:`~sandbox.slack_fake.blocks` (Block Kit validation),
:mod:`~sandbox.slack_fake.faults` (429s and 5xxs), and one module per Web API family
(``auth``, ``chat``, ``conversations``, ``users``, ``usergroups``, ``views``, ``files``,
``response_urls``).
"""

from sandbox.slack_fake.blocks import validate_blocks
from sandbox.slack_fake.records import RecordedCall, ResponseUrlPost, UploadedFile
from sandbox.slack_fake.server import SlackFake
from sandbox.slack_fake.workspace import (
    DEFAULT_APP_TOKEN,
    DEFAULT_BOT_TOKEN,
    DEFAULT_CHANNELS,
    DEFAULT_USERGROUPS,
    DEFAULT_USERS,
    SlackChannel,
    SlackUser,
    SlackUserGroup,
)

__all__ = [
    "DEFAULT_APP_TOKEN",
    "DEFAULT_BOT_TOKEN",
    "DEFAULT_CHANNELS",
    "DEFAULT_USERGROUPS",
    "DEFAULT_USERS",
    "RecordedCall",
    "ResponseUrlPost",
    "SlackChannel",
    "SlackFake",
    "SlackUser",
    "SlackUserGroup",
    "UploadedFile",
    "validate_blocks",
]

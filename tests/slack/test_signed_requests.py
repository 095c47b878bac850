"""Requests built as Slack sends them: signed bodies that slack_sdk accepts or rejects."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs

import pytest
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from sandbox import slack_requests as builders
from sandbox.slack_requests import SignedRequest
from tests.fixtures.slack import SlackRequests

SLASH_COMMAND_FIELDS = {
    "token",
    "team_id",
    "team_domain",
    "channel_id",
    "channel_name",
    "user_id",
    "user_name",
    "command",
    "text",
    "api_app_id",
    "is_enterprise_install",
    "response_url",
    "trigger_id",
}


def build_all(secret: str, forgery: str | None = None) -> list[SignedRequest]:
    how = {
        "stale": forgery == "stale",
        "wrong_secret": forgery == "wrong_secret",
        "tampered": forgery == "tampered",
    }
    return [
        builders.slash_command(
            signing_secret=secret,
            text="status podinfo",
            stale=how["stale"],
            wrong_secret=how["wrong_secret"],
            tampered=how["tampered"],
        ),
        builders.block_actions(
            "abort",
            "test/podinfo",
            signing_secret=secret,
            stale=how["stale"],
            wrong_secret=how["wrong_secret"],
            tampered=how["tampered"],
        ),
        builders.view_submission(
            "confirm_abort",
            signing_secret=secret,
            stale=how["stale"],
            wrong_secret=how["wrong_secret"],
            tampered=how["tampered"],
        ),
    ]


def test_signature_verifier_accepts_what_the_builders_sign(signing_secret: str) -> None:
    verifier = SignatureVerifier(signing_secret)

    for body, headers in build_all(signing_secret):
        assert verifier.is_valid_request(body, headers)


@pytest.mark.parametrize("forgery", ["stale", "wrong_secret", "tampered"])
def test_signature_verifier_rejects_forged_requests(signing_secret: str, forgery: str) -> None:
    verifier = SignatureVerifier(signing_secret)

    for body, headers in build_all(signing_secret, forgery):
        assert not verifier.is_valid_request(body, headers)


def test_the_signature_is_hmac_sha256_over_version_timestamp_and_body(signing_secret: str) -> None:
    body, headers = builders.sign(b"a=1", signing_secret=signing_secret, timestamp=1_700_000_000)

    expected = SignatureVerifier(signing_secret).generate_signature(
        timestamp="1700000000", body=b"a=1"
    )
    assert headers["X-Slack-Request-Timestamp"] == "1700000000"
    assert headers["X-Slack-Signature"] == expected
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert body == b"a=1"


def test_a_stale_request_is_ten_minutes_old(signing_secret: str) -> None:
    _, headers = builders.slash_command(signing_secret=signing_secret, stale=True)

    assert time.time() - int(headers["X-Slack-Request-Timestamp"]) >= 600


def test_a_slash_command_body_carries_every_field_slack_sends(signing_secret: str) -> None:
    body, _ = builders.slash_command(
        signing_secret=signing_secret, text="start podinfo image=podinfo:6.0.3 -n test"
    )

    fields = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
    assert set(fields) == SLASH_COMMAND_FIELDS
    assert fields["command"] == "/canary"
    assert fields["text"] == "start podinfo image=podinfo:6.0.3 -n test"
    assert b"+" in body  # spaces form-encoded as Slack does
    assert builders.trigger_issued_at(fields["trigger_id"]) is not None


def test_interactive_bodies_are_a_payload_field_of_json(signing_secret: str) -> None:
    body, _ = builders.block_actions(
        "abort",
        "test/podinfo",
        signing_secret=signing_secret,
        message_ts="1764140000.000100",
        channel_id="C0DEPLOYS",
        user_id="U0BOB",
    )

    [payload_json] = parse_qs(body.decode())["payload"]
    payload = json.loads(payload_json)
    assert payload["type"] == "block_actions"
    assert payload["user"]["id"] == "U0BOB"
    assert payload["container"] == {
        "type": "message",
        "message_ts": "1764140000.000100",
        "channel_id": "C0DEPLOYS",
        "is_ephemeral": False,
    }
    assert payload["actions"][0]["action_id"] == "abort"
    assert payload["actions"][0]["value"] == "test/podinfo"


def test_view_submission_payload_carries_the_state_values() -> None:
    values = {"reason": {"text": {"type": "plain_text_input", "value": "error rate"}}}

    payload = builders.view_submission_payload(
        "confirm_abort", values, private_metadata="test/podinfo"
    )

    assert payload["type"] == "view_submission"
    assert payload["view"]["callback_id"] == "confirm_abort"
    assert payload["view"]["state"]["values"] == values
    assert payload["view"]["private_metadata"] == "test/podinfo"


def test_bound_builders_use_the_fakes_response_url_and_trigger(
    slack_requests: SlackRequests,
) -> None:
    payload = slack_requests.slash_command_payload(text="status")

    assert payload["response_url"].startswith(slack_requests.fake.base_url + "/hooks/commands/")
    issued = builders.trigger_issued_at(payload["trigger_id"])
    assert issued is not None
    assert abs(issued - time.time()) < 5


async def test_a_click_on_a_posted_card_describes_the_rendered_button(
    slack_requests: SlackRequests,
) -> None:
    fake = slack_requests.fake
    client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
    card = await client.chat_postMessage(
        channel="C0DEPLOYS",
        text="podinfo",
        blocks=[
            {
                "type": "actions",
                "block_id": "controls",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "abort",
                        "value": "test/podinfo",
                        "style": "danger",
                        "text": {"type": "plain_text", "text": "Abort"},
                    }
                ],
            }
        ],
    )

    payload = slack_requests.block_actions_payload("abort", message_ts=card["ts"])

    [action] = payload["actions"]
    assert (action["block_id"], action["value"], action["style"]) == (
        "controls",
        "test/podinfo",
        "danger",
    )
    assert action["text"]["text"] == "Abort"
    assert payload["message"]["blocks"][0]["block_id"] == "controls"
    assert payload["response_url"].startswith(fake.base_url + "/hooks/actions/")

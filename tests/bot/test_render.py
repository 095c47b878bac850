"""The status card, event replies and alerts: what people see, within Slack's limits."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bot.render.card import (
    ButtonTarget,
    button_value,
    card_blocks,
    parse_button_target,
    parse_button_value,
)
from bot.render.events import audit_line, event_reply, failure_alert
from bot.render.limits import MessageTooLarge, check_message
from bot.render.text import card_text
from rollout.actions import actions_for, allowed_actions
from rollout.models import CanaryRelease, Phase, RolloutEvent
from tests.bot.factories import NOW, event, release

SNAPSHOTS = Path(__file__).parent / "snapshots"


def snapshot(name: str, actual: str) -> None:
    """Compare with the stored rendering; UPDATE_SNAPSHOTS=1 rewrites it."""
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") == "1" or not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual)
    assert actual == path.read_text(), f"{name} changed; UPDATE_SNAPSHOTS=1 to accept"


def all_text(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def button_ids(blocks: list[dict[str, Any]]) -> list[str]:
    return [
        element["action_id"]
        for block in blocks
        if block["type"] == "actions"
        for element in block["elements"]
    ]


@pytest.mark.parametrize("phase", list(Phase))
def test_every_phase_renders_within_slack_limits(phase: Phase) -> None:
    blocks = check_message(card_blocks(release(phase), NOW))
    assert button_ids(blocks) == [f"canary_{a}" for a in actions_for(release(phase))]


def test_progressing_card_shows_the_facts() -> None:
    blocks = check_message(card_blocks(release(Phase.PROGRESSING, failed_checks=2), NOW))
    text = all_text(blocks)
    for fact in [
        "Canary podinfo-x7k2p.test: Progressing at 25%",
        "podinfod: stefanprodan/podinfo:6.0.0 → stefanprodan/podinfo:6.0.3",
        "25% (max 50%)",
        "2 / 10",
        "request-success-rate* 99.7 (want &gt;= 99)",  # Slack shows ">="
        "elapsed 5m · about 1m left",
        "<@U0ALICE>",
        "prod-eu-1",
    ]:
        assert fact in text, fact
    assert button_ids(blocks) == ["canary_promote", "canary_pause", "canary_abort"]
    snapshot("card_progressing.json", json.dumps(blocks, indent=1, ensure_ascii=False) + "\n")


def manual(base: CanaryRelease, approved: bool = False) -> CanaryRelease:
    status = base.status.model_copy(update={"approved": approved})
    spec = base.spec.model_copy(update={"approval": "manual"})
    return base.model_copy(update={"spec": spec, "status": status})


def buttons_of(one: CanaryRelease) -> list[str]:
    return [i.removeprefix("canary_") for i in button_ids(check_message(card_blocks(one, NOW)))]


def test_buttons_by_phase_are_what_the_engine_takes() -> None:
    # automatic approval: promote is offered from the start (refused until the canary runs)
    for phase in (Phase.INITIALIZED, Phase.WAITING, Phase.PROGRESSING, Phase.WAITING_PROMOTION):
        assert buttons_of(release(phase)) == ["promote", "pause", "abort"], phase
    assert buttons_of(release(Phase.PAUSED)) == ["resume", "promote", "abort"]
    # the target is rolling out: only a rollback is left
    assert buttons_of(release(Phase.PROMOTING)) == ["abort"]
    assert buttons_of(release(Phase.SUCCEEDED)) == buttons_of(release(Phase.FAILED)) == []
    # manual approval: approve (ahead of time too) instead of promote, until approved
    assert buttons_of(manual(release(Phase.PROGRESSING))) == ["approve", "pause", "abort"]
    assert buttons_of(manual(release(Phase.WAITING_PROMOTION))) == ["approve", "pause", "abort"]
    approved = manual(release(Phase.PROGRESSING), approved=True)
    assert buttons_of(approved) == ["promote", "pause", "abort"]
    # every offered button is one the engine's table takes in that phase
    for phase in Phase:
        for one in (release(phase), manual(release(phase))):
            assert set(buttons_of(one)) <= set(allowed_actions(phase))


def test_destructive_buttons_ask_for_confirmation() -> None:
    blocks = check_message(card_blocks(release(Phase.WAITING_PROMOTION), NOW))
    elements = {e["action_id"]: e for b in blocks if b["type"] == "actions" for e in b["elements"]}
    assert "confirm" in elements["canary_abort"]
    assert "stable version" in elements["canary_abort"]["confirm"]["text"]["text"]
    assert elements["canary_abort"]["style"] == "danger"
    assert "confirm" in elements["canary_promote"]
    assert "confirm" not in elements["canary_pause"]
    manual_blocks = check_message(card_blocks(manual(release(Phase.WAITING_PROMOTION)), NOW))
    assert "confirm" in {
        e["action_id"]: e for b in manual_blocks if b["type"] == "actions" for e in b["elements"]
    }["canary_approve"]


def test_finished_card_has_duration_and_no_buttons() -> None:
    blocks = check_message(card_blocks(release(Phase.SUCCEEDED, weight=0), NOW))
    assert "took 4m" in all_text(blocks)
    assert button_ids(blocks) == []


def test_unmeasured_metric_is_said_so() -> None:
    text = all_text(check_message(card_blocks(release(metric_value=None), NOW)))
    assert "not measured yet" in text


def with_cluster(original: CanaryRelease, cluster: str) -> CanaryRelease:
    spec = original.spec.model_copy(update={"cluster": cluster})
    return original.model_copy(update={"spec": spec})


def test_button_value_round_trip() -> None:
    value = button_value(release(seq=12))  # the factory's spec.cluster is prod-eu-1
    assert parse_button_target(value) == ButtonTarget("prod-eu-1", "test", "podinfo-x7k2p", 12)
    unnamed = with_cluster(release(seq=12), "")
    assert button_value(unnamed) == "test/podinfo-x7k2p@12"
    assert parse_button_target("test/podinfo-x7k2p@12").cluster is None
    assert parse_button_value("test/podinfo-x7k2p@12") == ("test", "podinfo-x7k2p", 12)


@pytest.mark.parametrize(
    "value", ["garbage", "Prod EU:test/x@1", ":test/x@1", "a:b:test/x@1", "a:test/x@", "a:/x@1"]
)
def test_a_button_value_that_is_not_ours_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        parse_button_target(value)


def test_a_display_name_that_is_no_dns_label_stays_out_of_the_value() -> None:
    display = with_cluster(release(seq=3), "Prod EU/1")
    assert button_value(display) == "test/podinfo-x7k2p@3"


def test_long_messages_are_clipped_not_rejected() -> None:
    huge = release(message="x" * 10_000)
    check_message(card_blocks(huge, NOW))
    long_event = RolloutEvent.model_validate(
        event(3, "Halted", "y" * 5000, details={f"k{i}": "v" * 300 for i in range(30)})
    )
    text, blocks = event_reply(long_event)
    check_message(blocks, text)


def test_the_checker_rejects_oversized_payloads() -> None:
    too_many = card_blocks(release(), NOW) * 11
    with pytest.raises(MessageTooLarge):
        check_message(too_many)
    with pytest.raises(MessageTooLarge):
        check_message([{"type": "section", "text": {"type": "mrkdwn", "text": "z" * 3001}}])


def test_failure_alert_mentions_requester_cause_and_thread() -> None:
    failed = RolloutEvent.model_validate(
        event(
            9,
            "RolledBack",
            "canary analysis failed: request-success-rate 48.1% < 99% for 10 checks",
            severity="error",
            details={"request-success-rate": "48.1"},
        )
    )
    text, blocks = failure_alert(
        release(Phase.FAILED, metric_value=48.1), failed, "https://x.slack.com/archives/C/p1"
    )
    rendered = all_text(check_message(blocks, text))
    assert "<@U0ALICE>" in text and "prod-eu-1" in text and "48.1%" in text
    assert "<https://x.slack.com/archives/C/p1|Open the release thread>" in rendered
    assert "request-success-rate: 48.1" in rendered
    # Slack shows ">=" and "<"; as raw characters "<" would start markup
    assert "last request-success-rate 48.1 (&gt;= 99)" in rendered
    assert "48.1% &lt; 99% for 10 checks" in text


def test_audit_line() -> None:
    assert audit_line("abort", "U0BOB", "too slow") == ":joystick: aborted by <@U0BOB>: too slow"


def test_text_card_snapshot() -> None:
    text = card_text(release(Phase.PROGRESSING, failed_checks=1), NOW)
    assert "stefanprodan/podinfo:6.0.0 → stefanprodan/podinfo:6.0.3" in text
    snapshot("card_progressing.txt", text + "\n")


HOSTILE = "<!channel> &lt;!here&gt; <https://evil.example|sign in>"


def hostile_release(**requester: str) -> Any:
    base = release(Phase.PROGRESSING, message=f"halted: webhook said {HOSTILE}")
    who = base.spec.requested_by.model_copy(update=requester)
    metrics = [
        m.model_copy(update={"message": f"query said {HOSTILE}", "ok": False})
        for m in base.status.metrics
    ]
    return base.model_copy(
        update={
            "spec": base.spec.model_copy(update={"requested_by": who, "cluster": HOSTILE}),
            "status": base.status.model_copy(update={"metrics": metrics}),
        }
    )


def assert_inert(rendered: str) -> None:
    """No Slack markup but what canary-bot itself writes (emoji codes, its own mentions)."""
    for live in ("<!channel>", "<!here>", "<https://evil", "<@U1>", "<@U1&gt;"):
        assert live not in rendered, live


def test_cluster_and_person_supplied_text_is_escaped_on_the_card() -> None:
    who = {"user": "U1> <!channel", "user_name": ""}
    card = all_text(check_message(card_blocks(hostile_release(**who), NOW)))
    assert_inert(card)
    assert "U1&gt; &lt;!channel" in card  # the requester, as plain text
    assert "&lt;!channel&gt; &amp;lt;!here&amp;gt; &lt;https://evil.example|sign in&gt;" in card


def test_a_mention_needs_a_valid_slack_user_id() -> None:
    valid = all_text(check_message(card_blocks(hostile_release(user="W0GRID1"), NOW)))
    assert "<@W0GRID1>" in valid
    named = all_text(
        check_message(card_blocks(hostile_release(user="alice", user_name="<!here>"), NOW))
    )
    assert "<@" not in named and "&lt;!here&gt;" in named
    kubectl = all_text(check_message(card_blocks(hostile_release(source="kubectl"), NOW)))
    assert "<@U0ALICE>" not in kubectl and "Requested by*\\nalice" in kubectl


def test_event_replies_and_alerts_escape_messages_and_details() -> None:
    hostile = RolloutEvent.model_validate(
        event(
            4,
            "RolledBack",
            f"Rolling back: {HOSTILE}",
            severity="error",
            details={"<!here>": HOSTILE},
        )
    )
    text, blocks = event_reply(hostile)
    assert_inert(text + all_text(check_message(blocks, text)))
    alert_text, alert_blocks = failure_alert(
        hostile_release(user="U1> <!channel"), hostile, "https://x.slack.com/archives/C/p1"
    )
    rendered = alert_text + all_text(check_message(alert_blocks, alert_text))
    assert_inert(rendered)
    assert "<https://x.slack.com/archives/C/p1|Open the release thread>" in rendered
    # a permalink that is not one is shown as text, never as a link
    _, forged = failure_alert(release(Phase.FAILED), hostile, "https://a|b> <!channel")
    assert_inert(all_text(check_message(forged)))


def test_audit_lines_escape_the_reason_and_mention_only_ids() -> None:
    assert audit_line("abort", "U0BOB", "&lt;!channel&gt; <!here>") == (
        ":joystick: aborted by <@U0BOB>: &amp;lt;!channel&amp;gt; &lt;!here&gt;"
    )
    assert audit_line("pause", "U1> <!channel", "", "bob") == ":joystick: paused by bob"
    assert audit_line("pause", "U1> <!channel") == ":joystick: paused by U1&gt; &lt;!channel"


def test_a_release_awaiting_manual_approval_has_no_promote_button() -> None:
    waiting = release(Phase.WAITING_PROMOTION)
    manual = waiting.model_copy(
        update={"spec": waiting.spec.model_copy(update={"approval": "manual"})}
    )
    assert button_ids(check_message(card_blocks(manual, NOW))) == [
        "canary_approve",
        "canary_pause",
        "canary_abort",
    ]
    approved = manual.model_copy(
        update={"status": manual.status.model_copy(update={"approved": True})}
    )
    assert "canary_promote" in button_ids(check_message(card_blocks(approved, NOW)))

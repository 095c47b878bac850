"""Structured replies: Slack gets mrkdwn with every value escaped; the console gets text.

Operations returns ``Reply`` values; ``slack_text``/``slack_blocks`` and ``console_text``
render them. The console must show no Slack markup for any command, and a hostile value
must be inert on Slack and shown exactly as written on the console.
"""

from __future__ import annotations

import io
import json
import re

import pytest

from bot.authz import Authorizer
from bot.commands import ParseError, help_reply, parse_error_reply
from bot.config import parse_config
from bot.console import ConsoleNotifier, ConsoleSession
from bot.operations import Actor, Operations, describe_failure
from bot.process import CONSOLE_AUTHORIZATION
from bot.render.console_reply import console_text
from bot.render.limits import check_message
from bot.render.slack_reply import slack_blocks, slack_text
from bot.reply import Card, Channel, Code, Group, Icon, Link, Mention, Reply, Strong, spans_of
from rollout.kube import Kube
from rollout.models import Requester
from rollout.store import ReleaseStore
from tests.bot.factories import NOW, release

HOSTILE = "<!channel> *urgent* <https://evil.example|click> &amp; `x` :boom:"
IMAGE = "stefanprodan/podinfo:6.0.3"

# What Slack would read as markup, and what escaping leaves behind.
_MARKUP = {
    "emoji code": re.compile(r":[a-z][a-z0-9_+-]*:"),
    "link": re.compile(r"<[^<>\s]+\|[^<>]*>"),
    "mention or channel": re.compile(r"<[@#!][^>]*>"),
    "bold": re.compile(r"(?<![\w\"])\*[^\s*\"][^*\n]*\*"),
    "code span": re.compile(r"`"),
    "entity": re.compile(r"&(?:lt|gt|amp);"),
}


def markup_in(text: str) -> list[str]:
    """The kinds of Slack markup found in ``text``."""
    return [kind for kind, pattern in _MARKUP.items() if pattern.search(text)]


class NoGroups:
    async def members(self, group: str) -> frozenset[str]:
        return frozenset()


def operations(kube: Kube, namespace: str, scope: str | None = None) -> Operations:
    return Operations(
        config=parse_config(f"defaults: {{namespace: {namespace}}}\n"),
        store=ReleaseStore(kube),
        kube=kube,
        authorizer=Authorizer(CONSOLE_AUTHORIZATION, NoGroups()),
        scope=scope,
    )


# -- the renderers, without a cluster ---------------------------------------------------


def test_each_span_renders_as_mrkdwn_on_slack_and_as_words_on_the_console() -> None:
    reply = Reply(
        "ok",
        (
            (Icon(":rocket:"), Strong("Title"), " for ", Code("podinfo-x")),
            (Mention("U0ALICE", "alice"), " in ", Channel("C0DEPLOYS"), " or ", Channel("#ops")),
            (Group("S0SRE"), " ", Link("https://slack.example/t/1", "Open the release thread")),
        ),
    )
    assert slack_text(reply) == (
        ":rocket: *Title* for `podinfo-x`\n"
        "<@U0ALICE> in <#C0DEPLOYS> or #ops\n"
        "<!subteam^S0SRE> <https://slack.example/t/1|Open the release thread>"
    )
    assert console_text(reply) == (
        "Title for 'podinfo-x'\n"
        "alice in channel C0DEPLOYS or #ops\n"
        "user group S0SRE Open the release thread (https://slack.example/t/1)"
    )


def test_a_hostile_value_is_inert_on_slack_and_verbatim_on_the_console() -> None:
    reply = Reply(
        "refused",
        ((Icon(":warning:"), HOSTILE), (Code(HOSTILE),), (Mention("not-an-id", HOSTILE),)),
    )
    text = slack_text(reply)
    assert "<!channel>" not in text and "<https://evil" not in text, text
    assert "&lt;!channel&gt; *urgent* &lt;https://evil.example|click&gt; &amp;amp;" in text
    assert (
        "`&lt;!channel&gt; *urgent* &lt;https://evil.example|click&gt; &amp;amp; 'x' :boom:`"
        in (text)
    )
    blocks = json.dumps(check_message(slack_blocks(reply), text))
    assert "<!channel>" not in blocks and "<https://evil" not in blocks
    assert console_text(reply).splitlines() == [HOSTILE, f"'{HOSTILE}'", HOSTILE]


def test_a_link_to_an_address_that_is_not_one_is_only_its_label() -> None:
    reply = Reply("ok", (("see ", Link("javascript:alert(1)|x", "the <thread>")),))
    assert slack_text(reply) == "see the &lt;thread&gt;"


def test_help_and_parse_errors_keep_their_code_spans_apart() -> None:
    assert spans_of("use `-n test` or `--namespace`") == (
        "use ",
        Code("-n test"),
        " or ",
        Code("--namespace"),
    )
    assert spans_of("one ` backtick") == ("one ` backtick",)
    overview = help_reply(None)
    assert slack_text(overview).startswith("*canary-bot* — progressive delivery from Slack.")
    assert "`/canary start &lt;deployment&gt; image=&lt;ref&gt;" in slack_text(overview)
    assert "'/canary start <deployment> image=<ref>" in console_text(overview)
    error = parse_error_reply(
        ParseError("unknown option `--stpe`; did you mean `--step`?", "start")
    )
    assert error.kind == "refused"
    assert slack_text(error).startswith(
        ":warning: unknown option `--stpe`; did you mean `--step`?\n`/canary start"
    )
    assert markup_in(console_text(error)) == []
    assert markup_in(console_text(overview)) == []


def test_failures_are_errors_that_say_nothing_changed() -> None:
    failed = describe_failure(RuntimeError("secret detail"))
    assert failed.kind == "error"
    assert slack_text(failed) == (
        ":warning: Something went wrong on canary-bot's side; nothing was changed. Try again."
    )
    assert console_text(failed) == (
        "Something went wrong on canary-bot's side; nothing was changed. Try again."
    )


def test_a_card_reply_shows_the_card_on_both_fronts() -> None:
    shown = release()
    reply = Reply(
        "info", (("Canary podinfo-x7k2p.test: Progressing at 25%",), ("note",)), Card(shown, NOW)
    )
    blocks = check_message(slack_blocks(reply), slack_text(reply))
    assert blocks[0]["type"] == "header"
    assert blocks[-1] == {"type": "context", "elements": [{"type": "mrkdwn", "text": "note"}]}
    text = console_text(reply)
    assert text.startswith("Canary podinfo-x7k2p.test: Progressing at 25%\n---")
    assert "release  podinfo-x7k2p" in text and text.endswith("\nnote")


# -- every command, through Operations on the real control plane ------------------------


@pytest.mark.cluster
async def test_no_console_answer_carries_slack_markup(kube: Kube, podinfo: str) -> None:
    out = io.StringIO()
    console = ConsoleSession(operations(kube, podinfo), ConsoleNotifier(out=out), out=out)
    stranger = ConsoleSession(
        operations(kube, podinfo),
        ConsoleNotifier(out=out),
        out=out,
        actor=Actor(user="U0STRANGER", user_name="stranger", source="console"),
    )
    scoped = ConsoleSession(operations(kube, podinfo, scope="elsewhere"), ConsoleNotifier(out=out))
    asked = [
        (console, "help", "canary-bot — progressive delivery"),
        (console, "help abort", "'/canary abort [name] [reason…] [-n ns]'"),
        (console, "strat podinfo", "unknown subcommand 'strat'"),
        (console, "start", "'/canary start <deployment> image=<ref>"),
        (console, "pause", "Which release? Say '/canary pause <name> -n"),
        (console, f"plan podinfo image={IMAGE}", f"Plan for podinfo in {podinfo} (nothing"),
        (console, "start nosuch image=x/y:1", "Nothing was started:\n• "),
        (console, f"start podinfo image={IMAGE}", "Started release 'podinfo-"),
        (console, "status podinfo", "Canary podinfo-"),
        (console, "list", "Active releases in any namespace\n'podinfo-"),
        (console, "history podinfo", "No finished releases of podinfo."),
        (console, "status nosuch", "'/canary list -n"),
        (console, "promote podinfo", "Promotion requested for 'podinfo-"),
        (console, "resume podinfo", "so it cannot be resumed now; possible now:"),
        (console, "approve podinfo", "Approval requested for 'podinfo-"),
        (console, "pause podinfo", "Pause requested for 'podinfo-"),
        (console, "abort podinfo because", "Abort requested for 'podinfo-"),
        (stranger, "abort podinfo", "ask an admin to add you to an 'authorization.rules' entry"),
        (scoped, f"list -n {podinfo}", "This canary-bot handles namespace elsewhere only"),
    ]
    for session, line, expected in asked:
        answer = await session.handle(line)
        assert expected in answer, f"{line!r} answered {answer!r}"
        assert markup_in(answer) == [], f"{line!r} answered with markup: {answer!r}"


@pytest.mark.cluster
async def test_a_hostile_requester_is_escaped_on_slack_and_verbatim_on_the_console(
    kube: Kube, podinfo: str
) -> None:
    spec = release().spec.model_copy(
        update={"requested_by": Requester(user="mallory", user_name=HOSTILE, source="slack")}
    )
    created = await ReleaseStore(kube).create(podinfo, "podinfo-hostile", spec)
    ops = operations(kube, podinfo)
    for asked in (await ops.list_active(podinfo), await ops.status(created.metadata.name, podinfo)):
        text = slack_text(asked)
        blocks = json.dumps(check_message(slack_blocks(asked), text))
        for sent in (text, blocks):
            assert "<!channel>" not in sent and "<https://evil" not in sent, sent
        assert HOSTILE in console_text(asked), console_text(asked)
    listed = slack_text(await ops.list_active(podinfo))
    assert f"by {HOSTILE.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}" in listed
    answer = await ConsoleSession(ops, ConsoleNotifier(out=io.StringIO())).handle("list")
    assert answer.endswith(f"by {HOSTILE}"), answer

"""The /canary language: what users type, what they get back when it is wrong."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.commands import (
    ControlCommand,
    HelpCommand,
    HistoryCommand,
    ListCommand,
    OpenStartDialog,
    ParseError,
    PlanCommand,
    ReleaseOptions,
    StartCommand,
    StatusCommand,
    help_reply,
    parse,
)
from bot.commands.parser import MAX_TEXT, unlink
from bot.render.slack_reply import slack_text


def test_the_tutorial_start() -> None:
    command = parse("start podinfo image=stefanprodan/podinfo:6.0.3 -n test")
    assert command == StartCommand(
        ReleaseOptions(deployment="podinfo", image="stefanprodan/podinfo:6.0.3", namespace="test")
    )


def test_start_with_every_option() -> None:
    command = parse(
        "start podinfo podinfod=stefanprodan/podinfo:6.0.3 sidecar=envoyproxy/envoy:v1.30.1 "
        "--namespace=test --profile tutorial --step 5 --max 50 --interval 30s --threshold 10 "
        "--approval --ingress web --port 8080"
    )
    assert isinstance(command, StartCommand)
    assert command.options == ReleaseOptions(
        deployment="podinfo",
        images={"podinfod": "stefanprodan/podinfo:6.0.3", "sidecar": "envoyproxy/envoy:v1.30.1"},
        namespace="test",
        profile="tutorial",
        step_weight=5,
        max_weight=50,
        interval="30s",
        threshold=10,
        approval=True,
        ingress="web",
        port=8080,
    )


def test_key_value_spelling_of_ingress_as_the_preflight_check_suggests() -> None:
    command = parse("start podinfo image=stefanprodan/podinfo:6.0.3 ingress=web")
    assert isinstance(command, StartCommand)
    assert command.options.ingress == "web"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", HelpCommand()),
        ("help", HelpCommand()),
        ("help abort", HelpCommand("abort")),
        ("start --help", HelpCommand("start")),
        ("abort -h", HelpCommand("abort")),
        ("start", OpenStartDialog()),
        ("start -n test", OpenStartDialog("test")),
        ("status", StatusCommand()),
        ("status podinfo -n test", StatusCommand("podinfo", "test")),
        ("list", ListCommand()),
        ("list -n test", ListCommand("test")),
        ("history podinfo", HistoryCommand("podinfo")),
        ("promote podinfo", ControlCommand("promote", "podinfo")),
        ("pause", ControlCommand("pause")),
        ("resume podinfo-x7k2p -n test", ControlCommand("resume", "podinfo-x7k2p", "test")),
        ("approve podinfo", ControlCommand("approve", "podinfo")),
        (
            "abort podinfo error rate too high -n test",
            ControlCommand("abort", "podinfo", "test", "error rate too high"),
        ),
        ("ABORT podinfo", ControlCommand("abort", "podinfo")),
        ("plan podinfo --step 10", PlanCommand(ReleaseOptions("podinfo", step_weight=10))),
    ],
)
def test_commands(text: str, expected: object) -> None:
    assert parse(text) == expected


def test_slack_typography_and_escaping_are_undone() -> None:
    command = parse("abort podinfo “broken &amp; slow” -n test")
    assert command == ControlCommand("abort", "podinfo", "test", "broken & slow")
    linked = parse("start podinfo image=<http://ghcr.io/org/app:1.2|ghcr.io/org/app:1.2>")
    assert isinstance(linked, StartCommand)
    assert linked.options.image == "ghcr.io/org/app:1.2"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("strat podinfo", "did you mean `/canary start`?"),
        ("deploy podinfo", "try `/canary help`"),
        ("start podinfo image=a:1 --stpe 5", "did you mean `--step`?"),
        ("start podinfo image=a:1 --frobnicate", "valid options:"),
        ("start podinfo", "Add image=<ref>, e.g."),
        ("start podinfo image=Stefanprodan/podinfo:6.0.3", "repository names are lowercase"),
        ("start podinfo image=podinfo:", "the tag after ':' is empty"),
        ("start podinfo image=not an image", "is not understood"),
        ("start podinfo image=stefan prodan", "is not understood"),
        ("start podinfo image=x y:1", "is not understood"),
        ("start Podinfo image=a:1", "not a valid Deployment name"),
        ("start image=a:1", "needs the Deployment's name before the images"),
        ("start podinfo image=a:1 --step 0", "--step must be between 1 and 100"),
        ("start podinfo image=a:1 --step ten", "whole number"),
        ("start podinfo image=a:1 --max", "--max needs a value, e.g. --max 50"),
        ("start podinfo image=a:1 --interval 10", "is not a duration"),
        ("start podinfo image=a:1 --approval=yes", "takes no value"),
        ("start podinfo image=a:1 -n Test", "not a namespace name"),
        ("start podinfo image=a:1 image=b:2", "image= is given twice"),
        ("start podinfo image=a:1 app=b:2", "not both"),
        ("start podinfo image=a:1 --port 70000", "between 1 and 65535"),
        ("status a b", "takes one release name"),
        ("list podinfo", "list takes no name"),
        ('abort "podinfo', "a quote is not closed"),
        ("help frobnicate", "unknown subcommand"),
    ],
)
def test_mistakes_say_what_is_wrong_and_how_to_fix_it(text: str, says: str) -> None:
    with pytest.raises(ParseError) as error:
        parse(text)
    assert says in error.value.message


def test_errors_name_the_subcommand_for_its_usage() -> None:
    with pytest.raises(ParseError) as error:
        parse("start podinfo image=a:1 --stpe 5")
    assert error.value.topic == "start"


def test_huge_text_is_refused_without_echoing_it() -> None:
    with pytest.raises(ParseError) as error:
        parse("start " + "a" * (MAX_TEXT * 10))
    assert "the limit is" in error.value.message
    assert len(error.value.message) < 300


def test_a_huge_token_is_shortened_in_the_message() -> None:
    with pytest.raises(ParseError) as error:
        parse("start podinfo image=" + "A" * 3000)
    assert len(error.value.message) < 400


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_any_text_parses_or_raises_a_parse_error(text: str) -> None:
    try:
        parse(text)
    except ParseError as error:
        assert error.message


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "start",
                "abort",
                "plan",
                "status",
                "-n",
                "--step",
                "--max",
                "--interval",
                "=",
                "image=",
                "podinfo",
                "a:1",
                "--approval",
                '"',
                "“",
                "<",
                ">",
                "&amp;",
                "help",
                "10",
                "-1",
                "x" * 70,
                "ünïcødé",
                "\x00",
                "\u202e",
                "--port",
                "image=a:1",
            ]
        ),
        max_size=12,
    )
)
def test_command_like_noise_parses_or_raises_a_parse_error(words: list[str]) -> None:
    try:
        parse(" ".join(words))
    except ParseError as error:
        assert error.message


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=MAX_TEXT + 1, max_size=MAX_TEXT + 50))
def test_oversized_unicode_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError):
        parse(text)


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        # what Slack sends for typed "<!channel>": escaped, and it must stay plain words
        ("&lt;!channel&gt; look", "!channel look"),
        ("&lt;@U0ALICE&gt;", "@U0ALICE"),
        ("&lt;http://evil.example|click me&gt;", "click me"),
        # one pass of unlinking would leave a live <!here> behind
        ("&lt;&lt;!here&gt;&gt;", "!here"),
        ("<<!here>>", "!here"),
        ("a &amp;lt;!channel&amp;gt; b", "a &lt;!channel&gt; b"),
        ("<!subteam^S0SRE|@sre> broke it", "@sre broke it"),
    ],
)
def test_no_typed_text_comes_out_as_slack_markup(typed: str, reason: str) -> None:
    command = parse(f"abort podinfo {typed}")
    assert isinstance(command, ControlCommand)
    assert command.reason == reason
    assert not re.search(r"<[^<>]*>", command.reason), command.reason


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="<>&;!@#|ltgamp ch", max_size=60))
def test_unlinked_text_never_holds_markup(text: str) -> None:
    assert not re.search(r"<[^<>]*>", unlink(text))


@pytest.mark.parametrize(
    ("flag", "says"),
    [
        ("--interval 99999999h", "--interval must be at most 24h, got `99999999h`"),
        ("--interval 25h", "--interval must be at most 24h"),
        ("--interval " + "9" * 400 + "s", "is not a duration"),
    ],
)
def test_interval_has_an_upper_bound(flag: str, says: str) -> None:
    with pytest.raises(ParseError) as error:
        parse(f"start podinfo image=a:1 {flag}")
    assert says in error.value.message
    assert len(error.value.message) < 200


def test_skip_analysis_is_a_flag_of_start() -> None:
    command = parse("start podinfo image=a:1 --skip-analysis")
    assert isinstance(command, StartCommand)
    assert command.options.skip_analysis is True
    with pytest.raises(ParseError, match="takes no value"):
        parse("start podinfo image=a:1 --skip-analysis=yes")


@pytest.mark.parametrize(
    ("text", "cluster"),
    [
        ("start podinfo image=stefanprodan/podinfo:6.0.3 --cluster prod-eu", "prod-eu"),
        ("start podinfo image=stefanprodan/podinfo:6.0.3 -c b -n test", "b"),
        ("status podinfo --cluster=prod-us", "prod-us"),
        ("-c prod-eu list", "prod-eu"),
        ("abort podinfo it is broken -c b", "b"),
        ("start -c b", "b"),
        ("status podinfo", None),
    ],
)
def test_the_cluster_flag_goes_with_every_subcommand(text: str, cluster: str | None) -> None:
    assert parse(text).cluster == cluster


def test_the_abort_reason_does_not_keep_the_cluster_flag() -> None:
    command = parse("abort podinfo it is broken -c b")
    assert isinstance(command, ControlCommand)
    assert (command.reason, command.cluster) == ("it is broken", "b")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("status --cluster", "--cluster needs a value"),
        ("status -c Prod_EU", "is not a cluster name"),
        ("status -c " + "a" * 64, "is not a cluster name"),
        ("status -c a --cluster b", "is given twice"),
    ],
)
def test_a_bad_cluster_flag_is_refused_with_the_fix(text: str, says: str) -> None:
    with pytest.raises(ParseError) as raised:
        parse(text)
    assert says in raised.value.message


def test_help_documents_the_cluster_flag() -> None:
    assert "--cluster" in slack_text(help_reply(None))
    assert "-c cluster" in slack_text(help_reply("start"))

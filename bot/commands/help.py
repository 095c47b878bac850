"""Usage text for every ``/canary`` subcommand (shown by ``help`` and next to errors)."""

from __future__ import annotations

from bot.commands.model import ParseError
from bot.reply import Code, Line, Reply, Strong, lines_of, spans_of, warning

USAGE: dict[str, str] = {
    "start": (
        "`/canary start <deployment> image=<ref> [-n ns] [-c cluster] [--profile name] [--step N] "
        "[--max N] [--interval 30s] [--threshold N] [--approval] [--skip-analysis] "
        "[--ingress name] [--port N]`\n"
        "Start a canary release of a Deployment. `image=<ref>` sets the image of its only "
        "container; use `<container>=<ref>` (several allowed) when it has more than one. "
        "The config may bound the flags per namespace and profile; `--skip-analysis` needs "
        "the skip-analysis permission.\n"
        "Example: `/canary start podinfo image=stefanprodan/podinfo:6.0.3 -n test`\n"
        "With no arguments, `/canary start` opens a form. `-c <cluster>` (`--cluster`) "
        "picks the cluster when canary-bot serves several."
    ),
    "plan": (
        "`/canary plan <deployment> [same options as start]`\n"
        "Show the traffic steps and how long the analysis will take. Changes nothing.\n"
        "Example: `/canary plan podinfo -n test --step 10 --max 50`"
    ),
    "status": (
        "`/canary status [name] [-n ns]`\n"
        "Show a release's card (by release or Deployment name), or every active release."
    ),
    "list": "`/canary list [-n ns]`\nList active releases (in one namespace or everywhere).",
    "history": (
        "`/canary history [name] [-n ns]`\n"
        "Show finished releases, newest first (of one Deployment when a name is given)."
    ),
    "promote": (
        "`/canary promote [name] [-n ns]`\nSkip the remaining analysis and promote the canary "
        "now. A release that needs approval must be approved first."
    ),
    "abort": (
        "`/canary abort [name] [reason…] [-n ns]`\n"
        "Stop the release and send all traffic back to the stable version."
    ),
    "pause": "`/canary pause [name] [-n ns]`\nHold the canary at its current weight.",
    "resume": "`/canary resume [name] [-n ns]`\nContinue a paused release.",
    "approve": (
        "`/canary approve [name] [-n ns]`\n"
        "Approve the promotion of a release started with `--approval`: while it waits, or "
        "ahead of time during its analysis (it then promotes as soon as the analysis passes)."
    ),
    "help": "`/canary help [subcommand]`\nShow this help, or one subcommand's.",
}

SUBCOMMANDS: tuple[str, ...] = tuple(USAGE)


def usage(topic: str) -> str:
    """The usage text of one subcommand."""
    return USAGE[topic]


def help_reply(topic: str | None) -> Reply:
    """``/canary help``: one line per subcommand, or one subcommand's usage."""
    if topic is not None:
        return Reply("info", lines_of(usage(topic)))
    lines: list[Line] = [(Strong("canary-bot"), " — progressive delivery from Slack. Subcommands:")]
    lines += [("• ", *spans_of(text.splitlines()[0])) for text in USAGE.values()]
    lines.append(
        ("A release name can be the Deployment's name: it means its active (or latest) release.",)
    )
    lines.append(
        (
            "Every subcommand takes ",
            Code("-c <cluster>"),
            " (",
            Code("--cluster"),
            ") when canary-bot serves several clusters; without it, the channel's "
            "cluster or the default one.",
        )
    )
    lines.append(("More on one subcommand: ", Code("/canary help <subcommand>"), "."))
    return Reply("info", tuple(lines))


def parse_error_reply(error: ParseError) -> Reply:
    """The refusal of bad input: what is wrong, then the usage of that subcommand."""
    if error.topic is not None:
        return warning(*spans_of(error.message), more=lines_of(usage(error.topic)))
    return warning(*spans_of(error.message), more=(("See ", Code("/canary help"), "."),))

"""Parse ``/canary`` text into typed commands. Pure: no I/O, no Slack, no cluster.

Whatever the text, ``parse`` either returns a command or raises ``ParseError`` whose
message says what is wrong and how to fix it; it never raises anything else.
"""

from __future__ import annotations

import dataclasses
import difflib
import html
import logging
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.commands.help import SUBCOMMANDS
from bot.commands.model import (
    Command,
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
)
from bot.config import MAX_INTERVAL_SECONDS
from rollout.models import (
    ControlAction,
    format_duration,
    is_dns_label,
    is_dns_subdomain,
    is_valid_image,
    parse_duration,
)

# Slash command text is at most 4,000 characters in Slack; anything longer is not typed.
MAX_TEXT = 4000
MAX_REASON = 500
CONTROL_ACTIONS: tuple[ControlAction, ...] = ("promote", "abort", "pause", "resume", "approve")

# Slack and phones turn straight quotes into typographic ones; shlex needs straight ones.
_QUOTES = str.maketrans(
    {"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'", "\u201a": "'"}
)
# Slack links: <http://x|label>, <mailto:a@b|a@b>, <#C123|name>, <@U123|name>.
_SLACK_LINK = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

log = logging.getLogger("canary_bot.commands")


def _unlink(match: re.Match[str]) -> str:
    target, label = match.group(1), match.group(2)
    if target.startswith(("http://", "https://", "mailto:")):
        return label or target.split(":", 1)[1].lstrip("/")
    return label or target


def unlink(text: str) -> str:
    """``text`` without Slack's ``<…>`` markup: links, mentions, channel and date tokens.

    Slack sends what a person typed with ``&``, ``<`` and ``>`` escaped and real links and
    mentions as ``<…>``. Unescaping comes first, and the markup is removed after it until
    none is left, so typed ``&lt;!channel&gt;`` (or ``<<!here>>``, which a single pass
    would turn into ``<!here>``) ends up as plain words: nothing a person types comes out
    of the parser as a mention or link. Rendering escapes again on the way out.
    """
    cleaned = html.unescape(text)
    while True:  # each pass removes at least one '<', so this ends
        stripped = _SLACK_LINK.sub(_unlink, cleaned)
        if stripped == cleaned:
            return stripped
        cleaned = stripped


def tokenize(text: str) -> list[str]:
    """Split command text like a shell, after undoing Slack's escaping and auto-links."""
    if len(text) > MAX_TEXT:
        raise ParseError(
            f"the command is {len(text)} characters long; the limit is {MAX_TEXT}. "
            "Put long analysis settings in a profile in the config file instead."
        )
    cleaned = unlink(_CONTROL_CHARS.sub(" ", text).translate(_QUOTES))
    try:
        return shlex.split(cleaned)
    except ValueError as exc:
        raise ParseError(
            f"could not read the command: {exc} (a quote is not closed); "
            "close the quote or leave quotes out"
        ) from None


@dataclass(frozen=True)
class _Flag:
    key: str
    takes_value: bool
    convert: Callable[[str], Any]


def _number(name: str, low: int, high: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text.removesuffix("%"))
        except ValueError:
            raise ParseError(
                f"{name} must be a whole number between {low} and {high}, got {text!r}"
            ) from None
        if not low <= value <= high:
            raise ParseError(f"{name} must be between {low} and {high}, got {value}")
        return value

    return convert


def _interval(text: str) -> str:
    if len(text) > 20:
        raise ParseError(f"--interval {_show(text, 24)} is not a duration; write it like 30s or 5m")
    try:
        seconds = parse_duration(text)
    except (ValueError, OverflowError):
        raise ParseError(
            f"--interval {_show(text, 24)} is not a duration; write it like 30s, 1m or 2m30s"
        ) from None
    if seconds < 1:
        raise ParseError(f"--interval must be at least 1s, got {_show(text)}")
    if seconds > MAX_INTERVAL_SECONDS:
        longest = format_duration(MAX_INTERVAL_SECONDS)
        raise ParseError(f"--interval must be at most {longest}, got {_show(text)}")
    return text


def _dns_label(what: str, plural: str, example: str) -> Callable[[str], str]:
    """A checker for a value that must be a DNS label (a namespace, a cluster name)."""

    def check(text: str) -> str:
        if not is_dns_label(text):
            raise ParseError(
                f"{_show(text)} is not a {what}; {plural} are lowercase letters, "
                f"digits and '-', e.g. `{example}`"
            )
        return text

    return check


_cluster = _dns_label("cluster name", "cluster names", "--cluster prod-eu")


_CLUSTER_FLAGS = ("-c", "--cluster")


def _take_cluster(tokens: list[str]) -> tuple[list[str], str | None]:
    """``-c NAME`` / ``--cluster NAME`` / ``--cluster=NAME`` out of any subcommand's words."""
    rest: list[str] = []
    cluster: str | None = None
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        name, has_inline, inline = token.partition("=")
        if name not in _CLUSTER_FLAGS:
            rest.append(token)
            continue
        if has_inline:
            raw = inline
        elif index < len(tokens):
            raw = tokens[index]
            index += 1
        else:
            raise ParseError(f"{name} needs a value, e.g. {name} prod-eu")
        if cluster is not None:
            raise ParseError(f"{name} is given twice; keep one")
        cluster = _cluster(raw)
    return rest, cluster


_namespace = _dns_label("namespace name", "namespaces", "-n test")


def _object_name(what: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if not is_dns_subdomain(text):
            raise ParseError(
                f"{_show(text)} is not a valid {what} name; Kubernetes names are lowercase "
                "letters, digits, '-' and '.', e.g. podinfo"
            )
        return text

    return convert


def _profile(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", text):
        raise ParseError(f"{_show(text)} is not a profile name; profiles are named like tutorial")
    return text


def _show(text: str, limit: int = 60) -> str:
    """Quote user text in a message, shortened so a huge token cannot flood the reply.

    Plain text: whoever shows the message in Slack escapes it (``bot.render.mrkdwn``).
    """
    short = text if len(text) <= limit else text[: limit - 1] + "…"
    quoted = short.replace("`", "'")
    return f"`{quoted}`"


_NAMESPACE_FLAG = _Flag("namespace", True, _namespace)
_RELEASE_FLAGS: dict[str, _Flag] = {
    "-n": _NAMESPACE_FLAG,
    "--namespace": _NAMESPACE_FLAG,
    "--profile": _Flag("profile", True, _profile),
    "--step": _Flag("step_weight", True, _number("--step", 1, 100)),
    "--max": _Flag("max_weight", True, _number("--max", 1, 100)),
    "--interval": _Flag("interval", True, _interval),
    "--threshold": _Flag("threshold", True, _number("--threshold", 1, 1000)),
    "--approval": _Flag("approval", False, bool),
    "--skip-analysis": _Flag("skip_analysis", False, bool),
    "--ingress": _Flag("ingress", True, _object_name("Ingress")),
    "--port": _Flag("port", True, _number("--port", 1, 65535)),
}
# ``key=value`` spellings of flags (the preflight check suggests ``ingress=<name>``).
_KEY_VALUE_FLAGS = {"ingress": "--ingress", "port": "--port", "profile": "--profile"}
_NAMESPACE_ONLY: dict[str, _Flag] = {"-n": _NAMESPACE_FLAG, "--namespace": _NAMESPACE_FLAG}


def _split_flags(
    tokens: list[str], flags: dict[str, _Flag], topic: str
) -> tuple[list[str], dict[str, Any]]:
    """Separate flags (anywhere in the text) from positional words."""
    positional: list[str] = []
    values: dict[str, Any] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token in ("-h", "--help"):
            raise _HelpRequested(topic)
        if not token.startswith("-") or token == "-" or _is_negative_number(token):
            positional.append(token)
            continue
        name, has_inline, inline = token.partition("=")
        flag = flags.get(name)
        if flag is None:
            raise ParseError(_unknown_flag(name, flags, topic), topic)
        if not flag.takes_value:
            if has_inline:
                raise ParseError(f"{name} takes no value; write just {name}", topic)
            values[flag.key] = True
            continue
        if has_inline:
            raw = inline
        elif index < len(tokens):
            raw = tokens[index]
            index += 1
        else:
            raise ParseError(f"{name} needs a value, e.g. {name} {_example(name)}", topic)
        if flag.key in values:
            raise ParseError(f"{name} is given twice; keep one", topic)
        values[flag.key] = flag.convert(raw)
    return positional, values


def _is_negative_number(token: str) -> bool:
    return re.fullmatch(r"-\d+", token) is not None


def _example(flag: str) -> str:
    return {
        "-n": "test",
        "--namespace": "test",
        "--profile": "tutorial",
        "--step": "10",
        "--max": "50",
        "--interval": "30s",
        "--threshold": "5",
        "--ingress": "podinfo",
        "--port": "80",
    }.get(flag, "<value>")


def _unknown_flag(name: str, flags: dict[str, _Flag], topic: str) -> str:
    shown = _show(name, 40)
    close = difflib.get_close_matches(name, list(flags), n=1, cutoff=0.7)
    if close:
        return f"unknown option {shown}; did you mean `{close[0]}`?"
    valid = ", ".join(f"`{f}`" for f in flags if f != "--namespace")
    return f"unknown option {shown} for {topic}; valid options: {valid}"


class _HelpRequested(Exception):
    def __init__(self, topic: str) -> None:
        self.topic = topic


def _release_options(tokens: list[str], topic: str, *, need_images: bool) -> ReleaseOptions:
    positional, values = _split_flags(_expand_key_values(tokens), _RELEASE_FLAGS, topic)
    if not positional:
        raise ParseError(f"{topic} needs the Deployment's name first", topic)
    deployment, *rest = positional
    if "=" in deployment:
        raise ParseError(
            f"{topic} needs the Deployment's name before the images, e.g. "
            f"`/canary {topic} podinfo {_show(deployment, 40).strip('`')}`",
            topic,
        )
    _object_name("Deployment")(deployment)
    image, images = _images(rest, topic)
    if need_images and image is None and not images:
        raise ParseError(
            f"which image should {deployment} get? Add image=<ref>, e.g. "
            f"`/canary start {deployment} image=stefanprodan/podinfo:6.0.3`",
            topic,
        )
    return ReleaseOptions(deployment=deployment, images=images, image=image, **values)


def _expand_key_values(tokens: list[str]) -> list[str]:
    """``ingress=web`` as ``--ingress web``: the flags that also have a key=value spelling."""
    expanded: list[str] = []
    for token in tokens:
        key, sep, value = token.partition("=")
        if sep and key in _KEY_VALUE_FLAGS:
            expanded.extend([_KEY_VALUE_FLAGS[key], value])
        else:
            expanded.append(token)
    return expanded


def _images(words: list[str], topic: str) -> tuple[str | None, dict[str, str]]:
    """``image=<ref>`` (the only container) or ``<container>=<ref>`` per container."""
    images: dict[str, str] = {}
    image: str | None = None
    for word in words:
        container, sep, ref = word.partition("=")
        if not sep:
            raise ParseError(
                f"{_show(word)} is not understood; give images as `image=<ref>` or "
                "`<container>=<ref>`, e.g. image=stefanprodan/podinfo:6.0.3",
                topic,
            )
        if not ref:
            raise ParseError(f"{_show(container)}= has no image after '='", topic)
        _check_image(ref, topic)
        if container == "image":
            if image is not None:
                raise ParseError(
                    "image= is given twice; for several containers write "
                    "`<container>=<ref>` for each",
                    topic,
                )
            image = ref
            continue
        _check_container(container, images, topic)
        images[container] = ref
    if image is not None and images:
        raise ParseError(
            "use either image=<ref> (single-container Deployment) or <container>=<ref> "
            "for each container, not both",
            topic,
        )
    return image, images


def _check_container(container: str, images: dict[str, str], topic: str) -> None:
    """A container name that is a DNS label and not given before."""
    if not is_dns_label(container):
        raise ParseError(
            f"{_show(container)} is not a container name; container names are lowercase "
            "letters, digits and '-'",
            topic,
        )
    if container in images:
        raise ParseError(f"container {container} is given twice; keep one image", topic)


def _uppercase_repository(ref: str) -> bool:
    """Docker reads the first part as a registry only with a '.' or ':' or as localhost."""
    first, sep, _ = ref.partition("/")
    is_registry = sep and ("." in first or ":" in first or first == "localhost")
    repository = ref.split("/", 1)[1] if is_registry else ref
    return (
        repository.split(":", 1)[0].split("@", 1)[0].lower()
        != (repository.split(":", 1)[0].split("@", 1)[0])
    )


def _check_image(ref: str, topic: str) -> None:
    if is_valid_image(ref) and not _uppercase_repository(ref):
        return
    hint = ""
    if _uppercase_repository(ref):
        hint = " (repository names are lowercase)"
    elif ref.endswith(":"):
        hint = " (the tag after ':' is empty)"
    raise ParseError(
        f"{_show(ref)} is not a valid image reference{hint}; write it like "
        "stefanprodan/podinfo:6.0.3 or ghcr.io/org/app@sha256:<digest>",
        topic,
    )


def _one_name(positional: list[str], topic: str, what: str = "release") -> str | None:
    if len(positional) > 1:
        extra = " ".join(positional[1:])
        raise ParseError(f"{topic} takes one {what} name; remove {_show(extra)}", topic)
    if not positional:
        return None
    return _object_name(what)(positional[0])


def _parse_topic(topic: str, tokens: list[str]) -> Command:
    if topic == "start":
        if not tokens:
            return OpenStartDialog()
        positional, values = _split_flags(tokens, _RELEASE_FLAGS, topic)
        if not positional and set(values) == {"namespace"}:
            return OpenStartDialog(namespace=values["namespace"])
        return StartCommand(_release_options(tokens, topic, need_images=True))
    if topic == "plan":
        return PlanCommand(_release_options(tokens, topic, need_images=False))
    if topic in ("status", "list", "history"):
        positional, values = _split_flags(tokens, _NAMESPACE_ONLY, topic)
        namespace = values.get("namespace")
        if topic == "list":
            if positional:
                raise ParseError(
                    f"list takes no name; for one release use `/canary status {positional[0]}`",
                    topic,
                )
            return ListCommand(namespace=namespace)
        name = _one_name(positional, topic)
        if topic == "status":
            return StatusCommand(name=name, namespace=namespace)
        return HistoryCommand(name=name, namespace=namespace)
    if topic in CONTROL_ACTIONS:
        positional, values = _split_flags(tokens, _NAMESPACE_ONLY, topic)
        action: ControlAction = topic
        if topic == "abort":
            name = _object_name("release")(positional[0]) if positional else None
            reason = " ".join(positional[1:])
            if len(reason) > MAX_REASON:
                raise ParseError(
                    f"the reason is {len(reason)} characters; keep it under {MAX_REASON}", topic
                )
        else:
            name = _one_name(positional, topic)
            reason = ""
        return ControlCommand(
            action=action, name=name, namespace=values.get("namespace"), reason=reason
        )
    if topic == "help":
        if len(tokens) > 1:
            raise ParseError("help takes at most one subcommand, e.g. `/canary help start`", topic)
        if tokens and tokens[0] not in SUBCOMMANDS:
            raise ParseError(_unknown_subcommand(tokens[0]), None)
        return HelpCommand(topic=tokens[0] if tokens else None)
    raise ParseError(_unknown_subcommand(topic), None)


def _unknown_subcommand(word: str) -> str:
    close = difflib.get_close_matches(word.lower(), SUBCOMMANDS, n=1, cutoff=0.6)
    if close:
        return f"unknown subcommand {_show(word, 40)}; did you mean `/canary {close[0]}`?"
    return (
        f"unknown subcommand {_show(word, 40)}; try `/canary help` for the list "
        f"({', '.join(SUBCOMMANDS)})"
    )


def parse(text: str) -> Command:
    """Parse the text after ``/canary``. Raises only ``ParseError``."""
    try:
        tokens, cluster = _take_cluster(tokenize(text))
        if not tokens:
            return HelpCommand()
        topic, *rest = tokens
        command = _parse_topic(topic.lower() if topic.isascii() else topic, rest)
        return dataclasses.replace(command, cluster=cluster) if cluster else command
    except _HelpRequested as request:
        return HelpCommand(topic=request.topic)
    except ParseError:
        raise
    except Exception as exc:  # a defect must still reach the user as a readable refusal
        # A bug, not a bad command: logged with its traceback (the text is not logged,
        # it is the user's and may hold anything), counted apart from invalid commands.
        log.exception("the /canary parser failed on a %d-character command", len(text))
        raise ParseError(
            f"could not understand the command ({type(exc).__name__}); see `/canary help`",
            defect=True,
        ) from exc

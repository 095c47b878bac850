"""Console mode: the same commands, cards and events in a terminal, without Slack.

Type what you would type in Slack (``/canary start podinfo image=…`` or just
``start podinfo image=…``). Cards print as text after every batch of events; the buttons
the card would have become numbered choices: type the number to press one.
"""

from __future__ import annotations

import asyncio
import getpass
import html
import os
import re
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TextIO

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.commands import (
    HelpCommand,
    OpenStartDialog,
    ParseError,
    overview,
    parse,
    usage,
)
from bot.operations import Actor, Operations, Reply, describe_failure, request_id
from bot.render.text import card_text, event_line
from rollout.actions import actions_for
from rollout.models import CanaryRelease, ControlAction, NotificationState, RolloutEvent

# shaped like a Slack user id so the same authorization rules apply
CONSOLE_USER = "U0CONSOLE"

# An extra console command: gets the words after its name, returns what to print.
ExtraCommand = Callable[[list[str]], str]

_EMOJI = re.compile(r":[a-z0-9_+-]+: ?")
_LINK = re.compile(r"<([^|>]+)\|([^>]+)>")
_MENTION = re.compile(r"<[@#!]([^>|]+)>")


def plain(text: str) -> str:
    """Slack mrkdwn as terminal text: no emoji codes, links as their label."""
    text = _EMOJI.sub("", text)
    text = _LINK.sub(r"\2", text)
    text = _MENTION.sub(r"@\1", text)
    # entities last: escaped user text shows as typed, after real markup was converted
    return html.unescape(text.replace("*", "").replace("`", "'"))


def blocks_text(blocks: Sequence[Block]) -> str:
    """The readable text of Block Kit blocks (buttons are left to the numbered choices)."""
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, HeaderBlock) and block.text is not None:
            lines.append(plain(str(block.text.text)))
        elif isinstance(block, SectionBlock):
            if block.text is not None:
                lines.append(plain(str(block.text.text)))
            for field in block.fields or []:
                lines.append("  " + plain(str(field.text)))
        elif isinstance(block, ContextBlock):
            parts = [
                plain(str(e.text))
                for e in block.elements
                if isinstance(e, MarkdownTextObject | PlainTextObject)
            ]
            lines.append("  ".join(parts))
    return "\n".join(line for line in lines if line.strip())


def reply_text(reply: Reply) -> str:
    """What the console shows for a command's reply."""
    if reply.blocks:
        return blocks_text(reply.blocks)
    return plain(reply.text)


class ConsoleNotifier:
    """Prints each event as a line and the card after every batch (a Notifier).

    Remembers the release it printed last, so the console can offer its buttons as
    numbered choices.
    """

    def __init__(
        self,
        out: TextIO = sys.stdout,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._out = out
        self._clock = clock
        self.choices: list[tuple[ControlAction, CanaryRelease]] = []

    async def publish(
        self, release: CanaryRelease, events: Sequence[RolloutEvent]
    ) -> NotificationState:
        """Print the events, then the card and its choices when something happened."""
        state = release.status.notification
        for event in events:
            print(event_line(release, event), file=self._out)
        if events:
            print(card_text(release, self._clock()), file=self._out)
            self.offer(release)
            self._out.flush()
        last = max([e.seq for e in events], default=state.delivered_seq)
        return state.model_copy(update={"delivered_seq": max(last, state.delivered_seq)})

    def offer(self, release: CanaryRelease) -> None:
        """Print the card's buttons as numbered choices."""
        actions = actions_for(release)
        self.choices = [(action, release) for action in actions]
        if self.choices:
            shown = "  ".join(f"[{i}] {a}" for i, (a, _) in enumerate(self.choices, start=1))
            print(f"choose: {shown}", file=self._out)


class ConsoleSession:
    """Reads commands from a terminal and answers like the Slack app would."""

    def __init__(
        self,
        operations: Operations,
        notifier: ConsoleNotifier,
        *,
        out: TextIO = sys.stdout,
        extra: Mapping[str, ExtraCommand] | None = None,
        actor: Actor | None = None,
    ) -> None:
        self.operations = operations
        self.notifier = notifier
        self.out = out
        self.extra = dict(extra or {})
        self.actor = actor or Actor(
            user=CONSOLE_USER, user_name=getpass.getuser(), source="console"
        )

    async def handle(self, line: str) -> str:
        """Answer one line of input; never raises for bad input."""
        text = line.strip()
        if text.startswith("/canary"):
            text = text[len("/canary") :].strip()
        words = text.split()
        if not words:
            return ""
        if words[0].isdigit():
            return await self._choose(int(words[0]))
        if words[0] in self.extra:
            return self.extra[words[0]](words[1:])
        try:
            parsed = parse(text)
        except ParseError as error:
            hint = usage(error.topic) if error.topic is not None else "Type help for the commands."
            return plain(f"{error.message}\n{hint}")
        ops = self.operations
        try:
            if isinstance(parsed, HelpCommand):
                body = overview() if parsed.topic is None else usage(parsed.topic)
                if parsed.topic is None and self.extra:
                    body += "\nConsole only: " + ", ".join(sorted(self.extra)) + ", quit"
                return plain(body)
            if isinstance(parsed, OpenStartDialog):
                return plain(usage("start"))
            outcome = await ops.run_command(parsed, self.actor, request_key=uuid.uuid4().hex)
            return reply_text(outcome.reply)
        except Exception as exc:  # the cluster failed us: say so, keep the session
            return plain(describe_failure(exc))

    async def _control(
        self, action: ControlAction, name: str | None, namespace: str | None, reason: str = ""
    ) -> str:
        rid = request_id("console", uuid.uuid4().hex, action, self.actor.user)
        outcome = await self.operations.control(action, name, namespace, self.actor, rid, reason)
        return reply_text(outcome.reply)

    async def _choose(self, number: int) -> str:
        choices = self.notifier.choices
        if not 1 <= number <= len(choices):
            return "No such choice; the numbers refer to the last card printed."
        action, release = choices[number - 1]
        return await self._control(action, release.metadata.name, release.metadata.namespace)

    async def run(self, read_line: Callable[[], Awaitable[str | None]]) -> None:
        """Prompt, read, answer, until end of input or ``quit``."""
        print("Type help for the commands, quit to stop.", file=self.out, flush=True)
        while True:
            print("canary> ", end="", file=self.out, flush=True)
            line = await read_line()
            if line is None or line.strip() in ("quit", "exit"):
                return
            answer = await self.handle(line)
            if answer:
                print(answer, file=self.out, flush=True)


def stdin_reader(stream: TextIO = sys.stdin) -> Callable[[], Awaitable[str | None]]:
    """Read lines from a terminal or pipe without blocking the event loop (None at EOF)."""
    loop = asyncio.get_running_loop()
    fd = stream.fileno()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    pending = bytearray()

    def readable() -> None:
        # Read raw bytes: a buffered readline() would hide further piped lines from the
        # selector, which only reports the file descriptor.
        chunk = os.read(fd, 65536)
        if not chunk:
            loop.remove_reader(fd)
            if pending:
                lines.put_nowait(pending.decode(errors="replace"))
            lines.put_nowait(None)
            return
        pending.extend(chunk)
        while b"\n" in pending:
            line, _, rest = bytes(pending).partition(b"\n")
            pending[:] = rest
            lines.put_nowait(line.decode(errors="replace"))

    loop.add_reader(fd, readable)

    async def read_line() -> str | None:
        return await lines.get()

    return read_line

"""Console mode: the same commands, cards and events in a terminal, without Slack.

Type what you would type in Slack (``/canary start podinfo image=…`` or just
``start podinfo image=…``). Cards print as text after every batch of events; the buttons
the card would have become numbered choices: type the number to press one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TextIO

from bot.clusters import Clusters
from bot.commands import (
    Command,
    HelpCommand,
    OpenStartDialog,
    ParseError,
    help_reply,
    parse,
    parse_error_reply,
)
from bot.operations import Actor, Operations, describe_failure, request_id
from bot.render.console_reply import console_text
from bot.render.text import card_text, event_line
from bot.reply import Reply
from rollout.actions import actions_for
from rollout.models import CanaryRelease, ControlAction, NotificationState, RolloutEvent

# shaped like a Slack user id so the same authorization rules apply
CONSOLE_USER = "U0CONSOLE"

# An extra console command: gets the words after its name, returns what to print.
ExtraCommand = Callable[[list[str]], str]


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
        clusters: Clusters | None = None,
    ) -> None:
        self.operations = operations
        # with clusters, a typed --cluster picks one (numbered choices act on ``operations``)
        self.clusters = clusters
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
            return console_text(parse_error_reply(error))
        try:
            return console_text(await self._answer(parsed))
        except Exception as exc:  # the cluster failed us: say so, keep the session
            return console_text(describe_failure(exc))

    async def _answer(self, parsed: Command) -> Reply:
        """The reply to a parsed command; help and the start form are the console's own."""
        if isinstance(parsed, HelpCommand):
            answer = help_reply(parsed.topic)
            if parsed.topic is None and self.extra:
                extra = f"Console only: {', '.join(sorted(self.extra))}, quit"
                answer = dataclasses.replace(answer, lines=(*answer.lines, (extra,)))
            return answer
        if isinstance(parsed, OpenStartDialog):
            return help_reply("start")
        operations = self.operations
        if self.clusters is not None:
            routed = self.clusters.route(parsed.cluster, "")
            if isinstance(routed, Reply):
                return routed
            operations = routed.operations
        key = uuid.uuid4().hex
        return (await operations.run_command(parsed, self.actor, request_key=key)).reply

    async def _control(
        self, action: ControlAction, name: str | None, namespace: str | None, reason: str = ""
    ) -> str:
        rid = request_id("console", uuid.uuid4().hex, action, self.actor.user)
        outcome = await self.operations.control(action, name, namespace, self.actor, rid, reason)
        return console_text(outcome.reply)

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

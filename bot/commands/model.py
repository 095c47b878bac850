"""Typed ``/canary`` commands: what the parser produces and the operations consume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rollout.models import ControlAction


class ParseError(Exception):
    """The command text is not a valid command; ``str(error)`` says what and how to fix it.

    ``topic`` names the subcommand whose usage should accompany the message (or None).
    ``defect``: the parser itself failed (a bug, logged as an error), not the text.
    """

    def __init__(self, message: str, topic: str | None = None, *, defect: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.topic = topic
        self.defect = defect


@dataclass(frozen=True)
class ReleaseOptions:
    """What ``start`` and ``plan`` accept: the target, its new images and analysis overrides."""

    deployment: str
    images: dict[str, str] = field(default_factory=dict)
    # ``image=<ref>``: the Deployment's only container (resolved against the cluster).
    image: str | None = None
    namespace: str | None = None
    profile: str | None = None
    step_weight: int | None = None
    max_weight: int | None = None
    interval: str | None = None
    threshold: int | None = None
    approval: bool = False
    # ``--skip-analysis``: promote once the canary runs, no checks (needs its own verb)
    skip_analysis: bool = False
    ingress: str | None = None
    port: int | None = None

    @property
    def has_images(self) -> bool:
        """Whether at least one new image was given."""
        return bool(self.images) or self.image is not None


@dataclass(frozen=True)
class StartCommand:
    """``/canary start``: create a release."""

    options: ReleaseOptions
    verb: Literal["start"] = "start"
    # ``-c``/``--cluster``: which cluster (None: the channel's, else the default)
    cluster: str | None = None


@dataclass(frozen=True)
class PlanCommand:
    """``/canary plan``: show the steps and duration a start would have; changes nothing."""

    options: ReleaseOptions
    verb: Literal["plan"] = "plan"
    cluster: str | None = None


@dataclass(frozen=True)
class OpenStartDialog:
    """``/canary start`` with nothing else: open the start form."""

    namespace: str | None = None
    verb: Literal["start-dialog"] = "start-dialog"
    cluster: str | None = None


@dataclass(frozen=True)
class StatusCommand:
    """``/canary status [name]``: one release's card, or all active releases."""

    name: str | None = None
    namespace: str | None = None
    verb: Literal["status"] = "status"
    cluster: str | None = None


@dataclass(frozen=True)
class ListCommand:
    """``/canary list [-n ns]``: active releases."""

    namespace: str | None = None
    verb: Literal["list"] = "list"
    cluster: str | None = None


@dataclass(frozen=True)
class HistoryCommand:
    """``/canary history [name]``: finished releases (of one Deployment), newest first."""

    name: str | None = None
    namespace: str | None = None
    verb: Literal["history"] = "history"
    cluster: str | None = None


@dataclass(frozen=True)
class ControlCommand:
    """``/canary promote|abort|pause|resume|approve [name]``: steer a running release."""

    action: ControlAction
    name: str | None = None
    namespace: str | None = None
    reason: str = ""
    verb: Literal["control"] = "control"
    cluster: str | None = None


@dataclass(frozen=True)
class HelpCommand:
    """``/canary help [subcommand]``."""

    topic: str | None = None
    verb: Literal["help"] = "help"
    cluster: str | None = None


Command = (
    StartCommand
    | PlanCommand
    | OpenStartDialog
    | StatusCommand
    | ListCommand
    | HistoryCommand
    | ControlCommand
    | HelpCommand
)

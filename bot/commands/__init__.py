"""The ``/canary`` command language: typed commands, the parser and the help text."""

from bot.commands.help import help_reply, parse_error_reply, usage
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
from bot.commands.parser import parse

__all__ = [
    "Command",
    "ControlCommand",
    "HelpCommand",
    "HistoryCommand",
    "ListCommand",
    "OpenStartDialog",
    "ParseError",
    "PlanCommand",
    "ReleaseOptions",
    "StartCommand",
    "StatusCommand",
    "help_reply",
    "parse",
    "parse_error_reply",
    "usage",
]

"""Command-line entry point (placeholder until the front is built)."""

import sys


def main(argv: list[str] | None = None) -> int:
    """Run canary-bot."""
    print("canary-bot: not yet implemented", file=sys.stderr)
    return 2

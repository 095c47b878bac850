"""Pure renderings of releases: Block Kit for Slack and plain text for consoles."""

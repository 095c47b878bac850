"""canary-bot's Slack front: commands, buttons, the threaded status card and console mode."""

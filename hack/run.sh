#!/usr/bin/env bash
# `make run`: canary-bot for real when Slack or a cluster is configured, else the sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VENV:-.venv}"
if [ -n "${SLACK_BOT_TOKEN:-}" ] || [ -n "${KUBECONFIG:-}" ] || [ -f "$HOME/.kube/config" ]; then
  echo "[run] Slack or a kube context is configured: starting canary-bot (see README, Configuration)" >&2
  exec "$venv/bin/canary-bot" run "$@"
fi
echo "[run] nothing configured: starting the local sandbox (Ctrl-C or 'quit' to stop)" >&2
exec "$venv/bin/python" -m sandbox "$@"

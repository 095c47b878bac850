#!/usr/bin/env bash
# `make run`: canary-bot for real when Slack or a cluster is configured, else the sandbox.
#
# - SANDBOX=1 (`make run SANDBOX=1`): always the local sandbox, whatever is configured;
#   it never touches a real cluster (it unsets KUBECONFIG for the bot it runs).
# - Slack tokens or a kube context: `canary-bot run` against them. At a terminal without
#   Slack that is console mode and the front only: no engine starts unless you pass
#   ARGS=--engine, and an engine started that way campaigns for the cluster's one Lease
#   (canary-bot/canary-bot-leader), so it stands by while the installed engine leads.
#   The test control plane is not built for this.
# - Nothing configured: the sandbox (the control plane is built on first use).
# - ROUTER=gateway (`make run ROUTER=gateway`): the sandbox's data plane is Gateway API,
#   real Contour and Envoy from an HTTPRoute (needs root; Contour is built on first use);
#   the default, ROUTER=ingress, simulates ingress-nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VENV:-.venv}"
sandbox() {
  make --no-print-directory control-plane VENV="$venv"
  exec "$venv/bin/python" -m sandbox "$@"
}
if [ "${SANDBOX:-}" = "1" ]; then
  echo "[run] SANDBOX=1: starting the local sandbox (Ctrl-C or 'quit' to stop)" >&2
  sandbox "$@"
fi
if [ -n "${SLACK_BOT_TOKEN:-}" ] || [ -n "${KUBECONFIG:-}" ] || [ -f "$HOME/.kube/config" ]; then
  echo "[run] Slack or a kube context is configured: starting canary-bot (see README, Configuration;" \
    "make run SANDBOX=1 for the sandbox)" >&2
  exec "$venv/bin/canary-bot" run "$@"
fi
echo "[run] nothing configured: starting the local sandbox (Ctrl-C or 'quit' to stop)" >&2
sandbox "$@"

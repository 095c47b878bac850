"""Routers for traffic APIs beyond ingress-nginx (see ``rollout.router`` for the protocol)."""

"""A local environment built from real parts: Kubernetes control plane, Prometheus,
an ingress-nginx traffic simulator, a Slack Web API fake and a load-tester fake.

Used by the test suite and by ``make run`` when no cluster or Slack is configured.
"""

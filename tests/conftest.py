"""Shared fixtures. Each real part has its own fixture module under tests/fixtures/."""

pytest_plugins = [
    "tests.fixtures.cluster",
    "tests.fixtures.prometheus",
    "tests.fixtures.slack",
    "tests.fixtures.engine",
    "tests.fixtures.gateway",
]

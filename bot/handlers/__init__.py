"""Bolt listeners, one concern per module, each added by its ``register(app, deps)``."""

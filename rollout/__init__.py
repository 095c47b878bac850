"""The rollout engine: CanaryRelease resource, traffic routing, analysis and the scheduler.

Nothing here imports Slack; the engine reports through the ``Notifier`` protocol.
"""

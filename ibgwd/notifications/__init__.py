"""Notifications to a human: events derived from status snapshots, sent to a webhook or a hook."""

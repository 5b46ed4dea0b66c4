"""Settings: the validated model, where it is loaded from, and secrets."""

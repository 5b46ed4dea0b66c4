"""Pure advice on valid but risky settings: shown by `ibgwd check-config` and at start."""

from __future__ import annotations

from ibgwd.config.model import Settings


def warnings(settings: Settings) -> list[str]:
    """Human sentences, one per risky setting (never a secret)."""
    out: list[str] = []
    if settings.read_only_api is None and not settings.custom_config:
        out.append(
            "READ_ONLY_API is empty: the Gateway keeps its own setting, and a fresh Gateway's "
            "API is read-only (every order fails with error 321); set READ_ONLY_API=no to "
            "trade through the API, or READ_ONLY_API=yes to say read-only on purpose"
        )
    return out

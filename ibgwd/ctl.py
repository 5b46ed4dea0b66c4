"""ibgwdctl: status, reload, restart and reconnect over D-Bus."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    raise NotImplementedError("ibgwdctl is being written")

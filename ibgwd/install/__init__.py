"""ibgwd install-gateway: fetch, verify and install IB Gateway and IBC side by side by version."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    raise NotImplementedError("install-gateway is being written")

"""Composition root: builds every object of the daemon and runs the main loop."""

from __future__ import annotations

from pathlib import Path


def main(instance: str, config_dir: Path) -> int:
    """Run the daemon for one instance; returns the exit status."""
    raise NotImplementedError("the daemon is being written")

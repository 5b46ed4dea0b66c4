"""Test harness: throwaway boxes running real systemd as PID 1 (see docs/testing.md)."""

from harness.box import Box, BoxCommandError, BoxError, BoxState, gc, list_boxes
from harness.rootfs import debian_rootfs, host_mirror

__all__ = [
    "Box",
    "BoxCommandError",
    "BoxError",
    "BoxState",
    "debian_rootfs",
    "gc",
    "host_mirror",
    "list_boxes",
]

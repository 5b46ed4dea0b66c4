"""Shared pytest fixtures: throwaway systemd boxes (``box``, ``box_factory``) and their cleanup.

``tests/`` is on sys.path (pytest's rootdir-conftest import), so tests do
``from harness import Box``. System tests need root; as root (CI) they always run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Box, debian_rootfs, gc

log = logging.getLogger(__name__)

ROOTFS_CACHE = Path("/var/tmp/ibgwd-box-cache")
NOT_ROOT = "system tests boot real systemd in namespaces and need root (CI runs them as root)"

BoxFactory = Callable[..., Box]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remove boxes left by an earlier runner that was killed (live boxes are left alone)."""
    if os.geteuid() == 0:
        reaped = gc()
        if reaped:
            log.warning("event=gc-stale-boxes reaped=%s", ",".join(reaped))


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip(NOT_ROOT)


@pytest.fixture
def box_factory() -> Iterator[BoxFactory]:
    """``box_factory(**Box.start kwargs) -> Box``; every box made is stopped at teardown."""
    _require_root()
    boxes: list[Box] = []

    def make(*args: Any, **kwargs: Any) -> Box:
        b = Box.start(*args, **kwargs)
        boxes.append(b)
        return b

    try:
        yield make
    finally:
        errors = []
        for b in reversed(boxes):
            try:
                b.stop()
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]


@pytest.fixture
def box(box_factory: BoxFactory) -> Box:
    """A freshly booted box on the host overlay, stopped after the test (pass or fail)."""
    return box_factory()


@pytest.fixture(scope="session")
def debian_root() -> Path:
    """A clean debootstrap Debian root (built once, about a minute; cached across sessions)."""
    _require_root()
    return debian_rootfs(ROOTFS_CACHE)

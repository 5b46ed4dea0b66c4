"""Shared pytest fixtures: throwaway systemd boxes (``box``, ``box_factory``) and their cleanup.

``tests/`` is on sys.path (pytest's rootdir-conftest import), so tests do
``from harness import Box``. System tests need root; as root (CI) they always run.
"""

from __future__ import annotations

import contextlib
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
    if os.geteuid() != 0:
        return
    try:
        reaped = gc()
    except Exception:  # a stuck leftover must not stop the tests; each box has its own name
        log.exception("event=gc-stale-boxes-failed")
        return
    if reaped:
        log.warning("event=gc-stale-boxes reaped=%s", ",".join(reaped))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Remember each phase's report on the item, so box teardown knows if the test failed."""
    report = yield
    setattr(item, f"_box_report_{report.when}", report)
    return report


def _require_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail(f"{NOT_ROOT}; CI must run them, so this fails instead of skipping")
        pytest.skip(NOT_ROOT)


@pytest.fixture
def as_root() -> None:
    """For system tests that start boxes themselves: skip unless root (fail in CI)."""
    _require_root()


@pytest.fixture
def box_factory(request: pytest.FixtureRequest) -> Iterator[BoxFactory]:
    """``box_factory(**Box.start kwargs) -> Box``; every box made is stopped at teardown.

    When the test failed, each box's journal tail is printed (shown in the failure report).
    """
    _require_root()
    boxes: list[Box] = []

    def make(*args: Any, **kwargs: Any) -> Box:
        b = Box.start(*args, **kwargs)
        boxes.append(b)
        return b

    try:
        yield make
    finally:
        report = getattr(request.node, "_box_report_call", None)
        if report is not None and report.failed:
            for b in boxes:
                with contextlib.suppress(Exception):
                    tail = "\n".join(b.journal().splitlines()[-60:])
                    print(f"--- journal of box {b.name} (last 60 lines) ---\n{tail}")
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

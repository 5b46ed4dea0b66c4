"""Fixtures shared by the system tests in this directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from container_image import built_image


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The image built from the repository's Dockerfile with GATEWAY=simulated, once per session
    (test_container.py and test_kube_play.py share it: the build is the heavy part)."""
    yield from built_image(tmp_path_factory.mktemp("context"))

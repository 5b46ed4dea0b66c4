"""A box starts from the product's own clean state, whatever the host holds (issue 20).

A root-owned /var/lib/ibgwd left on the host by `ibgwd render` showed through the boxes' overlay
and made `systemctl start ibgwd` time out inside them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import stack
from harness import Box
from harness.box import PRODUCT_STATE

pytestmark = pytest.mark.system

BoxFactory = Callable[..., Box]
MARK = "left on the host by test_box_clean"


@pytest.fixture
def host_leftovers(as_root: None) -> Iterator[list[Path]]:
    """Root-owned product state on the host, 0700 like `ibgwd render` leaves it; removed after."""
    made: list[Path] = []
    for d in ("/var/lib/ibgwd", "/etc/ibgwd"):
        path = Path(d)
        if path.exists():
            continue  # never touch a real installation's state
        (path / "default").mkdir(parents=True, mode=0o700)
        path.chmod(0o700)
        (path / "default" / "leftover").write_text(MARK)
        (path / "ibgwd.conf").write_text("TWS_USERID=host-user\n")
        made.append(path)
    try:
        yield made
    finally:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


def test_host_state_of_the_product_does_not_show_in_a_box_and_ibgwd_starts(
    host_leftovers: list[Path], box_factory: BoxFactory
) -> None:
    box = box_factory()
    for d in PRODUCT_STATE:
        assert not box.path(d).exists(), d
    stack.install(box, stack.base_settings())
    stack.start(box)
    assert stack.show(box, "ibgwd.service", "StatusText").startswith("ready")
    assert not box.path("/var/lib/ibgwd/default/leftover").exists()
    for path in host_leftovers:  # the host keeps its copy: the box only hid it
        assert (path / "default" / "leftover").read_text() == MARK

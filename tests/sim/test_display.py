"""The simulated Gateway is a real X client: a visible "IB Gateway" window on a real Xvfb."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ibgwd_sim.harness import Xvfb

from .conftest import StartGateway


def test_window_exists_and_is_viewable_on_xvfb(start_gateway: StartGateway, xvfb: Xvfb) -> None:
    run = start_gateway()
    run.wait_for("Login has completed")
    tree = subprocess.run(
        ["xwininfo", "-root", "-tree", "-display", xvfb.display],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    assert '"IB Gateway"' in tree
    info = subprocess.run(
        ["xwininfo", "-name", "IB Gateway", "-display", xvfb.display],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    assert "Map State: IsViewable" in info


def test_window_shows_non_blank_content(start_gateway: StartGateway, xvfb: Xvfb) -> None:
    xlib = pytest.importorskip("Xlib.display")
    from Xlib import X

    run = start_gateway()
    run.wait_for("Login has completed")
    display = xlib.Display(xvfb.display)
    try:
        root = display.screen().root
        image = root.get_image(45, 45, 100, 20, X.ZPixmap, 0xFFFFFFFF)  # inside the window
        pixels = set(image.data)
    finally:
        display.close()
    assert {0x8B, 0x1A} <= pixels  # the window's dark-red panel (#8b1a1a), not a blank root


def test_unreachable_display_fails_like_ibc_with_awt_error(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    number = next(n for n in range(4242, 4300) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    run = start_gateway(display=f":{number}")
    assert run.wait() == 76
    run.wait_for(f"Can't connect to X11 window server using ':{number}' as the value of the")
    run.wait_for("Exiting after error with exit code=1100")
    assert run.stderr == ""


def test_no_display_fails_at_the_gateway_entry_point(start_gateway: StartGateway) -> None:
    run = start_gateway(display=None)
    """IbcTws.java:468-478: the entry point's exception is logged (Utils.logException) and
    IBC exits with CANT_FIND_ENTRYPOINT (1107 % 256 = 83)."""
    assert run.wait() == 83
    run.wait_for("An exception has occurred:")
    run.wait_for("No X11 DISPLAY variable was set")
    run.wait_for("Exiting after error with exit code=1107")

"""The screenshot capture authenticates to an Xvfb that requires the instance's cookie.

ibgwd writes one FamilyWild Xauthority entry (ibgwd/isolation/xauth.py), which libXau clients
take but python-xlib does not match by itself; ibgwd.screenshot accepts it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ibgwd.isolation import xauth
from ibgwd.screenshot import PNG_SIGNATURE

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def xvfb_with_cookie(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cookie = tmp_path / "Xauthority"
    read_fd, write_fd = os.pipe()
    # The display number is chosen by Xvfb (-displayfd); the cookie entry is per display number,
    # so write it for every number Xvfb may pick first: one wildcard entry per candidate.
    cookie_bytes = xauth.new_cookie()
    cookie.write_bytes(b"".join(xauth.xauthority(n, cookie_bytes) for n in range(0, 200)))
    cookie.chmod(0o600)
    proc = subprocess.Popen(
        [
            "Xvfb",
            "-displayfd",
            str(write_fd),
            "-auth",
            str(cookie),
            "-nolisten",
            "tcp",
            "-screen",
            "0",
            "320x200x24",
        ],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        display = ":" + f.readline().strip()
    try:
        yield display, cookie
    finally:
        proc.kill()
        proc.wait()


def _capture(display: str, xauthority: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "DISPLAY": display,
        "XAUTHORITY": str(xauthority),
        "PYTHONPATH": str(REPO),
    }
    return subprocess.run(
        [sys.executable, "-m", "ibgwd.screenshot", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_capture_uses_the_instance_cookie_and_is_refused_without_it(
    xvfb_with_cookie: tuple[str, Path], tmp_path: Path
) -> None:
    display, cookie = xvfb_with_cookie
    out = tmp_path / "shot.png"
    r = _capture(display, cookie, out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    r = _capture(display, empty, tmp_path / "no.png")
    assert r.returncode == 69 and "Authorization required" in r.stderr, r.stderr

"""ibgwdctl against a real daemon under systemd: exit codes, wait, logs, list, screenshot."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
import stack
from harness import Box

pytestmark = pytest.mark.system

UNIT = "ibgwd.service"
SETTINGS_DIR = "/var/lib/ibgwd/default/settings"
PANEL = (0x8B, 0x1A, 0x1A)  # the simulated Gateway window's background (ibgwd_sim/window.py)


def ctl(box: Box, *args: str, user: str | None = None) -> tuple[int, str, str]:
    r = box.run("/usr/bin/ibgwdctl", *args, check=False, user=user, timeout=180)
    return r.returncode, r.stdout, r.stderr


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """Independent PNG reader (8-bit RGB, filter 0 rows, as ibgwd writes them)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(
            kind + body
        )
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert (depth, colour) == (8, 2)
    raw = zlib.decompress(idat)
    stride = width * 3 + 1
    return width, height, b"".join(raw[y * stride + 1 : (y + 1) * stride] for y in range(height))


def test_exit_codes_wait_logs_list_and_a_screenshot_of_the_gateway_window(box: Box) -> None:
    accept = {"AcceptUser": stack.DEMO_USER, "AcceptPassword": stack.DEMO_PASSWORD}
    stack.install(
        box, stack.base_settings(), {"Scenario": "twofa_pending", "TwoFactorFor": "paper"} | accept
    )
    box.path("/etc/sysusers.d/operator.conf").write_text("u operator - - /\nm operator ibgwd\n")
    box.run("systemd-sysusers")

    # no daemon: 69 for every query, with a sentence naming the unit
    code, _, err = ctl(box, "status")
    assert code == 69 and "systemctl status ibgwd.service" in err
    assert ctl(box, "is-ready")[0] == 69

    # waiting for 2FA: not ready = 3, as systemctl
    box.run("systemctl", "start", "--no-block", UNIT)
    stack.wait_for(
        lambda: "waiting_2fa" in ctl(box, "status")[1], 60, "ibgwdctl status waiting_2fa"
    )
    code, out, _ = ctl(box, "status")
    assert code == 3 and "(not ready)" in out and "\033[" not in out  # no colour off a tty
    assert ctl(box, "is-ready") == (3, "", "")
    assert ctl(box, "is-ready", "--mode", "paper")[0] == 3
    code, _, err = ctl(box, "wait", "--timeout", "1")
    assert code == 3 and "not ready within 1s" in err

    # approved: ready = 0
    box.path(f"{SETTINGS_DIR}/sim-approve-2fa").write_text("", encoding="utf-8")
    assert ctl(box, "wait", "--timeout", "90")[0] == 0
    assert ctl(box, "is-ready") == (0, "", "")
    code, out, _ = ctl(box, "--json", "status")
    assert code == 0 and json.loads(out)["ready"] is True
    assert ctl(box, "status", user="nobody")[0] == 0  # reading is for everyone

    # list: every instance on the bus
    code, out, _ = ctl(box, "--json", "list")
    assert code == 0
    assert [(r["instance"], r["ready"]) for r in json.loads(out)] == [("default", True)]

    # logs: IBC's lines from the transient unit's journal
    code, out, _ = ctl(box, "logs", "-n", "500", "--component", "ibc")
    assert code == 0 and "IBC: Login has completed" in out
    code, out, _ = ctl(box, "logs", "-n", "500")
    assert "IBC: " in out and "event=ready" in out  # ibgwd's own lines too

    # screenshot: a PNG that decodes and shows the Gateway's window
    code, _, err = ctl(box, "screenshot", "-o", "/root/gw.png")
    assert code == 0, err
    width, height, rgb = decode_png(box.path("/root/gw.png").read_bytes())
    assert width >= 520 and height >= 260
    pixels = [tuple(rgb[i : i + 3]) for i in range(0, len(rgb), 3)]
    panel = sum(1 for p in pixels if p == PANEL)
    assert panel > 400 * 200, f"{panel} pixels of the window's colour"  # a 520x260 window
    assert len(set(pixels)) > 2  # text and background, not a blank screen
    # a member of group ibgwd may; anyone else may not
    code, _, err = ctl(box, "screenshot", "-o", "/tmp/op.png", user="operator")
    assert code == 0, err
    code, _, err = ctl(box, "screenshot", "-o", "/tmp/nobody.png", user="nobody")
    assert code == 77 and "access denied" in err

    # restart --wait returns once the gateway went through a restart and is ready again
    code, out, err = ctl(box, "restart", "--wait", "--wait-timeout", "120")
    assert code == 0, err
    assert "ready again" in out
    events = box.path(f"{SETTINGS_DIR}/sim-events.log").read_text(encoding="utf-8")
    assert "autorestart_consumed" in events

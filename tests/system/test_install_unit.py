"""install-gateway under real systemd: IB's installer runs as a sandboxed transient unit.

The simulated installer (tests/ib_installer.py) tries to escape: it writes outside its work
directory, and records its uid and environment; a killed install-gateway leaves its installer
unit running, and the next run stops it before starting its own.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import Box
from harness.box import REPO
from ib_installer import build_ibc_zip, build_installer

pytestmark = pytest.mark.system

BoxFactory = Callable[..., Box]
FILES = "/root/files"
PREFIX = "/opt/ibgwd"
INSTALLER = "ibgateway-stable-standalone-linux-x64.sh"
UNIT = f"ibgwd-gateway-installer-{hashlib.sha256(PREFIX.encode()).hexdigest()[:8]}.service"
CALLER_MARKER = "IBGWD_CALLER_ENV_MARKER"

ESCAPE = r"""
for target in /opt/escaped /var/tmp/escaped /root/escaped /etc/escaped /var/lib/escaped; do
    if touch "$target" 2>/dev/null; then echo "$target" >> "$dir/.install4j/escaped"; fi
done
env > "$dir/.install4j/environment"
"""
HANG = 'touch "$dir/.install4j/hanging"; exec sleep 600'


def install_gateway(box: Box, *argv: str, check: bool = True) -> str:
    r = box.run(
        "env", f"PYTHONPATH={REPO}", f"{CALLER_MARKER}=leak", "python3", "-P", "-m",
        "ibgwd.install", *argv, check=check, timeout=180,
    )  # fmt: skip
    return r.stdout + r.stderr


@pytest.fixture
def box_with_files(box: Box, tmp_path: Path) -> Box:
    build_installer(tmp_path / "escape" / INSTALLER, "10.30.1t", hook=ESCAPE, simulated=False)
    build_installer(tmp_path / "hang" / INSTALLER, "10.37.1o", hook=HANG, simulated=False)
    build_installer(tmp_path / "ok" / INSTALLER, "10.37.1o", simulated=False)
    build_ibc_zip(tmp_path / "IBCLinux-3.24.1.zip", "3.24.1")
    for sub in ("escape", "hang", "ok"):
        box.copy_in(tmp_path / sub / INSTALLER, f"{FILES}/{sub}/{INSTALLER}")
    box.copy_in(tmp_path / "IBCLinux-3.24.1.zip", f"{FILES}/IBCLinux-3.24.1.zip")
    return box


def args(which: str) -> list[str]:
    return ["--from", f"{FILES}/{which}/{INSTALLER}", "--ibc-from", f"{FILES}/IBCLinux-3.24.1.zip"]


def test_installer_runs_in_a_sandboxed_unit_as_the_install_user(box_with_files: Box) -> None:
    box = box_with_files
    out = install_gateway(box, *args("escape"))
    assert "running IB's installer as user ibgwd-install" in out
    install4j = f"{PREFIX}/ibgateway/10.30.1t/.install4j"
    uid = box.run("cat", f"{install4j}/installer.uid").stdout.strip()
    assert uid == box.run("id", "-u", "ibgwd-install").stdout.strip() and uid != "0"
    # ProtectSystem=strict + ReadWritePaths= its work directory: nothing outside was writable
    # but its own PrivateTmp= /var/tmp (thrown away with the unit)
    escaped = box.run("cat", f"{install4j}/escaped").stdout.split()
    assert escaped == ["/var/tmp/escaped"]
    for target in ("/opt/escaped", "/var/tmp/escaped", "/root/escaped", "/etc/escaped"):
        assert box.run("test", "-e", target, check=False).returncode != 0, target
    # an empty environment: nothing of the caller's
    environment = box.run("cat", f"{install4j}/environment").stdout
    assert CALLER_MARKER not in environment
    assert f"HOME={PREFIX}/.staging-" in environment
    assert "IB Gateway installer (ibgwd install-gateway)" in box.journal()
    owners = box.run("find", f"{PREFIX}/ibgateway/10.30.1t", "!", "-user", "root").stdout
    assert owners == ""


def test_an_installer_left_running_by_a_killed_run_is_stopped_by_the_next(
    box_with_files: Box,
) -> None:
    box = box_with_files
    box.run(
        "systemd-run", "--unit=first-install", f"--setenv=PYTHONPATH={REPO}",
        "python3", "-P", "-m", "ibgwd.install", *args("hang"),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while box.run("systemctl", "is-active", UNIT, check=False).stdout.strip() != "active" or (
        box.run(
            "sh", "-c", f"ls {PREFIX}/.staging-*/gateway-work/ibgateway/.install4j/hanging",
            check=False,
        ).returncode != 0
    ):  # fmt: skip
        assert time.monotonic() < deadline, box.run("systemctl", "status", "first-install").stdout
        time.sleep(0.2)
    assert box.run("systemctl", "show", "-P", "User", UNIT).stdout.strip() != "root"
    box.run("systemctl", "kill", "--signal=SIGKILL", "first-install.service")
    box.run("systemctl", "stop", "first-install.service", check=False)
    assert box.run("systemctl", "is-active", UNIT, check=False).stdout.strip() == "active"

    out = install_gateway(box, *args("ok"))
    assert "IB Gateway 10.37.1o" in out, out
    assert box.run("readlink", f"{PREFIX}/ibgateway/current").stdout.strip() == "10.37.1o"
    assert box.run("systemctl", "is-active", UNIT, check=False).stdout.strip() != "active"
    assert box.run("pgrep", "-u", "ibgwd-install", check=False).stdout.strip() == ""
    stale = box.run("sh", "-c", f"ls -d {PREFIX}/.staging-* 2>/dev/null", check=False)
    assert stale.stdout.strip() == ""

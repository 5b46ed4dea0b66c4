"""A package upgrade costs no login: on a clean Debian 12 booted under real systemd, `apt
install` of a newer .deb while the simulated gateway serves a held relayed client and a new
client every 0.2 s. The package restarts ibgwd after the upgrade (postinst); the children
survive that and the new ibgwd adopts them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import stack
from harness import Box
from test_deb import APT_ENV, VERSION, build_deb, installed_version, upgrade_deb
from test_survival import CHILDREN, UNIT, assert_survived, client_load, full_logins, pids, ready

pytestmark = pytest.mark.system

SIM_PREFIX = "/opt/ibgwd/sim"


def test_apt_upgrade_keeps_the_gateway_and_its_clients(
    box_factory: Callable[..., Box], debian_root: Path, tmp_path: Path
) -> None:
    for sub in ("out", "build", "upgrade"):
        (tmp_path / sub).mkdir()
    deb = build_deb(tmp_path / "out", tmp_path / "build")
    box = box_factory(lower=debian_root)
    box.copy_in(deb, "/tmp/ibgwd.deb")
    box.copy_in(upgrade_deb(deb, tmp_path / "upgrade"), "/tmp/ibgwd-upgrade.deb")
    box.hrun("apt-get", "update", "-q", timeout=300)
    box.hrun("apt-get", "install", "-y", "-q", "/tmp/ibgwd.deb", timeout=900, env=APT_ENV)
    box.run("python3", "-m", "ibgwd_sim", "install", "--prefix", SIM_PREFIX)
    settings = {
        "TWS_USERID": "tryout",
        "TWS_PASSWORD": "tryout-Pw-3c9e",
        "TRADING_MODE": "paper",
        "IBC_PATH": f"{SIM_PREFIX}/ibc",
        "TWS_PATH": f"{SIM_PREFIX}/Jts",
        "VNC_SERVER_PASSWORD": "vnc-Secret-7f3a",
        "PROBE_INTERVAL": "1",
        "PROBE_TIMEOUT": "1",
    }
    stack.write_conf(box, "/etc/ibgwd/ibgwd.conf", settings)
    stack.start(box, UNIT)
    stack.wait_for(lambda: stack.show(box, CHILDREN[-1], "ActiveState") == "active", 30, "relay")
    before, logins = pids(box), full_logins(box)
    old_ibgwd = stack.show(box, UNIT, "MainPID")

    with client_load(box) as result:
        box.hrun(
            "apt-get", "install", "-y", "-q", "-o", "Dpkg::Options::=--force-confold",
            "/tmp/ibgwd-upgrade.deb", timeout=600, env=APT_ENV,
        )  # fmt: skip
        assert installed_version(box, "ibgwd") == VERSION + "+upgradetest1"
        stack.wait_for(lambda: ready(box), 60, "the upgraded ibgwd ready")
    assert stack.show(box, UNIT, "MainPID") != old_ibgwd  # the package restarted ibgwd
    assert_survived(box, before, logins, result[0], "apt upgrade of ibgwd")
    assert "event=unit_adopted unit=ibgwd-default-ibc-paper.service" in box.journal(UNIT)

    # Removal is an admin's stop: IBC gets STOP and nothing is left running.
    box.hrun("apt-get", "remove", "-y", "-q", "ibgwd", timeout=600, env=APT_ENV)
    left = box.run("systemctl", "list-units", "--all", "--plain", "--no-legend", "ibgwd-*")
    assert [line for line in left.stdout.splitlines() if ".service" in line] == []

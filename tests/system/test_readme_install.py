"""The README's "Install on a server" steps, run as written on a clean Debian 12 under real
systemd, with the simulated IB installer and IBC zip in place of IB's downloads.

Each line of the README's code block runs verbatim through ``sh -c`` in a directory holding
the two downloads, with these stand-ins for the admin at the keyboard:
- ``scripts/build-deb.sh`` runs on the build host (the box has no build tools) with ``-o`` so
  that nothing is written into the checkout; its ``dist/`` is copied to the server;
- ``apt install`` gets ``y`` at its prompt; ``editor`` is a script that makes the edits the
  comments name (TWS_USERID, TRADING_MODE; the LoadCredential= drop-in), and ``systemctl edit``
  gets a pseudo-terminal (it refuses to run without one);
- the credential file is created the way the paragraph below the block says.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import Box
from harness.box import REPO
from ib_installer import build_ibc_zip, build_installer

pytestmark = pytest.mark.system

BoxFactory = Callable[..., Box]
SERVER_DIR = "/root/server"
PASSWORD = "readme-Pw-5d1f"  # the simulated gateway accepts any password
X_LIBRARIES = ["libxtst6", "libxi6", "libxrender1", "libxext6", "libx11-6", "fontconfig"]

EDITOR = r"""#!/bin/sh
# Stands in for the admin's editor in the README's install steps.
case "$1" in
    /etc/ibgwd/ibgwd.conf)
        printf 'TWS_USERID=trader1\nTRADING_MODE=paper\n' >> "$1" ;;
    *)  # systemctl edit's temporary drop-in
        drop_in='[Service]\nLoadCredential=tws_password:/etc/credstore/ibgwd.tws_password'
        if grep -q '^### Anything between here' "$1"; then
            sed -i "/^### Anything between here/a $drop_in" "$1"
        else
            printf "$drop_in\n" > "$1"
        fi ;;
esac
"""


def readme_steps() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Install on a server", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "no ```sh block in the README's 'Install on a server'"
    return [line for line in block.group(1).splitlines() if line.strip()]


def build_host_step(step: str, out: Path) -> None:
    argv = shlex.split(step, comments=True)
    assert argv == ["scripts/build-deb.sh"], step
    r = subprocess.run(
        [str(REPO / argv[0]), "-o", str(out / "dist")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def installed(box: Box, package: str) -> bool:
    r = box.run("dpkg-query", "-W", "-f", "${Status}", package, check=False)
    return r.stdout.startswith("install ok installed")


def test_readme_install_on_a_server_runs_as_written(
    box_factory: BoxFactory, debian_root: Path, tmp_path: Path
) -> None:
    steps = readme_steps()
    assert steps[0].startswith("scripts/build-deb.sh")
    build_host_step(steps[0], tmp_path)

    box = box_factory(lower=debian_root)
    box.copy_in(tmp_path / "dist", f"{SERVER_DIR}/dist")
    # The downloads the README names: IB's installer (version inside, not in the name) and IBC.
    build_installer(tmp_path / "ibgateway-stable-standalone-linux-x64.sh", "10.30.1t")
    build_ibc_zip(tmp_path / "IBCLinux-3.24.1.zip", "3.24.1")
    for name in ("ibgateway-stable-standalone-linux-x64.sh", "IBCLinux-3.24.1.zip"):
        box.copy_in(tmp_path / name, f"{SERVER_DIR}/{name}")
    editor = box.path("/usr/local/bin/editor")
    editor.parent.mkdir(parents=True, exist_ok=True)
    editor.write_text(EDITOR)
    editor.chmod(0o755)
    # The credential file, as the paragraph under the block says.
    box.run("install", "-D", "-m", "600", "/dev/null", "/etc/credstore/ibgwd.tws_password")
    box.path("/etc/credstore/ibgwd.tws_password").write_text(PASSWORD)

    outputs: dict[str, str] = {}
    for step in steps[1:]:
        command = f"cd {SERVER_DIR} && {step}"
        if step.startswith("systemctl edit"):
            command = f"cd {SERVER_DIR} && script -qec {shlex.quote(step)} /dev/null"
        network = step.startswith("apt") or " apt " in step
        run = box.hrun if network else box.run
        r = run(
            "sh", "-c", command,
            check=False, timeout=900, input="y\n",
            env={"DEBIAN_FRONTEND": "noninteractive"},
        )  # fmt: skip
        assert r.returncode == 0, (
            f"README step {step!r} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
            + box.run("journalctl", "-b", "--no-pager", "-n", "150", check=False).stdout
        )
        outputs[step] = r.stdout

    # The package brought the X libraries the Gateway's JRE loads.
    assert [p for p in X_LIBRARIES if not installed(box, p)] == []
    # install-gateway read 10.30.1t from the installer and ran it as ibgwd-install, not root.
    assert box.run("readlink", "/opt/ibgwd/ibgateway/current").stdout.strip() == "10.30.1t"
    uid = box.run("cat", "/opt/ibgwd/ibgateway/current/.install4j/installer.uid").stdout.strip()
    assert uid == box.run("id", "-u", "ibgwd-install").stdout.strip() and uid != "0"
    # ...in a transient, sandboxed unit (systemd is PID 1 here)
    assert "IB Gateway installer (ibgwd install-gateway)" in box.journal()
    # enable --now returned once ready; ibgwdctl says so; the credential was the password.
    status = next(out for step, out in outputs.items() if step.startswith("ibgwdctl status"))
    assert "ready" in status, status
    state = box.run("systemctl", "show", "-P", "StatusText", "ibgwd.service").stdout
    assert state.startswith("ready"), state
    drop_in = box.run("systemctl", "cat", "ibgwd.service").stdout
    assert "LoadCredential=tws_password:/etc/credstore/ibgwd.tws_password" in drop_in
    assert PASSWORD not in drop_in

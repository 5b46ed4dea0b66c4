"""The .deb: reproducible build, lintian-clean, contents, and install/upgrade/purge on a clean
Debian 12 booted under real systemd (the harness's debootstrap root)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import stack
from harness import Box
from harness.box import REPO

pytestmark = pytest.mark.system

BoxFactory = Callable[..., Box]
_version = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M)
assert _version is not None
VERSION = _version.group(1)
DEB_NAME = f"ibgwd_{VERSION}_all.deb"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
BUILD_DEBRIS = ("debian", "build", ".pybuild", "ibgwd.egg-info", "obj-x86_64-linux-gnu")
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}

DEPENDS = [
    "python3-dasbus",
    "python3-gi",
    "python3-sdnotify",
    "python3-jinja2",
    "python3-prometheus-client",
    "xvfb",
    "socat",
    "dbus",
    "systemd",
    "tzdata",  # TIME_ZONE is checked against the system tz database (zoneinfo)
]
RECOMMENDS = ["x11vnc", "openssh-client", "python3-tk", "python3-xlib"]  # xlib: ibgwdctl screenshot
PY = "./usr/lib/python3/dist-packages"
EXPECTED_FILES = [
    "./lib/systemd/system/ibgwd.service",
    "./lib/systemd/system/ibgwd@.service",
    "./usr/share/dbus-1/system.d/org.ibgwd.Gateway1.conf",
    "./etc/ibgwd/ibgwd.conf",
    "./usr/lib/sysusers.d/ibgwd.conf",
    "./usr/share/man/man8/ibgwd.8.gz",
    "./usr/share/man/man5/ibgwd.conf.5.gz",
    "./usr/share/man/man8/ibgwdctl.8.gz",
    "./usr/bin/ibgwd",
    "./usr/bin/ibgwdctl",
    "./usr/share/doc/ibgwd/copyright",
    f"{PY}/ibgwd/render/templates/config.ini.j2",
    "./usr/share/bash-completion/completions/ibgwd",
    "./usr/share/bash-completion/completions/ibgwdctl",
    "./usr/share/doc/ibgwd/operating.md.gz",
    "./usr/share/ibgwd/monitoring/alerts.yml",
    "./usr/share/ibgwd/monitoring/grafana-dashboard.json",
    "./usr/share/doc/ibgwd/monitoring",
]


@dataclass(frozen=True)
class Build:
    deb: Path
    tmpdir: Path  # the TMPDIR the build and lintian were given: must end up empty
    debris_before: frozenset[str]


def build_deb(out: Path, tmpdir: Path) -> Path:
    r = subprocess.run(
        [str(REPO / "scripts/build-deb.sh"), "-o", str(out)],
        env={**os.environ, "TMPDIR": str(tmpdir)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, f"build-deb.sh failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    assert r.stdout.strip().endswith(DEB_NAME)
    return out / DEB_NAME


def debris() -> frozenset[str]:
    return frozenset(n for n in BUILD_DEBRIS if (REPO / n).exists())


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    before = debris()
    tmpdir = tmp_path_factory.mktemp("deb-tmp")
    deb = build_deb(tmp_path_factory.mktemp("deb-out"), tmpdir)
    return Build(deb, tmpdir, before)


def dpkg_deb(*args: str) -> str:
    r = subprocess.run(["dpkg-deb", *args], capture_output=True, text=True, timeout=60, check=True)
    return r.stdout


def contents(deb: Path) -> dict[str, str]:
    """Path -> permissions string, from `dpkg-deb -c`."""
    out = {}
    for line in dpkg_deb("-c", str(deb)).splitlines():
        fields = line.split(maxsplit=5)
        out[fields[5].split(" -> ")[0]] = fields[0]
    return out


# --- build and lint --------------------------------------------------------------------------


def test_build_is_reproducible_and_leaves_nothing_behind(build: Build, tmp_path: Path) -> None:
    again = build_deb(tmp_path / "out", build.tmpdir)
    assert (
        hashlib.sha256(again.read_bytes()).digest()
        == hashlib.sha256(build.deb.read_bytes()).digest()
    )
    assert sorted(os.listdir(build.tmpdir)) == []
    assert debris() <= build.debris_before


def test_lintian_reports_no_error_and_no_warning(build: Build, tmp_path: Path) -> None:
    lint_tmp = tmp_path / "lintian"  # lintian leaves /tmp/mldbm-* behind otherwise
    lint_tmp.mkdir()
    r = subprocess.run(
        ["lintian", "-I", "--pedantic", "--fail-on", "error,warning", str(build.deb)],
        env={**os.environ, "PATH": SYSTEM_PATH, "TMPDIR": str(lint_tmp)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    findings = [line for line in r.stdout.splitlines() if re.match(r"^[EW]: ", line)]
    assert (r.returncode, findings) == (0, []), r.stdout + r.stderr
    print(r.stdout)  # infos and pedantic tags, for the record


# --- contents --------------------------------------------------------------------------------


def test_deb_holds_units_policy_conffile_sysusers_man_pages_and_every_module(
    build: Build,
) -> None:
    files = contents(build.deb)
    missing = [p for p in EXPECTED_FILES if p not in files]
    assert missing == []
    if (REPO / "systemd/ibgwd.tmpfiles").exists():
        assert "./usr/lib/tmpfiles.d/ibgwd.conf" in files
    for package in ("ibgwd", "ibgwd_sim"):
        for source in sorted((REPO / package).rglob("*.py")):
            packaged = f"{PY}/{source.relative_to(REPO)}"
            assert packaged in files, f"{packaged} is not in the package"
    assert not [p for p in files if "/tests/" in p or "__pycache__" in p]
    assert files["./usr/bin/ibgwd"].startswith("-rwxr-xr-x")


def test_deb_ships_the_repository_units_and_conffile_unchanged(
    build: Build, tmp_path: Path
) -> None:
    dpkg_deb("-x", str(build.deb), str(tmp_path))
    pairs = {
        "lib/systemd/system/ibgwd.service": "systemd/ibgwd.service",
        "lib/systemd/system/ibgwd@.service": "systemd/ibgwd@.service",
        "usr/lib/sysusers.d/ibgwd.conf": "systemd/ibgwd.sysusers",
        "usr/share/dbus-1/system.d/org.ibgwd.Gateway1.conf": "dbus/org.ibgwd.Gateway1.conf",
        "etc/ibgwd/ibgwd.conf": "etc/ibgwd/ibgwd.conf",
    }
    for packaged, source in pairs.items():
        assert (tmp_path / packaged).read_bytes() == (REPO / source).read_bytes(), packaged
    assert (tmp_path / "usr/bin/ibgwd").read_text().startswith("#! /usr/bin/python3") or (
        tmp_path / "usr/bin/ibgwd"
    ).read_text().startswith("#!/usr/bin/python3")


def test_control_declares_conffile_debian_dependencies_and_recommends(
    build: Build, tmp_path: Path
) -> None:
    dpkg_deb("-e", str(build.deb), str(tmp_path / "DEBIAN"))
    assert (tmp_path / "DEBIAN/conffiles").read_text().split() == ["/etc/ibgwd/ibgwd.conf"]
    fields = dpkg_deb("-f", str(build.deb), "Depends", "Recommends", "Architecture")
    depends = re.search(r"^Depends: (.*)$", fields, re.M)
    recommends = re.search(r"^Recommends: (.*)$", fields, re.M)
    assert depends is not None and recommends is not None
    names = {d.strip().split()[0] for d in depends.group(1).split(",")}
    assert set(DEPENDS) <= names
    assert set(RECOMMENDS) <= {r.strip().split()[0] for r in recommends.group(1).split(",")}
    assert "Architecture: all" in fields


# --- install, upgrade and purge on a clean Debian 12 ------------------------------------------

FAKE_INSTALLER = """#!/bin/sh
# fake IB Gateway installer: honours -q -dir DIR like install4j's unattended mode
[ "$1" = -q ] && [ "$2" = -dir ] && [ -n "$3" ] || exit 2
mkdir -p "$3/jars" "$3/.install4j" && echo fake > "$3/jars/twslaunch.jar"
echo "$3/jre" > "$3/.install4j/inst_jre.cfg"
"""


def upgrade_deb(deb: Path, work: Path) -> Path:
    """The same package as a newer version whose conffile changed (dpkg must ask or keep)."""
    tree = work / "tree"
    dpkg_deb("-R", str(deb), str(tree))
    control = tree / "DEBIAN/control"
    control.write_text(
        re.sub(r"^Version: (.*)$", r"Version: \1+upgradetest1", control.read_text(), flags=re.M)
    )
    conffile = tree / "etc/ibgwd/ibgwd.conf"
    conffile.write_text(conffile.read_text() + "# changed by the upgrade\n")
    md5 = hashlib.md5(conffile.read_bytes()).hexdigest()
    sums = tree / "DEBIAN/md5sums"
    sums.write_text(
        re.sub(r"^\S+(  etc/ibgwd/ibgwd.conf)$", md5 + r"\1", sums.read_text(), flags=re.M)
    )
    out = work / "ibgwd-upgrade.deb"
    dpkg_deb("--root-owner-group", "-b", str(tree), str(out))
    return out


def installed_version(box: Box, package: str) -> str | None:
    r = box.run("dpkg-query", "-W", "-f", "${Status} ${Version}", package, check=False)
    if r.returncode != 0 or not r.stdout.startswith("install ok installed"):
        return None
    return r.stdout.split()[-1]


SIM_PREFIX = "/opt/ibgwd/sim"
BUS_NAME = "org.ibgwd.Gateway1.default"


def try_the_simulated_gateway(box: Box) -> None:
    """What docs/packaging.md tells admins: install the sim, point ibgwd.conf at it, start."""
    box.run("python3", "-m", "ibgwd_sim", "install", "--prefix", SIM_PREFIX)
    settings = {
        "TWS_USERID": "tryout",
        "TWS_PASSWORD": "tryout-Pw-3c9e",  # any value: the simulated gateway accepts it
        "TRADING_MODE": "paper",
        "IBC_PATH": f"{SIM_PREFIX}/ibc",
        "TWS_PATH": f"{SIM_PREFIX}/Jts",
    }
    stack.write_conf(box, "/etc/ibgwd/ibgwd.conf", settings)
    stack.start(box, "ibgwd.service")  # Type=notify: returns once ibgwd sent READY=1
    assert stack.show(box, "ibgwd.service", "ActiveState") == "active"
    assert stack.show(box, "ibgwd.service", "StatusText").startswith("ready")
    state = box.run(
        "busctl", "get-property", BUS_NAME, "/org/ibgwd/Gateway1",
        "org.ibgwd.Gateway1.Manager", "State",
    )  # fmt: skip
    assert state.stdout.strip() == 's "ready"'
    scrape = stack.metrics(box)  # minbase has no curl: python3's urllib, 127.0.0.1:9108
    assert re.search(r"^ibgwd_ready 1\.0$", scrape, re.M), scrape[-2000:]
    box.run("systemctl", "stop", "ibgwd.service", timeout=120)
    assert stack.show(box, "ibgwd.service", "ActiveState") == "inactive"
    children = box.run("systemctl", "list-units", "--all", "--no-legend", "ibgwd-*.service").stdout
    assert children.strip() == ""


def test_clean_debian_12_installs_with_apt_runs_the_simulated_gateway_upgrades_and_purges(
    box_factory: BoxFactory, debian_root: Path, build: Build, tmp_path: Path
) -> None:
    box = box_factory(lower=debian_root)
    assert installed_version(box, "python3") is None  # really a clean root
    box.copy_in(build.deb, "/tmp/ibgwd.deb")
    box.copy_in(upgrade_deb(build.deb, tmp_path), "/tmp/ibgwd-upgrade.deb")
    installer = tmp_path / "ibgateway-10.30.1t-standalone-linux-x64.sh"
    installer.write_text(FAKE_INSTALLER)
    with zipfile.ZipFile(tmp_path / "IBCLinux-3.20.0.zip", "w") as z:
        z.writestr("IBC.jar", "fake")
        z.writestr("scripts/ibcstart.sh", "#!/bin/sh\n")
    box.copy_in(installer, f"/tmp/{installer.name}")
    box.copy_in(tmp_path / "IBCLinux-3.20.0.zip", "/tmp/IBCLinux-3.20.0.zip")

    # apt resolves every dependency from the Debian archive (host network, box files).
    box.hrun("apt-get", "update", "-q", timeout=300)
    box.hrun("apt-get", "install", "-y", "-q", "/tmp/ibgwd.deb", timeout=900, env=APT_ENV)
    assert installed_version(box, "ibgwd") == VERSION
    assert [p for p in DEPENDS + RECOMMENDS if installed_version(box, p) is None] == []

    # sysusers made the user and the group; the units are installed, not enabled or started.
    # The conffile where the password goes is private from the start.
    assert box.run("stat", "-c", "%a %U", "/etc/ibgwd/ibgwd.conf").stdout.split() == ["600", "root"]
    passwd = box.run("getent", "passwd", "ibgateway").stdout.split(":")
    assert passwd[5] == "/var/lib/ibgwd"
    assert box.run("getent", "group", "ibgwd").returncode == 0
    assert box.run("systemctl", "is-enabled", "ibgwd.service", check=False).stdout.strip() == (
        "disabled"
    )
    assert box.run("systemctl", "is-active", "ibgwd.service", check=False).stdout.strip() == (
        "inactive"
    )
    verify = box.run(
        "systemd-analyze", "verify", "--man=no", "ibgwd.service", "ibgwd@paper.service", check=False
    )
    assert verify.returncode == 0, verify.stderr  # --man=no: minbase has no man-db

    # With only what apt brought (Depends + Recommends), the simulated gateway reaches READY.
    try_the_simulated_gateway(box)

    # install-gateway from local files with Debian's python (no venv), default prefix.
    done = box.run(
        "ibgwd", "install-gateway", "--from", f"/tmp/{installer.name}",
        "--ibc-from", "/tmp/IBCLinux-3.20.0.zip",
    )  # fmt: skip
    assert "TWS_PATH=/opt/ibgwd IB_GATEWAY_VERSION=current" in done.stdout
    assert box.run("readlink", "/opt/ibgwd/ibgateway/current").stdout.strip() == "10.30.1t"

    # What a running daemon and an admin leave: state, an edited conffile, an own instance file.
    box.run("mkdir", "-p", "/var/lib/ibgwd/default/settings")
    box.run("sh", "-c", "echo TRADING_MODE=live >> /etc/ibgwd/ibgwd.conf")
    box.run("sh", "-c", "echo TRADING_MODE=paper > /etc/ibgwd/paper.conf")

    box.hrun(
        "apt-get", "install", "-y", "-q", "-o", "Dpkg::Options::=--force-confold",
        "/tmp/ibgwd-upgrade.deb", timeout=600, env=APT_ENV,
    )  # fmt: skip
    assert installed_version(box, "ibgwd") == VERSION + "+upgradetest1"
    conf = box.run("cat", "/etc/ibgwd/ibgwd.conf").stdout
    assert conf.endswith("TRADING_MODE=live\n") and "changed by the upgrade" not in conf
    assert box.run("test", "-f", "/etc/ibgwd/ibgwd.conf.dpkg-dist", check=False).returncode == 0

    listed = box.run("dpkg-query", "-L", "ibgwd").stdout.split()
    ours = [p for p in listed if box.run("test", "-d", p, check=False).returncode != 0]
    ours += [
        "/etc/ibgwd/ibgwd.conf",
        "/etc/ibgwd/ibgwd.conf.dpkg-dist",
        "/var/lib/ibgwd",
        "/opt/ibgwd",  # install-gateway's versions and the simulated gateway
        "/run/ibgwd",
        "/usr/lib/python3/dist-packages/ibgwd",
        "/usr/lib/python3/dist-packages/ibgwd_sim",
        "/usr/share/doc/ibgwd",
        "/var/lib/systemd/deb-systemd-helper-enabled/ibgwd.service.dsh-also",
    ]
    box.hrun("apt-get", "purge", "-y", "-q", "ibgwd", timeout=300, env=APT_ENV)
    assert installed_version(box, "ibgwd") is None
    left = [p for p in ours if box.run("test", "-e", p, check=False).returncode == 0]
    assert left == []
    # ...and nothing that was not ours: the admin's own instance file stays.
    assert box.run("cat", "/etc/ibgwd/paper.conf").stdout == "TRADING_MODE=paper\n"

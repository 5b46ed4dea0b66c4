"""install-gateway as a process: real shell installer (fake), real zip, real SIGKILL mid-way."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Honours install4j's unattended mode the way IB's installer does: `-q -dir DIR`, creates DIR,
# writes an absolute path into .install4j/inst_jre.cfg. FAKE_HANG=<file>: touch it, then hang
# half-way through (to be killed). FAKE_FAIL=1: exit 1 after writing part of the tree.
FAKE_INSTALLER = r"""#!/bin/sh
# fake IB Gateway installer VERSION_TAG
quiet=0 dir=
while [ $# -gt 0 ]; do
    case "$1" in
        -q) quiet=1 ;;
        -dir) shift; dir=$1 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$quiet" = 1 ] && [ -n "$dir" ] || { echo "usage: $0 -q -dir DIR" >&2; exit 2; }
mkdir -p "$dir/jars" "$dir/.install4j" "$dir/jre/bin"
echo "fake jar" > "$dir/jars/twslaunch.jar"
if [ -n "$FAKE_HANG" ]; then touch "$FAKE_HANG"; exec sleep 600; fi
if [ -n "$FAKE_FAIL" ]; then echo "Installation failed: disk full"; exit 1; fi
echo "$dir/jre" > "$dir/.install4j/inst_jre.cfg"
echo "-Xmx768m" > "$dir/ibgateway.vmoptions"
echo "Finishing installation..."
"""


def make_installer(path: Path, tag: str) -> Path:
    path.write_text(FAKE_INSTALLER.replace("VERSION_TAG", tag))
    return path


def make_ibc_zip(path: Path, version: str) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("IBC.jar", b"fake")
        z.writestr("version", version)
        info = zipfile.ZipInfo("scripts/ibcstart.sh")
        info.external_attr = 0o100644 << 16  # zip says not executable; install must fix that
        z.writestr(info, "#!/bin/sh\necho fake\n")
    return path


@pytest.fixture
def work(tmp_path: Path) -> dict[str, Path]:
    return {
        "gw1": make_installer(tmp_path / "ibgateway-10.30.1t-standalone-linux-x64.sh", "1"),
        "gw2": make_installer(tmp_path / "ibgateway-10.37.1o-standalone-linux-x64.sh", "2"),
        "ibc1": make_ibc_zip(tmp_path / "IBCLinux-3.20.0.zip", "3.20.0"),
        "ibc2": make_ibc_zip(tmp_path / "IBCLinux-3.24.2.zip", "3.24.2"),
        "prefix": tmp_path / "opt" / "ibgwd",
    }


def args(work: dict[str, Path], gw: str = "gw1", ibc: str = "ibc1") -> list[str]:
    return ["--from", str(work[gw]), "--ibc-from", str(work[ibc]), "--prefix", str(work["prefix"])]


def cli(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ibgwd.install", *argv],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def state(prefix: Path) -> dict[str, object]:
    return {
        "gateway": sorted(os.listdir(prefix / "ibgateway")),
        "ibc": sorted(os.listdir(prefix / "ibc")),
        "gateway_current": os.readlink(prefix / "ibgateway" / "current"),
        "ibc_current": os.readlink(prefix / "ibc" / "current"),
    }


OLD_STATE = {
    "gateway": ["10.30.1t", "current"],
    "ibc": ["3.20.0", "current"],
    "gateway_current": "10.30.1t",
    "ibc_current": "3.20.0",
}


def test_install_from_local_files_succeeds_offline(work: dict[str, Path]) -> None:
    sha = hashlib.sha256(work["gw1"].read_bytes()).hexdigest()
    proc = cli([*args(work), "--sha256", sha])
    assert proc.returncode == 0, proc.stderr
    assert state(work["prefix"]) == OLD_STATE
    gw = work["prefix"] / "ibgateway" / "10.30.1t"
    assert (gw / ".install4j" / "inst_jre.cfg").read_text() == f"{gw}/jre\n"
    assert os.access(work["prefix"] / "ibc" / "current" / "scripts" / "ibcstart.sh", os.X_OK)
    assert "IB Gateway 10.30.1t" in proc.stdout and "(verified)" in proc.stdout
    assert f"TWS_PATH={work['prefix']} IB_GATEWAY_VERSION=current" in proc.stdout


def test_checksum_mismatch_exits_nonzero_and_changes_nothing(work: dict[str, Path]) -> None:
    assert cli(args(work)).returncode == 0
    proc = cli([*args(work, "gw2", "ibc2"), "--sha256", "0" * 64])
    assert proc.returncode == 70
    assert "sha256 mismatch" in proc.stderr and "nothing was installed" in proc.stderr
    assert state(work["prefix"]) == OLD_STATE


def test_failing_installer_exits_nonzero_and_changes_nothing(work: dict[str, Path]) -> None:
    assert cli(args(work)).returncode == 0
    proc = cli(args(work, "gw2", "ibc2"), FAKE_FAIL="1")
    assert proc.returncode == 70
    assert "status 1" in proc.stderr and "disk full" in proc.stderr
    assert state(work["prefix"]) == OLD_STATE
    assert [p.name for p in work["prefix"].iterdir() if p.name.startswith(".staging")] == []


@pytest.fixture
def killable() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)


def test_sigkill_mid_install_leaves_previous_current_and_next_run_cleans_up(
    work: dict[str, Path], tmp_path: Path, killable: list[subprocess.Popen[bytes]]
) -> None:
    assert cli(args(work)).returncode == 0
    marker = tmp_path / "installer-running"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ibgwd.install", *args(work, "gw2", "ibc2")],
        cwd=REPO,
        env={**os.environ, "FAKE_HANG": str(marker)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    killable.append(proc)
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert proc.poll() is None, "install-gateway exited before the installer hung"
        assert time.monotonic() < deadline, "fake installer never started"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the installer and install-gateway die together
    proc.wait(timeout=10)

    prefix = work["prefix"]
    assert state(prefix) == OLD_STATE  # no 10.37.1o, current untouched
    assert [p.name for p in prefix.iterdir() if p.name.startswith(".staging-")] != []

    done = cli(args(work, "gw2", "ibc2"))  # the lock died with the process
    assert done.returncode == 0, done.stderr
    assert os.readlink(prefix / "ibgateway" / "current") == "10.37.1o"
    assert [p.name for p in prefix.iterdir() if p.name.startswith(".staging-")] == []


def test_concurrent_install_is_refused_while_one_runs(
    work: dict[str, Path], tmp_path: Path, killable: list[subprocess.Popen[bytes]]
) -> None:
    marker = tmp_path / "installer-running"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ibgwd.install", *args(work)],
        cwd=REPO,
        env={**os.environ, "FAKE_HANG": str(marker)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    killable.append(proc)
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    second = cli(args(work, "gw2", "ibc2"))
    assert second.returncode == 70
    assert "another install-gateway is running" in second.stderr

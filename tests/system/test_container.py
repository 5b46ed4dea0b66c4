"""The container image (issue 9): built with podman from the repository's Dockerfile on a base
imported from the debootstrap root, run with an `.env` in ib-gateway-docker's format and
`--systemd=always`, reached through the relay, stopped gracefully, re-created on its settings.

Runs only with `--network=none` (no CNI bridge on the shared host); builds use the host network
for apt. The imported base image and podman's layer cache are kept between runs; each run's
image tag, containers and podman's leftover cgroup dirs are removed, pass or fail.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import debian_rootfs
from harness.box import REPO

pytestmark = pytest.mark.system

ROOTFS_CACHE = Path("/var/tmp/ibgwd-box-cache")
BASE_IMAGE = "localhost/ibgwd-test-base:bookworm"
CONTAINERS_CONF = REPO / "image" / "containers.conf"
SETTINGS_IN_CONTAINER = "/home/ibgateway/tws_settings"
SECRET_IN_CONTAINER = "/run/secrets/tws_password"
SITE_IN_CONTAINER = "/opt/test-site-packages"
TWS_PASSWORD = "Tws-pw 'quoted' $HOME #1"  # test credential for the simulated gateway
VNC_PASSWORD = "vnc-S3cret"
STOP_GRACE_S = 90  # > ibgwd.service's TimeoutStopSec=60: a SIGKILL would show as exit 137
BUILD_CONTEXT_FILES = ("Dockerfile", ".dockerignore", "image")


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(
    *args: str, check: bool = True, timeout: float = 120, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        ["podman", *args],
        env=podman_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and r.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} failed ({r.returncode}):\n{r.stderr}")
    return r


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def remove_libpod_cgroups() -> None:
    """podman (cgroupfs manager) leaves libpod_parent dirs; remove them once nothing runs."""
    if podman("ps", "-q", check=False).stdout.strip():
        return
    for top in Path("/sys/fs/cgroup").glob("*/libpod_parent"):
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def ensure_base_image() -> None:
    """Import the debootstrap root as a base image once; later runs reuse it."""
    with open(ROOTFS_CACHE / "podman-base.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
            return
        rootfs = debian_rootfs(ROOTFS_CACHE)
        tar = subprocess.Popen(
            ["tar", "-C", str(rootfs), "--exclude=./.ibgwd-box-complete", "-c", "."],
            stdout=subprocess.PIPE,
        )
        r = subprocess.run(
            ["podman", "import", "--change", 'CMD ["/bin/bash"]', "-", BASE_IMAGE],
            stdin=tar.stdout,
            env=podman_env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert tar.wait() == 0 and r.returncode == 0, f"podman import failed:\n{r.stderr}"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The image built from the repository's Dockerfile with GATEWAY=simulated."""
    if os.geteuid() != 0 or shutil.which("podman") is None:
        why = "container tests need root and podman (scripts/setup.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    ROOTFS_CACHE.mkdir(parents=True, exist_ok=True)
    ensure_base_image()
    context = tmp_path_factory.mktemp("context")
    for name in BUILD_CONTEXT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, context / name)
    r = subprocess.run(
        [str(REPO / "scripts/build-deb.sh"), "-o", str(context / "dist")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, f"build-deb.sh failed:\n{r.stderr[-3000:]}"
    tag = f"localhost/ibgwd-test:{uuid.uuid4().hex[:12]}"
    try:
        podman(
            "build",
            "--network=host",
            "--build-arg",
            f"BASE_IMAGE={BASE_IMAGE}",
            "--build-arg",
            "GATEWAY=simulated",
            "-t",
            tag,
            str(context),
            timeout=900,
        )
        yield tag
    finally:
        podman("rmi", "-f", tag, check=False)
        remove_libpod_cgroups()


@dataclass
class Container:
    name: str

    def exec(
        self, *argv: str, check: bool = True, stdin: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        # env -i: `podman exec` gives its process the container's configured environment,
        # which is the user's (it may hold VNC_SERVER_PASSWORD); our probes must not carry it.
        # --privileged: CAP_SYS_PTRACE, to read other users' /proc/<pid>/environ.
        args = [
            "exec",
            "-i",
            "--privileged",
            self.name,
            "env",
            "-i",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            *argv,
        ]
        return podman(*args, check=check, stdin=stdin, timeout=timeout)

    def wait_ready(self) -> None:
        def booted() -> bool:
            r = self.exec("systemctl", "is-system-running", check=False)
            return r.stdout.strip() in ("running", "degraded")

        wait_for(booted, 90, f"systemd in {self.name} to finish booting")
        r = self.exec("systemctl", "show", "-P", "ActiveState", "ibgwd.service")
        assert r.stdout.strip() == "active", self.journal()

    def journal(self) -> str:
        return self.exec("journalctl", "-b", "--no-pager", "-n", "80", check=False).stdout

    def stop(self, timeout_s: int) -> int:
        """`podman stop`; returns the container's exit code (137 = it had to be killed)."""
        podman("stop", "-t", str(timeout_s), self.name, timeout=timeout_s + 60)
        code = podman("inspect", "-f", "{{.State.ExitCode}}", self.name).stdout.strip()
        return int(code)


@pytest.fixture
def run(image: str, tmp_path: Path) -> Iterator[Callable[..., Container]]:
    """``run(env_file, settings_dir, secret_file)`` starts a container like a user would."""
    names: list[str] = []
    site = Path(sys.prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}")

    def start(env_file: Path, settings_dir: Path, secret_file: Path) -> Container:
        name = f"ibgwd-test-{uuid.uuid4().hex[:10]}"
        names.append(name)
        podman(
            "run",
            "-d",
            "--name",
            name,
            "--systemd=always",
            "--network=none",
            "--env-file",
            str(env_file),
            "-v",
            f"{secret_file}:{SECRET_IN_CONTAINER}:ro",
            "-v",
            f"{settings_dir}:{SETTINGS_IN_CONTAINER}",
            "-v",
            f"{site / 'site-packages'}:{SITE_IN_CONTAINER}:ro",
            image,
        )
        c = Container(name)
        c.wait_ready()
        return c

    try:
        yield start
    finally:
        for name in names:
            podman("rm", "-f", "-v", "-t", "0", name, check=False)
        remove_libpod_cgroups()


def old_env_file(path: Path, **overrides: str) -> Path:
    """An .env as users of ib-gateway-docker write it (KEY=VALUE, unquoted)."""
    values = {
        "TWS_USERID": "demo",
        "TWS_PASSWORD_FILE": SECRET_IN_CONTAINER,
        "TRADING_MODE": "paper",
        "VNC_SERVER_PASSWORD": VNC_PASSWORD,
        "TWS_SETTINGS_PATH": SETTINGS_IN_CONTAINER,
        "TIME_ZONE": "Etc/UTC",
        "TWOFA_TIMEOUT_ACTION": "restart",
        "READ_ONLY_API": "no",
        "AUTO_RESTART_TIME": "11:59 PM",
        "TZ": "Etc/UTC",
    } | overrides
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    return path


@pytest.fixture
def user_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    settings = tmp_path / "tws_settings"
    settings.mkdir()
    secret = tmp_path / "tws_password"
    secret.write_text(TWS_PASSWORD + "\n", encoding="utf-8")
    secret.chmod(0o600)
    return old_env_file(tmp_path / ".env"), settings, secret


SCANNER = """
import os, sys
secrets = [s.encode() for s in sys.stdin.read().splitlines() if s]
for pid in filter(str.isdigit, os.listdir('/proc')):
    for what in ('cmdline', 'environ'):
        try:
            data = open(f'/proc/{pid}/{what}', 'rb').read()
        except PermissionError:
            print(pid, what, 'unreadable')
            continue
        except OSError:  # the process has exited
            continue
        for i, s in enumerate(secrets):
            if s in data:
                print(pid, what, i)
"""

IB_ASYNC_CLIENT = """
from ib_async import IB
ib = IB()
ib.connect('127.0.0.1', 4004, clientId=17, timeout=20)
print('server_time', ib.reqCurrentTime().isoformat())
ib.disconnect()
"""

LISTENERS = """
for name in ('/proc/net/tcp', '/proc/net/tcp6'):
    for line in open(name).read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == '0A':
            addr, port = local.split(':')
            print(addr, int(port, 16))
"""


def test_old_env_file_runs_the_gateway_behind_the_relay_stops_gracefully_and_keeps_settings(
    run: Callable[..., Container], user_files: tuple[Path, Path, Path]
) -> None:
    env_file, settings, secret = user_files
    c = run(env_file, settings, secret)

    client = c.exec(f"PYTHONPATH={SITE_IN_CONTAINER}", "python3", "-c", IB_ASYNC_CLIENT, timeout=60)
    assert "server_time 20" in client.stdout, client.stderr

    ready = c.exec(
        "busctl",
        "--system",
        "get-property",
        "org.ibgwd.Gateway1.default",
        "/org/ibgwd/Gateway1",
        "org.ibgwd.Gateway1.Manager",
        "Ready",
    )
    assert ready.stdout.strip() == "b true"
    metrics = c.exec(
        "python3",
        "-c",
        "import urllib.request; print(urllib.request.urlopen("
        "'http://127.0.0.1:9108/metrics', timeout=10).read().decode())",
    ).stdout
    assert 'trading_mode="paper"' in metrics
    assert 'ibgwd_api_up{mode="paper"} 1.0' in metrics

    listening = {
        tuple(line.split())
        for line in c.exec("python3", "-c", LISTENERS).stdout.split("\n")
        if line
    }
    for port in ("4004", "5900", "9108"):  # relay, VNC and metrics on every address
        assert ("00000000", port) in listening, sorted(listening)

    # Secrets: the TWS password only in the mounted file; the VNC password only in PID 1's
    # environment, where the user put it. Not in ibgwd's environment, argv, or any child's.
    leaks = c.exec("python3", "-c", SCANNER, stdin=f"{TWS_PASSWORD}\n{VNC_PASSWORD}\n").stdout
    assert leaks.split("\n") == ["1 environ 1", ""], leaks
    checked = c.exec("/usr/lib/ibgwd-container/import-env", "--check").stdout
    assert 'TWS_USERID="demo"' in checked and VNC_PASSWORD not in checked
    env_file_in_run = c.exec("cat", "/run/ibgwd-container/env").stdout
    assert "TWS_PASSWORD_FILE=" in env_file_in_run and VNC_PASSWORD not in env_file_in_run
    modes = c.exec(
        "stat",
        "-c",
        "%a %U %n",
        "/run/ibgwd-container/env",
        "/run/ibgwd-container/secrets/VNC_SERVER_PASSWORD",
    ).stdout.split("\n")
    assert [m.split()[:2] for m in modes if m] == [["600", "root"], ["600", "root"]]
    fs = c.exec("findmnt", "-n", "-o", "FSTYPE", "-T", "/run/ibgwd-container").stdout.strip()
    assert fs == "tmpfs"
    relay_pid = c.exec("systemctl", "show", "-P", "MainPID", "ibgwd-default-relay-paper").stdout
    relay_env = c.exec("cat", f"/proc/{relay_pid.strip()}/environ").stdout
    assert "TWS_" not in relay_env  # transient units do not inherit ibgwd's environment

    assert c.stop(STOP_GRACE_S) == 0
    assert "event=command command=STOP" in (settings / "sim-events.log").read_text()

    # Re-create the container on the same settings volume: jts.ini is kept as it was.
    jts = settings / "jts.ini"
    marker = f"# kept across re-creation {uuid.uuid4().hex}\n"
    jts.write_text(jts.read_text() + marker)
    podman("rm", c.name)
    old_env_file(env_file, TIME_ZONE="America/New_York")
    again = run(env_file, settings, secret)
    client = again.exec(
        f"PYTHONPATH={SITE_IN_CONTAINER}", "python3", "-c", IB_ASYNC_CLIENT, timeout=60
    )
    assert "server_time 20" in client.stdout, client.stderr
    text = jts.read_text()
    assert marker in text and "TimeZone=Etc/UTC" in text


def test_stop_within_dockers_default_grace_period_is_graceful(
    run: Callable[..., Container], user_files: tuple[Path, Path, Path]
) -> None:
    env_file, settings, secret = user_files
    c = run(env_file, settings, secret)
    assert c.stop(10) == 0
    assert "event=command command=STOP" in (settings / "sim-events.log").read_text()

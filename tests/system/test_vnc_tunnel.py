"""VNC and the ssh tunnel under real systemd, against real peers: a VNC client (vncdotool) and an
OpenSSH server on the box's loopback acting as the bastion (key authentication only)."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass

import pytest
import stack
from harness import Box

pytestmark = pytest.mark.system

UNIT = "ibgwd.service"
DISPLAY = "ibgwd-default-display.service"
VNC = "ibgwd-default-vnc.service"
RELAY = "ibgwd-default-relay-paper.service"
TUNNEL = "ibgwd-default-tunnel-paper.service"
BASTION = "test-bastion-sshd.service"
BASTION_DIR = "/etc/test-bastion"
KEY_DIR = "/var/lib/ibgwd/default/ssh"
API_PORT = 4002
RELAY_PORT = 4004
VNC_PASSWORD = "vncTunl9"  # test credential (VNC uses at most 8 characters)
PASSPHRASE = "key-Passphrase-5e2b"  # test credential
SSH_RESTART = 2

VENV_SITE = str(next((stack.REPO / ".venv" / "lib").glob("python3*/site-packages")))

# A real VNC client: connects with the password read from stdin, captures the screen and says
# how much of the simulated gateway's window area (520x260+40+40, dark red #8b1a1a) is that
# red, and how much of an area outside the window is.
VNC_CLIENT = """
import json, sys
from vncdotool import api
from PIL import Image
server, out = sys.argv[1], sys.argv[2]
try:
    client = api.connect(server, password=sys.stdin.read(), timeout=15)
    client.captureScreen(out)
    client.disconnect()
except Exception as e:
    print(json.dumps({"ok": False, "error": type(e).__name__ + ": " + str(e)}))
    sys.exit(0)
finally:
    api.shutdown()
image = Image.open(out).convert("RGB")
def red(box):
    pixels = list(image.crop(box).getdata())
    near = [p for p in pixels if abs(p[0] - 0x8B) < 12 and p[1] < 50 and p[2] < 50]
    return len(near) / len(pixels)
print(json.dumps({"ok": True, "size": image.size, "window_red": red((40, 40, 560, 300)),
                  "outside_red": red((700, 450, 1000, 750))}))
"""


@dataclass(frozen=True)
class VncResult:
    ok: bool
    window_red: float
    outside_red: float
    output: str


def vnc_capture(box: Box, port: int, password: str) -> VncResult:
    r = box.run(
        "/usr/bin/python3",
        "-c",
        VNC_CLIENT,
        f"127.0.0.1::{port}",
        "/tmp/vnc-capture.png",
        input=password,  # not argv: the secrets scan reads every cmdline
        env={"PYTHONPATH": VENV_SITE},
        check=False,
        timeout=60,
    )
    line = (r.stdout.strip().splitlines() or ["{}"])[-1]
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return VncResult(False, 0.0, 0.0, r.stdout + r.stderr)
    return VncResult(
        bool(data.get("ok")),
        float(data.get("window_red", 0.0)),
        float(data.get("outside_red", 0.0)),
        line,
    )


def wait_window_visible(box: Box, port: int, timeout: float = 60) -> VncResult:
    results: list[VncResult] = []

    def visible() -> bool:
        results.append(vnc_capture(box, port, VNC_PASSWORD))
        return results[-1].ok and results[-1].window_red > 0.5

    try:
        stack.wait_for(visible, timeout, f"the gateway window over VNC on {port}", 1.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last: {results[-1:]}") from None
    return results[-1]


def listening(box: Box, port: int) -> str:
    return box.run("ss", "-Hltnp", f"sport = :{port}").stdout.strip()


def main_pid(box: Box, unit: str) -> int:
    return int(stack.show(box, unit, "MainPID") or 0)


def wait_ready(box: Box, timeout: float = 90) -> None:
    stack.wait_for(
        lambda: stack.show(box, UNIT, "StatusText").startswith("ready"), timeout, "ready"
    )


def wait_client(box: Box, port: int, timeout: float = 60) -> float:
    """Wait until ib_async completes reqCurrentTime on `port`; returns the seconds waited."""
    start = time.monotonic()
    results: list[stack.ClientResult] = []

    def served() -> bool:
        results.append(stack.ib_async_client(box, port, timeout=5))
        return results[-1].ok

    try:
        stack.wait_for(served, timeout, f"ib_async through port {port}", 0.3)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last: {results[-1:]}") from None
    return time.monotonic() - start


# ---- VNC ------------------------------------------------------------------------------------


@pytest.fixture
def with_vnc(box: Box) -> Box:
    stack.install(box, stack.base_settings() | {"VNC_SERVER_PASSWORD": VNC_PASSWORD})
    stack.start(box)
    return box


def test_vnc_client_with_the_password_sees_the_gateway_window_and_a_wrong_one_is_refused(
    with_vnc: Box,
) -> None:
    box = with_vnc
    shot = wait_window_visible(box, 5900)
    print(f"VNC capture: {shot.output}")
    assert shot.outside_red < 0.01  # the red is the window, not the whole screen
    wrong = vnc_capture(box, 5900, "wrong-pw")
    assert not wrong.ok
    assert "password" in wrong.output.lower() or "auth" in wrong.output.lower(), wrong.output
    assert "127.0.0.1:5900" in listening(box, 5900)  # loopback by default (VNC_BIND_ADDRESS)
    passwd = box.run("stat", "-c", "%a %U", "/run/ibgwd/default/vnc/passwd").stdout.split()
    assert passwd == ["600", "ibgateway"]
    exec_start = stack.show(box, VNC, "ExecStart")
    assert "-passwdfile" in exec_start and VNC_PASSWORD not in exec_start
    assert stack.show(box, VNC, "Restart") == "always"
    assert DISPLAY in stack.show(box, VNC, "PartOf")


def test_vnc_serves_the_display_again_after_kill_9_of_xvfb(with_vnc: Box) -> None:
    box = with_vnc
    wait_window_visible(box, 5900)
    xvfb = main_pid(box, DISPLAY)
    vnc = main_pid(box, VNC)
    start = time.monotonic()
    box.run("kill", "-9", str(xvfb))
    stack.wait_for(lambda: main_pid(box, DISPLAY) not in (0, xvfb), 30, "a new Xvfb")
    stack.wait_for(lambda: main_pid(box, VNC) not in (0, vnc), 30, "x11vnc to follow the display")
    wait_window_visible(box, 5900, timeout=90)
    print(f"VNC shows the gateway again {time.monotonic() - start:.1f} s after kill -9 of Xvfb")


def test_without_vnc_password_nothing_listens_on_5900(box: Box) -> None:
    stack.install(box, stack.base_settings())
    stack.start(box)
    assert listening(box, 5900) == ""
    assert stack.show(box, VNC, "LoadState") == "not-found"
    assert not vnc_capture(box, 5900, VNC_PASSWORD).ok


# ---- ssh tunnel -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bastion:
    port: int
    remote_port: int
    remote_vnc_port: int


SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {dir}/host_ed25519
AuthorizedKeysFile {dir}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthenticationMethods publickey
UsePAM no
AllowTcpForwarding yes
GatewayPorts no
PidFile none
LogLevel VERBOSE
"""


def pick_ports() -> Bastion:
    return Bastion(*random.sample(range(20000, 30000), 3))


def setup_bastion(box: Box, bastion: Bastion, passphrase: str = "") -> None:
    """An OpenSSH server on the box's loopback, key authentication only, run as a transient
    unit, and ibgwd's client key in SSH_KEY_DIR (owned by ibgateway, as users set it up).
    Call after stack.install (which creates the user ibgateway)."""
    box.run("mkdir", "-p", BASTION_DIR, "/run/sshd", KEY_DIR)
    box.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{BASTION_DIR}/host_ed25519")
    # ssh-keygen takes the new passphrase on argv only; it is a short-lived setup step, gone
    # long before the scans below look at /proc.
    key = f"{KEY_DIR}/id_ed25519"
    box.run("ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "ibgwd", "-f", key)
    box.run("chown", "-R", "ibgateway:ibgateway", KEY_DIR)
    box.run("chmod", "700", KEY_DIR)
    pub = box.path(f"{key}.pub").read_text().strip()
    box.path(f"{BASTION_DIR}/authorized_keys").write_text(f"restrict,port-forwarding {pub}\n")
    box.run("useradd", "--system", "-M", "-d", "/nonexistent", "-s", "/bin/sh", "bastion")
    box.run("usermod", "-p", "*", "bastion")  # no password, but not locked (UsePAM no)
    config = f"{BASTION_DIR}/sshd_config"
    box.path(config).write_text(SSHD_CONFIG.format(port=bastion.port, dir=BASTION_DIR))
    box.run("/usr/sbin/sshd", "-t", "-f", config)
    box.run("systemd-run", f"--unit={BASTION}", "/usr/sbin/sshd", "-D", "-e", "-f", config)
    stack.wait_for(lambda: listening(box, bastion.port) != "", 10, "the bastion's sshd")


def tunnel_settings(bastion: Bastion, mode: str = "yes", **extra: str) -> dict[str, str]:
    return (
        stack.base_settings()
        | {
            "SSH_TUNNEL": mode,
            "SSH_USER_TUNNEL": "bastion@127.0.0.1",
            "SSH_OPTIONS": f"-p {bastion.port}",
            "SSH_REMOTE_PORT": str(bastion.remote_port),
            "SSH_RESTART": str(SSH_RESTART),
            "SSH_ALIVE_INTERVAL": "2",
            "SSH_ALIVE_COUNT": "2",
        }
        | extra
    )


def test_ib_async_reaches_the_gateway_through_the_bastion_remote_port(box: Box) -> None:
    bastion = pick_ports()
    stack.install(box, tunnel_settings(bastion))
    setup_bastion(box, bastion)
    stack.start(box)
    wait_ready(box)
    took = wait_client(box, bastion.remote_port)
    print(f"tunnel serving {took:.1f} s after ready")
    assert "sshd" in listening(box, bastion.remote_port)  # the bastion listens, not ibgwd
    assert listening(box, RELAY_PORT) == ""  # SSH_TUNNEL=yes: no relay
    assert stack.show(box, RELAY, "LoadState") == "not-found"
    assert stack.show(box, TUNNEL, "ActiveState") == "active"
    assert stack.show(box, TUNNEL, "User") == "ibgateway"
    assert stack.show(box, TUNNEL, "Restart") == "always"
    # Component states are polled from systemd every couple of seconds.
    up = 'ibgwd_component_up{component="tunnel-paper"} 1.0'
    stack.wait_for(lambda: up in stack.metrics(box), 15, "the tunnel component up in /metrics")
    status = box.run("ibgwdctl", "status").stdout
    assert "tunnel-paper" in status, status
    host_key = box.path(f"{BASTION_DIR}/host_ed25519.pub").read_text().split()[1]
    assert host_key in box.path(f"{KEY_DIR}/known_hosts").read_text()  # accept-new recorded it
    journal = box.run("journalctl", "-u", BASTION, "--no-pager").stdout
    assert "Accepted publickey for bastion" in journal


def test_ssh_tunnel_both_runs_the_relay_and_the_tunnel(box: Box) -> None:
    bastion = pick_ports()
    stack.install(box, tunnel_settings(bastion, mode="both"))
    setup_bastion(box, bastion)
    stack.start(box)
    wait_ready(box)
    wait_client(box, bastion.remote_port)
    assert stack.ib_async_client(box, RELAY_PORT).ok
    for unit in (RELAY, TUNNEL):
        assert stack.show(box, unit, "ActiveState") == "active", unit


def test_encrypted_key_with_passphrase_forwards_api_and_vnc_and_leaks_no_secret(box: Box) -> None:
    bastion = pick_ports()
    settings = tunnel_settings(
        bastion,
        SSH_PASSPHRASE=PASSPHRASE,
        VNC_SERVER_PASSWORD=VNC_PASSWORD,
        SSH_VNC_PORT=str(bastion.remote_vnc_port),
    )
    stack.install(box, settings)
    setup_bastion(box, bastion, passphrase=PASSPHRASE)
    watch = stack.SecretWatch(box, [PASSPHRASE, VNC_PASSWORD])  # ssh-add, askpass, ...
    stack.start(box)
    wait_ready(box)
    wait_client(box, bastion.remote_port)
    # VNC through the bastion's port: the client authenticates and sees the gateway.
    assert "sshd" in listening(box, bastion.remote_vnc_port)
    shot = wait_window_visible(box, bastion.remote_vnc_port)
    print(f"VNC through the tunnel: {shot.output}")
    pids = box.run("systemctl", "show", "-P", "ControlGroup", TUNNEL).stdout.strip()
    procs = box.run("cat", f"/sys/fs/cgroup{pids}/cgroup.procs").stdout.split()
    names = {box.path(f"/proc/{p}/comm").read_text().strip() for p in procs}
    assert names == {"ssh", "ssh-agent"}, names  # the key was unlocked through the agent
    mode = box.run("stat", "-c", "%a %U", "/run/ibgwd/default/ssh/passphrase").stdout.split()
    assert mode == ["600", "ibgateway"]
    stack.assert_no_secret_leaks(box, [PASSPHRASE, VNC_PASSWORD], watch)


def test_bastion_restart_drops_the_tunnel_and_systemd_restores_it(box: Box) -> None:
    bastion = pick_ports()
    stack.install(box, tunnel_settings(bastion))
    setup_bastion(box, bastion)
    stack.start(box)
    wait_ready(box)
    wait_client(box, bastion.remote_port)
    ssh_pid = main_pid(box, TUNNEL)
    restarts = int(stack.show(box, TUNNEL, "NRestarts"))
    start = time.monotonic()
    # KillMode=control-group: the restart also kills sshd's per-connection children.
    box.run("systemctl", "restart", BASTION)
    stack.wait_for(lambda: main_pid(box, TUNNEL) != ssh_pid, 30, "the tunnel's ssh to end")
    took = wait_client(box, bastion.remote_port, timeout=SSH_RESTART + 60)
    print(
        f"tunnel restored {time.monotonic() - start:.1f} s after the bastion restart "
        f"(SSH_RESTART={SSH_RESTART} s; client waited {took:.1f} s)"
    )
    assert int(stack.show(box, TUNNEL, "NRestarts")) > restarts
    assert stack.show(box, UNIT, "NRestarts") == "0"
    assert stack.show(box, TUNNEL, "ActiveState") == "active"


def test_reload_with_a_rotated_passphrase_restarts_only_the_tunnel(box: Box) -> None:
    bastion = pick_ports()
    settings = tunnel_settings(bastion, SSH_PASSPHRASE=PASSPHRASE)
    stack.install(box, settings)
    setup_bastion(box, bastion, passphrase=PASSPHRASE)
    stack.start(box)
    wait_ready(box)
    wait_client(box, bastion.remote_port)
    ibc, ssh = main_pid(box, "ibgwd-default-ibc-paper.service"), main_pid(box, TUNNEL)
    rotated = "rotated-" + PASSPHRASE
    key = f"{KEY_DIR}/id_ed25519"
    box.run("ssh-keygen", "-q", "-p", "-P", PASSPHRASE, "-N", rotated, "-f", key)
    stack.write_conf(box, "/etc/ibgwd/ibgwd.conf", settings | {"SSH_PASSPHRASE": rotated})
    box.run("systemctl", "reload", UNIT)
    journal = box.run("journalctl", "-u", UNIT, "--no-pager", "-o", "cat").stdout
    assert "event=reloaded changed=tunnel-paper" in journal
    assert main_pid(box, TUNNEL) not in (0, ssh)
    assert main_pid(box, "ibgwd-default-ibc-paper.service") == ibc
    took = wait_client(box, bastion.remote_port)
    print(f"tunnel serving {took:.1f} s after the reload with the rotated passphrase")
    assert box.path("/run/ibgwd/default/ssh/passphrase").read_text() == rotated

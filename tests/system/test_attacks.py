"""Attacks on an installed ibgwd by unprivileged local users, each next to a positive control.

One box runs two instances the way an admin would set them up on one host: `default` (paper,
default ports, VNC on, relay on all addresses with RELAY_ALLOW) and `alt` (paper, its own
ports). The attacker is `mallory`, an ordinary local account; where the threat is another
instance (or a compromised process of it), the attacker is that instance's user `ibgw-alt`.
Every attack must fail while its control, the legitimate way to the same resource, succeeds.
Threat model and what each guard stops: docs/security.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator

import pytest
import stack
from harness import Box

pytestmark = pytest.mark.system

ATTACKER = "mallory"
GW = "ibgateway"  # the default instance's user
ALT_USER = "ibgw-alt"  # the instance alt's user (created by ibgwd on its first start)
DEFAULT_CONFIG_INI = "/run/ibgwd/default/ibc/config-paper.ini"
DEFAULT_XAUTH = "/run/ibgwd/default/x/Xauthority-1"
ALT_PORTS = {"API_PORT_PAPER": "4012", "RELAY_PORT_PAPER": "4014", "COMMAND_PORT_PAPER": "7473"}
VNC_SECRET = "vnc-Attack-9c2e"  # test credential
ALLOWED_NET = ("10.77.1.1", "10.77.1.2")  # (box side, client side)
DENIED_NET = ("10.77.2.1", "10.77.2.2")


# ---- helpers ----------------------------------------------------------------------------------


def ready(box: Box, unit: str) -> bool:
    return stack.show(box, unit, "StatusText").startswith("ready")


def connect(box: Box, port: int, user: str | None, host: str = "127.0.0.1") -> int:
    """errno of a TCP connect as `user` (0 = connected, 111 = refused)."""
    code = (
        "import socket,sys\n"
        "s=socket.socket(); s.settimeout(3)\n"
        f"print(s.connect_ex(({host!r}, {port})))\n"
    )
    return int(box.run("/usr/bin/python3", "-c", code, user=user).stdout.strip())


def api_probe(box: Box, port: int, user: str | None, client_id: int = 51) -> str:
    """A full TWS API session (handshake, startApi, first answers) as `user`: the outcome."""
    code = (
        "import sys\n"
        "from ibgwd.probes.api import probe_full\n"
        f"print(probe_full('127.0.0.1', {port}, {client_id}, 5.0).outcome.value)\n"
    )
    r = box.run(
        "/usr/bin/python3", "-P", "-c", code, user=user, env={"PYTHONPATH": stack.SRC}, check=False
    )
    return r.stdout.strip() or r.stderr.strip()[-300:]


def read_as(box: Box, user: str, path: str) -> subprocess.CompletedProcess[str]:
    return box.run("/bin/cat", path, user=user, check=False)


def main_pid(box: Box, unit: str) -> int:
    return int(stack.show(box, unit, "MainPID") or 0)


def journal(box: Box) -> str:
    return box.run("journalctl", "-b", "--no-pager", "-o", "cat", check=False).stdout


# ---- the box ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def host() -> Iterator[Box]:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("system tests need root (CI runs them as root)")
        pytest.skip("system tests boot real systemd in namespaces and need root")
    box = Box.start()
    try:
        default = stack.base_settings() | {
            "VNC_SERVER_PASSWORD": VNC_SECRET,
            "RELAY_BIND_ADDRESS": "0.0.0.0",
            "RELAY_ALLOW": f"127.0.0.1,{ALLOWED_NET[1]}",
        }
        stack.install(box, default)
        alt = stack.base_settings() | ALT_PORTS | {"METRICS_ADDRESS": ""}
        stack.write_conf(box, "/etc/ibgwd/alt.conf", alt)
        box.run("useradd", "--create-home", ATTACKER)
        _networks(box)
        stack.start(box, "ibgwd.service")
        stack.start(box, "ibgwd@alt.service")
        yield box
    except BaseException:
        with contextlib.suppress(Exception):
            print("\n".join(box.journal().splitlines()[-80:]))
        raise
    finally:
        box.stop()


def _networks(box: Box) -> None:
    """Two network namespaces inside the box, each a 'remote' client on its own veth link."""
    for ns, (near, far) in (("allowed", ALLOWED_NET), ("denied", DENIED_NET)):
        dev = f"v{ns[:5]}"
        for argv in (
            ["ip", "netns", "add", ns],
            ["ip", "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", ns],
            ["ip", "addr", "add", f"{near}/24", "dev", dev],
            ["ip", "link", "set", dev, "up"],
            ["ip", "-n", ns, "addr", "add", f"{far}/24", "dev", "eth0"],
            ["ip", "-n", ns, "link", "set", "eth0", "up"],
            ["ip", "-n", ns, "link", "set", "lo", "up"],
        ):
            box.run(*argv)


@pytest.fixture
def running(host: Box) -> Box:
    """Both instances ready before each attack (an earlier test may have restarted one)."""
    for unit in ("ibgwd.service", "ibgwd@alt.service"):

        def is_ready(unit: str = unit) -> bool:
            return ready(host, unit)

        stack.wait_for(is_ready, 90, f"{unit} ready")
    return host


# ---- the X display -----------------------------------------------------------------------------


def test_x_display_admits_only_the_instance_cookie(running: Box) -> None:
    box = running
    control = box.run(
        "xdpyinfo", "-display", ":1", user=GW, env={"XAUTHORITY": DEFAULT_XAUTH}, check=False
    )
    assert control.returncode == 0 and "XTEST" in control.stdout, control.stderr
    # mallory: no cookie; the cookie file is not readable; another instance's cookie is wrong.
    attack = box.run("xdpyinfo", "-display", ":1", user=ATTACKER, check=False)
    assert attack.returncode != 0 and "unable to open display" in attack.stderr, attack
    stolen = box.run(
        "xdpyinfo", "-display", ":1", user=ATTACKER, env={"XAUTHORITY": DEFAULT_XAUTH}, check=False
    )
    assert stolen.returncode != 0
    assert read_as(box, ATTACKER, DEFAULT_XAUTH).returncode != 0
    alt_display = stack.show(box, "ibgwd-alt-display.service", "ExecStart")
    alt_n = alt_display.split("argv[]=/usr/bin/Xvfb :", 1)[1].split()[0]
    other = box.run(
        "xdpyinfo",
        "-display",
        ":1",
        user=ALT_USER,
        env={"XAUTHORITY": f"/run/ibgwd/alt/x/Xauthority-{alt_n}"},
        check=False,
    )
    assert other.returncode != 0, "instance alt's cookie must not open the default display"
    # Xvfb: no -ac, cookie file given, no TCP and no abstract socket.
    argv = stack.show(box, "ibgwd-default-display.service", "ExecStart")
    assert "-auth " + DEFAULT_XAUTH in argv and " -ac" not in argv
    assert "-nolisten tcp -nolisten local" in argv


# ---- the IBC command server --------------------------------------------------------------------


def test_command_server_refuses_stop_from_other_users(running: Box) -> None:
    box = running
    ibc = "ibgwd-default-ibc-paper.service"
    pid = main_pid(box, ibc)
    assert connect(box, 7463, GW) == 0  # control: the instance's own user gets through
    assert connect(box, 7463, None) == 0  # and root (ibgwd sends STOP/RESTART as root)
    for user in (ATTACKER, ALT_USER):
        sent = box.run(
            "/usr/bin/python3",
            "-c",
            "import socket\n"
            "try:\n"
            "    s=socket.create_connection(('127.0.0.1', 7463), timeout=3)\n"
            "    s.sendall(b'STOP\\n'); s.recv(100); print('sent')\n"
            "except OSError as e: print(type(e).__name__)\n",
            user=user,
        ).stdout.strip()
        assert sent == "ConnectionRefusedError", (user, sent)
    time.sleep(3)  # a STOP that got through would have ended the Gateway by now
    assert main_pid(box, ibc) == pid and ready(box, "ibgwd.service")


# ---- the Gateway's API port --------------------------------------------------------------------


def test_api_port_is_reached_only_through_the_relay(running: Box) -> None:
    box = running
    assert api_probe(box, 4004, ATTACKER) == "ok"  # control: the relay (127.0.0.1 is allowed)
    assert api_probe(box, 4002, None) == "ok"  # root: ibgwd's own probe
    assert connect(box, 4002, ATTACKER) == 111  # the attack: straight to the Gateway
    assert api_probe(box, 4002, ATTACKER) == "refused"
    assert connect(box, 4002, ALT_USER) == 111  # nor another instance's processes
    # and from another host (a network namespace), even to an address that is not loopback
    remote = box.run(
        "ip", "netns", "exec", "allowed", "/usr/bin/python3", "-c",
        "import socket\ns=socket.socket(); s.settimeout(3)\n"
        f"print(s.connect_ex(('{ALLOWED_NET[0]}', 4002)), s.close())",
    ).stdout.split()[0]  # fmt: skip
    assert remote == "111"


# ---- secrets of another instance ---------------------------------------------------------------


def test_an_instance_cannot_read_another_instances_secrets(running: Box) -> None:
    box = running
    own = read_as(box, GW, DEFAULT_CONFIG_INI)
    assert own.returncode == 0 and "IbPassword=" in own.stdout  # control
    assert read_as(box, ALT_USER, "/run/ibgwd/alt/ibc/config-paper.ini").returncode == 0
    # An ssh key installed the way docs/migration.md says (for SSH_TUNNEL).
    key = "/var/lib/ibgwd/default/ssh/id_ed25519"
    box.run("install", "-d", "-o", GW, "-g", GW, "-m", "700", "/var/lib/ibgwd/default/ssh")
    box.run("install", "-o", GW, "-g", GW, "-m", "600", "/dev/null", key)
    assert read_as(box, GW, key).returncode == 0
    ibc_pid = main_pid(box, "ibgwd-default-ibc-paper.service")
    stolen = {
        path: read_as(box, ALT_USER, path).returncode
        for path in (
            key,
            DEFAULT_CONFIG_INI,
            "/run/ibgwd/default/vnc/passwd",
            DEFAULT_XAUTH,
            f"/proc/{ibc_pid}/environ",
            f"/proc/{ibc_pid}/maps",
        )
    }
    assert all(rc != 0 for rc in stolen.values()), stolen
    assert read_as(box, GW, "/run/ibgwd/alt/ibc/config-paper.ini").returncode != 0
    assert read_as(box, ATTACKER, DEFAULT_CONFIG_INI).returncode != 0
    # Each instance's children run as its own user.
    assert stack.show(box, "ibgwd-default-ibc-paper.service", "User") == GW
    assert stack.show(box, "ibgwd-alt-ibc-paper.service", "User") == ALT_USER
    assert stack.show(box, "ibgwd-alt-relay-paper.service", "User") == ALT_USER


# ---- RELAY_ALLOW from other hosts ----------------------------------------------------------------

HELD_CLIENT = """
import json, sys, time
from ib_async import IB
ib = IB()
out = {}
try:
    ib.connect(sys.argv[1], int(sys.argv[2]), clientId=int(sys.argv[3]), timeout=10)
    out["first"] = ib.reqCurrentTime().isoformat()
    time.sleep(float(sys.argv[4]))
    out["after_hold"] = ib.reqCurrentTime().isoformat()
    out["connected"] = ib.isConnected()
    ib.disconnect()
except Exception as e:
    out["error"] = type(e).__name__ + ": " + str(e)
print(json.dumps(out))
"""


def _client(box: Box, ns: str, host: str, client_id: int, hold: float) -> list[str]:
    venv_site = next((stack.REPO / ".venv" / "lib").glob("python3*/site-packages"))
    return box.command(
        "/usr/bin/env",
        f"PYTHONPATH={venv_site}",
        "ip", "netns", "exec", ns, "/usr/bin/python3", "-c", HELD_CLIENT,
        host, "4004", str(client_id), str(hold),
    )  # fmt: skip


def test_relay_allow_serves_a_listed_client_and_refuses_others_at_connect(running: Box) -> None:
    box = running
    held = subprocess.Popen(
        _client(box, "allowed", ALLOWED_NET[0], 61, 6.0),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=box.environment(),
    )
    try:
        time.sleep(2)
        denied = subprocess.run(
            _client(box, "denied", DENIED_NET[0], 62, 0.0),
            capture_output=True,
            text=True,
            timeout=60,
            env=box.environment(),
            check=False,
        )
        refused = box.run(
            "ip", "netns", "exec", "denied", "/usr/bin/python3", "-c",
            "import socket\ns=socket.socket(); s.settimeout(3)\n"
            f"print(s.connect_ex(('{DENIED_NET[0]}', 4004)))",
        ).stdout.strip()  # fmt: skip
        out, err = held.communicate(timeout=60)
    finally:
        if held.poll() is None:
            held.kill()
    result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"error": err}
    assert "error" not in result and result["connected"], result  # served, and kept working
    assert refused == "111"  # refused at connect (a reset), not accepted and cut off
    assert "error" in json.loads(denied.stdout.strip().splitlines()[-1]), denied.stdout
    table = box.run("nft", "list", "table", "inet", "ibgwd_default").stdout
    assert ALLOWED_NET[1] in table and "4004" in table


def test_relay_allow_that_the_kernel_cannot_enforce_refuses_to_start(running: Box) -> None:
    box = running
    settings = stack.base_settings() | {
        "API_PORT_PAPER": "4022",
        "RELAY_PORT_PAPER": "4024",
        "COMMAND_PORT_PAPER": "7483",
        "METRICS_ADDRESS": "",
        "RELAY_ALLOW": "10.0.0.0/8",
    }
    stack.write_conf(box, "/etc/ibgwd/noguard.conf", settings)
    box.run("mount", "--bind", "/bin/false", "/usr/sbin/nft")  # no nftables in this kernel/tool
    try:
        r = box.run("systemctl", "start", "ibgwd@noguard.service", check=False, timeout=120)
    finally:
        box.run("umount", "/usr/sbin/nft")
        box.run("systemctl", "stop", "ibgwd@noguard.service", check=False)
        box.run("rm", "-f", "/etc/ibgwd/noguard.conf")
    assert r.returncode != 0
    log = box.run("journalctl", "-u", "ibgwd@noguard.service", "--no-pager", "-o", "cat").stdout
    assert "RELAY_ALLOW is set and cannot be enforced" in log, log[-2000:]
    assert connect(box, 4024, None) == 111  # no relay ran unguarded


# ---- port collisions between instances ---------------------------------------------------------


def test_two_instances_with_default_ports_are_refused_naming_both_conffiles(running: Box) -> None:
    box = running
    stack.write_conf(box, "/etc/ibgwd/clash.conf", stack.base_settings() | {"METRICS_ADDRESS": ""})
    try:
        check = box.run("ibgwd", "check-config", "--instance", "clash", check=False)
        start = box.run("systemctl", "start", "ibgwd@clash.service", check=False, timeout=60)
        log = box.run("journalctl", "-u", "ibgwd@clash.service", "--no-pager", "-o", "cat").stdout
    finally:
        box.run("systemctl", "stop", "ibgwd@clash.service", check=False)
        box.run("rm", "-f", "/etc/ibgwd/clash.conf")
    assert check.returncode == 78, check
    for text in (check.stderr, log):
        assert "/etc/ibgwd/clash.conf" in text and "/etc/ibgwd/ibgwd.conf" in text, text[-2000:]
        assert "API_PORT_PAPER: invalid value '4002'" in text
    assert start.returncode != 0
    assert ready(box, "ibgwd.service")  # the running instance was never touched


# ---- links planted by the gateway user; ownership fix-ups ----------------------------------------


def test_symlink_planted_before_a_reload_is_not_followed(running: Box) -> None:
    """A migrated layout keeps the Gateway's settings below its (gateway-owned) home; the
    gateway user swaps the settings directory for a link to a directory of root's."""
    box = running
    settings_dir = "/var/lib/ibgwd/default/home/Jts"
    victim = "/var/lib/victim"
    box.run("install", "-d", "-m", "0700", "-o", "root", victim)
    conf = stack.base_settings() | {
        "VNC_SERVER_PASSWORD": VNC_SECRET,
        "RELAY_BIND_ADDRESS": "0.0.0.0",
        "RELAY_ALLOW": f"127.0.0.1,{ALLOWED_NET[1]}",
        "TWS_SETTINGS_PATH": settings_dir,
    }
    stack.write_conf(box, "/etc/ibgwd/ibgwd.conf", conf)
    box.run("systemctl", "reload", "ibgwd.service", timeout=120)  # control: a normal reload
    stack.wait_for(lambda: ready(box, "ibgwd.service"), 120, "ready after the reload")
    assert box.run("stat", "-c", "%U", settings_dir).stdout.strip() == GW
    assert box.path(f"{settings_dir}/jts.ini").exists()
    # The attack: as the gateway user, replace the settings directory by a link to root's.
    box.run("mv", settings_dir, settings_dir + ".old", user=GW)
    box.run("ln", "-s", victim, settings_dir, user=GW)
    try:
        reload = box.run("systemctl", "reload", "ibgwd.service", check=False, timeout=120)
        assert reload.returncode != 0  # refused, and said why
        assert box.run("stat", "-c", "%U %a", victim).stdout.split() == ["root", "700"]
        assert box.run("ls", "-A", victim).stdout == ""
        assert "refusing to follow the symbolic link" in journal(box), journal(box)[-3000:]
    finally:
        box.run("rm", "-f", settings_dir)
        box.run("mv", settings_dir + ".old", settings_dir)
        stack.write_conf(
            box,
            "/etc/ibgwd/ibgwd.conf",
            {k: v for k, v in conf.items() if k != "TWS_SETTINGS_PATH"},
        )
        box.run("systemctl", "reload", "ibgwd.service", check=False, timeout=120)


def test_chown_of_the_state_directory_and_a_restart_keep_the_gateway_settings_writable(
    running: Box,
) -> None:
    box = running
    box.run("chown", "-R", f"{GW}:", "/var/lib/ibgwd/default")  # what a migrating admin types
    stack.start(box, "ibgwd.service")
    box.run("systemctl", "restart", "ibgwd.service", timeout=120)
    stack.wait_for(lambda: ready(box, "ibgwd.service"), 120, "ready after the restart")
    owners = box.run(
        "find", "/var/lib/ibgwd/default/settings", "/var/lib/ibgwd/default/home",
        "-not", "-user", GW, "-not", "-type", "l",
    ).stdout  # fmt: skip
    assert owners == "", owners
    assert box.run("stat", "-c", "%U", "/var/lib/ibgwd/default").stdout.strip() == "root"
    box.run("touch", "/var/lib/ibgwd/default/settings/written-by-gateway", user=GW)


# ---- squatting: an X server or an API port taken by another user before the instance starts ----

SQUAT_API = """
import asyncio, sys
from pathlib import Path
from ibgwd_sim.output import EventLog
from ibgwd_sim.tws_api import ApiOptions, TwsApiServer

async def main() -> None:
    server = TwsApiServer(ApiOptions(accounts=("DU666666",)), EventLog(Path("/tmp")))
    await server.start("127.0.0.1", int(sys.argv[1]))
    print("listening", flush=True)
    await asyncio.sleep(float(sys.argv[2]))

asyncio.run(main())
"""


def _squatter(box: Box, argv: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        box.command(*argv, user=ATTACKER),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=box.environment(ATTACKER, {"PYTHONPATH": stack.SRC}),
    )
    return proc


def _start_squatted(box: Box, instance: str, extra: dict[str, str]) -> str:
    settings = stack.base_settings() | {"METRICS_ADDRESS": "", "LOGIN_TIMEOUT": "120"} | extra
    stack.write_conf(box, f"/etc/ibgwd/{instance}.conf", settings)
    unit = f"ibgwd@{instance}.service"
    box.run("systemctl", "start", "--no-block", unit)
    time.sleep(12)  # ample for the simulated gateway, which is ready in about 2 s
    text = stack.show(box, unit, "StatusText")
    box.run("systemctl", "stop", unit, check=False, timeout=90)
    box.run("rm", "-f", f"/etc/ibgwd/{instance}.conf")
    return text


def test_an_api_port_squatter_is_never_taken_for_the_gateway(running: Box) -> None:
    box = running
    assert api_probe(box, 4012, None) == "ok"  # control: instance alt's own Gateway
    squatter = _squatter(box, ["/usr/bin/python3", "-P", "-c", SQUAT_API, "4032", "30"])
    try:
        assert squatter.stdout is not None and squatter.stdout.readline().strip() == "listening"
        assert api_probe(box, 4032, None) == "ok"  # it speaks the TWS API well enough
        text = _start_squatted(
            box,
            "squatapi",
            {"API_PORT_PAPER": "4032", "RELAY_PORT_PAPER": "4034", "COMMAND_PORT_PAPER": "7493"},
        )
    finally:
        squatter.kill()
    assert not text.startswith("ready"), text
    uid = box.run("id", "-u", ATTACKER).stdout.strip()
    log = box.run("journalctl", "-u", "ibgwd@squatapi.service", "--no-pager", "-o", "cat").stdout
    assert f"TCP port 4032 is held by a process of uid {uid}" in log, log[-3000:]
    assert connect(box, 4034, None) == 111  # no relay to the squatter was started


def test_an_x_server_squatting_the_display_gets_no_gateway_window(running: Box) -> None:
    box = running
    squatter = _squatter(
        box, ["/usr/bin/timeout", "40", "/usr/bin/Xvfb", ":77", "-ac", "-nolisten", "tcp"]
    )
    try:
        stack.wait_for(
            lambda: box.path("/tmp/.X11-unix/X77").exists(), 20, "the squatter's X server"
        )
        text = _start_squatted(
            box,
            "squatx",
            {
                "DISPLAY_NUMBER": "77",
                "API_PORT_PAPER": "4042",
                "RELAY_PORT_PAPER": "4044",
                "COMMAND_PORT_PAPER": "7503",
            },
        )
    finally:
        squatter.kill()
        box.run("pkill", "-u", ATTACKER, "-x", "Xvfb", check=False)
    assert not text.startswith("ready"), text
    log = box.run("journalctl", "--no-pager", "-o", "cat", "-u", "ibgwd-squatx-*").stdout
    assert "X socket /tmp/.X11-unix/X77 is owned by another user: refusing to use it" in log, log[
        -3000:
    ]
    clients = box.run("xlsclients", "-display", ":77", check=False).stdout
    assert "java" not in clients.lower() and "ibgateway" not in clients.lower()


# ---- the guard's lifetime ------------------------------------------------------------------------


def _table(box: Box, instance: str) -> str:
    r = box.run("nft", "list", "table", "inet", f"ibgwd_{instance}", check=False)
    return r.stdout if r.returncode == 0 else ""


def test_guard_follows_reloads_comes_back_after_a_flush_and_goes_with_the_instance(
    running: Box,
) -> None:
    box = running
    assert "4012" in _table(box, "alt") and "ibgw-alt" not in _table(box, "alt")  # uid shown
    alt = stack.base_settings() | ALT_PORTS | {"METRICS_ADDRESS": ""}
    stack.write_conf(box, "/etc/ibgwd/alt.conf", alt | {"RELAY_ALLOW": "192.0.2.0/24"})
    box.run("systemctl", "reload", "ibgwd@alt.service", timeout=120)
    assert "192.0.2.0/24" in _table(box, "alt")  # re-applied with the new allow-list
    assert connect(box, 4014, None) == 111  # 127.0.0.1 is not listed any more
    box.run("nft", "flush", "ruleset")  # what `systemctl restart nftables` does
    assert _table(box, "alt") == ""
    stack.wait_for(lambda: "192.0.2.0/24" in _table(box, "alt"), 45, "the guard re-applied")
    stack.wait_for(lambda: _table(box, "default") != "", 45, "the default guard re-applied")
    box.run("systemctl", "stop", "ibgwd@alt.service", timeout=120)
    assert _table(box, "alt") == ""  # gone with the instance, by the time stop returns
    stack.write_conf(box, "/etc/ibgwd/alt.conf", alt)
    stack.start(box, "ibgwd@alt.service")
    assert "4012" in _table(box, "alt") and "192.0.2.0/24" not in _table(box, "alt")

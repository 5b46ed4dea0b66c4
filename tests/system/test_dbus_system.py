"""Acceptance of D-Bus control (issue 6): real busctl, gdbus and ibgwdctl against the real ibgwd.

Each test boots its own box, installs ibgwd from the working tree with the simulated gateway
(tests/system/stack.py), starts ibgwd.service and waits for READY=1, then drives it only from
outside: the D-Bus clients, systemctl, the sim's event log, the journal and a TWS API client.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import stack
from harness import Box

from ibgwd.dbus.properties import SIGNATURES

pytestmark = pytest.mark.system

DEST = "org.ibgwd.Gateway1.default"
OBJECT = "/org/ibgwd/Gateway1"
IFACE = "org.ibgwd.Gateway1.Manager"
GOLDEN = stack.REPO / "tests" / "golden" / "org.ibgwd.Gateway1.Manager.xml"
EVENTS = "/var/lib/ibgwd/default/settings/sim-events.log"
IBC_UNIT = "ibgwd-default-ibc-paper.service"
DISPLAY_UNIT = "ibgwd-default-display.service"
VNC_UNIT = "ibgwd-default-vnc.service"
RELAY_UNIT = "ibgwd-default-relay-paper.service"
VNC_PASSWORD = "vncPw-0ld-8chars!"
NEW_VNC_PASSWORD = "vncPw-n3w-8chars?"
SECRETS = (stack.DEMO_PASSWORD, VNC_PASSWORD, NEW_VNC_PASSWORD, "vncPw-0l", "vncPw-n3")
OUTSIDER = "outsider"
MEMBER = "member"
# Every mutating method with harmless arguments; Restart hard is called separately, last.
METHODS: dict[str, tuple[str, ...]] = {
    "Reload": (),
    "ReconnectData": ("s", ""),
    "ReconnectAccount": ("s", "paper"),
    "Restart": ("sb", "", "false"),
}
WAIT_S = 90.0


# ---- helpers ---------------------------------------------------------------------------------


def boot(box: Box, **overrides: str) -> dict[str, str]:
    """Install and start ibgwd; return once READY=1 came and the unit poll lists every unit."""
    settings = stack.base_settings() | overrides
    stack.install(box, settings)
    stack.start(box)
    wanted = {"display", "ibc-paper", "relay-paper"} | (
        {"vnc"} if "VNC_SERVER_PASSWORD" in settings else set()
    )
    # Components is refreshed by the unit poll (every 2 s), so it may trail READY=1 a little.
    stack.wait_for(
        lambda: {c[0] for c in prop(box, "Components") if c[2] == "active"} == wanted,
        30,
        f"components {sorted(wanted)} active",
    )
    return settings


@contextmanager
def in_box(box: Box, *argv: str, **env: str) -> Iterator[subprocess.Popen[str]]:
    """A background process in the box; killed with its process group (nsenter forks)."""
    process = subprocess.Popen(
        box.command(*argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=box.environment(env=env),
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)


def busctl(box: Box, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    return box.run("busctl", "--no-pager", *args, user=user, check=False, timeout=60)


def call(
    box: Box, method: str, *args: str, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    return busctl(box, "call", DEST, OBJECT, IFACE, method, *args, user=user)


def gdbus(box: Box, method: str, *args: str, user: str | None = None) -> str:
    """gdbus names the D-Bus error in its message (busctl prints only the text)."""
    r = box.run(
        "gdbus",
        "call",
        "--system",
        "--dest",
        DEST,
        "--object-path",
        OBJECT,
        "--method",
        f"{IFACE}.{method}",
        *args,
        user=user,
        check=False,
        timeout=60,
    )
    assert r.returncode != 0, f"{method} by {user or 'root'} unexpectedly succeeded: {r.stdout}"
    return r.stderr


def gvariant_args(busctl_args: tuple[str, ...]) -> list[str]:
    """busctl's (signature, value...) arguments in gdbus's GVariant text form."""
    if not busctl_args:
        return []
    signature, *values = busctl_args
    return [f"'{v}'" if t == "s" else v for t, v in zip(signature, values, strict=True)]


def properties(box: Box, user: str | None = None) -> dict[str, Any]:
    """Every property through Properties.GetAll, as plain JSON values."""
    r = busctl(
        box,
        "--json=short",
        "call",
        DEST,
        OBJECT,
        "org.freedesktop.DBus.Properties",
        "GetAll",
        "s",
        IFACE,
        user=user,
    )
    assert r.returncode == 0, r.stderr
    return {k: v["data"] for k, v in json.loads(r.stdout)["data"][0].items()}


def prop(box: Box, name: str) -> Any:
    r = busctl(box, "--json=short", "get-property", DEST, OBJECT, IFACE, name)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["data"]


def main_pid(box: Box, unit: str) -> int:
    return int(stack.show(box, unit, "MainPID") or 0)


def events(box: Box) -> list[str]:
    """The simulated gateway's event log (commands received, starts, logins, API clients)."""
    try:
        return box.path(EVENTS).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def commands(lines: list[str]) -> list[str]:
    return [ln.split("command=")[1] for ln in lines if " event=command " in ln]


def is_ready(box: Box) -> bool:
    p = properties(box)
    return bool(p["State"] == "ready" and p["Ready"] and p["ApiUp"] == {"paper": True})


def wait_ready(box: Box, what: str) -> float:
    """Wait until State is ready again; returns the seconds it took (for the report)."""
    t0 = time.monotonic()
    stack.wait_for(lambda: is_ready(box), WAIT_S, what)
    return time.monotonic() - t0


def unit_pids(box: Box, *units: str) -> dict[str, int]:
    return {u: main_pid(box, u) for u in units}


def journal(box: Box, *args: str) -> str:
    return box.run("journalctl", "-b", "--no-pager", "-o", "cat", *args).stdout


def manager_members(xml: str) -> dict[str, object]:
    for interface in ET.fromstring(xml).iter("interface"):
        if interface.get("name") == IFACE:
            found: dict[str, object] = {}
            for el in interface:
                name = el.get("name", "")
                if el.tag == "method":
                    found[name] = [(a.get("direction", "in"), a.get("type")) for a in el]
                elif el.tag == "property":
                    found[name] = (el.get("type"), el.get("access"))
            return found
    raise AssertionError(f"{IFACE} not in introspection: {xml[:300]}")


def add_users(box: Box) -> None:
    box.run("useradd", "--no-create-home", OUTSIDER)
    box.run("useradd", "--no-create-home", "--groups", "ibgwd", MEMBER)


def write_settings(box: Box, settings: Mapping[str, str]) -> None:
    stack.write_conf(box, "/etc/ibgwd/ibgwd.conf", settings)


def log_lines_after(text: str, marker: str) -> list[str]:
    lines = text.splitlines()
    index = max((i for i, ln in enumerate(lines) if marker in ln), default=-1)
    assert index >= 0, f"{marker!r} not found in:\n{text[-3000:]}"
    return lines[index + 1 :]


# A TWS API client that stays connected until /tmp/go-<id> exists, then asks the time again.
HOLDING_CLIENT = """
import json, os, sys
from ib_async import IB
port, cid = int(sys.argv[1]), int(sys.argv[2])
go = f"/tmp/go-{cid}"
ib = IB()
drops = []
ib.disconnectedEvent += lambda: drops.append(1)
ib.connect("127.0.0.1", port, clientId=cid, timeout=15)
print(json.dumps({"phase": "connected", "time": ib.reqCurrentTime().isoformat()}), flush=True)
while not os.path.exists(go):
    ib.sleep(0.2)
try:
    t = ib.reqCurrentTime().isoformat()
except Exception as e:
    t = type(e).__name__ + ": " + str(e)
print(json.dumps({"phase": "after", "connected": ib.isConnected(), "drops": len(drops),
                  "time": t}), flush=True)
ib.disconnect()
"""


@dataclass
class HeldClient:
    process: subprocess.Popen[str]
    go: Path

    def first(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 60)
        line = self.process.stdout.readline() if ready else ""
        assert line, "the API client did not connect"
        data: dict[str, Any] = json.loads(line)
        return data

    def finish(self) -> dict[str, Any]:
        self.go.write_text("go")
        out, err = self.process.communicate(timeout=60)
        assert out.strip(), f"the API client printed nothing after the trigger: {err}"
        data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return data


@contextmanager
def held_client(box: Box, port: int, client_id: int) -> Iterator[HeldClient]:
    venv_site = next((stack.REPO / ".venv" / "lib").glob("python3*/site-packages"))
    argv = ("/usr/bin/python3", "-c", HOLDING_CLIENT, str(port), str(client_id))
    with in_box(box, *argv, PYTHONPATH=str(venv_site)) as process:
        yield HeldClient(process, box.path(f"/tmp/go-{client_id}"))


# ---- tests -----------------------------------------------------------------------------------


def test_busctl_introspects_reads_every_property_and_calls_every_method(box: Box) -> None:
    boot(box)
    # Components is refreshed by the unit poll (2 s): the relay, started at READY, shows then.
    stack.wait_for(lambda: len(prop(box, "Components")) == 3, 30, "the relay among the components")
    intro = busctl(box, "introspect", "--xml-interface", DEST, OBJECT)
    assert intro.returncode == 0, intro.stderr
    assert manager_members(intro.stdout) == manager_members(GOLDEN.read_text())

    props = properties(box)
    assert set(props) == set(SIGNATURES)
    for name, signature in SIGNATURES.items():  # each one by get-property, with its type
        r = busctl(box, "--json=short", "get-property", DEST, OBJECT, IFACE, name)
        assert r.returncode == 0, f"{name}: {r.stderr}"
        assert json.loads(r.stdout)["type"] == signature, name
    assert props["Instance"] == "default"
    assert props["State"] == "ready"
    assert props["Ready"] is True
    assert props["Reloading"] is False
    assert props["TradingMode"] == "paper"
    assert props["GatewayStates"] == {"paper": "ready"}
    assert props["ApiUp"] == {"paper": True}
    assert props["Ports"] == {"paper": [4002, 4004]}
    assert "ready" in props["StatusText"]
    probed_at, latency = props["LastProbe"]["paper"]
    assert probed_at >= props["StartedTimestamp"] > 0
    assert latency > 0
    assert props["ReadyTimestamp"] >= props["StartedTimestamp"]
    components = {c[0]: c for c in props["Components"]}
    assert set(components) == {"display", "ibc-paper", "relay-paper"}
    for name, unit, active, _sub, _restarts, pid in components.values():
        assert active == "active", name
        assert pid == main_pid(box, unit) > 0, name
    assert set(props["RestartCounts"]) == set(components)
    assert props["GatewayVersion"] and props["IbcVersion"]

    before = len(events(box))
    for method, args in METHODS.items():
        r = call(box, method, *args)
        assert r.returncode == 0, f"{method}: {r.stderr}"
        if method == "Reload":
            assert r.stdout.strip() == "as 0"  # nothing changed, nothing restarted
    sent = commands(events(box)[before:])
    for command in ("RECONNECTDATA", "RECONNECTACCOUNT", "RESTART"):
        assert command in sent, sent
    stack.wait_for(
        lambda: any(" event=login_completed" in ln for ln in events(box)[before:]),
        WAIT_S,
        "the gateway to log in again after Restart soft",
    )
    wait_ready(box, "ready after Restart soft")

    ibc_pid = main_pid(box, IBC_UNIT)
    r = call(box, "Restart", "sb", "paper", "true")
    assert r.returncode == 0, r.stderr
    stack.wait_for(
        lambda: main_pid(box, IBC_UNIT) not in (0, ibc_pid), WAIT_S, "a new IBC unit process"
    )
    took = wait_ready(box, "ready after Restart hard")
    print(f"recovery: Restart hard -> ready in {took:.1f} s")
    assert prop(box, "Components")  # the daemon still answers


def test_outsider_is_refused_every_method_and_a_member_is_allowed(box: Box) -> None:
    boot(box)
    add_users(box)
    ibc_pid = main_pid(box, IBC_UNIT)
    before = len(events(box))

    # Outsiders read: introspection and every property.
    assert busctl(box, "introspect", DEST, OBJECT, user=OUTSIDER).returncode == 0
    assert properties(box, user=OUTSIDER)["State"] == "ready"
    r = busctl(box, "get-property", DEST, OBJECT, IFACE, *SIGNATURES, user=OUTSIDER)
    assert r.returncode == 0, r.stderr

    # ... but every method is refused, Restart hard included, and nothing reaches IBC.
    for method, args in {**METHODS, "Restart": ("sb", "", "true")}.items():
        r = call(box, method, *args, user=OUTSIDER)
        assert r.returncode != 0, f"{method} allowed to an outsider"
        assert "Access denied" in r.stderr, r.stderr
        denied = gdbus(box, method, *gvariant_args(args), user=OUTSIDER)
        assert "org.freedesktop.DBus.Error.AccessDenied" in denied, denied
    ctl = box.run("ibgwdctl", "reload", user=OUTSIDER, check=False)
    assert ctl.returncode == 77, ctl.stdout + ctl.stderr
    assert "access denied" in ctl.stderr
    assert box.run("ibgwdctl", "status", user=OUTSIDER, check=False).returncode == 0
    assert commands(events(box)[before:]) == []
    assert main_pid(box, IBC_UNIT) == ibc_pid
    uid = box.run("id", "-u", OUTSIDER).stdout.strip()
    assert f" uid={uid} " not in journal(box, "-u", "ibgwd.service")  # refused by the bus

    # A member of group ibgwd may call every method.
    for method, args in METHODS.items():
        r = call(box, method, *args, user=MEMBER)
        assert r.returncode == 0, f"{method} refused to a member of ibgwd: {r.stderr}"
    assert {"RECONNECTDATA", "RECONNECTACCOUNT", "RESTART"} <= set(commands(events(box)[before:]))
    member = box.run("ibgwdctl", "reload", user=MEMBER, check=False)
    assert member.returncode == 0, member.stderr
    wait_ready(box, "ready after the member's soft restart")


def test_ibgwdctl_status_and_systemctl_reload_wait_for_the_reload(box: Box) -> None:
    settings = boot(box)
    human = box.run("ibgwdctl", "status").stdout
    assert "ibgwd instance default - ready" in human
    for component in ("display", "ibc-paper", "relay-paper"):
        assert component in human
    status = json.loads(box.run("ibgwdctl", "status", "--json").stdout)
    assert status["state"] == "ready" and status["ready"] is True
    assert status["gateways"]["paper"]["api_up"] is True
    assert status["gateways"]["paper"]["relay_port"] == 4004
    assert {c["name"] for c in status["components"]} == {"display", "ibc-paper", "relay-paper"}

    # Enabling VNC by reload: when `systemctl reload` returns, the VNC unit already runs.
    write_settings(box, settings | {"VNC_SERVER_PASSWORD": VNC_PASSWORD})
    r = box.run("systemctl", "reload", "ibgwd.service", check=False, timeout=120)
    assert r.returncode == 0, r.stderr
    assert stack.show(box, VNC_UNIT, "ActiveState") == "active"
    assert stack.show(box, "ibgwd.service", "ActiveState") == "active"
    assert "event=reloaded changed=vnc" in journal(box, "-u", "ibgwd.service")
    assert prop(box, "Reloading") is False
    assert is_ready(box)
    stack.wait_for(
        lambda: (
            "vnc"
            in {
                c["name"]
                for c in json.loads(box.run("ibgwdctl", "status", "--json").stdout)["components"]
            }
        ),
        30,
        "the VNC component in ibgwdctl status",
    )


def test_reload_changing_vnc_password_restarts_only_vnc_and_keeps_api_clients(box: Box) -> None:
    settings = boot(box, VNC_SERVER_PASSWORD=VNC_PASSWORD)
    others = (IBC_UNIT, DISPLAY_UNIT, RELAY_UNIT)
    with held_client(box, 4004, 31) as client:  # through the socat relay
        assert client.first()["phase"] == "connected"
        pids = unit_pids(box, *others)
        vnc_pid = main_pid(box, VNC_UNIT)
        passwd = box.path("/run/ibgwd/default/vnc/passwd").read_bytes()

        write_settings(box, settings | {"VNC_SERVER_PASSWORD": NEW_VNC_PASSWORD})
        r = call(box, "Reload")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == 'as 1 "vnc"'
        # Reload answers with the plan; the Reloading property is true until its jobs ran.
        stack.wait_for(lambda: prop(box, "Reloading") is False, 30, "the reload to finish")

        assert main_pid(box, VNC_UNIT) not in (0, vnc_pid)
        assert stack.show(box, VNC_UNIT, "ActiveState") == "active"
        assert box.path("/run/ibgwd/default/vnc/passwd").read_bytes() != passwd
        assert unit_pids(box, *others) == pids
        seen = "\n".join(events(box))
        after = client.finish()
    assert after["connected"] is True, after
    assert after["drops"] == 0, after
    assert "T" in after["time"], after  # reqCurrentTime answered over the same connection
    assert " event=api_client_connected client_id=31" in seen
    assert " event=api_client_disconnected client_id=31" not in seen
    assert is_ready(box)


def test_reload_with_bad_trading_mode_is_refused_and_keeps_every_unit(box: Box) -> None:
    settings = boot(box, VNC_SERVER_PASSWORD=VNC_PASSWORD)
    units = (IBC_UNIT, DISPLAY_UNIT, RELAY_UNIT, VNC_UNIT)
    pids = unit_pids(box, *units)
    before = properties(box)
    write_settings(
        box, settings | {"TRADING_MODE": "bogus", "VNC_SERVER_PASSWORD": NEW_VNC_PASSWORD}
    )

    r = call(box, "Reload")
    assert r.returncode != 0
    assert "TRADING_MODE" in r.stderr and "bogus" in r.stderr, r.stderr
    named = gdbus(box, "Reload")
    assert "org.ibgwd.Gateway1.Error.InvalidConfiguration" in named, named
    assert "TRADING_MODE" in named
    ctl = box.run("ibgwdctl", "reload", check=False)
    assert ctl.returncode == 78, ctl.stdout + ctl.stderr
    assert "TRADING_MODE" in ctl.stderr
    sysd = box.run("systemctl", "reload", "ibgwd.service", check=False, timeout=120)
    assert sysd.returncode != 0
    for text in (r.stderr, named, ctl.stderr, sysd.stderr):
        for secret in SECRETS:
            assert secret not in text

    assert stack.show(box, "ibgwd.service", "ActiveState") == "active"
    assert unit_pids(box, *units) == pids
    for unit in units:
        assert stack.show(box, unit, "ActiveState") == "active", unit
    after = properties(box)
    assert after["State"] == "ready" and after["Ready"] is True
    assert after["Components"] == before["Components"]
    assert stack.ib_async_client(box, 4004, client_id=32).ok


def test_soft_restart_goes_through_ibc_without_a_new_login(box: Box) -> None:
    boot(box)
    ibc_pid = main_pid(box, IBC_UNIT)
    before = len(events(box))
    with in_box(box, "busctl", "--json=short", "monitor", DEST) as monitor:
        assert monitor.stdout is not None
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(monitor.stdout or ()), daemon=True)
        reader.start()
        # Wait until the monitor sees traffic to the daemon, so no signal can be missed.
        stack.wait_for(lambda: bool(prop(box, "State") and lines), 30, "busctl monitor")
        t0 = time.monotonic()
        r = call(box, "Restart", "sb", "", "false")
        assert r.returncode == 0, r.stderr
        assert "RESTART" in commands(events(box)[before:])
        stack.wait_for(
            lambda: any(" event=api_open" in ln for ln in events(box)[before:]),
            WAIT_S,
            "the simulated gateway to come back",
        )
        wait_ready(box, "ready after Restart soft")
        print(f"recovery: Restart soft -> ready in {time.monotonic() - t0:.1f} s")
        os.killpg(monitor.pid, signal.SIGTERM)
        reader.join(30)

    after = events(box)[before:]
    assert any(" event=autorestart_consumed" in ln for ln in after), after
    assert not any(" event=twofa_initiated" in ln or "login_manual" in ln for ln in after), after
    ibc_log = journal(box, "-u", IBC_UNIT)
    restarted = log_lines_after(ibc_log, "received command: RESTART")
    assert any("Re-starting session" in ln for ln in restarted), restarted
    assert any("autorestart file found" in ln for ln in restarted), restarted
    assert any("Login has completed" in ln for ln in restarted)
    for prompt in ("Login dialog WINDOW_OPENED", "Second Factor", "Click button"):
        assert not any(prompt in ln for ln in restarted), f"new login prompt: {prompt}"
    assert main_pid(box, IBC_UNIT) == ibc_pid  # a soft restart does not restart the unit
    assert stack.show(box, IBC_UNIT, "NRestarts") == "0"

    states = [
        m["payload"]["data"][1]["State"]["data"]
        for m in map(json.loads, lines)
        if m.get("member") == "PropertiesChanged" and "State" in m["payload"]["data"][1]
    ]
    assert "restarting" in states and states[-1] == "ready", states
    # No flapping back to ready while the Gateway is still going down after RESTART.
    assert "ready" not in states[states.index("restarting") : -1], states


def test_no_property_unit_property_log_or_error_text_contains_a_secret(box: Box) -> None:
    settings = boot(box, VNC_SERVER_PASSWORD=VNC_PASSWORD)
    texts = {
        "properties": json.dumps(properties(box)),
        "get-property": busctl(box, "get-property", DEST, OBJECT, IFACE, *SIGNATURES).stdout,
        "ibgwdctl status --json": box.run("ibgwdctl", "status", "--json").stdout,
    }
    write_settings(box, settings | {"VNC_SERVER_PASSWORD": NEW_VNC_PASSWORD})
    texts["good reload"] = call(box, "Reload").stdout
    write_settings(
        box, settings | {"TRADING_MODE": "bogus", "VNC_SERVER_PASSWORD": "vncPw-0l" + "z" * 9}
    )
    texts["bad reload"] = gdbus(box, "Reload")
    texts["bad mode"] = gdbus(box, "Restart", "'secret-mode'", "false")
    texts["properties after"] = json.dumps(properties(box))
    units = box.run(
        "systemctl", "list-units", "--all", "--plain", "--no-legend", "ibgwd*"
    ).stdout.split()
    for unit in (u for u in units if u.startswith("ibgwd")):
        texts[f"unit {unit}"] = box.run("systemctl", "show", unit).stdout
    texts["journal"] = journal(box)
    assert "InvalidArgs" in texts["bad mode"]
    for where, text in texts.items():
        assert text, where
        for secret in SECRETS:
            assert secret not in text, f"a secret leaked into {where}"

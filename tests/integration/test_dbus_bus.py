"""The facade on a private system-like dbus-daemon with the shipped policy, driven by busctl."""

from __future__ import annotations

import json
import select
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbus_harness import (
    REPO,
    Accounts,
    FakeDaemon,
    PrivateBus,
    as_user,
    busctl,
    fake_daemon,
    fake_daemon_command,
    private_bus,
    throwaway_accounts,
)

from ibgwd.dbus.properties import SIGNATURES
from ibgwd.names import MANAGER_INTERFACE, OBJECT_PATH

GOLDEN = REPO / "tests" / "golden" / "org.ibgwd.Gateway1.Manager.xml"
METHOD_CALLS = {
    "Reload": [],
    "Restart": ["sb", "paper", "false"],
    "ReconnectData": ["s", ""],
    "ReconnectAccount": ["s", "paper"],
}

pytestmark = pytest.mark.skipif(
    subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0",
    reason="needs root (throwaway users, setpriv)",
)


@pytest.fixture(scope="module")
def accounts() -> Iterator[Accounts]:
    with throwaway_accounts() as created:
        yield created


@pytest.fixture
def bus(accounts: Accounts) -> Iterator[PrivateBus]:
    with private_bus(admin_group=accounts.group) as started:
        yield started


@pytest.fixture
def daemon(bus: PrivateBus, accounts: Accounts) -> Iterator[FakeDaemon]:
    with fake_daemon(bus, admin_group=accounts.group) as started:
        yield started


def call(
    bus: PrivateBus, daemon: FakeDaemon, method: str, *args: str, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    return busctl(
        bus, "call", daemon.bus_name, OBJECT_PATH, MANAGER_INTERFACE, method, *args, user=user
    )


def members(interface: ET.Element) -> dict[str, object]:
    found: dict[str, object] = {}
    for element in interface:
        name = element.get("name", "")
        if element.tag == "method":
            found[name] = [(a.get("direction", "in"), a.get("type")) for a in element.iter("arg")]
        elif element.tag == "property":
            found[name] = (element.get("type"), element.get("access"))
    return found


def manager_of(xml: str) -> ET.Element:
    for interface in ET.fromstring(xml).iter("interface"):
        if interface.get("name") == MANAGER_INTERFACE:
            return interface
    raise AssertionError(f"{MANAGER_INTERFACE} not in {xml[:200]}")


def test_busctl_introspection_matches_golden_interface(bus: PrivateBus, daemon: FakeDaemon) -> None:
    result = busctl(bus, "introspect", "--xml-interface", daemon.bus_name, OBJECT_PATH, check=True)
    assert members(manager_of(result.stdout)) == members(manager_of(GOLDEN.read_text()))


def test_anyone_reads_every_property(
    bus: PrivateBus, daemon: FakeDaemon, accounts: Accounts
) -> None:
    for user in (None, accounts.outsider, "nobody"):
        result = busctl(
            bus,
            "--json=short",
            "get-property",
            daemon.bus_name,
            OBJECT_PATH,
            MANAGER_INTERFACE,
            *SIGNATURES,
            user=user,
        )
        assert result.returncode == 0, result.stderr
        values = [json.loads(line) for line in result.stdout.splitlines()]
        assert [v["type"] for v in values] == list(SIGNATURES.values())
        by_name = dict(zip(SIGNATURES, (v["data"] for v in values), strict=True))
        assert by_name["State"] == "ready"
        assert by_name["Instance"] == "test"
        assert by_name["Ports"] == {"paper": [4002, 4004]}
        assert "first-secret" not in result.stdout  # the fake's VNC password


def test_root_calls_every_method(bus: PrivateBus, daemon: FakeDaemon) -> None:
    for method, args in METHOD_CALLS.items():
        result = call(bus, daemon, method, *args)
        assert result.returncode == 0, f"{method}: {result.stderr}"
    assert [c["call"] for c in daemon.recorded_calls()] == [
        "reload",
        "restart",
        "reconnect",
        "reconnect",
    ]


def test_reload_returns_restarted_components(bus: PrivateBus, daemon: FakeDaemon) -> None:
    daemon.config.write_text("TRADING_MODE=paper\nVNC_PASSWORD=second-secret\n")
    result = call(bus, daemon, "Reload")
    assert result.stdout.strip() == 'as 1 "vnc"'


@pytest.mark.parametrize("member", ["supplementary_member", "primary_member"])
def test_admin_group_member_may_call_every_method(
    bus: PrivateBus, daemon: FakeDaemon, accounts: Accounts, member: str
) -> None:
    user = getattr(accounts, member)
    for method, args in METHOD_CALLS.items():
        result = call(bus, daemon, method, *args, user=user)
        assert result.returncode == 0, f"{user} {method}: {result.stderr}"
    assert len(daemon.recorded_calls()) == len(METHOD_CALLS)


@pytest.mark.parametrize("user", ["outsider", "nobody"])
def test_outsider_is_refused_every_method(
    bus: PrivateBus, daemon: FakeDaemon, accounts: Accounts, user: str
) -> None:
    name = getattr(accounts, user, user)
    for method, args in METHOD_CALLS.items():
        result = call(bus, daemon, method, *args, user=name)
        assert result.returncode != 0, method
        # "Access denied" is busctl's text for the bus policy's rejection; the daemon's own
        # denial would read "... needs authorization ..." (see the test below).
        assert "Access denied" in result.stderr, result.stderr
    assert daemon.recorded_calls() == []


def test_daemon_denies_what_the_bus_policy_lets_through(
    bus: PrivateBus, accounts: Accounts
) -> None:
    # The bus admits the test group, but this daemon only trusts group "root": its own check
    # must refuse, with the standard error name and its own message.
    with fake_daemon(bus, admin_group="root") as daemon:
        result = gdbus_call(bus, daemon, "Reload", user=accounts.supplementary_member)
        assert "org.freedesktop.DBus.Error.AccessDenied" in result.stderr
        assert "needs authorization" in result.stderr
        assert daemon.recorded_calls() == []


def gdbus_call(
    bus: PrivateBus, daemon: FakeDaemon, method: str, *args: str, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [
        "gdbus",
        "call",
        "--address",
        bus.address,
        "--dest",
        daemon.bus_name,
        "--object-path",
        OBJECT_PATH,
        "--method",
        f"{MANAGER_INTERFACE}.{method}",
        *args,
    ]
    return subprocess.run(as_user(user, command), capture_output=True, text=True, timeout=20)


def test_bad_configuration_is_a_named_error_and_nothing_changes(
    bus: PrivateBus, daemon: FakeDaemon
) -> None:
    before = busctl(
        bus, "get-property", daemon.bus_name, OBJECT_PATH, MANAGER_INTERFACE, *SIGNATURES
    )
    daemon.config.write_text("TRADING_MODE=bogus\nVNC_PASSWORD=changed-secret\n")
    result = gdbus_call(bus, daemon, "Reload")
    assert result.returncode != 0
    assert "org.ibgwd.Gateway1.Error.InvalidConfiguration" in result.stderr
    assert "TRADING_MODE: invalid value 'bogus'; accepted: live, paper or both" in result.stderr
    assert "secret" not in result.stderr
    after = busctl(
        bus, "get-property", daemon.bus_name, OBJECT_PATH, MANAGER_INTERFACE, *SIGNATURES
    )
    assert after.stdout == before.stdout


def test_errors_have_names_never_not_known(bus: PrivateBus, daemon: FakeDaemon) -> None:
    not_ready = gdbus_call(bus, daemon, "ReconnectData", "live")
    assert "org.ibgwd.Gateway1.Error.NotReady" in not_ready.stderr
    bad_mode = gdbus_call(bus, daemon, "Restart", "demo", "false")
    assert "org.freedesktop.DBus.Error.InvalidArgs" in bad_mode.stderr
    assert "mode: invalid value 'demo'" in bad_mode.stderr
    for result in (not_ready, bad_mode):
        assert "not.known" not in result.stderr


def test_properties_changed_is_emitted_on_restart(bus: PrivateBus, daemon: FakeDaemon) -> None:
    monitor = subprocess.Popen(
        ["busctl", f"--address={bus.address}", "--json=short", "monitor", daemon.bus_name],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert monitor.stdout is not None
        # Wait until the monitor sees traffic to the daemon, so no signal can be missed.
        probe = ["get-property", daemon.bus_name, OBJECT_PATH, MANAGER_INTERFACE, "State"]
        while not select.select([monitor.stdout], [], [], 0.2)[0]:
            busctl(bus, *probe, check=True)
        assert call(bus, daemon, "Restart", "sb", "", "false").returncode == 0
        states = []
        while states[-2:] != ["restarting", "ready"]:
            ready, _, _ = select.select([monitor.stdout], [], [], 10)
            assert ready, f"no PropertiesChanged; saw states {states}"
            message = json.loads(monitor.stdout.readline())
            if message.get("member") == "PropertiesChanged":
                interface, changed, _ = message["payload"]["data"]
                assert interface == MANAGER_INTERFACE
                if "State" in changed:
                    states.append(changed["State"]["data"])
                    assert set(changed) == {"State", "Ready"}
    finally:
        monitor.terminate()
        monitor.wait(timeout=5)


def test_only_root_may_own_the_name(bus: PrivateBus, accounts: Accounts, tmp_path: Path) -> None:
    command = as_user(accounts.supplementary_member, fake_daemon_command(bus.address, "intruder"))
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=30, env={"PYTHONPATH": str(REPO)}
    )
    assert result.returncode != 0
    assert "cannot own the D-Bus name org.ibgwd.Gateway1.intruder" in result.stderr


def test_second_daemon_for_the_same_instance_does_not_queue(
    bus: PrivateBus, daemon: FakeDaemon
) -> None:
    result = subprocess.run(
        fake_daemon_command(bus.address, daemon.instance),
        capture_output=True,
        text=True,
        timeout=30,
        env={"PYTHONPATH": str(REPO)},
    )
    assert result.returncode != 0
    assert "another process owns it" in result.stderr
    assert busctl(bus, "status", daemon.bus_name).returncode == 0
